#!/bin/bash
# Profiles switchyard (release build, 1 worker) or a peer under load, on the same backends and
# 90/10 split as tests/bench/run.sh. Never part of the test suite.
#
#   bash tests/bench/profile.sh perf [h1|h2] [/|/16k]       perf record, cpu-clock sampling
#   bash tests/bench/profile.sh callgrind [h1|h2] [/|/16k]  instructions, under valgrind
#   bash tests/bench/profile.sh syscalls [h1|h2] [/|/16k]   system calls per request (strace -c)
#   bash tests/bench/profile.sh sysrate [h1|h2] [/|/16k]    the same at full speed (perf's
#                                                           syscall tracepoints)
#   bash tests/bench/profile.sh tcp [h1|h2] [/|/16k]        TCP segments and ACKs per request
#   PROXY=haproxy bash tests/bench/profile.sh perf h1 /16k  the same for a peer (perf, syscalls;
#                                                           nginx, haproxy or nghttpx, 1 worker;
#                                                           callgrind: each in one process)
#
# perf: samples the proxy at 4 kHz with DWARF call graphs (the release build and Debian's
# libraries keep no frame pointers) for DUR seconds (default 5) of wrk -t1 -c50 or
# h2load -c10 -m10 (H2_ARGS overrides: "-c16 -m32" for the wide row), and prints self time by library and by function, then the callers of the
# top entries. (This VM exposes no hardware counters: cpu-clock is a timer, so kernel time
# shows where the syscalls and wake-ups go.)
# callgrind: the proxy runs under valgrind (about 50x slower), so the load is capped by count
# (N requests, default 20000, after as many to warm up); prints user-space instructions per
# request (a figure the machine's noise does not move), then by function, inclusive and self.
# Works for every proxy: nginx runs with master_process off, haproxy with -db (one process
# either way), nghttpx as --single-process.
# syscalls: strace -c -f on the proxy over N requests (default 20000); prints calls per request.
# strace slows the proxy several times over, so each loop pass gathers more requests than at
# full speed and the batched calls (epoll_wait, an HTTP/2 connection's writes) look rarer.
# sysrate: counts the same at full speed, with perf stat on the syscall tracepoints (all calls,
# and those of the data path by name).
# tcp: the kernel's TCP counters (nstat) over N requests, per request: segments, pure and
# delayed ACKs, and more, for the whole machine (the proxy's two sides, the backends and the
# load generator), so run it on an otherwise quiet machine.
# SY_BIN: a switchyard binary to use as is (otherwise build-release is built here).
# Output goes to stdout and stays in the work directory it names. Only 127.0.0.1; only the
# processes this script started are stopped, by PID.
set -u
cd "$(dirname "$0")/../.."
root=$(pwd)
tool=${1:-perf} kind=${2:-h1} path=${3:-/}
PROXY=${PROXY:-switchyard}
case $tool in perf | syscalls | sysrate | callgrind | tcp) ;; *) echo "tool: perf, syscalls, sysrate, callgrind or tcp" >&2; exit 2 ;; esac
case $kind in h1 | h2) ;; *) echo "kind: h1 or h2" >&2; exit 2 ;; esac
case $PROXY in switchyard | nginx | haproxy | nghttpx) ;; *) echo "PROXY: switchyard, nginx, haproxy or nghttpx" >&2; exit 2 ;; esac
DUR=${DUR:-5}
N=${N:-20000}
BASE=${BASE_PORT:-27900}
B1=$((BASE + 11)) B2=$((BASE + 12)) P1=$((BASE + 1)) P2=$((BASE + 2))
ulimit -n "$(ulimit -Hn)" 2>/dev/null

. tests/bench/lib.sh
bench_need nginx-light haproxy nghttp2-proxy nghttp2-client wrk linux-perf valgrind strace meson ninja-build
bench_sy_bin
for p in $B1 $B2 $P1 $P2; do
    ss -ltnH "sport = :$p" | grep -q . && { echo "port $p in use: set BASE_PORT" >&2; exit 1; }
done
work=$(mktemp -d /tmp/switchyard-profile.XXXXXX)
chmod 755 "$work" # nginx workers drop to an unprivileged user and read /16k from here

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# The backends and proxy configurations are those of run.sh with one worker.
head -c 16384 /dev/zero | tr '\0' 'x' >"$work/16k"
cat >"$work/backends.conf" <<EOT
daemon off; worker_processes 1; pid $work/backends.pid; error_log $work/backends.err;
events { worker_connections 10000; }
http {
  access_log off; keepalive_requests 1000000; keepalive_timeout 120s; open_file_cache max=16;
  default_type text/plain;
  server { listen 127.0.0.1:$B1 backlog=4096; root $work;
    location = /16k { add_header x-backend blue; try_files /16k =404; }
    location / { add_header x-backend blue; return 200 "blue: a small answer of about one hundred bytes, much like a short API reply\n"; } }
  server { listen 127.0.0.1:$B2 backlog=4096; root $work;
    location = /16k { add_header x-backend green; try_files /16k =404; }
    location / { add_header x-backend green; return 200 "green: a small answer of about one hundred bytes, much like a short API reply\n"; } }
}
EOT
nginx -c "$work/backends.conf" -p "$work" &
pids+=($!)

