#!/bin/sh
# The Debian package, end to end (issue 18), as root on a Debian 12 machine:
#   1. builds it with `dpkg-buildpackage -us -uc -b` in a temp copy of the tree (the files git
#      tracks, and new ones it does not ignore: a clean checkout of the work in progress);
#   2. lintian: no error (warnings are printed);
#   3. `dpkg -i`: the `switchyard` system user and its state directory exist, the unit is
#      enabled, /etc/switchyard/switchyard.yaml is a conffile and passes `switchyard -t` (as
#      root, and as the service's user), `man switchyard.yaml` shows the configuration
#      reference, `systemd-analyze verify` passes on the installed unit with nothing to say,
#      and the alert rules and man pages are where the package says;
#   4. `dpkg --purge`: the files, the user, its state directory and the unit's link are gone;
#   5. the Dockerfile's way: a `switchyard` user made first with uid 10001 is kept, by the
#      install and by the purge (it is not the package's).
# Prints `pkg: ok` or `pkg: FAILED: why` (and the step's output), exits 0 or 1.
# DEB_BUILD_OPTIONS defaults to `nocheck noddebs` here (tests/run.sh runs the unit tests
# already, and no debug symbols package is needed);
# SY_PKG_KEEP=1 keeps the temp directory.
set -u
cd "$(dirname "$0")/../.."
root=$(pwd)

fail() {
    echo "pkg: FAILED: $*"
    [ -n "${out:-}" ] && [ -s "$out" ] && tail -n 40 "$out"
    if dpkg-query -W -f='${Status}' switchyard 2>/dev/null | grep -q "installed"; then
        dpkg --purge switchyard >/dev/null 2>&1
    fi
    if [ -n "${made_user:-}" ]; then
        userdel switchyard 2>/dev/null
        groupdel switchyard 2>/dev/null
    fi
    [ -n "${SY_PKG_KEEP:-}" ] || rm -rf "$tmp"
    exit 1
}

[ "$(id -u)" -eq 0 ] || { echo "pkg: FAILED: run as root (dpkg -i)"; exit 1; }
if dpkg-query -W -f='${Status}' switchyard 2>/dev/null | grep -q "installed"; then
    echo "pkg: FAILED: a switchyard package is installed here already; the test would purge it"
    exit 1
fi
tmp=$(mktemp -d /tmp/switchyard-pkg.XXXXXX)
out="$tmp/out.txt"
start=$(date +%s)

# 1. build, from a copy
mkdir "$tmp/src"
git -C "$root" ls-files -co --exclude-standard -z | (cd "$root" && xargs -0 tar -cf - --no-recursion) \
    | tar -xf - -C "$tmp/src" || fail "cannot copy the tree"
(cd "$tmp/src" && DEB_BUILD_OPTIONS="${DEB_BUILD_OPTIONS:-nocheck noddebs}" nice dpkg-buildpackage -us -uc -b) \
    >"$out" 2>&1 || fail "dpkg-buildpackage"
deb=$(ls "$tmp"/switchyard_*_*.deb 2>/dev/null | head -n1)
[ -n "$deb" ] || fail "no switchyard_*.deb was built"
dpkg-deb -c "$deb" >"$tmp/contents.txt" || fail "dpkg-deb -c"
for f in usr/bin/switchyard usr/bin/switchyardctl lib/systemd/system/switchyard.service \
    etc/switchyard/switchyard.yaml usr/share/man/man5/switchyard.yaml.5.gz \
    usr/share/man/man8/switchyard.8.gz usr/share/man/man8/switchyardctl.8.gz \
    usr/share/switchyard/prometheus/switchyard.rules.yml; do
    grep -q " \./$f\$" "$tmp/contents.txt" || { cp "$tmp/contents.txt" "$out"; fail "$f is not in $deb"; }
done
echo "pkg: built $(basename "$deb") in $(($(date +%s) - start)) s"

# 2. lintian (E: is an error; W: is reported)
t=$(date +%s)
lintian "$tmp"/switchyard_*.changes >"$out" 2>&1
grep -E '^[EW]: ' "$out" | sed 's/^/pkg: lintian: /'
grep -q '^E: ' "$out" && fail "lintian reports errors"
echo "pkg: lintian: $(grep -c '^E: ' "$out") errors, $(grep -c '^W: ' "$out") warnings in $(($(date +%s) - t)) s"
t=$(date +%s)

