#!/bin/bash
# Benchmarks switchyard against haproxy, nghttpx and nginx on this machine, in one run, on the
# same two loopback backends (nginx: blue and green, ~100-byte and 16 KiB answers), with the
# same 90/10 split and one worker each (WORKERS=2 for two). Never part of the test suite.
#   bash tests/bench/run.sh            3 runs of 5 s per cell, median [min-max]
#   QUICK=1 bash tests/bench/run.sh    1 run of 3 s
# Prints a markdown table (also written to /tmp/switchyard-bench.md) with switchyard's ratio
# to each peer. Installs what it needs from Debian (root).
set -u
cd "$(dirname "$0")/../.."
root=$(pwd)
RUNS=${RUNS:-3}
DUR=${DUR:-5}
[ -n "${QUICK:-}" ] && RUNS=1 && DUR=3
WORKERS=${WORKERS:-1}
out=/tmp/switchyard-bench.md
work=$(mktemp -d /tmp/switchyard-bench.XXXXXX)
chmod 755 "$work" # nginx workers drop to an unprivileged user
ulimit -n 100000 2>/dev/null || ulimit -n 20000

need=""
for p in nginx-light haproxy nghttp2-proxy nghttp2-client wrk meson ninja-build; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || need="$need $p"
done
if [ -n "$need" ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need >/dev/null
fi
if [ ! -x build-release/proxy/switchyard ]; then
    meson setup build-release --buildtype=release -Dtests=disabled -De2e=disabled >/dev/null
fi
ninja -C build-release >/dev/null || exit 1

B1=19001 B2=19002 SY=18001 NG=18002 HA=18003 NX=18004
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; }
trap cleanup EXIT

# Backends: one nginx, two servers.
head -c 16384 /dev/zero | tr '\0' 'x' > "$work/16k"
cat > "$work/backends.conf" <<EOT
daemon off; worker_processes 1; pid $work/backends.pid; error_log $work/backends.err;
events { worker_connections 20000; }
http {
  access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$B1 reuseport backlog=4096; root $work;
    location = /16k { add_header x-backend blue; try_files /16k =404; }
    location / { add_header x-backend blue; return 200 "blue: a small answer of about one hundred bytes, enough to look like an API reply\n"; } }
  server { listen 127.0.0.1:$B2 reuseport backlog=4096; root $work;
    location = /16k { add_header x-backend green; try_files /16k =404; }
    location / { add_header x-backend green; return 200 "green: a small answer of about one hundred bytes, enough to look like an API reply\n"; } }
}
EOT
nginx -c "$work/backends.conf" -p "$work" & pids+=($!)

cat > "$work/sy.yaml" <<EOT
workers: $WORKERS
listen: [{address: 127.0.0.1:$SY}]
clusters:
  blue: {endpoints: [127.0.0.1:$B1]}
  green: {endpoints: [127.0.0.1:$B2]}
apps:
  - {name: bench, hosts: ["*"], weights: {blue: 90, green: 10}}
limits: {max_connections: 20000}
EOT
build-release/proxy/switchyard -c "$work/sy.yaml" -l warn 2>"$work/sy.err" & pids+=($!)
SYPID=$!

cat > "$work/nginx.conf" <<EOT
daemon off; worker_processes $WORKERS; pid $work/nginx.pid; error_log $work/nginx.err;
events { worker_connections 20000; }
http {
  access_log off; keepalive_requests 1000000; http2_max_requests 1000000;
  upstream clusters { server 127.0.0.1:$B1 weight=9; server 127.0.0.1:$B2 weight=1; keepalive 64; }
  server { listen 127.0.0.1:$NG http2 reuseport backlog=4096;
    listen 127.0.0.1:$((NG + 100)) reuseport backlog=4096;
    location / { proxy_pass http://clusters; proxy_http_version 1.1;
      proxy_set_header Connection ""; proxy_set_header Host \$host; } }
}
EOT
nginx -c "$work/nginx.conf" -p "$work" & pids+=($!)

cat > "$work/haproxy.cfg" <<EOT
global
  nbthread $WORKERS
  maxconn 9000
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  http-reuse always
frontend fe
  bind 127.0.0.1:$HA proto h2
  bind 127.0.0.1:$((HA + 100))
  default_backend clusters
backend clusters
  balance roundrobin
  server blue 127.0.0.1:$B1 weight 9
  server green 127.0.0.1:$B2 weight 1
EOT
haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.err" 2>&1 & pids+=($!)

nghttpx --frontend="127.0.0.1,$NX;no-tls" --backend="127.0.0.1,$B1;;proto=http/1.1;weight=9" \
    --backend="127.0.0.1,$B2;;proto=http/1.1;weight=1" --workers="$WORKERS" \
    --no-ocsp --errorlog-file="$work/nghttpx.err" --accesslog-file=/dev/null \
    --backend-keep-alive-timeout=60s >/dev/null 2>&1 & pids+=($!)
sleep 1

pid_of_port() { ss -ltnpH "sport = :$1" | grep -o 'pid=[0-9]*' | head -n1 | cut -d= -f2; }
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

