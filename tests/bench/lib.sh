# Shared by the scripts in tests/bench (sourced, from the repository's root): what each needs
# before it starts.

# Installs from Debian whichever of the packages named is missing (as root); exits on failure.
bench_need() {
    local need="" p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need="$need $p"
    done
    [ -z "$need" ] && return 0
    echo "installing$need" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null ||
        { echo "apt-get install$need failed" >&2; exit 1; }
}

# Waits up to 10 s for a listener on 127.0.0.1's `port`; false when none came.
wait_port() {
    for _ in $(seq 100); do
        ss -ltnH "sport = :$1" | grep -q . && return 0
        sleep 0.1
    done
    return 1
}

# Sets SY_BIN, unless given, to a release build of this tree (build-release, set up and built
# here); exits when the build fails.
bench_sy_bin() {
    [ -n "${SY_BIN:-}" ] && return 0
    SY_BIN=$(pwd)/build-release/proxy/switchyard
    if [ ! -f build-release/build.ninja ]; then
        meson setup build-release --buildtype=release -Dtests=disabled -De2e=disabled >/dev/null ||
            { echo "meson setup build-release failed" >&2; exit 1; }
    fi
    ninja -C build-release >/dev/null || { echo "release build failed" >&2; exit 1; }
}
