#!/bin/bash
# What observability costs (issue #15): CPU per request with the JSON access log on (to a file)
# and /metrics scraped every second, against both off, in one run. Never part of the test suite.
#
#   bash tests/bench/obs_cost.sh             RUNS=5 N=100000 by default
#   RUNS=3 N=50000 bash tests/bench/obs_cost.sh
#
# Two switchyard processes (release build, 1 worker each) in front of the same two nginx
# backends, one config apart: "off" has no access_log, "on" has access_log: {path: FILE} and a
# curl that GETs its admin.http /metrics once a second while its load runs. The load is h2load,
# bounded by count: N requests over HTTP/1.1 (--h1 -c50) and N over h2c (-c10 -m10). Runs are
# interleaved (off, on, off, on ...) so that a drift of the machine hits both alike. CPU per
# request is utime + stime of the proxy (/proc/PID/stat) over the requests it served; the
# ratio on/off is printed per run, as the median of the runs and as the ratio of the means, for
# h1 and h2c. On a shared machine single runs move by 20-40% either way: trust RUNS >= 7.
# SY_BIN: a switchyard binary to use as is (otherwise build-release is built here). Only
# 127.0.0.1; only the processes this script started are stopped, by PID.
set -u
cd "$(dirname "$0")/../.."
root=$(pwd)
RUNS=${RUNS:-5}
N=${N:-100000}
BASE=${BASE_PORT:-28900}
B1=$((BASE + 11)) B2=$((BASE + 12))
OFF1=$((BASE + 1)) OFF2=$((BASE + 2)) ON1=$((BASE + 3)) ON2=$((BASE + 4)) ONH=$((BASE + 5))
ulimit -n "$(ulimit -Hn)" 2>/dev/null

. tests/bench/lib.sh
bench_need nginx-light nghttp2-client curl meson ninja-build
bench_sy_bin
for p in $B1 $B2 $OFF1 $OFF2 $ON1 $ON2 $ONH; do
    ss -ltnH "sport = :$p" | grep -q . && { echo "port $p in use: set BASE_PORT" >&2; exit 1; }
done
work=$(mktemp -d /tmp/switchyard-obs.XXXXXX)

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT
trap 'exit 130' INT TERM

cat >"$work/backends.conf" <<EOT
daemon off; worker_processes 1; pid $work/backends.pid; error_log $work/backends.err;
events { worker_connections 10000; }
http {
  access_log off; keepalive_requests 1000000; keepalive_timeout 120s;
  default_type text/plain;
  server { listen 127.0.0.1:$B1 backlog=4096;
    location / { add_header x-backend blue; return 200 "blue: a small answer of about one hundred bytes, much like a short API reply\n"; } }
  server { listen 127.0.0.1:$B2 backlog=4096;
    location / { add_header x-backend green; return 200 "green: a small answer of about one hundred bytes, much like a short API reply\n"; } }
}
EOT
nginx -c "$work/backends.conf" -p "$work" &
pids+=($!)