# One cell: prints "rps p50_ms p99_ms failed cpu_us_per_req"
run_cell() { # kind(h1|h2) port path pid
    local kind=$1 port=$2 path=$3 pid=$4 t0 t1 res rps p50 p99 fail n
    t0=$( [ -n "$pid" ] && cpu_ticks "$pid" || echo 0)
    if [ "$kind" = h1 ]; then
        res=$(wrk -t1 -c50 -d"${DUR}s" --latency "http://127.0.0.1:$port$path" 2>&1)
        rps=$(echo "$res" | awk '/Requests\/sec/ {print $2}')
        p50=$(echo "$res" | awk '$1 == "50%" {print $2}')
        p99=$(echo "$res" | awk '$1 == "99%" {print $2}')
        n=$(echo "$res" | awk '/requests in/ {print $1}')
        fail=$(echo "$res" | awk '/Non-2xx/ {n += $NF} /Socket errors/ {n += $4 + $6 + $8 + $10} END {print n + 0}')
    else
        res=$(h2load -c10 -m10 -D "$DUR" "http://127.0.0.1:$port$path" 2>&1)
        rps=$(echo "$res" | awk '/^finished in/ {print $4}')
        n=$(echo "$res" | awk '/^requests:/ {print $8}')
        fail=$(echo "$res" | awk '/^requests:/ {f = $10 + $12} /^status codes:/ {f += $7 + $9} END {print f + 0}')
        # h2load reports min/max/mean/sd, not percentiles: mean and max are shown.
        p50=$(echo "$res" | awk '/^time for request:/ {print $6 "(mean)"}')
        p99=$(echo "$res" | awk '/^time for request:/ {print $5 "(max)"}')
    fi
    t1=$( [ -n "$pid" ] && cpu_ticks "$pid" || echo 0)
    local hz; hz=$(getconf CLK_TCK)
    local cpu="-"
    if [ -n "$pid" ] && [ -n "$n" ] && [ "$n" -gt 0 ] 2>/dev/null; then
        cpu=$(awk -v a="$t0" -v b="$t1" -v n="$n" -v hz="$hz" 'BEGIN {printf "%.2f", (b - a) / hz * 1e6 / n}')
    fi
    echo "${rps:-0} ${p50:--} ${p99:--} ${fail:-0} $cpu"
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR==0) {print 0; exit} m=a[int((NR+1)/2)]; printf "%s [%s-%s]", m, a[1], a[NR]}'; }

declare -A PORT=([backend]=$B1 [switchyard]=$SY [nginx]=$NG [haproxy]=$HA [nghttpx]=$NX)
declare -A H1PORT=([backend]=$B1 [switchyard]=$SY [nginx]=$((NG + 100)) [haproxy]=$((HA + 100)) [nghttpx]=$NX)
procs="switchyard nginx haproxy nghttpx backend"

{
echo "# switchyard benchmark ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, workers=$WORKERS, $RUNS x ${DUR}s)"
echo
echo "Peers: $(nginx -v 2>&1 | cut -d' ' -f3), $(haproxy -v | head -n1 | cut -d' ' -f1-3), $(nghttpx --version), $(h2load --version | head -n1), $(wrk --version 2>&1 | head -n1 | cut -d' ' -f1-2)"
echo "h1: wrk -t1 -c50 -d${DUR}s --latency; h2c: h2load -c10 -m10 -D $DUR. CPU is the proxy's utime+stime over the run / requests."
echo
echo "| test | proxy | req/s median [min-max] | p50 | p99 | failed | CPU us/req | switchyard ratio |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
} > "$out"

for test in "h1 /" "h1 /16k" "h2 /" "h2 /16k"; do
    set -- $test
    kind=$1 path=$2
    declare -A RPS=()
    for proc in $procs; do
        port=${PORT[$proc]}
        [ "$kind" = h1 ] && port=${H1PORT[$proc]}
        [ "$proc" = backend ] && [ "$kind" = h2 ] && continue
        pid=""
        [ "$proc" != backend ] && pid=$(pid_of_port "$port")
        [ "$proc" = switchyard ] && pid=$SYPID
        rows=()
        for r in $(seq "$RUNS"); do rows+=("$(run_cell "$kind" "$port" "$path" "$pid")"); done
        rps=$(printf '%s\n' "${rows[@]}" | awk '{print $1}' | median)
        p50=$(printf '%s\n' "${rows[@]}" | awk '{print $2}' | head -n1)
        p99=$(printf '%s\n' "${rows[@]}" | awk '{print $3}' | head -n1)
        fail=$(printf '%s\n' "${rows[@]}" | awk '{print $4}' | paste -sd+)
        cpu=$(printf '%s\n' "${rows[@]}" | awk '{print $5}' | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
        RPS[$proc]=${rps%% *}
        echo "| $kind $path | $proc | $rps | $p50 | $p99 | $fail | $cpu | |" >> "$out"
    done
    for proc in nginx haproxy nghttpx; do
        [ -n "${RPS[$proc]:-}" ] && [ "${RPS[$proc]}" != 0 ] && \
            echo "| $kind $path | switchyard / $proc | $(awk -v a="${RPS[switchyard]}" -v b="${RPS[$proc]}" 'BEGIN {printf "%.2fx", a / b}') | | | | | req/s ratio |" >> "$out"
    done
done

{
echo
echo "| proxy | peak RSS (KiB) | RSS after load (KiB) |"
echo "| --- | --- | --- |"
for proc in switchyard nginx haproxy nghttpx; do
    pid=$(pid_of_port "${PORT[$proc]}")
    [ "$proc" = switchyard ] && pid=$SYPID
    echo "| $proc | $(hwm "$pid") | $(rss "$pid") |"
done
echo
echo "Split seen by the backends is checked by the e2e suite (exact 90/10); nginx and haproxy"
echo "use their own weighted round-robin, nghttpx weights backends within one group."
} >> "$out"
cat "$out"
