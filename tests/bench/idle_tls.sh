#!/bin/bash
# Memory per idle HTTP/2-over-TLS client connection: switchyard against haproxy, nginx and
# nghttpx, each with one worker and a TLS listener (ALPN h2, a self-signed RSA 2048 certificate
# made here). For each proxy in turn: RSS of its serving process, then N connections held open
# by tests/bench/idle_h2.py --tls (handshake, preface, SETTINGS and its ACK, then nothing), RSS
# again; prints KiB per connection and switchyard's ratio. Never part of the test suite.
#
#   bash tests/bench/idle_tls.sh            N=8000 (the open-files hard limit permitting)
#
# Knobs: N, PROXIES ("switchyard haproxy nginx nghttpx"), BASE_PORT (28400), SY_BIN (default
# build-release/proxy/switchyard, built here). Only 127.0.0.1; only what it started is stopped,
# by PID. Each load is bounded (idle_h2.py: 60 s to connect, then 3 s held).
# Settings that differ from each proxy's defaults, all for room for N connections: switchyard
# limits.max_connections 19000, haproxy maxconn 19000 and no strict-limits, nginx
# worker_connections 19000 (nghttpx needs none).
set -u
cd "$(dirname "$0")/../.."
N=${N:-8000}
PROXIES=${PROXIES:-"switchyard haproxy nginx nghttpx"}
BASE=${BASE_PORT:-28400}
PORT=$((BASE + 1)) B1=$((BASE + 11))
PY=/usr/bin/python3
ulimit -n "$(ulimit -Hn)" 2>/dev/null
[ "$(ulimit -n)" = unlimited ] || [ "$N" -le $(($(ulimit -n) - 200)) ] || N=$(($(ulimit -n) - 200))
. tests/bench/lib.sh
bench_need nginx-light haproxy nghttp2-proxy openssl meson ninja-build
bench_sy_bin
work=$(mktemp -d /tmp/switchyard-idle-tls.XXXXXX)
chmod 755 "$work"
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done; wait 2>/dev/null' EXIT
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$work/key.pem" -out "$work/cert.pem" -days 2 \
    -subj /CN=localhost 2>/dev/null || { echo "openssl req failed" >&2; exit 1; }
cat "$work/cert.pem" "$work/key.pem" >"$work/both.pem"
rss() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }

# The backend is never asked (no request is made); it is there so that every proxy starts.
cat >"$work/backend.conf" <<EOT
daemon off; worker_processes 1; pid $work/backend.pid; error_log $work/backend.err;
events { worker_connections 64; }
http { access_log off; server { listen 127.0.0.1:$B1; location / { return 200 "ok\n"; } } }
EOT
nginx -c "$work/backend.conf" -p "$work" &
pids+=($!)

printf '| proxy | RSS before (MiB) | RSS with %d idle TLS h2 (MiB) | connections held | KiB per idle conn | sy ratio |\n| --- | --- | --- | --- | --- | --- |\n' "$N"
sy_kib=""
for proxy in $PROXIES; do
    case $proxy in
    switchyard)
        cat >"$work/sy.yaml" <<EOT
workers: 1
listen: [{address: 127.0.0.1:$PORT, tls: {cert: $work/cert.pem, key: $work/key.pem}}]
clusters: {blue: {endpoints: [127.0.0.1:$B1]}}
apps: [{name: bench, hosts: ["*"], weights: {blue: 100}}]
limits: {max_connections: 19000}
EOT
        "$SY_BIN" -c "$work/sy.yaml" -l warn 2>"$work/sy.err" & ;;
    haproxy)
        printf 'global\n  nbthread 1\n  maxconn 19000\n  no strict-limits\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\nfrontend fe\n  bind 127.0.0.1:%s ssl crt %s alpn h2\n  default_backend be\nbackend be\n  server b 127.0.0.1:%s\n' \
            "$PORT" "$work/both.pem" "$B1" >"$work/haproxy.cfg"
        haproxy -f "$work/haproxy.cfg" -db >"$work/haproxy.err" 2>&1 & ;;
    nginx)
        cat >"$work/nginx.conf" <<EOT
daemon off; worker_processes 1; pid $work/nginx.pid; error_log $work/nginx.err;
events { worker_connections 19000; }
http { access_log off;
  server { listen 127.0.0.1:$PORT ssl http2 backlog=4096;
    ssl_certificate $work/cert.pem; ssl_certificate_key $work/key.pem;
    location / { proxy_pass http://127.0.0.1:$B1; } } }
EOT
        nginx -c "$work/nginx.conf" -p "$work" & ;;
    nghttpx)
        nghttpx --frontend="127.0.0.1,$PORT" --backend="127.0.0.1,$B1" --workers=1 --no-ocsp \
            --errorlog-file="$work/nghttpx.err" "$work/key.pem" "$work/cert.pem" >/dev/null 2>&1 & ;;
    *) echo "unknown proxy $proxy" >&2; continue ;;
    esac
    top=$!
    pids+=($top)
    wait_port "$PORT" || { echo "$proxy did not start" >&2; cat "$work"/*.err >&2; exit 1; }
    serving=$top # nginx and nghttpx serve from a worker process
    case $proxy in nginx | nghttpx) serving=$(ps -o pid= --ppid "$top" | head -n1 | tr -d ' ') ;; esac
    sleep 0.5
    r0=$(rss "$serving")
    timeout 90 $PY tests/bench/idle_h2.py 127.0.0.1 "$PORT" -n "$N" --tls --hold 3 >"$work/idle-$proxy.out" 2>&1 &
    ip=$!
    for _ in $(seq 180); do grep -q '^ready' "$work/idle-$proxy.out" && break; sleep 0.5; done
    sleep 1.5
    r1=$(rss "$serving")
    wait $ip
    held=$(grep -o 'alive=[0-9]*' "$work/idle-$proxy.out" | cut -d= -f2)
    kib=$(awk -v a="$r0" -v b="$r1" -v n="${held:-0}" 'BEGIN {if (n > 0) printf "%.1f", (b - a) / n; else print "-"}')
    [ "$proxy" = switchyard ] && sy_kib=$kib
    ratio=$(awk -v s="$sy_kib" -v k="$kib" 'BEGIN {if (s != "" && s != "-" && k + 0 > 0) printf "%.2fx", s / k; else print "-"}')
    [ "$proxy" = switchyard ] && ratio="-"
    awk -v p="$proxy" -v a="$r0" -v b="$r1" -v h="${held:-0}" -v k="$kib" -v r="$ratio" \
        'BEGIN {printf "| %s | %.1f | %.1f | %d | %s | %s |\n", p, a / 1024, b / 1024, h, k, r}'
    kill "$top"
    wait "$top" 2>/dev/null
    for _ in $(seq 50); do ss -ltnH "sport = :$PORT" | grep -q . || break; sleep 0.1; done
done
echo "(work directory: $work)"
