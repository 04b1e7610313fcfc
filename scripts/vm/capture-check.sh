#!/usr/bin/env bash
# A capture check, run as root either on this machine or inside a VM (scripts/vm/boot.sh, chrooted
# into the host root). Starts the built collector (build/collector/Collector) tracing curl, nginx, python3,
# waits for /ready, has curl make a GET and a POST to nginx over plaintext and over TLS and python3
# a GET after which it exits without closing its socket, waits for the 10 exchanges (each one seen
# from the client's side and from nginx's side) and for the exit to end the connection, saves /metrics, stops the
# collector with SIGTERM; then starts it once more with the DaemonSet's default selection until
# /ready (default_ready_secs, default_rc, default.log). It only records; a test on the host judges the files:
#   exchanges.jsonl  the collector's stdout        collector.log  its stderr
#   ready_secs       seconds until /ready was 200  collector_rc   its exit status
#   metrics.txt      /metrics after the exchanges  stage          how far the check got
#   timings          phase durations (key=value)   check.log      this script's log
#   curl-*.body, curl-*.rc   each curl's response body and exit status; nginx-error.log
# cert.pem/key.pem in OUTDIR are nginx's certificate (an EC P-256 one is made if absent).
#   usage: capture-check.sh OUTDIR
# Exit: 0 ran to the end (whatever was captured); 3 the collector exited before /ready;
# 4 /ready not reached in time; 1 something else could not be run.
# Timeouts (seconds, env): CHECK_READY_TIMEOUT (900: under qemu TCG /ready took ~350 s), CHECK_EXCHANGE_TIMEOUT (120),
# CHECK_STOP_TIMEOUT (120). Ports (env): CHECK_METRICS_BIND (127.0.0.1:9176), CHECK_HTTP_PORT
# (18080), CHECK_TLS_PORT (18443).
set -euo pipefail

[ "$#" -eq 1 ] || { echo "usage: $0 OUTDIR" >&2; exit 2; }
REPO=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
COLLECTOR="$REPO/build/collector/Collector"
mkdir -p "$1"
OUT=$(cd "$1" && pwd)
READY_TIMEOUT=${CHECK_READY_TIMEOUT:-900}
EXCHANGE_TIMEOUT=${CHECK_EXCHANGE_TIMEOUT:-120}
STOP_TIMEOUT=${CHECK_STOP_TIMEOUT:-120}
STATUS=${CHECK_METRICS_BIND:-127.0.0.1:9176}
HTTP_PORT=${CHECK_HTTP_PORT:-18080} TLS_PORT=${CHECK_TLS_PORT:-18443}
EXPECTED_LINES=10

rm -f "$OUT"/{exchanges.jsonl,collector.log,ready_secs,collector_rc,metrics.txt,stage,timings,check.log,nginx-error.log} \
      "$OUT"/curl-*.body "$OUT"/curl-*.rc

T0=$EPOCHREALTIME
since() { printf '%.1f' "$(echo "$EPOCHREALTIME - ${1:-$T0}" | bc)"; }
log() { echo "capture-check [$(since)s] $*" | tee -a "$OUT/check.log" >&2; }
stage() { echo "$1" > "$OUT/stage"; log "stage: $1"; }
timing() { echo "$1=$2" >> "$OUT/timings"; }

[ -x "$COLLECTOR" ] || { log "no collector at $COLLECTOR (run make build)"; stage no-collector; exit 1; }
for tool in curl nginx openssl ss bc; do
    command -v "$tool" >/dev/null || { log "$tool missing (scripts/deps.sh)"; stage missing-tool; exit 1; }
done
log "kernel $(uname -r), repo $REPO, out $OUT"

