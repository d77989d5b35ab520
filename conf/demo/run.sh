#!/bin/sh
# The demo: installs what is missing (Debian 12, as root), builds switchyard, and starts it on
# conf/switchyard.yaml in front of two demo clusters on loopback, blue (127.0.0.1:9001) and
# green (127.0.0.1:9002), each a small backend that names itself, with the admin socket
# (/tmp/switchyard-demo/admin.sock) and the status page (http://127.0.0.1:9901/) on. Each start
# begins from the file's weights: the demo's journal of a previous run is removed. Everything
# runs in the background; `sh conf/demo/run.sh stop` stops it.
set -u
cd "$(dirname "$0")/../.."
root=$(pwd)
state=/tmp/switchyard-demo
mkdir -p "$state"

# Stops what the demo started and waits (at most 35 s: shutdown.grace and then some) until it
# has exited, so that a start right after a stop finds its ports free.
stop() {
    pids=""
    for f in "$state"/*.pid; do
        [ -f "$f" ] || continue
        pid=$(cat "$f")
        kill "$pid" 2>/dev/null && echo "stopped $(basename "$f" .pid) (pid $pid)" && pids="$pids $pid"
        rm -f "$f"
    done
    i=0
    for pid in $pids; do
        while kill -0 "$pid" 2>/dev/null && [ $i -lt 350 ]; do
            i=$((i + 1))
            sleep 0.1
        done
    done
}

if [ "${1:-}" = stop ]; then
    stop
    exit 0
fi

pkgs="meson ninja-build pkg-config gcc libevent-dev libnghttp2-dev libyaml-dev libssl-dev
      libcmocka-dev curl python3"
missing=""
for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "installing:$missing"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null \
        || { echo "apt-get install failed (run as root)" >&2; exit 1; }
fi

[ -d build ] || meson setup build >/dev/null || exit 1
ninja -C build >/dev/null || { echo "build failed: ninja -C build" >&2; exit 1; }
stop >/dev/null

# The demo's ports must be free: something else answering there would pass for the demo.
for port in 8080 9001 9002 9901; do
    curl -s -o /dev/null --max-time 2 "http://127.0.0.1:$port/"
    if [ $? -ne 7 ]; then
        echo "port $port on 127.0.0.1 is already in use; stop what listens there first" >&2
        exit 1
    fi
done

start_backend() { # name port
    /usr/bin/python3 tests/e2e/backend.py --name "$1" --port "$2" >"$state/$1.out" 2>&1 </dev/null &
    echo $! >"$state/$1.pid"
}
start_backend blue-1 9001
start_backend green-1 9002
# A fresh start: an override of an earlier demo run (a revert is durable) would hide the split.
rm -f "$state/state.json"
build/proxy/switchyard -c conf/switchyard.yaml >/dev/null 2>"$state/switchyard.log" </dev/null &
echo $! >"$state/switchyard.pid"

# Wait (bounded) until the backends and then the proxy answer.
for url in http://127.0.0.1:9001/ http://127.0.0.1:9002/ http://127.0.0.1:8080/ \
    http://127.0.0.1:9901/healthz; do
    i=0
    until curl -sf -o /dev/null "$url" 2>/dev/null; do
        i=$((i + 1))
        if [ $i -gt 100 ]; then
            echo "$url did not come up; logs in $state:" >&2
            tail -n 5 "$state"/*.out "$state/switchyard.log" >&2
            stop
            exit 1
        fi
        sleep 0.1
    done
done

ctl="$root/build/admin/switchyardctl"
cat <<EOT
switchyard is running on http://127.0.0.1:8080 (routing table: conf/switchyard.yaml)
in front of blue (127.0.0.1:9001) and green (127.0.0.1:9002), split 90/10.

Try:
  curl -si http://127.0.0.1:8080/ | grep -i x-backend
  for i in \$(seq 20); do curl -s http://127.0.0.1:8080/; done | sort | uniq -c
  curl -s http://127.0.0.1:9001/      # blue directly
  curl -s http://127.0.0.1:9002/      # green directly

Shift the split: edit weights in conf/switchyard.yaml and save (picked up at once),
or: kill -HUP \$(cat $state/switchyard.pid)

Status page: http://127.0.0.1:9901/    (JSON: http://127.0.0.1:9901/status)
Watch in a terminal: $ctl -s $state/admin.sock status --watch
Revert to blue at once: $ctl -s $state/admin.sock revert demo
Back to the file's weights: $ctl -s $state/admin.sock release demo
Logs: $state/switchyard.log     Stop: sh conf/demo/run.sh stop
EOT
