#!/bin/sh
# Installs what is missing (Debian 12, as root), builds, and runs every test: unit and
# end-to-end on a normal build, the same again on an ASan+UBSan build, and a short libFuzzer
# run of every parser. Ends with one line: `N passed, N failed`.
#   sh tests/run.sh            everything
#   SY_QUICK=1 sh tests/run.sh skip the sanitizer pass and the fuzzers
#   SY_FUZZ_SECONDS=N          seconds per fuzz target (default 20)
#   SY_ALLOW_SKIPS=1           a skipped test is reported but not counted as failed
# Every test in tests/ is one the README promises: a test that skips (a package or a tool
# missing, a capability absent) counts as failed unless SY_ALLOW_SKIPS=1, so that a run that
# ran nothing of a feature cannot end "N passed, 0 failed".
set -u
cd "$(dirname "$0")/.."
root=$(pwd)
t0=$(date +%s)
# A section's header with the seconds since the start: where the run's time goes.
section() { echo "== $1 (at $(($(date +%s) - t0)) s)"; }

pkgs="meson ninja-build pkg-config gcc clang libclang-rt-14-dev libevent-dev libnghttp2-dev
      libyaml-dev libssl-dev libcmocka-dev curl nghttp2-client python3 python3-pytest
      python3-h2 python3-websockets socat procps openssl nghttp2-server python3-grpcio
      mount e2fsprogs strace haproxy prometheus chromium wrk
      python3-yaml systemd dpkg-dev debhelper lintian man-db adduser etcd-server etcd-client"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    section "installing:$missing"
    if [ "$(id -u)" -ne 0 ]; then
        echo "run as root, or install:$missing" >&2
        exit 1
    fi
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null \
        || { echo "apt-get install failed" >&2; exit 1; }
fi

passed=0
failed=0
skipped=0
log=$(mktemp -d /tmp/switchyard-tests.XXXXXX)

# meson test: count its Ok/Fail summary.
run_meson() { # builddir label
    out="$log/meson-$2.txt"
    meson test -C "$1" --suite unit --print-errorlogs >"$out" 2>&1
    cat "$out" | grep -E '^ *[0-9]+/[0-9]+ |^(Ok|Fail|Expected Fail|Unexpected Pass|Skipped|Timeout):' 
    ok=$(sed -n 's/^Ok: *\([0-9]*\).*/\1/p' "$out" | tail -n1)
    ko=$(sed -n 's/^Fail: *\([0-9]*\).*/\1/p' "$out" | tail -n1)
    to=$(sed -n 's/^Timeout: *\([0-9]*\).*/\1/p' "$out" | tail -n1)
    sk=$(sed -n 's/^Skipped: *\([0-9]*\).*/\1/p' "$out" | tail -n1)
    [ -n "$ok" ] || { ok=0; ko=1; tail -n 40 "$out"; }
    passed=$((passed + ok))
    skipped=$((skipped + ${sk:-0}))
    failed=$((failed + ${ko:-0} + ${to:-0}))
    [ "${ko:-0}" = 0 ] || grep -B2 -A30 'FAIL\|ERROR' "$out" | head -n 80
}

# pytest: count its closing line.
run_e2e() { # switchyard-binary label
    out="$log/e2e-$2.txt"
    SWITCHYARD="$1" SWITCHYARDCTL="$(dirname "$(dirname "$1")")/admin/switchyardctl" \
        SY_SOURCE_ROOT="$root" timeout 1500 /usr/bin/python3 -m pytest -q \
        -p no:cacheprovider -rfEs --durations=25 tests/e2e >"$out" 2>&1
    tail -n 30 "$out"
    # Every skip with its reason (a test that cannot mount says so here), even past the tail.
    grep '^SKIPPED' "$out" | sed "s/^/e2e $2: /" || true
    p=$(tail -n 3 "$out" | grep -o '[0-9]* passed' | tail -n1 | cut -d' ' -f1)
    f=$(tail -n 3 "$out" | grep -o '[0-9]* failed' | tail -n1 | cut -d' ' -f1)
    e=$(tail -n 3 "$out" | grep -o '[0-9]* error' | tail -n1 | cut -d' ' -f1)
    s=$(tail -n 3 "$out" | grep -o '[0-9]* skipped' | tail -n1 | cut -d' ' -f1)
    [ -n "$p$f$e" ] || f=1
    passed=$((passed + ${p:-0}))
    skipped=$((skipped + ${s:-0}))
    failed=$((failed + ${f:-0} + ${e:-0}))
    grep '^MEASURE' "$out" || true
}

