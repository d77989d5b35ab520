#!/bin/bash
# Zero-downtime upgrade soak: N upgrades in a row (default 20) of the build in build/ under
# wrk (HTTP/1.1 keep-alive, 2 threads, 8 connections, 3 + 2N seconds) and h2load (h2c, runs of
# 600 requests, 2 connections x 4 streams, one after another until the upgrades are done),
# with an override set before the first upgrade. It is tests/e2e/test_19_upgrade.py's load
# test with SY_UPGRADES=N, so it checks what that test checks after every upgrade (the old
# process exits 0, the journal never open in both processes, one flock) and at the end (no
# wrk socket error nor non-2xx answer, no h2load request failed or errored, the override in
# force). Prints the MEASURE lines: upgrades, wrk and h2load requests. Never part of the
# suite. Only 127.0.0.1; only the processes it started are stopped, by PID.
#
#   bash tests/bench/upgrade_soak.sh [N]
set -u
cd "$(dirname "$0")/../.."
root=$(pwd)
n=${1:-20}
[ -x build/proxy/switchyard ] || { echo "build first: meson setup build && ninja -C build" >&2; exit 2; }
SY_UPGRADES=$n SWITCHYARD=$root/build/proxy/switchyard \
    SWITCHYARDCTL=$root/build/admin/switchyardctl SY_SOURCE_ROOT=$root \
    /usr/bin/python3 -m pytest -q -p no:cacheprovider -s \
    "tests/e2e/test_19_upgrade.py::test_five_upgrades_under_wrk_and_h2load_lose_nothing" 2>&1 |
    grep -E "MEASURE|passed|failed|Error|assert"
exit "${PIPESTATUS[0]}"
