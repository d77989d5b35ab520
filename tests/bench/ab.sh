#!/bin/bash
# Two switchyard binaries, A and B, against each other: CPU per request (utime+stime of the
# proxy over the load, divided by the requests done) and req/s, in interleaved runs on the same
# two nginx backends and the same 90/10 split as tests/bench/run.sh. For a change to the data
# path, before it is worth a full run. Never part of the test suite.
#
#   bash tests/bench/ab.sh BIN_A BIN_B          3 rounds (ROUNDS), each A then B, five loads
#   LOADS="h1-16k h2c-16k" bash tests/bench/ab.sh ...   only these loads
#
# Loads (each bounded by count or time): h2c-16x32 and h2c-10x10 (h2load -c16 -m32 and -c10
# -m10, N requests, default 200000), h2c-16k (-c10 -m10 on /16k, N/4), h1-small and h1-16k
# (wrk -c50 on / and /16k, DUR seconds, default 4). Ports from BASE_PORT (27900). Only
# 127.0.0.1; only what it started is stopped, by PID.
set -u
[ $# -eq 2 ] || { echo "usage: $0 BIN_A BIN_B" >&2; exit 2; }
A=$(realpath "$1") B=$(realpath "$2")
. "$(dirname "$0")/lib.sh" # wait_port
ROUNDS=${ROUNDS:-3} N=${N:-200000} DUR=${DUR:-4}
BASE=${BASE_PORT:-27900}
SY=$((BASE + 1)) B1=$((BASE + 11)) B2=$((BASE + 12))
for t in nginx h2load wrk; do
    command -v $t >/dev/null || { echo "$t is missing (nginx-light, nghttp2-client, wrk)" >&2; exit 1; }
done
work=$(mktemp -d /tmp/switchyard-ab.XXXXXX)
chmod 755 "$work"
started=()
trap 'for p in "${started[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null' EXIT
head -c 16384 /dev/zero | tr '\0' 'x' >"$work/16k"
for color in blue green; do
    port=$B1
    [ $color = green ] && port=$B2
    cat >"$work/$color.conf" <<EOT
daemon off; worker_processes 1; pid $work/$color.pid; error_log $work/$color.err;
events { worker_connections 10000; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 120s; default_type text/plain;
  server { listen 127.0.0.1:$port backlog=4096; root $work;
    location = /16k { try_files /16k =404; }
    location / { return 200 "$color: a small answer of about one hundred bytes\n"; } } }
EOT
    nginx -c "$work/$color.conf" -p "$work" &
    started+=($!)
done
cat >"$work/sy.yaml" <<EOT
workers: 1
listen: [{address: 127.0.0.1:$SY}]
clusters:
  blue: {endpoints: [127.0.0.1:$B1]}
  green: {endpoints: [127.0.0.1:$B2]}
apps:
  - {name: bench, hosts: ["*"], weights: {blue: 90, green: 10}}
EOT
wait_port $B1 && wait_port $B2 || { echo "backends did not start" >&2; exit 1; }
ticks() { awk '{print $14 + $15}' /proc/"$1"/stat; }
# Every core's busy ticks (user, nice, system, irq, softirq, steal) and the clock, in ticks: how
# many cores the whole machine kept busy over a load (a proxy that leaves cores idle while
# the others wait on it is slower at the same CPU of its own).
busy() { awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat; }
clk() { awk -v hz="$HZ" '{printf "%.0f", $1 * hz}' /proc/uptime; }
HZ=$(getconf CLK_TCK)

one() { # label bin load...
    local label=$1 bin=$2
    shift 2
    case " ${LOADS:-${label#* }} " in *" ${label#* } "*) ;; *) return 0 ;; esac
    "$bin" -c "$work/sy.yaml" -l warn 2>>"$work/sy.err" &
    local p=$!
    wait_port $SY || { echo "$bin did not start" >&2; kill $p; return 1; }
    timeout 60 h2load -c10 -m10 -n 20000 "http://127.0.0.1:$SY/" >/dev/null 2>&1 # warm-up
    local t0 t1 m0 m1 c0 c1 out rps n
    t0=$(ticks $p) m0=$(busy) c0=$(clk)
    out=$("$@" 2>&1)
    t1=$(ticks $p) m1=$(busy) c1=$(clk)
    rps=$(awk '/^finished in/ {print $4} /^Requests\/sec/ {print $2}' <<<"$out")
    n=$(awk '/^requests:/ {print $8} /requests in/ {print $1}' <<<"$out")
    kill $p
    wait $p 2>/dev/null
    awk -v l="$label" -v a="$t0" -v b="$t1" -v n="${n:-0}" -v r="${rps:-0}" -v hz="$HZ" \
        -v m="$((m1 - m0))" -v c="$((c1 - c0))" \
        'BEGIN {printf "%-14s %8.1f us/req %10.0f req/s %5.2f busy\n", l, n ? (b - a) * 1e6 / hz / n : 0, r, c ? m / c : 0}'
}
for r in $(seq "$ROUNDS"); do
    for x in A B; do
        bin=$A
        [ $x = B ] && bin=$B
        one "$x h2c-16x32" "$bin" timeout 120 h2load -c16 -m32 -n "$N" "http://127.0.0.1:$SY/"
        one "$x h2c-10x10" "$bin" timeout 120 h2load -c10 -m10 -n "$N" "http://127.0.0.1:$SY/"
        one "$x h2c-16k" "$bin" timeout 120 h2load -c10 -m10 -n "$((N / 4))" "http://127.0.0.1:$SY/16k"
        one "$x h1-small" "$bin" timeout 60 wrk -t1 -c50 -d"${DUR}s" "http://127.0.0.1:$SY/"
        one "$x h1-16k" "$bin" timeout 60 wrk -t1 -c50 -d"${DUR}s" "http://127.0.0.1:$SY/16k"
    done
done | sort -k1,2 -s | tee "$work/rounds.txt"
# The median of one column ($3 CPU, $5 req/s) of one binary's rounds of one load.
med() {
    awk -v x="$1" -v t="$2" -v c="$3" '$1 == x && $2 == t {print $c}' "$work/rounds.txt" | sort -n |
        awk '{v[NR] = $1} END {m = int((NR + 1) / 2); print NR % 2 ? v[m] : (v[m] + v[m + 1]) / 2}'
}
echo "medians, B against A:"
for t in $(awk '{print $2}' "$work/rounds.txt" | sort -u); do
    awk -v t="$t" -v ar="$(med A "$t" 5)" -v br="$(med B "$t" 5)" -v ac="$(med A "$t" 3)" \
        -v bc="$(med B "$t" 3)" -v am="$(med A "$t" 7)" -v bm="$(med B "$t" 7)" \
        'BEGIN {printf "%-12s req/s %6.0f -> %6.0f (%.2fx)   CPU us/req %5.1f -> %5.1f (%.2fx)   busy cores %.2f -> %.2f\n", t, ar, br, br / ar, ac, bc, bc / ac, am, bm}'
done
echo "A: $A"
echo "B: $B"
