#!/bin/bash
# switchyard against nginx, haproxy and nghttpx, on this machine, in one run. Never part of the
# test suite (slow, machine-dependent).
#
#   bash tests/bench/run.sh                 3 runs x 5 s per cell, workers 1 then 2 (~13 min
#                                           on a 2-core VM)
#   BENCH_QUICK=1 bash tests/bench/run.sh   1 run x 3 s per cell (~3 min; QUICK=1 also works)
#
# Knobs (environment): RUNS, DUR (seconds), WORKERS_LIST ("1 2"), IDLE (10000 idle h2c
# connections per proxy; 0 skips), PROXIES ("switchyard nginx haproxy nghttpx"), CELLS (which
# loads: "h1:/ h1:/16k h1w:/ h2:/ h2:/16k h2w:/", e.g. CELLS="h1:/" RUNS=7 for one noisy row), BASE_PORT
# (27800), SY_BIN (default build-release/proxy/switchyard, built here), OUT (report path),
# SY_BEFORE (a second switchyard binary, an earlier build, run as the target "before" with the
# same config and interleaved with the others: a before/after table from one run).
#
# What it does: installs nginx, haproxy, nghttpx (nghttp2-proxy), h2load (nghttp2-client) and
# wrk from Debian; starts two nginx backends on loopback, blue and green (each its own process
# so each counts its own requests via stub_status), answering ~100 bytes on / and 16 KiB on
# /16k with an x-backend header; puts every proxy in front of them with the same 90/10 split,
# the same worker count, keep-alive to the upstreams and X-Forwarded-For; then, per cell
# (HTTP/1.1 keep-alive with wrk, h2c prior knowledge with h2load; small and 16 KiB), takes
# RUNS runs, interleaving the targets so that noise from the machine spreads over all of
# them. Per run: req/s, p50/p99 latency, failed requests (socket errors, non-2xx, h2load
# failed/errored/timeout), the proxy's CPU time (utime+stime of all its processes from
# /proc/PID/stat) divided by completed requests, and the split the backends saw. Per proxy:
# peak RSS (VmHWM) and RSS after load, summed over its processes, and RSS with IDLE idle
# HTTP/2 connections open (tests/bench/idle_h2.py). The report (markdown: tables with
# switchyard's ratio to each peer, versions, commands, configs) is printed and written to
# OUT (default /tmp/bench-<UTC date>.md); raw figures stay in the work directory it names.
set -u
cd "$(dirname "$0")/../.."
root=$(pwd)
RUNS=${RUNS:-3}
DUR=${DUR:-5}
HOLD=${HOLD:-4}
QUICK=${QUICK:-${BENCH_QUICK:-}}
if [ -n "$QUICK" ]; then RUNS=1; DUR=3; HOLD=2; fi
WORKERS_LIST=${WORKERS_LIST:-"1 2"}
IDLE=${IDLE:-10000}
PROXIES=${PROXIES:-"switchyard nginx haproxy nghttpx"}
SY_BEFORE=${SY_BEFORE:-}
if [ -n "$SY_BEFORE" ]; then
    SY_BEFORE=$(realpath "$SY_BEFORE")
    [ -x "$SY_BEFORE" ] || { echo "SY_BEFORE: $SY_BEFORE is not an executable" >&2; exit 2; }
    PROXIES="$PROXIES before"
fi
# The cells, KIND:PATH: h1 (wrk -c50), h1w (wrk -c256), h2 (h2load -c10 -m10), h2w (-c16 -m32).
CELLS=${CELLS:-"h1:/ h1:/16k h1w:/ h2:/ h2:/16k h2w:/"}
BASE=${BASE_PORT:-27800}
stamp=$(date -u +%Y%m%d-%H%M%S)
OUT=${OUT:-/tmp/bench-$stamp.md}
WRK_ARGS=${WRK_ARGS:-"-t1 -c50"}
H2_ARGS=${H2_ARGS:-"-t1 -c10 -m10"}
# The wide rows: many connections (HTTP/1.1) and many streams per connection (h2c), where a
# default that keeps too few idle upstream connections collapses.
WRK_WIDE_ARGS=${WRK_WIDE_ARGS:-"-t1 -c256"}
H2_WIDE_ARGS=${H2_WIDE_ARGS:-"-t1 -c16 -m32"}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