WORK=$(mktemp -d /tmp/capture-check.XXXXXX)
chmod 755 "$WORK"   # nginx's worker (nobody) reaches its temp dirs through it
CPID="" NPID=""
cleanup() {
    [ -n "$CPID" ] && kill -KILL "$CPID" 2>/dev/null
    [ -n "$NPID" ] && kill -KILL "$NPID" 2>/dev/null
    [ -f "$WORK/nginx.pid" ] && kill -KILL "$(cat "$WORK/nginx.pid")" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT

# The collector's status endpoint is asked by curl under another name: the collector traces
# processes named curl, and these requests must not become exchanges.
ln -s "$(command -v curl)" "$WORK/status-curl"
status_get() { "$WORK/status-curl" -s --max-time 20 "$@"; }

if [ ! -s "$OUT/cert.pem" ] || [ ! -s "$OUT/key.pem" ]; then
    if ! err=$(openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=127.0.0.1 \
                 -keyout "$OUT/key.pem" -out "$OUT/cert.pem" 2>&1); then
        log "openssl: $err"; stage cert-failed; exit 1
    fi
    log "made an EC P-256 certificate"
fi

# ---------------------------------------------------------------- collector up
stage collector-starting
# CHECK_COLLECTOR_ENV: more settings for the collector, e.g. "CAPTURE_CHUNKS_PER_CALL=64"
env TRACE_COMMS=curl,nginx,python3 METRICS_BIND=$STATUS PROBE_ALL_PID=false ${CHECK_COLLECTOR_ENV:-} \
    "$COLLECTOR" >"$OUT/exchanges.jsonl" 2>"$OUT/collector.log" </dev/null &
CPID=$!
log "collector pid $CPID"
ready=""
while :; do
    if ! kill -0 "$CPID" 2>/dev/null; then
        set +e; wait "$CPID"; crc=$?; set -e
        CPID=""
        echo "$crc" > "$OUT/collector_rc"
        timing collector_exit_secs "$(since)"
        stage collector-exited
        log "collector exited $crc before /ready; last of its log:"
        tail -n 5 "$OUT/collector.log" | sed 's/^/  | /' >&2
        exit 3
    fi
    code=$(status_get -o /dev/null -w '%{http_code}' "http://$STATUS/ready" || true)
    if [ "$code" = 200 ]; then ready=$(since); break; fi
    if [ "$(echo "$(since) > $READY_TIMEOUT" | bc)" = 1 ]; then break; fi
    sleep 1
done
if [ -z "$ready" ]; then
    log "/ready not 200 after ${READY_TIMEOUT}s; stopping the collector"
    kill -TERM "$CPID" 2>/dev/null || true
    for _ in $(seq 30); do kill -0 "$CPID" 2>/dev/null || break; sleep 1; done
    kill -KILL "$CPID" 2>/dev/null || true
    set +e; wait "$CPID"; echo $? > "$OUT/collector_rc"; set -e
    CPID=""
    stage ready-timeout
    exit 4
fi
echo "$ready" > "$OUT/ready_secs"
timing ready_secs "$ready"
stage ready

# ---------------------------------------------------------------- nginx
cat > "$WORK/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $OUT/nginx-error.log warn;
events { worker_connections 64; }
http {
    access_log off;
    sendfile off;
    default_type text/plain;
    client_body_temp_path $WORK/body;
    proxy_temp_path $WORK/proxy;
    fastcgi_temp_path $WORK/fastcgi;
    uwsgi_temp_path $WORK/uwsgi;
    scgi_temp_path $WORK/scgi;
    server {
        listen 127.0.0.1:$HTTP_PORT;
        listen 127.0.0.1:$TLS_PORT ssl;
        ssl_certificate $OUT/cert.pem;
        ssl_certificate_key $OUT/key.pem;
        location = /hello { return 200 'hello from nginx\n'; }
        location = /echo {
            client_max_body_size 10m;
            if (\$request_method = POST) { return 200 'posted\n'; }
        }
    }
}
EOF
T1=$EPOCHREALTIME
nginx -p "$WORK" -e "$OUT/nginx-error.log" -c "$WORK/nginx.conf" </dev/null >>"$OUT/check.log" 2>&1 &
NPID=$!
listening() { ss -Hltn "sport = :$1" 2>/dev/null | grep -q .; }
for _ in $(seq 120); do
    listening "$HTTP_PORT" && listening "$TLS_PORT" && break
    kill -0 "$NPID" 2>/dev/null || break
    sleep 0.5
done
if ! { listening "$HTTP_PORT" && listening "$TLS_PORT"; }; then
    log "nginx is not listening on $HTTP_PORT and $TLS_PORT:"; cat "$OUT/nginx-error.log" >&2 || true
    stage nginx-failed
    exit 1
fi
timing nginx_start_secs "$(since "$T1")"
stage nginx-up

# ---------------------------------------------------------------- the four exchanges
T1=$EPOCHREALTIME
body='{"kernel":"check","n":1}'
run_curl() {   # name, curl arguments...
    local name=$1 rc; shift
    set +e
    curl -s --http1.1 --max-time 120 -o "$OUT/curl-$name.body" "$@"
    rc=$?
    set -e
    echo "$rc" > "$OUT/curl-$name.rc"
    log "curl $name: exit $rc, body $(head -c 60 "$OUT/curl-$name.body" 2>/dev/null | tr '\n' ' ')"
}
run_curl get-http "http://127.0.0.1:$HTTP_PORT/hello"
run_curl post-http -H 'content-type: application/json' --data-binary "$body" "http://127.0.0.1:$HTTP_PORT/echo"
run_curl get-tls -k "https://127.0.0.1:$TLS_PORT/hello"
run_curl post-tls -k -H 'content-type: application/json' --data-binary "$body" "https://127.0.0.1:$TLS_PORT/echo"
# A client that exits without closing its socket: the kernel closes it, no close() is traced, and
# only the exit of the process's last thread (sched_process_exit) ends the connection.
set +e
/usr/bin/python3 -c "
import os, socket
s = socket.create_connection(('127.0.0.1', $HTTP_PORT))
s.sendall(b'GET /hello?exit HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n')
data = b''
while not data.endswith(b'hello from nginx\n'):
    data += s.recv(4096)
os._exit(0)" >>"$OUT/check.log" 2>&1
echo $? > "$OUT/python-exit.rc"
set -e
log "python client exited $(cat "$OUT/python-exit.rc") without closing its socket"
timing curl_secs "$(since "$T1")"
stage requests-done

T1=$EPOCHREALTIME
lines() { wc -l < "$OUT/exchanges.jsonl" | tr -d ' '; }
while [ "$(lines)" -lt "$EXPECTED_LINES" ] && [ "$(echo "$(since "$T1") < $EXCHANGE_TIMEOUT" | bc)" = 1 ]; do
    kill -0 "$CPID" 2>/dev/null || break
    sleep 1
done
n=$(lines)
timing exchanges_secs "$(since "$T1")"
timing exchanges_lines "$n"
log "exchanges.jsonl: $n lines (expected $EXPECTED_LINES)"

# ---------------------------------------------------------------- stop
# the python client's connection ends by its process's exit (bounded wait; the test judges it)
T1=$EPOCHREALTIME
exit_ended() { status_get "http://$STATUS/metrics" | grep -qE '^collector_connections_ended_total\{reason="process_exit"\} [1-9]'; }
until exit_ended || [ "$(echo "$(since "$T1") > 60" | bc)" = 1 ]; do sleep 1; done
timing process_exit_secs "$(since "$T1")"
status_get -o "$OUT/metrics.txt" "http://$STATUS/metrics" || log "could not fetch /metrics"
T1=$EPOCHREALTIME
kill -TERM "$CPID" 2>/dev/null || true
for _ in $(seq "$STOP_TIMEOUT"); do kill -0 "$CPID" 2>/dev/null || break; sleep 1; done
if kill -0 "$CPID" 2>/dev/null; then
    log "collector still running ${STOP_TIMEOUT}s after SIGTERM: SIGKILL"
    kill -KILL "$CPID" 2>/dev/null || true
fi
set +e; wait "$CPID"; crc=$?; set -e
CPID=""
echo "$crc" > "$OUT/collector_rc"
timing stop_secs "$(since "$T1")"
log "collector exited $crc"
kill -TERM "$NPID" 2>/dev/null || true
for _ in $(seq 20); do kill -0 "$NPID" 2>/dev/null || break; sleep 0.5; done
set +e; wait "$NPID" 2>/dev/null; set -e
NPID=""

# ---------------------------------------------------------------- the DaemonSet's default
# The settings are constants the verifier prunes by, so the shipped default (processes in
# containers, no name or pid selection) is another program to load: it must reach /ready too.
stage default-starting
T1=$EPOCHREALTIME
env METRICS_BIND=$STATUS PROBE_ALL_PID=false "$COLLECTOR" >/dev/null 2>"$OUT/default.log" </dev/null &
CPID=$!
ready=""
until [ -n "$ready" ] || ! kill -0 "$CPID" 2>/dev/null || [ "$(echo "$(since "$T1") > $READY_TIMEOUT" | bc)" = 1 ]; do
    [ "$(status_get -o /dev/null -w '%{http_code}' "http://$STATUS/ready" || true)" = 200 ] && ready=$(since "$T1") || sleep 1
done
[ -n "$ready" ] && echo "$ready" > "$OUT/default_ready_secs"
kill -TERM "$CPID" 2>/dev/null || true
for _ in $(seq "$STOP_TIMEOUT"); do kill -0 "$CPID" 2>/dev/null || break; sleep 1; done
kill -KILL "$CPID" 2>/dev/null || true
set +e; wait "$CPID"; echo $? > "$OUT/default_rc"; set -e
CPID=""
log "default settings: ready after ${ready:-never} s, exit $(cat "$OUT/default_rc")"
timing total_secs "$(since)"
stage done
exit 0