# 3. install
dpkg -i "$deb" >"$out" 2>&1 || fail "dpkg -i"
getent passwd switchyard >/dev/null || fail "no switchyard user after dpkg -i"
[ "$(stat -c '%U %a' /var/lib/switchyard)" = "switchyard 750" ] \
    || fail "/var/lib/switchyard is $(stat -c '%U %a' /var/lib/switchyard 2>&1), want switchyard 750"
dpkg-query -W -f='${Conffiles}\n' switchyard | grep -q ' /etc/switchyard/switchyard.yaml ' \
    || fail "/etc/switchyard/switchyard.yaml is not a conffile"
[ -L /etc/systemd/system/multi-user.target.wants/switchyard.service ] \
    || fail "the unit is not enabled (no multi-user.target.wants link)"
switchyard -t -c /etc/switchyard/switchyard.yaml >"$out" 2>&1 \
    || fail "switchyard -t -c /etc/switchyard/switchyard.yaml (as root)"
grep -q ': ok: ' "$out" || fail "switchyard -t said no ok"
grep -q "^note: /var/lib/switchyard (the overrides journal's directory) belongs to switchyard " \
    "$out" || fail "switchyard -t as root did not name the user the daemon must run as"
runuser -u switchyard -- switchyard -t -c /etc/switchyard/switchyard.yaml >"$out" 2>&1 \
    || fail "switchyard -t (as the switchyard user)"
switchyardctl --version >"$out" 2>&1 || fail "switchyardctl --version"
man -P cat switchyard.yaml >"$out" 2>&1 || fail "man switchyard.yaml"
for s in "CONFIGURATION KEYS" "apps\[\]\.weights" "listen\[\]\.address"; do
    grep -q "$s" "$out" || fail "man switchyard.yaml has no '$s'"
done
man -P cat 8 switchyard >/dev/null 2>&1 && man -P cat switchyardctl >/dev/null 2>&1 \
    || fail "man switchyard / switchyardctl"
systemd-analyze verify /lib/systemd/system/switchyard.service >"$out" 2>&1 \
    || fail "systemd-analyze verify"
[ ! -s "$out" ] || fail "systemd-analyze verify had something to say"

# 4. purge
dpkg --purge switchyard >"$out" 2>&1 || fail "dpkg --purge"
for f in /usr/bin/switchyard /etc/switchyard /var/lib/switchyard \
    /etc/systemd/system/multi-user.target.wants/switchyard.service; do
    [ ! -e "$f" ] && [ ! -L "$f" ] || fail "$f is still there after dpkg --purge"
done
! getent passwd switchyard >/dev/null || fail "the switchyard user is still there after purge"
! getent group switchyard >/dev/null || fail "the switchyard group is still there after purge"

echo "pkg: installed, checked and purged in $(($(date +%s) - t)) s"

# 5. The Dockerfile's way: a `switchyard` user made before the package (fixed ids 10001, which
#    the Kubernetes manifests name) is kept by postinst, and the state directory is its.
if getent passwd 10001 >/dev/null || getent group 10001 >/dev/null; then
    fail "uid or gid 10001 is taken on this machine: cannot check the Dockerfile's user"
fi
made_user=1
groupadd --system --gid 10001 switchyard && useradd --system --uid 10001 --gid 10001 \
    --home-dir /var/lib/switchyard --no-create-home --shell /usr/sbin/nologin switchyard \
    || fail "cannot make the Dockerfile's user"
dpkg -i "$deb" >"$out" 2>&1 || fail "dpkg -i with the user made beforehand"
[ "$(id -u switchyard):$(stat -c '%u %a' /var/lib/switchyard)" = "10001:10001 750" ] \
    || fail "with a user made beforehand: uid $(id -u switchyard), state dir $(stat -c '%u %a' /var/lib/switchyard)"
runuser -u switchyard -- switchyard -t -c /etc/switchyard/switchyard.yaml >"$out" 2>&1 \
    || fail "switchyard -t as the Dockerfile's user"
dpkg --purge switchyard >"$out" 2>&1 || fail "dpkg --purge (second install)"
# Not a system uid, so not one postinst made: purge leaves it to whoever made it (deluser
# --system refuses it).
[ "$(id -u switchyard 2>&1)" = 10001 ] || fail "purge removed a user the package did not make"
[ ! -e /var/lib/switchyard ] || fail "/var/lib/switchyard is still there after the second purge"
userdel switchyard || fail "cannot remove the Dockerfile's user"
if getent group switchyard >/dev/null; then groupdel switchyard; fi
made_user=

[ -n "${SY_PKG_KEEP:-}" ] || rm -rf "$tmp"
echo "pkg: ok ($(($(date +%s) - start)) s)"