work=$(mktemp -d /tmp/switchyard-bench.XXXXXX)
chmod 755 "$work" # nginx workers drop to an unprivileged user and read /16k from here
raw="$work/raw.tsv"
mem="$work/mem.tsv"
: >"$raw"
: >"$mem"
# The hard limit may be below what we ask (no CAP_SYS_RESOURCE in some sandboxes): take it.
ulimit -n "$(ulimit -Hn)" 2>/dev/null
nofile=$(ulimit -n)
if [ "$nofile" != unlimited ] && [ "$IDLE" -gt $((nofile - 500)) ]; then
    echo "open files limit $nofile: idle connections lowered from $IDLE to $((nofile - 500))" >&2
    IDLE=$((nofile - 500))
fi
log() { echo "[bench $(date -u +%H:%M:%S)] $*" >&2; }

# ---------------------------------------------------------------- tools
. tests/bench/lib.sh
bench_need nginx-light haproxy nghttp2-proxy nghttp2-client wrk meson ninja-build
SY_BIN_GIVEN=${SY_BIN:-}
bench_sy_bin
# Which switchyard this is, taken now: the tree may change while the run goes on. A binary
# given in SY_BIN was built from some tree this script cannot know; say so.
rev="$(git -C "$root" rev-parse --short HEAD 2>/dev/null)$(git -C "$root" diff --quiet HEAD -- proxy routing include 2>/dev/null || echo '+uncommitted changes')"
if [ -n "${SY_BIN_GIVEN:-}" ]; then
    sy_version="$("$SY_BIN" -V 2>&1 | head -n1) ($SY_BIN, built $(date -u -r "$SY_BIN" '+%Y-%m-%d %H:%M UTC'); this tree at $rev)"
else
    sy_version="$("$SY_BIN" -V 2>&1 | head -n1) (release build of $rev)"
fi

# ---------------------------------------------------------------- ports
B1=$((BASE + 11)) B2=$((BASE + 12)) B1H2=$((BASE + 13))
SY=$((BASE + 1)) NG=$((BASE + 2)) NGH2=$((BASE + 22)) HA=$((BASE + 3)) HAH2=$((BASE + 23))
NX=$((BASE + 4)) SYB=$((BASE + 5))
for p in $B1 $B2 $B1H2 $SY $NG $NGH2 $HA $HAH2 $NX $SYB; do
    if ss -ltnH "sport = :$p" | grep -q .; then
        echo "port $p is in use: set BASE_PORT to a free range" >&2
        exit 1
    fi
done
declare -A H1PORT=([backend]=$B1 [switchyard]=$SY [nginx]=$NG [haproxy]=$HA [nghttpx]=$NX [before]=$SYB)
declare -A H2PORT=([backend]=$B1H2 [switchyard]=$SY [nginx]=$NGH2 [haproxy]=$HAH2 [nghttpx]=$NX [before]=$SYB)
declare -A PID=()