build() { # builddir, meson options...
    dir=$1
    shift
    if [ ! -d "$dir" ]; then
        meson setup "$dir" "$@" >"$log/setup-$dir.txt" 2>&1 || { cat "$log/setup-$dir.txt"; return 1; }
    fi
    ninja -C "$dir" >"$log/build-$dir.txt" 2>&1 || { tail -n 60 "$log/build-$dir.txt"; return 1; }
    echo "built $dir (at $(($(date +%s) - t0)) s)"
}

section "build (debugoptimized, -Werror)"
if build build -Dwerror=true; then
    run_meson build plain
    run_e2e "$root/build/proxy/switchyard" plain
else
    failed=$((failed + 1))
fi

if [ -z "${SY_QUICK:-}" ]; then
    section "build (ASan + UBSan)"
    export ASAN_OPTIONS=detect_leaks=1:abort_on_error=0
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
    if build build-asan -Db_sanitize=address,undefined -Dbuildtype=debug -Dwerror=true \
        -Db_lundef=false; then
        run_meson build-asan asan
        SY_SANITIZED=1 run_e2e "$root/build-asan/proxy/switchyard" asan
    else
        failed=$((failed + 1))
    fi

    section "fuzz (libFuzzer, ${SY_FUZZ_SECONDS:-20}s per target)"
    if CC=clang build build-fuzz -Dfuzz=true -Dtests=disabled -De2e=disabled \
        -Db_sanitize=address,undefined -Db_lundef=false -Dc_args=-fsanitize=fuzzer-no-link; then
        # Two targets at a time, one per core: nothing else runs in this phase.
        targets="fuzz_h1 fuzz_config fuzz_admin fuzz_journal fuzz_proxy_proto fuzz_json fuzz_etcd"
        set -- $targets
        while [ $# -gt 0 ]; do
            for t in "$1" "${2:-}"; do
                [ -n "$t" ] || continue
                corpus="$log/corpus-$t"
                mkdir -p "$corpus"
                if [ -d "tests/fuzz/corpus/$t" ]; then
                    cp tests/fuzz/corpus/$t/* "$corpus/" 2>/dev/null
                fi
                ( "build-fuzz/tests/$t" -max_total_time="${SY_FUZZ_SECONDS:-20}" -timeout=10 \
                    "$corpus" >"$log/$t.txt" 2>&1; echo $? >"$log/$t.rc" ) &
            done
            wait
            shift
            [ $# -gt 0 ] && shift
        done
        for t in $targets; do
            if [ "$(cat "$log/$t.rc" 2>/dev/null)" = 0 ]; then
                echo "fuzz $t: ok ($(grep -o 'Done [0-9]* runs' "$log/$t.txt"))"
                passed=$((passed + 1))
            else
                echo "fuzz $t: FAILED"
                tail -n 40 "$log/$t.txt"
                failed=$((failed + 1))
            fi
        done
    else
        failed=$((failed + 1))
    fi
fi

# The Debian package (tests/pkg/run.sh: build, lintian, dpkg -i, -t, man, systemd-analyze
# verify, purge): one test of about 35 s here, run in CI (CI=true) or with SY_PKG_TEST=1.
if [ -n "${SY_PKG_TEST:-}" ] || [ "${CI:-}" = true ]; then
    section "Debian package"
    if timeout 600 sh tests/pkg/run.sh >"$log/pkg.txt" 2>&1; then
        grep '^pkg: ' "$log/pkg.txt"
        passed=$((passed + 1))
    else
        tail -n 60 "$log/pkg.txt"
        failed=$((failed + 1))
    fi
fi

echo "logs: $log (total $(($(date +%s) - t0)) s)"
if [ "$skipped" -gt 0 ]; then
    if [ -n "${SY_ALLOW_SKIPS:-}" ]; then
        echo "$skipped skipped (allowed by SY_ALLOW_SKIPS; the reasons are above)"
    else
        echo "$skipped skipped: counted as failed (the reasons are above; SY_ALLOW_SKIPS=1 to allow)"
        failed=$((failed + skipped))
    fi
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