config() { # h1 port, h2c port, extra YAML
    cat <<EOT
workers: 1
listen: [{address: 127.0.0.1:$1}, {address: 127.0.0.1:$2}]
clusters:
  blue: {endpoints: [127.0.0.1:$B1]}
  green: {endpoints: [127.0.0.1:$B2]}
apps:
  - {name: bench, hosts: ["*"], weights: {blue: 90, green: 10}}
limits: {max_connections: 19000}
$3
EOT
}
config $OFF1 $OFF2 "" >"$work/off.yaml"
config $ON1 $ON2 "access_log: {path: $work/access.log}
admin: {http: 127.0.0.1:$ONH}" >"$work/on.yaml"
"$SY_BIN" -c "$work/off.yaml" -l warn 2>"$work/off.err" &
off_pid=$!
pids+=($off_pid)
"$SY_BIN" -c "$work/on.yaml" -l warn 2>"$work/on.err" &
on_pid=$!
pids+=($on_pid)
for p in $B1 $B2 $OFF1 $OFF2 $ON1 $ON2 $ONH; do
    wait_port "$p" || { echo "port $p did not open" >&2; cat "$work"/*.err >&2; exit 1; }
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
load() { # kind port: prints the requests that succeeded
    local out
    if [ "$1" = h1 ]; then out=$(timeout 300 h2load --h1 -c50 -n "$N" "http://127.0.0.1:$2/")
    else out=$(timeout 300 h2load -c10 -m10 -n "$N" "http://127.0.0.1:$2/"); fi
    echo "$out" | awk '/^requests:/ {print $8}'
}
scraper() { # /metrics once a second until killed
    while :; do curl -s -o /dev/null "http://127.0.0.1:$ONH/metrics"; sleep 1; done
}
measure() { # kind mode: prints "us_per_request requests"
    local pid=$off_pid port
    [ "$2" = on ] && pid=$on_pid
    case $1-$2 in h1-off) port=$OFF1 ;; h2c-off) port=$OFF2 ;; h1-on) port=$ON1 ;; h2c-on) port=$ON2 ;; esac
    local sp=""
    if [ "$2" = on ]; then scraper & sp=$!; pids+=($sp); fi
    local t0 n t1
    t0=$(cpu_ticks "$pid")
    n=$(load "$1" "$port")
    t1=$(cpu_ticks "$pid")
    [ -n "$sp" ] && kill "$sp" 2>/dev/null && wait "$sp" 2>/dev/null
    awk -v a="$t0" -v b="$t1" -v n="$n" -v hz="$(getconf CLK_TCK)" \
        'BEGIN {if (n > 0) printf "%.2f %d\n", (b - a) / hz * 1e6 / n, n; else print "nan 0"}'
}

hz=$(getconf CLK_TCK)
echo "# switchyard $($SY_BIN --version 2>/dev/null | head -n1), RUNS=$RUNS N=$N, 1 worker, CPU ticks of $((1000 / hz)) ms"
for kind in h1 h2c; do
    measure "$kind" off >/dev/null # warm: pools filled, buffers grown, the file exists
    measure "$kind" on >/dev/null
    ratios=()
    sum_off=0 sum_on=0
    for r in $(seq "$RUNS"); do
        read -r off_us off_n < <(measure "$kind" off)
        read -r on_us on_n < <(measure "$kind" on)
        ratio=$(awk -v a="$off_us" -v b="$on_us" 'BEGIN {printf "%.3f", b / a}')
        ratios+=("$ratio")
        sum_off=$(awk -v s="$sum_off" -v x="$off_us" 'BEGIN {print s + x}')
        sum_on=$(awk -v s="$sum_on" -v x="$on_us" 'BEGIN {print s + x}')
        printf "%-3s run %d: off %6.2f us/req (%d)   on %6.2f us/req (%d)   on/off %s\n" \
            "$kind" "$r" "$off_us" "$off_n" "$on_us" "$on_n" "$ratio"
    done
    median=$(printf "%s\n" "${ratios[@]}" | sort -n | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}')
    echo "$kind median on/off: $median  ($(awk -v m="$median" 'BEGIN {printf "%+.1f", (m - 1) * 100}')% CPU per request)"
    echo "$kind all runs: off $(awk -v s="$sum_off" -v n="$RUNS" 'BEGIN {printf "%.2f", s / n}') us/req, on $(awk -v s="$sum_on" -v n="$RUNS" 'BEGIN {printf "%.2f", s / n}') us/req, on/off $(awk -v a="$sum_off" -v b="$sum_on" 'BEGIN {printf "%.3f", b / a}')"
done
lines=$(wc -l <"$work/access.log")
dropped=$(curl -s "http://127.0.0.1:$ONH/metrics" | awk '/^switchyard_access_log_dropped_total/ {print $2}')
echo "access log: $lines lines written, $dropped dropped ($work/access.log)"

# PERF=1: where the "on" process spends its time under one more h2c load (perf cpu-clock
# samples, no call graphs): the writer thread's share, and the share of the worker's samples
# in the functions that make and queue the lines. A figure that machine noise does not move.
if [ "${PERF:-0}" = 1 ]; then
    perf record -e cpu-clock -F 2000 -o "$work/perf.data" -p "$on_pid" -- sleep 600 \
        >"$work/perf.log" 2>&1 &
    perf_pid=$!
    sleep 0.5
    load h2c "$ON2" >/dev/null
    kill -INT "$perf_pid"
    wait "$perf_pid" 2>/dev/null
    echo "## perf: samples by thread"
    perf report -i "$work/perf.data" --no-children --sort comm --stdio 2>/dev/null | grep -v '^#' | grep -v '^$'
    echo "## perf: the worker's samples in the access log's code"
    perf report -i "$work/perf.data" --no-children --comm sy-worker-0 --percentage relative --sort sym --stdio 2>/dev/null |
        grep -E '\] (access_|sy_access_|sy_json_escape|key|str_n|str|digits|uint_|ms|raw|lit|open_line|exchange_line|put_line|request_part|client|request_id|sampled|mix|copy_cut)( |$)' |
        awk '{s += $1; print} END {printf "total: %.2f%% of the worker'"'"'s samples\n", s}'
fi