started=()
cleanup() {
    for p in "${started[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A process and its descendants (nginx and nghttpx fork workers).
# By parent PID from ps: /proc/PID/task/*/children needs CONFIG_PROC_CHILDREN, which some
# kernels (this VM's among them) lack.
tree() {
    local p=$1 c
    echo "$p"
    for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do tree "$c"; done
}
cpu_ticks() { local t=0 p; for p in $(tree "$1"); do t=$((t + $(awk '{print $14 + $15}' /proc/"$p"/stat 2>/dev/null || echo 0))); done; echo $t; }
mem_kib() { # pid field(VmHWM|VmRSS): summed over the process tree
    local t=0 p v
    for p in $(tree "$1"); do
        v=$(awk -v f="$2:" '$1 == f {print $2}' /proc/"$p"/status 2>/dev/null)
        t=$((t + ${v:-0}))
    done
    echo $t
}
rq_wait_ns() { # time the proxy's threads spent runnable but waiting for a CPU (schedstat)
    local t=0 p f a b c
    for p in $(tree "$1"); do
        for f in /proc/"$p"/task/*/schedstat; do
            read -r a b c <"$f" 2>/dev/null && t=$((t + b))
        done
    done
    echo $t
}
machine_busy() { # CPU ticks every core spent busy so far (user, nice, system, irq, softirq, steal)
    awk '$1 == "cpu" {print $2 + $3 + $4 + $7 + $8 + $9; exit}' /proc/stat
}
backends_ticks() { echo $(($(cpu_ticks "${PID[backend-blue]}") + $(cpu_ticks "${PID[backend-green]}"))); }
backend_count() { # port -> requests served so far (stub_status; counts the status request too)
    curl -s --max-time 2 "http://127.0.0.1:$1/__status" | awk 'NR == 3 {print $3}'
}
HZ=$(getconf CLK_TCK)

# ---------------------------------------------------------------- backends
head -c 16384 /dev/zero | tr '\0' 'x' >"$work/16k"
for color in blue green; do
    port=$B1 extra="listen 127.0.0.1:$B1H2 http2 backlog=4096;"
    [ $color = green ] && port=$B2 extra=""
    body="$color: a small answer of about one hundred bytes, much like a short API reply"
    cat >"$work/backend-$color.conf" <<EOT
daemon off; worker_processes 1; pid $work/backend-$color.pid; error_log $work/backend-$color.err;
events { worker_connections 10000; }
http {
  access_log off; keepalive_requests 1000000; keepalive_timeout 120s;
  open_file_cache max=16; default_type text/plain;
  server { listen 127.0.0.1:$port backlog=4096; $extra root $work;
    location = /__status { stub_status; }
    location = /16k { add_header x-backend $color; try_files /16k =404; }
    location / { add_header x-backend $color; return 200 "$body\n"; } }
}
EOT
    nginx -c "$work/backend-$color.conf" -p "$work" &
    started+=($!)
    PID[backend-$color]=$!
done
PID[backend]=${PID[backend-blue]}
wait_port $B1 && wait_port $B2 && wait_port $B1H2 || { echo "backends did not start" >&2; exit 1; }

# ---------------------------------------------------------------- proxies
write_configs() { # workers
    local w=$1
    cat >"$work/sy-$w.yaml" <<EOT
workers: $w
listen: [{address: 127.0.0.1:$SY}]
clusters:
  blue: {endpoints: [127.0.0.1:$B1]}
  green: {endpoints: [127.0.0.1:$B2]}
apps:
  - {name: bench, hosts: ["*"], weights: {blue: 90, green: 10}}
limits: {max_connections: 19000}
EOT
    cat >"$work/nginx-$w.conf" <<EOT
daemon off; worker_processes $w; pid $work/nginx.pid; error_log $work/nginx.err;
events { worker_connections 19000; }
http {
  access_log off; keepalive_requests 1000000;
  upstream clusters { server 127.0.0.1:$B1 weight=9; server 127.0.0.1:$B2 weight=1;
    keepalive 128; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$NG reuseport backlog=4096;
    listen 127.0.0.1:$NGH2 http2 reuseport backlog=4096;
    location / { proxy_pass http://clusters; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for; } }
}
EOT
    cat >"$work/haproxy-$w.cfg" <<EOT
global
  nbthread $w
  maxconn 10100
  # 10,000 idle clients need 10,000 descriptors; haproxy reserves 2 per connection and would
  # refuse to start under a 20,000 hard limit without this.
  no strict-limits
defaults
  mode http
  option forwardfor
  http-reuse always
  timeout connect 5s
  timeout client 60s
  timeout server 60s
frontend fe
  bind 127.0.0.1:$HA
  bind 127.0.0.1:$HAH2 proto h2
  default_backend clusters
backend clusters
  balance roundrobin
  server blue 127.0.0.1:$B1 weight 9
  server green 127.0.0.1:$B2 weight 1
EOT
    NX_ARGS=(--frontend="127.0.0.1,$NX;no-tls"
        --backend="127.0.0.1,$B1;;proto=http/1.1;weight=9"
        --backend="127.0.0.1,$B2;;proto=http/1.1;weight=1"
        --workers="$w" --add-x-forwarded-for --backend-keep-alive-timeout=60s
        --worker-frontend-connections=19000 --no-ocsp --errorlog-file="$work/nghttpx-$w.err")
}

start_proxy() { # name workers
    local name=$1 w=$2
    case $name in
    switchyard) "$SY_BIN" -c "$work/sy-$w.yaml" -l warn 2>>"$work/switchyard-$w.err" & ;;
    before)
        sed "s/127.0.0.1:$SY}/127.0.0.1:$SYB}/" "$work/sy-$w.yaml" >"$work/before-$w.yaml"
        "$SY_BEFORE" -c "$work/before-$w.yaml" -l warn 2>>"$work/before-$w.err" &
        ;;
    nginx) nginx -c "$work/nginx-$w.conf" -p "$work" & ;;
    haproxy) haproxy -f "$work/haproxy-$w.cfg" -db >>"$work/haproxy-$w.err" 2>&1 & ;;
    nghttpx) nghttpx "${NX_ARGS[@]}" >/dev/null 2>&1 & ;;
    esac
    PID[$name]=$!
    started+=($!)
    wait_port "${H1PORT[$name]}" && wait_port "${H2PORT[$name]}" ||
        { echo "$name did not start" >&2; return 1; }
}
stop_proxy() {
    local p=${PID[$1]}
    kill "$p" 2>/dev/null
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$p" 2>/dev/null
    wait "$p" 2>/dev/null
}
alive() { kill -0 "${PID[$1]}" 2>/dev/null; }

# ---------------------------------------------------------------- one run
to_ms() { awk '{v = $1; if (v ~ /us$/) v = v / 1000; else if (v ~ /ms$/) v = v + 0; else if (v ~ /s$/) v = v * 1000; printf "%.3f", v}'; }
# run_cell workers test(h1|h2) path target run: appends one line to $raw
run_cell() {
    local w=$1 kind=$2 path=$3 target=$4 r=$5
    local pid=${PID[$target]} port t0 t1 b0 g0 b1 g1 k0 k1 m0 m1 res rps p50 p99 fail n
    local args=$WRK_ARGS
    case $kind in h1w) args=$WRK_WIDE_ARGS ;; h2) args=$H2_ARGS ;; h2w) args=$H2_WIDE_ARGS ;; esac
    if [ "${kind#h1}" != "$kind" ]; then port=${H1PORT[$target]}; else port=${H2PORT[$target]}; fi
    if ! alive "$target"; then
        printf '%s\t%s\t%s\t%s\t%s\t0\t-\t-\t-1\t0\t0\t0\t0\tDEAD\t-\n' "$w" "$kind" "$path" "$target" "$r" >>"$raw"
        return
    fi
    b0=$(backend_count $B1) g0=$(backend_count $B2)
    k0=$(backends_ticks) m0=$(machine_busy)
    t0=$(cpu_ticks "$pid") q0=$(rq_wait_ns "$pid")
    if [ "${kind#h1}" != "$kind" ]; then
        res=$(timeout $((DUR + 30)) wrk $args -d"${DUR}s" --latency "http://127.0.0.1:$port$path" 2>&1)
        t1=$(cpu_ticks "$pid") q1=$(rq_wait_ns "$pid") m1=$(machine_busy) k1=$(backends_ticks)
        rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$res")
        n=$(awk '/requests in/ {print $1}' <<<"$res")
        p50=$(awk '$1 == "50%" {print $2}' <<<"$res" | to_ms)
        p99=$(awk '$1 == "99%" {print $2}' <<<"$res" | to_ms)
        fail=$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}' <<<"$res")
    else
        # h2load appends to its log file: a fresh one per run, or the percentiles would be
        # those of every run so far.
        rm -f "$work/h2.log"
        res=$(timeout $((DUR + 30)) h2load $args -D "$DUR" --log-file="$work/h2.log" "http://127.0.0.1:$port$path" 2>&1)
        t1=$(cpu_ticks "$pid") q1=$(rq_wait_ns "$pid") m1=$(machine_busy) k1=$(backends_ticks)
        rps=$(awk '/^finished in/ {print $4}' <<<"$res")
        n=$(awk '/^requests:/ {print $8}' <<<"$res")
        # "failed" already counts errored and timed-out streams; add 3xx/4xx/5xx answers.
        fail=$(awk '/^requests:/ {f += $10} /^status codes:/ {f += $5 + $7 + $9} END {print f + 0}' <<<"$res")
        read -r p50 p99 < <(awk -F'\t' '$2 >= 200 {print $3}' "$work/h2.log" | sort -n |
            awk '{a[NR] = $1} END {if (NR) printf "%.3f %.3f\n", a[int(NR * 0.5) + 1] / 1000, a[int(NR * 0.99) + 1] / 1000; else print "- -"}')
    fi
    b1=$(backend_count $B1) g1=$(backend_count $B2)
    echo "$res" >"$work/out-$w-$kind${path//\//_}-$target-$r.txt"
    local status=ok
    alive "$target" || status=DEAD
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$kind" "$path" "$target" "$r" \
        "${rps:-0}" "${p50:--}" "${p99:--}" "${fail:--1}" "${n:-0}" \
        "$(awk -v a="$t0" -v b="$t1" -v hz="$HZ" 'BEGIN {printf "%.3f", (b - a) / hz}')" \
        "$((b1 - b0 - 1))" "$((g1 - g0 - 1))" "$status" \
        "$(awk -v a="$q0" -v b="$q1" -v d="$DUR" 'BEGIN {printf "%.1f", (b - a) / 1e7 / d}')" \
        "$(awk -v a="$k0" -v b="$k1" -v hz="$HZ" 'BEGIN {printf "%.3f", (b - a) / hz}')" \
        "$(awk -v a="$m0" -v b="$m1" -v hz="$HZ" 'BEGIN {printf "%.3f", (b - a) / hz}')" >>"$raw"
}

idle_test() { # workers target
    local w=$1 target=$2 pid=${PID[$2]} port=${H2PORT[$2]} cpid rss=0 line opened=0 held=0 i
    "$PY" "$root/tests/bench/idle_h2.py" 127.0.0.1 "$port" -n "$IDLE" --hold "$HOLD" \
        >"$work/idle-$w-$target.txt" 2>&1 &
    cpid=$!
    for i in $(seq 700); do # setup is bounded by idle_h2.py's own 60 s
        grep -q '^ready' "$work/idle-$w-$target.txt" && break
        kill -0 $cpid 2>/dev/null || break
        sleep 0.1
    done
    sleep 1
    rss=$(mem_kib "$pid" VmRSS)
    wait $cpid
    line=$(cat "$work/idle-$w-$target.txt")
    opened=$(grep -o 'settled=[0-9]*' <<<"$line" | cut -d= -f2)
    held=$(grep -o 'alive=[0-9]*' <<<"$line" | cut -d= -f2)
    echo "${rss} ${opened:-0} ${held:-0}"
}

# ---------------------------------------------------------------- the run
t_start=$(date +%s)
loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
tests=()
for c in $CELLS; do tests+=("${c%%:*} ${c#*:}"); done
for w in $WORKERS_LIST; do
    write_configs "$w"
    targets="$PROXIES"
    [ "$w" = "$(echo $WORKERS_LIST | cut -d' ' -f1)" ] && targets="$targets backend"
    for p in $PROXIES; do start_proxy "$p" "$w" || exit 1; done
    for p in $PROXIES; do # warm-up: pools filled, pages faulted in; not measured
        timeout 20 wrk -t1 -c50 -d1s "http://127.0.0.1:${H1PORT[$p]}/" >/dev/null 2>&1
        timeout 20 h2load -c10 -m10 -n 2000 "http://127.0.0.1:${H2PORT[$p]}/16k" >/dev/null 2>&1
    done
    for t in "${tests[@]}"; do
        set -- $t
        for r in $(seq "$RUNS"); do
            # Each run starts one target further along the list, so that no target always
            # runs first (or right after a given other) while the machine drifts.
            read -ra order <<<"$targets"
            k=$(((r - 1) % ${#order[@]}))
            for target in "${order[@]:k}" "${order[@]:0:k}"; do
                log "workers=$w $1 $2 $target run $r/$RUNS"
                run_cell "$w" "$1" "$2" "$target" "$r"
            done
        done
    done
    for p in $PROXIES; do
        hwm=$(mem_kib "${PID[$p]}" VmHWM) rss=$(mem_kib "${PID[$p]}" VmRSS)
        idle="0 0 0"
        if [ "$IDLE" -gt 0 ] && alive "$p"; then
            log "workers=$w $p: $IDLE idle h2c connections"
            idle=$(idle_test "$w" "$p")
        fi
        st=ok
        alive "$p" || st=DEAD
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$w" "$p" "$hwm" "$rss" "$(tr ' ' '\t' <<<"$idle")" "$st" >>"$mem"
        stop_proxy "$p"
    done
done
t_end=$(date +%s)

# ---------------------------------------------------------------- the report
{
    echo "# switchyard benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), $(uname -r);" \
        "load average before the run: $loadavg. $RUNS run(s) x ${DUR}s per cell," \
        "targets interleaved, each run starting one target later; total $((t_end - t_start)) s. Raw figures: $work."
    echo
    [ -n "$SY_BEFORE" ] && echo "Before: $("$SY_BEFORE" -V 2>&1 | head -n1) ($SY_BEFORE, built" \
        "$(date -u -r "$SY_BEFORE" '+%Y-%m-%d %H:%M UTC')), the target \"before\", same config." && echo
    echo "Versions: $sy_version;" \
        "$(nginx -v 2>&1 | sed 's/.*: //'); $(haproxy -v | head -n1 | cut -d' ' -f1-3);" \
        "$(nghttpx --version | head -n1); $(h2load --version | head -n1); $(wrk --version 2>&1 | head -n1 | cut -d' ' -f1-2)."
    echo
} >"$OUT"
"$PY" "$root/tests/bench/report.py" "$raw" "$mem" "$IDLE" >>"$OUT"
{
    echo
    echo "## Commands"
    echo
    echo '```'
    echo "wrk $WRK_ARGS -d${DUR}s --latency http://127.0.0.1:PORT{/,/16k}"
    echo "wrk $WRK_WIDE_ARGS -d${DUR}s --latency http://127.0.0.1:PORT/   # the wide HTTP/1.1 row"
    echo "h2load $H2_ARGS -D $DUR --log-file=LOG http://127.0.0.1:PORT{/,/16k}   # p50/p99 from LOG"
    echo "h2load $H2_WIDE_ARGS -D $DUR --log-file=LOG http://127.0.0.1:PORT/   # the wide h2c row"
    echo "python3 tests/bench/idle_h2.py 127.0.0.1 PORT -n $IDLE --hold $HOLD   # RSS read while held"
    echo "$SY_BIN -c sy-W.yaml -l warn"
    echo "nginx -c nginx-W.conf; haproxy -f haproxy-W.cfg -db"
    echo "nghttpx ${NX_ARGS[*]}"
    echo '```'
    echo
    echo "CPU/req = (utime+stime of the proxy's processes over the run) / completed requests." \
        "RSS = sum over the proxy's processes (nginx and nghttpx: master + workers)." \
        "Split = requests counted by each backend's stub_status over the run." \
        "Failed = wrk socket errors + non-2xx; h2load failed + errored + timeout + non-2xx."
    echo
    echo "## Settings that differ from each proxy's defaults, and why"
    echo
    echo "Every proxy runs at its defaults except for these. None of them is a setting of"
    echo "switchyard's that changes its speed; the peers' are what they need to do the same work"
    echo "(keep-alive to the backends, the same split, X-Forwarded-For, 10,000 idle clients)."
    echo
    echo "- all: worker count (1, then 2); the 90/10 split; listening on loopback ports."
    echo "- switchyard: \`limits.max_connections: 19000\` (default 10000 per worker): the idle test"
    echo "  holds 10,000 h2c connections besides the load's."
    echo "- nginx: \`worker_connections 19000\` (default 512): the idle test. \`upstream { keepalive 128; }\`"
    echo "  with \`proxy_http_version 1.1\` and an empty Connection header: without them nginx opens a"
    echo "  new backend connection per request (the others keep them by default)."
    echo "  \`keepalive_requests 1000000\` (default 1000, client side and upstream): nginx would close"
    echo "  every connection after 1,000 requests, which the others do not. \`access_log off\`: the"
    echo "  others log nothing by default. \`proxy_set_header Host\`/X-Forwarded-For: the same"
    echo "  request to the backend as the others send."
    echo "- haproxy: \`maxconn 10100\` and \`no strict-limits\`: the idle test. \`http-reuse always\`"
    echo "  (default safe): reuse of idle backend connections across clients, which the others do"
    echo "  by default. \`option forwardfor\`: X-Forwarded-For. \`timeout connect/client/server\`:"
    echo "  haproxy warns without them (no default)."
    echo "- nghttpx: \`--backend-keep-alive-timeout=60s\` (default 2s): the cells are interleaved,"
    echo "  so a backend connection idle 2 s would be reopened at the start of each cell."
    echo "  \`--worker-frontend-connections=19000\`: the idle test. \`--add-x-forwarded-for\`: the"
    echo "  header. \`--no-ocsp\`: no TLS here."
    echo
    echo "## Configs (W = workers: the last one written)"
    for f in "$work"/backend-blue.conf "$work"/sy-*.yaml "$work"/nginx-*.conf "$work"/haproxy-*.cfg; do
        echo
        echo "\`$(basename "$f")\`:"
        echo '```'
        cat "$f"
        echo '```'
    done
} >>"$OUT"
for w in $WORKERS_LIST; do
    if [ -s "$work/switchyard-$w.err" ]; then
        echo
        echo "switchyard stderr (workers=$w), first lines:"
        echo '```'
        head -n 20 "$work/switchyard-$w.err"
        echo '```'
    fi
done >>"$OUT"
cat "$OUT"
log "report written to $OUT"