# Starts $PROXY (under valgrind for callgrind); sets top (the PID started) and prof (the
# process that serves: nginx's and nghttpx's worker, else top). h1 goes to P1, h2c to P2.
start_proxy() {
    case $PROXY in
    switchyard)
        cat >"$work/sy.yaml" <<EOT
workers: 1
listen: [{address: 127.0.0.1:$P1}, {address: 127.0.0.1:$P2}]
clusters:
  blue: {endpoints: [127.0.0.1:$B1]}
  green: {endpoints: [127.0.0.1:$B2]}
apps:
  - {name: bench, hosts: ["*"], weights: {blue: 90, green: 10}}
limits: {max_connections: 19000}
EOT
        if [ "$tool" = callgrind ]; then
            valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
                "$SY_BIN" -c "$work/sy.yaml" -l warn 2>"$work/valgrind.err" &
        else
            "$SY_BIN" -c "$work/sy.yaml" -l warn 2>"$work/sy.err" &
        fi ;;
    nginx)
        vg=() mp=""
        [ "$tool" = callgrind ] && vg=(valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out") mp="master_process off;"
        cat >"$work/nginx.conf" <<EOT
daemon off; $mp worker_processes 1; pid $work/nginx.pid; error_log $work/nginx.err;
events { worker_connections 19000; }
http {
  access_log off; keepalive_requests 1000000;
  upstream clusters { server 127.0.0.1:$B1 weight=9; server 127.0.0.1:$B2 weight=1;
    keepalive 128; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$P1 backlog=4096; listen 127.0.0.1:$P2 http2 backlog=4096;
    location / { proxy_pass http://clusters; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; } }
}
EOT
        "${vg[@]}" nginx -c "$work/nginx.conf" -p "$work" 2>"$work/valgrind.err" & ;;
    haproxy)
        cat >"$work/haproxy.cfg" <<EOT
global
  nbthread 1
  maxconn 10100
  no strict-limits
defaults
  mode http
  option forwardfor
  http-reuse always
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:$P1
  bind 127.0.0.1:$P2 proto h2
  default_backend clusters
backend clusters
  balance roundrobin
  server blue 127.0.0.1:$B1 weight 9
  server green 127.0.0.1:$B2 weight 1
EOT
        vg=()
        [ "$tool" = callgrind ] && vg=(valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out")
        "${vg[@]}" haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.err" 2>&1 & ;;
    nghttpx)
        vg=()
        [ "$tool" = callgrind ] && vg=(valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out")
        "${vg[@]}" nghttpx $([ "$tool" = callgrind ] && echo --single-process) --frontend="127.0.0.1,$P1;no-tls" --frontend="127.0.0.1,$P2;no-tls" \
            --backend="127.0.0.1,$B1;;proto=http/1.1;weight=9" \
            --backend="127.0.0.1,$B2;;proto=http/1.1;weight=1" \
            --workers=1 --add-x-forwarded-for --backend-keep-alive-timeout=60s \
            --no-ocsp --errorlog-file="$work/nghttpx.err" >/dev/null 2>&1 & ;;
    esac
    top=$!
    pids+=($top)
    wait_port $B1 && wait_port $B2 && wait_port $P1 && wait_port $P2 ||
        { echo "$PROXY did not start" >&2; cat "$work"/*.err >&2; exit 1; }
    prof=$top
    case $PROXY/$tool in nginx/perf | nginx/syscalls | nginx/sysrate | nghttpx/perf | nghttpx/syscalls | nghttpx/sysrate)
        prof=$(ps -o pid= --ppid "$top" | head -n1 | tr -d ' ')
        [ -n "$prof" ] || { echo "no $PROXY worker process" >&2; exit 1; } ;;
    esac
}

load() { # time|count: DUR seconds or N requests, bounded either way
    local port=$P1
    [ "$kind" = h2 ] && port=$P2
    if [ "$kind" = h1 ]; then
        if [ "$1" = time ]; then timeout $((DUR + 30)) wrk -t1 -c50 -d"${DUR}s" --latency "http://127.0.0.1:$port$path"
        else timeout 300 h2load --h1 -c50 -n "$N" "http://127.0.0.1:$port$path"; fi
    else
        if [ "$1" = time ]; then timeout $((DUR + 30)) h2load ${H2_ARGS:--c10 -m10} -D "$DUR" "http://127.0.0.1:$port$path"
        else timeout 300 h2load ${H2_ARGS:--c10 -m10} -n "$N" "http://127.0.0.1:$port$path"; fi
    fi
}
# The counted load, with `$@` (a tracer attached to the proxy) running beside it from half a
# second before to a moment after; the tracer is stopped by INT, as strace and perf stat expect.
beside() {
    "$@" &
    local t=$!
    pids+=($t)
    sleep 0.5
    load count | grep -E 'requests:|finished in'
    sleep 0.3
    kill -INT $t
    wait $t 2>/dev/null
}
cpu_s() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.3f", ($14 + $15) / hz}' "/proc/$1/stat"; }

start_proxy
echo "# $PROXY (pid $prof), $tool, $kind $path"
if [ "$tool" = perf ]; then
    load count >/dev/null # warm: pools filled, buffers grown
    c0=$(cpu_s "$prof")
    perf record -e cpu-clock -F 4000 --call-graph dwarf,16384 -o "$work/perf.data" -p "$prof" \
        -- sleep "$((DUR + 1))" >"$work/perf.log" 2>&1 &
    perf_pid=$!
    pids+=($perf_pid)
    sleep 0.5
    load time | tee "$work/load.txt" | grep -E 'Requests/sec|requests in|requests:|finished in|Non-2xx|Socket errors'
    wait $perf_pid
    c1=$(cpu_s "$prof")
    n=$(awk '/requests in/ {print $1} /^requests:/ {print $8}' "$work/load.txt")
    awk -v a="$c0" -v b="$c1" -v n="$n" 'BEGIN {if (n > 0) printf "CPU: %.1f us per request (%d requests; perf adds its own cost)\n", (b - a) * 1e6 / n, n}'
    echo "## self time by library"
    perf report -i "$work/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -12
    echo "## self time by function (top 40)"
    perf report -i "$work/perf.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40
    echo "## inclusive time by function (top 40)"
    perf report -i "$work/perf.data" --children --sort sym --stdio -g none 2>/dev/null | grep -v '^#' | grep -v '^$' | head -40
    perf report -i "$work/perf.data" --no-children --sort sym --stdio -g caller,0.5,callee --percent-limit 2 2>/dev/null >"$work/callers.txt"
    echo "(call graphs: $work/callers.txt; data: $work/perf.data)"
elif [ "$tool" = syscalls ]; then
    load count >/dev/null # warm: pools filled, buffers grown
    beside strace -c -f -p "$prof" -o "$work/strace.txt"
    echo "## system calls per request ($N requests)"
    awk -v n="$N" '$NF ~ /^[a-z_0-9]+$/ && $1 ~ /^[0-9.]+$/ && NF >= 5 {printf "%-16s %6.2f\n", $NF, $4 / n}' "$work/strace.txt"
elif [ "$tool" = sysrate ]; then
    load count >/dev/null # warm: pools filled, buffers grown
    evs=raw_syscalls:sys_enter
    for c in epoll_wait epoll_ctl sendto recvfrom writev readv read write sendmsg recvmsg; do
        evs="$evs,syscalls:sys_enter_$c"
    done
    beside perf stat -x, -e "$evs" -p "$prof" -o "$work/sysrate.txt"
    echo "## system calls per request at full speed ($N requests; perf tracepoints)"
    awk -F, -v n="$N" '$3 ~ /sys_enter/ && $1 > 0 {e = $3; sub(/.*sys_enter_?/, "", e); if (e == "") e = "total"; printf "%-16s %6.3f\n", e, $1 / n}' "$work/sysrate.txt"
elif [ "$tool" = tcp ]; then
    load count >/dev/null # warm: connections open, buffers grown
    nstat -n >/dev/null   # the counters start from here
    load count | grep -E 'requests:|finished in'
    echo "## TCP counters per request ($N requests, whole machine)"
    nstat -z 2>/dev/null | awk -v n="$N" '$1 ~ /^(TcpInSegs|TcpOutSegs|TcpRetransSegs|TcpExtDelayedACKs|TcpExtDelayedACKLost|TcpExtTCPPureAcks|TcpExtTCPHPAcks|TcpExtTCPHPHits|TcpExtTCPAutoCorking|TcpExtTCPOrigDataSent|TcpExtTCPDelivered|TcpExtTCPBacklogCoalesce|TcpExtTCPRcvCoalesce)$/ {printf "%-26s %7.3f\n", $1, $2 / n}'
elif [ "$tool" = callgrind ]; then
    N=${N:-20000}
    load count >/dev/null # warm: pools filled, buffers grown; then the counts start from zero
    callgrind_control -z "$top" >/dev/null
    load count | grep -E 'requests:|finished in'
    # nghttpx in one process ignores INT, and haproxy under valgrind did not stop on it; TERM
    # stops every peer at once (and callgrind writes its counts)
    case $PROXY in switchyard) kill -INT "$top" ;; *) kill -TERM "$top" ;; esac
    wait "$top" 2>/dev/null
    ir=$(callgrind_annotate "$work/callgrind.out" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
    [ -n "$ir" ] && awk -v ir="$ir" -v n="$N" 'BEGIN {printf "## %.0f instructions per request (user space, %d requests)\n", ir / n, n}'
    echo "## instructions, inclusive (top 40)"
    callgrind_annotate --inclusive=yes "$work/callgrind.out" 2>/dev/null | sed -n '1,60p' | grep -v '^$'
    echo "## instructions, self (top 40)"
    # valgrind 3.19 cuts the self list at 99% of the total, which the thread-start frames (an
    # inclusive figure) alone reach: ask for all of it
    callgrind_annotate --threshold=100 "$work/callgrind.out" 2>/dev/null | sed -n "/file:function/,\$p" | head -45
fi
echo "(work directory: $work)"
