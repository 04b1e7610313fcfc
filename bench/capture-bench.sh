#!/usr/bin/env bash
# Capture overhead on loopback: nginx serving a 1 KiB body over keep-alive, wrk as the client,
# plaintext and TLS, in four modes run interleaved ROUNDS times:
#   none      no probes
#   trap      probes on the same hooks whose programs do nothing (bpftrace, empty actions): the trap alone
#   floor     count-only probes on the same hooks (bpftrace, a per-CPU count per hit)
#   collector the collector tracing both nginx and wrk (every request is emitted twice, once per side)
#   server    the collector tracing nginx only (the production shape: the load comes from elsewhere)
#   kafka     as collector (both ends traced), but the messages go to Kafka: a librdkafka mock
#             cluster in a process of its own (build/mock_kafka on the collector's bundled
#             librdkafka), started fresh for each run; its CPU is measured apart (in production the
#             broker runs elsewhere), and every message queued in the measured run must be
#             delivered (shed or failed ones are printed)
#   startup   the collector (stdout, both ends traced) started while wrk already runs at full
#             load: the time from exec to /ready and every drop from exec to STARTUP_SECS seconds
#             after /ready
# MODES picks the modes of the HTTP/1 schemes (default "none trap floor collector server kafka startup").
# <mode>-alt (collector-alt, kafka-alt, startup-alt ...) runs that mode with the build at ALT_COLLECTOR
# (e.g. another publish of the collector, or a script that sets a variable and execs it), <mode>-alt2
# with ALT2_COLLECTOR, interleaved with the others in every round.
# PROFILE=<mode> records the collector of that mode with perf during each measured run (cpu-clock,
# 2 kHz, call graphs; JIT'ed code named through the runtime's perf map) into
# build/perf-<scheme>-<mode>-<round>.data; read it with perf script or perf report.
# Each measured run follows WARMUP seconds of the same load (every mode alike), and a collector's
# run more of it until its JIT has settled (JIT_QUIET_MS, see settle_jit): the figures are the
# steady state of a node agent that runs for days, not its JIT warming up (the startup mode
# measures that).
# Prints requests/s (median), the ratios to the floor and to the trap, the collector's CPU seconds per
# 10,000 requests and what it dropped. Traffic stays on 127.0.0.1; every run is bounded by
# DURATION seconds.
# HTTP/2 (scheme h2): h2load (H2_CONNECTIONS connections, H2_STREAMS streams each) against nginx over
# TLS with ALPN h2, the same 1 KiB file, in the modes none, floor and collector (tracing nginx and
# h2load), H2_ROUNDS rounds (at most 2 unless set); the collector's /metrics at the end of each of its
# runs show that it saw HTTP/2 (connections that began with the preface) and how many exchanges it
# emitted against the requests made (both sides traced: two per request).
# Go (scheme go): wrk over TLS against a Go net/http server (tests/Peers/go-tls, Go 1.22, its own
# crypto/tls: no OpenSSL on the server side) serving 1 KiB, in the modes none, floor (count-only
# probes on crypto/tls.(*Conn).Read and Write at the entry and at every RET, where the collector
# puts its own, plus the syscall and OpenSSL ones for wrk) and collector (tracing the Go server and
# wrk), GO_ROUNDS rounds (ROUNDS unless set).
# SCHEMES picks the schemes (default "http https h2 go").
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
WARMUP=${WARMUP:-10}
CONNECTIONS=${CONNECTIONS:-32}
SCHEMES=${SCHEMES:-http https h2 go}
MODES=${MODES:-none trap floor collector server kafka startup}
STARTUP_SECS=${STARTUP_SECS:-5}
MOCK_KAFKA=build/mock_kafka
# the collector's bundled library, flat (a RID-specific publish) or under runtimes/ (a portable one)
LIBRDKAFKA=$(ls build/collector/centos8-librdkafka.so build/collector/runtimes/linux-x64/native/centos8-librdkafka.so 2>/dev/null | head -1 || true)
H2_ROUNDS=${H2_ROUNDS:-$((ROUNDS < 2 ? ROUNDS : 2))}
H2_CONNECTIONS=${H2_CONNECTIONS:-8}
H2_STREAMS=${H2_STREAMS:-10}
GO_ROUNDS=${GO_ROUNDS:-$ROUNDS}
GO_SERVER=build/peers/go/go1.22/go-tls-default
COLLECTOR=${COLLECTOR:-build/collector/Collector}
LIBSSL=$(ls /usr/lib/x86_64-linux-gnu/libssl.so.3)
work=$(mktemp -d /tmp/capture-bench.XXXXXX)
go_events=/sys/kernel/tracing/uprobe_events
go_probes=() # the uprobe events made for the Go floor, removed at exit
cleanup() {
  kill $(cat $work/nginx.pid 2>/dev/null) 2>/dev/null || true
  [ -n "${broker:-}" ] && kill "$broker" 2>/dev/null
  [ -n "${go_pid:-}" ] && kill "$go_pid" 2>/dev/null
  [ -n "${gofloorpid:-}" ] && { pkill -P "$gofloorpid" sleep 2>/dev/null; wait "$gofloorpid" 2>/dev/null; }
  pkill -f "$work" 2>/dev/null || true
  # the uprobe events go once nothing has them open
  for p in "${go_probes[@]}"; do echo "-:capbench/$p" >> "$go_events" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

plain=$((20000 + RANDOM % 20000)); tls=$((plain + 1)); h2=$((plain + 3)) # plain + 2: the collector's metrics
# nginx's workers run as nobody: they must be able to reach the file (mktemp makes the directory
# 0700, and nginx then answers every request with 403 and an error-log line: a different benchmark)
chmod 755 "$work"
mkdir -p "$work/www"
head -c 1024 /dev/urandom | base64 -w 0 | head -c 1024 > "$work/www/1k.txt"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/error.log;
events { worker_connections 1024; }
http {
  access_log off;
  sendfile off;
  keepalive_requests 1000000;
  client_body_temp_path $work/body;
  server {
    listen 127.0.0.1:$plain;
    listen 127.0.0.1:$tls ssl;
    listen 127.0.0.1:$h2 ssl http2;
    ssl_certificate $work/cert.pem;
    ssl_certificate_key $work/key.pem;
    root $work/www;
  }
}
CONF
nginx -c "$work/nginx.conf" -e "$work/error.log"
sleep 0.5
for url in "http://127.0.0.1:$plain/1k.txt" "https://127.0.0.1:$tls/1k.txt"; do
  got=$(curl -sk -o /dev/null -w '%{http_code} %{size_download}' "$url")
  [ "$got" = "200 1024" ] || { echo "capture-bench: $url answered '$got', expected '200 1024'" >&2; exit 1; }
done
got=$(curl -sk --http2 -o /dev/null -w '%{http_code} %{size_download} HTTP/%{http_version}' "https://127.0.0.1:$h2/1k.txt")
[ "$got" = "200 1024 HTTP/2" ] || { echo "capture-bench: https://127.0.0.1:$h2/1k.txt answered '$got', expected '200 1024 HTTP/2'" >&2; exit 1; }

cat > "$work/floor.bt" <<BT
tracepoint:syscalls:sys_enter_read, tracepoint:syscalls:sys_exit_read,
tracepoint:syscalls:sys_enter_write, tracepoint:syscalls:sys_exit_write,
tracepoint:syscalls:sys_enter_readv, tracepoint:syscalls:sys_exit_readv,
tracepoint:syscalls:sys_enter_writev, tracepoint:syscalls:sys_exit_writev,
tracepoint:syscalls:sys_enter_sendto, tracepoint:syscalls:sys_exit_sendto,
tracepoint:syscalls:sys_enter_recvfrom, tracepoint:syscalls:sys_exit_recvfrom,
tracepoint:syscalls:sys_enter_sendmsg, tracepoint:syscalls:sys_exit_sendmsg,
tracepoint:syscalls:sys_enter_recvmsg, tracepoint:syscalls:sys_exit_recvmsg,
tracepoint:syscalls:sys_enter_close, tracepoint:syscalls:sys_exit_accept4,
tracepoint:syscalls:sys_enter_connect, tracepoint:syscalls:sys_exit_connect,
uprobe:$LIBSSL:SSL_read, uretprobe:$LIBSSL:SSL_read,
uprobe:$LIBSSL:SSL_write, uretprobe:$LIBSSL:SSL_write,
uprobe:$LIBSSL:SSL_read_ex, uretprobe:$LIBSSL:SSL_read_ex,
uprobe:$LIBSSL:SSL_write_ex, uretprobe:$LIBSSL:SSL_write_ex
{ @[cpu] = count(); }
BT
sed 's/{ @\[cpu\] = count(); }/{ }/' "$work/floor.bt" > "$work/trap.bt"

if grep -qw go <<< "$SCHEMES"; then
  tests/Peers/build-go.sh build/peers/go > /dev/null 2>&1 || { echo "capture-bench: building the Go peers failed (tests/Peers/build-go.sh)" >&2; exit 1; }
  "$GO_SERVER" server --port 0 > "$work/go.out" 2> "$work/go.err" & go_pid=$!
  for i in $(seq 50); do grep -q "^port " "$work/go.out" && break; sleep 0.1; done
  goport=$(awk '/^port / {print $2}' "$work/go.out")
  got=$(curl -sk -o /dev/null -w '%{http_code} %{size_download}' "https://127.0.0.1:$goport/g/1k")
  [ "$got" = "200 1024" ] || { echo "capture-bench: the Go server answered '$got', expected '200 1024'" >&2; exit 1; }
  # the Go floor: the collector's probe sites (each function's entry and RETs, from the Go
  # toolchain's disassembly) as uprobe events, each hit counted by perf (bpftrace 0.17 attaches
  # uprobes only at symbols, and a tracepoint program may not attach to a uprobe event); offsets in
  # the file: vaddr − the text segment's vaddr + its offset
  read -r seg_vaddr seg_off < <(readelf -lW "$GO_SERVER" | awk '$1 == "LOAD" && $NF ~ /0x/ && $(NF-1) ~ /E/ {print $3, $2; exit}')
  mapfile -t sites < <(/usr/lib/go-1.22/bin/go tool objdump -s '^crypto/tls.\(\*Conn\).(Read|Write)$' "$GO_SERVER" |
    awk '/^TEXT/ {first = 1; next} first {print $2; first = 0; next} $NF == "RET" {print $2}')
  [ "${#sites[@]}" -ge 4 ] || { echo "capture-bench: crypto/tls Read/Write not found in $GO_SERVER" >&2; exit 1; }
  for i in "${!sites[@]}"; do
    off=$(printf '0x%x' $(( ${sites[$i]} - seg_vaddr + seg_off )))
    echo "-:capbench/go$i" >> "$go_events" 2>/dev/null || true # left by a run that was killed
    echo "p:capbench/go$i $(realpath "$GO_SERVER"):$off" >> "$go_events"
    go_probes+=("go$i")
  done
fi

warm_up() { # scheme url [seconds]
  local secs=${3:-$WARMUP}
  [ "$secs" = 0 ] && return
  if [ "$1" = h2 ]; then h2load -t2 -c"$H2_CONNECTIONS" -m"$H2_STREAMS" -D"$secs" "$2" > /dev/null 2>&1
  else wrk -t2 -c"$CONNECTIONS" -d"${secs}s" "$2" > /dev/null 2>&1; fi
}
# The .NET runtime keeps compiling for about a minute after start under load: methods tier up
# after 30 calls and a quiet spell, the instrumented tier (PGO) first, then the final one, and the
# periodic work (process scans, timers) reaches 30 calls only after tens of seconds. That CPU is
# start-up's, not the steady state's: left in a measured run it doubled the collector's CPU per
# request of the Go row. So a collector run goes on warming up, in JIT_STEP-second loads, until
# a step compiles for at most JIT_QUIET_MS milliseconds (or JIT_SETTLE_MAX seconds have passed);
# what the JIT still did in the measured run is printed beside it.
JIT_STEP=${JIT_STEP:-3}
JIT_QUIET_MS=${JIT_QUIET_MS:-30}
JIT_SETTLE_MAX=${JIT_SETTLE_MAX:-60}
jit_ms() { # metrics port → milliseconds the collector's JIT has compiled since start
  metric "$1" collector_jit_seconds_total | awk '{printf "%d", $1 * 1000}'
}
settle_jit() { # scheme url metrics-port → seconds of warm-up added
  local t=0 j0 j1
  while [ "$t" -lt "$JIT_SETTLE_MAX" ]; do
    j0=$(jit_ms "$3")
    warm_up "$1" "$2" "$JIT_STEP"
    j1=$(jit_ms "$3")
    t=$((t + JIT_STEP))
    [ $((j1 - j0)) -le "$JIT_QUIET_MS" ] && break
  done
  echo "$t"
}
run_wrk() { # url → requests/s; a run with error responses measures something else: stop
  local out
  out=$(wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" "$1" 2>/dev/null)
  if grep -q "Non-2xx" <<< "$out"; then echo "capture-bench: error responses from $1: $(grep Non-2xx <<< "$out")" >&2; exit 1; fi
  awk '/Requests\/sec/ {print $2}' <<< "$out"
}
run_h2load() { # url → requests/s (and the requests done in $work/h2load.done); not h2, failures or
  # error responses: stop
  local out
  out=$(h2load -t2 -c"$H2_CONNECTIONS" -m"$H2_STREAMS" -D"$DURATION" "$1" 2>&1)
  if ! grep -q "^Application protocol: h2$" <<< "$out"; then
    echo "capture-bench: h2load did not speak h2 with $1: $(grep -i "protocol\|error" <<< "$out" | head -3)" >&2; exit 1
  fi
  if ! grep -q " 0 failed, 0 errored, 0 timeout" <<< "$out" || ! grep -q "^status codes: [0-9]* 2xx, 0 3xx, 0 4xx, 0 5xx" <<< "$out"; then
    echo "capture-bench: failed requests or error responses from $1: $(grep -E "^(requests|status codes):" <<< "$out" | tr '\n' ' ')" >&2; exit 1
  fi
  awk '/^requests:/ {print $8}' <<< "$out" > "$work/h2load.done"
  awk '/^finished in/ {print $4}' <<< "$out"
}
run_load() { # scheme url → requests/s
  if [ "$1" = h2 ]; then run_h2load "$2"; else run_wrk "$2"; fi
}
metric() { # metrics port, name, label text → the sum of that metric's samples whose labels contain the text
  curl -s "127.0.0.1:$1/metrics" | awk -v n="$2" -v l="${3:-}" '{split($1, a, "{")} a[1] == n && index($1, l) {s += $NF} END {print s + 0}'
}
dropped() { # metrics port → events, exchanges and messages dropped so far (every stage)
  curl -s "127.0.0.1:$1/metrics" | awk '/^collector_drops_total/ {s += $2} END {print s + 0}'
}
drop_reasons() { # metrics port → "stage/reason=count ..." of what was dropped so far
  curl -s "127.0.0.1:$1/metrics" | awk '/^collector_drops_total\{/ && $NF > 0 {
      st = $1; sub(/.*stage="/, "", st); sub(/".*/, "", st); r = $1; sub(/.*reason="/, "", r); sub(/".*/, "", r)
      printf "%s%s/%s=%s", (n++ ? " " : ""), st, r, $NF } END { if (!n) printf "none" }'
}
cpu_seconds() { # pid → utime+stime in seconds
  awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$1/stat"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.3f", b ? a / b : 0}'; }
per10k() { # cpu seconds before, after, requests/s → CPU seconds per 10,000 requests of the measured run
  awk -v a="$1" -v b="$2" -v r="$3" -v d="$DURATION" 'BEGIN { printf "%.3f", (b - a) / (r * d) * 10000 }'
}
start_broker() { # → $broker (pid), $bootstrap; the broker reads its stdin until the bench closes it
  local fifo=$work/broker.in
  rm -f "$fifo"; mkfifo "$fifo"
  "$MOCK_KAFKA" "$LIBRDKAFKA" < "$fifo" > "$work/broker.out" 2> "$work/broker.err" & broker=$!
  exec 9> "$fifo"
  for i in $(seq 50); do [ -s "$work/broker.out" ] && break; sleep 0.1; done
  bootstrap=$(head -1 "$work/broker.out")
  [ -n "$bootstrap" ] || { echo "capture-bench: mock broker did not start: $(cat "$work/broker.err")" >&2; exit 1; }
}
stop_broker() { exec 9>&-; kill $broker 2>/dev/null || true; wait $broker 2>/dev/null || true; broker=""; }
ready_ms() { # metrics port, start time (ns) → milliseconds from start to the first 200 of /ready (or "never" within 30 s)
  local t
  for i in $(seq 3000); do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' "127.0.0.1:$1/ready")" = 200 ]; then
      t=$(date +%s%N); echo $(( (t - $2) / 1000000 )); return
    fi
    sleep 0.01
  done
  echo never
}

declare -A results cpu drops startup brokercpu kafkalost kafkadelivered readyms startupdrops startupkernel startupreasons stopms rss cpuex settled jitrun
h2capture=""
gocapture=""
gofloorhits=""
metrics_port=$((tls + 1))
for round in $(seq "$ROUNDS"); do
  for scheme in $SCHEMES; do
    modes=$MODES
    case $scheme in
      http) url="http://127.0.0.1:$plain/1k.txt" ;;
      https) url="https://127.0.0.1:$tls/1k.txt" ;;
      h2) [ "$round" -le "$H2_ROUNDS" ] || continue
          url="https://127.0.0.1:$h2/1k.txt"; modes="none floor collector" ;;
      go) [ "$round" -le "$GO_ROUNDS" ] || continue
          url="https://127.0.0.1:$goport/g/1k"; modes="none floor collector" ;;
      *) echo "capture-bench: unknown scheme $scheme" >&2; exit 1 ;;
    esac
    for mode in $modes; do
      pid=""
      # <mode>-alt, <mode>-alt2: the same mode with ALT_COLLECTOR, ALT2_COLLECTOR (other builds,
      # compared in the same rounds)
      kind=${mode%-alt*}; bin=$COLLECTOR
      case ${mode#"$kind"} in
        -alt) bin=${ALT_COLLECTOR:?"$mode needs ALT_COLLECTOR"} ;;
        -alt2) bin=${ALT2_COLLECTOR:?"$mode needs ALT2_COLLECTOR"} ;;
      esac
      if [ "$kind" = startup ]; then
        # full load first, then the collector: what a rolling update on a busy node does
        [ "$scheme" = h2 ] && continue
        # wrk outlasts the window whatever start-up takes; it is stopped once the drops are read
        wrk -t2 -c"$CONNECTIONS" -d60s "$url" > "$work/startup.wrk" 2>&1 & loadpid=$!
        sleep 2
        t0=$(date +%s%N)
        TRACE_COMMS=nginx,wrk METRICS_BIND=127.0.0.1:$metrics_port $bin > /dev/null 2> "$work/collector.log" & pid=$!
        readyms["$scheme,$mode"]+="$(ready_ms $metrics_port "$t0") "
        # the window is the first STARTUP_SECS seconds after /ready; the kernel's counters reach
        # /metrics every 500 ms, so wait that long past it before reading
        sleep "$STARTUP_SECS"; sleep 0.6
        d=$(dropped $metrics_port)
        startupdrops["$scheme,$mode"]+="$d "
        startupkernel["$scheme,$mode"]+="$(metric $metrics_port collector_drops_total 'stage="kernel"') "
        startupreasons["$scheme,$mode"]+="round $round: $(drop_reasons $metrics_port); emitted $(metric $metrics_port collector_exchanges_emitted_total)"$'\n'
        kill -INT $loadpid 2>/dev/null || true; wait $loadpid 2>/dev/null || true
        kill -INT $pid 2>/dev/null || true; wait $pid 2>/dev/null || true
        # the collector's own account of its stop: SIGINT to exit, and the probes' detach within it
        stopms["$scheme,$mode"]+="$(sed -n 's/.*stopped in \([0-9]*\) ms: [0-9]* probes detached in \([0-9]*\) ms.*/\1\/\2/p' "$work/collector.log" | tail -1) "
        echo "round $round $scheme $mode: $d dropped up to ${STARTUP_SECS}s after ready, ready after $(awk '{print $NF}' <<< "${readyms[$scheme,$mode]}") ms" >&2
        continue
      fi
      if [ "$kind" = floor ] || [ "$kind" = trap ]; then
        bpftrace "$work/$kind.bt" > "$work/bt.out" 2>&1 & pid=$!
        if [ "$scheme" = go ]; then
          perf stat -a -x, -e 'capbench:*' -o "$work/goprobes.count" -- sleep 100000 & gofloorpid=$!
        fi
        sleep 4
      elif [ "$kind" = collector ] || [ "$kind" = server ] || [ "$kind" = kafka ]; then
        traced=nginx,wrk; [ "$scheme" = h2 ] && traced=nginx,h2load; [ "$kind" = server ] && traced=nginx
        [ "$scheme" = go ] && traced=$(basename "$GO_SERVER"),wrk
        sinkenv=()
        if [ "$kind" = kafka ]; then start_broker; sinkenv=(AKTO_KAFKA_BROKER_MAL="$bootstrap"); fi
        [ "${PROFILE:-}" = "$mode" ] && sinkenv+=(DOTNET_PerfMapEnabled=1 DOTNET_EnableWriteXorExecute=0)
        env "${sinkenv[@]}" TRACE_COMMS=$traced METRICS_BIND=127.0.0.1:$metrics_port $bin > /dev/null 2> "$work/collector.log" & pid=$!
        for i in $(seq 600); do grep -q "ready:" "$work/collector.log" && break; sleep 0.1; done
        grep -q "ready:" "$work/collector.log" || { echo "capture-bench: the collector was not ready within 60 s: $(tail -3 "$work/collector.log")" >&2; exit 1; }
      fi
      warm_up "$scheme" "$url"
      if [ "$kind" = collector ] || [ "$kind" = server ] || [ "$kind" = kafka ]; then
        settled["$scheme,$mode"]+="$(settle_jit "$scheme" "$url" $metrics_port) "
        c0=$(cpu_seconds $pid); d0=$(dropped $metrics_port); e0=$(metric $metrics_port collector_exchanges_emitted_total)
        jm0=$(metric $metrics_port collector_jit_compiled_methods_total); js0=$(jit_ms $metrics_port)
        if [ "$kind" = kafka ]; then
          b0=$(cpu_seconds $broker)
          # what the warm-up queued is delivered before the measured run starts counting
          for i in $(seq 100); do [ "$(metric $metrics_port collector_kafka_waiting_messages)" -lt 1000 ] && break; sleep 0.1; done
          q0=$(metric $metrics_port collector_kafka_messages_total 'result="queued"')
          l0=$(( $(metric $metrics_port collector_kafka_messages_total 'result="shed"') + $(metric $metrics_port collector_kafka_messages_total 'result="failed"') ))
        fi
      fi
      perfpid=""
      if [ "${PROFILE:-}" = "$mode" ] && [ -n "$pid" ]; then
        perf record -e cpu-clock -F 2000 -g -p "$pid" -o "build/perf-$scheme-$mode-$round.data" -- sleep "$DURATION" > /dev/null 2>&1 & perfpid=$!
      fi
      rps=$(run_load "$scheme" "$url")
      [ -n "$perfpid" ] && wait $perfpid
      if [ "$kind" = collector ] || [ "$kind" = server ] || [ "$kind" = kafka ]; then
        rss["$scheme,$mode"]+="$(awk '/^VmRSS/ {printf "%.0f", $2 / 1024}' /proc/$pid/status) "
        c1=$(cpu_seconds $pid); d1=$(dropped $metrics_port); e1=$(metric $metrics_port collector_exchanges_emitted_total)
        jitrun["$scheme,$mode"]+="$(( $(metric $metrics_port collector_jit_compiled_methods_total) - jm0 ))/$(( $(jit_ms $metrics_port) - js0 ))ms "
        if [ "$scheme" = go ]; then
          gocapture+="round $round: $((e1 - e0)) exchanges emitted in the measured run, drops $((d1 - d0)); since start-up by stage and reason: $(drop_reasons $metrics_port)"$'\n'
        fi
        if [ "$kind" = kafka ]; then
          b1=$(cpu_seconds $broker)
          brokercpu["$scheme,$mode"]+="$(per10k "$b0" "$b1" "$rps") "
          # every message queued in the measured run delivered (the collector keeps counting: wait for the acks)
          for i in $(seq 100); do [ "$(metric $metrics_port collector_kafka_waiting_messages)" = 0 ] && break; sleep 0.1; done
          l1=$(( $(metric $metrics_port collector_kafka_messages_total 'result="shed"') + $(metric $metrics_port collector_kafka_messages_total 'result="failed"') ))
          kafkalost["$scheme,$mode"]+="$((l1 - l0)) "
          kafkadelivered["$scheme,$mode"]+="$(metric $metrics_port collector_kafka_messages_total 'result="delivered"')/$(metric $metrics_port collector_kafka_messages_total 'result="queued"') "
        fi
        if [ "$scheme" = h2 ]; then
          # the collector saw HTTP/2: connections that began with the preface (both sides of the
          # warm-up's and the measured run's), exchanges emitted against 2 per request done
          done_requests=$(cat "$work/h2load.done")
          h2capture+="round $round: $(metric $metrics_port collector_http2_connections_total 'start="preface"') h2 connections (preface; $(( (WARMUP == 0 ? 2 : 4) * H2_CONNECTIONS )) expected), "
          h2capture+="$((e1 - e0)) exchanges emitted for $done_requests requests done in the measured run ($(ratio $((e1 - e0)) $((2 * done_requests))) of 2 per request), "
          h2capture+="drops $((d1 - d0)); since start-up by stage and reason: $(drop_reasons $metrics_port)"$'\n'
        fi
        cpu["$scheme,$mode"]+="$(per10k "$c0" "$c1" "$rps") "
        # per exchange emitted too: a collector that drops events (a loaded machine) does less work
        # per request, and CPU per request alone would flatter it
        cpuex["$scheme,$mode"]+="$(awk -v a="$c0" -v b="$c1" -v e=$((e1 - e0)) 'BEGIN { printf "%.2f", e ? (b - a) / e * 1e6 : 0 }') "
        drops["$scheme,$mode"]+="$((d1 - d0)) "
        startup["$scheme,$mode"]+="$d0 "
      fi
      [ -n "$pid" ] && { kill -INT $pid 2>/dev/null || true; kill -TERM $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; }
      if [ -n "${gofloorpid:-}" ]; then
        pkill -INT -P "$gofloorpid" sleep 2>/dev/null || true; wait "$gofloorpid" 2>/dev/null || true; gofloorpid=""
        # the Go probes were hit: a floor without them would measure nothing of Go's
        hits=$(awk -F, '$1 ~ /^[0-9]+$/ {s += $1} END {print s + 0}' "$work/goprobes.count")
        [ "$hits" -gt 0 ] || { echo "capture-bench: the Go floor's uprobes were not hit: $(cat "$work/goprobes.count")" >&2; exit 1; }
        gofloorhits+="$hits "
      fi
      [ "$kind" = kafka ] && stop_broker
      results["$scheme,$mode"]+="$rps "
      echo "round $round $scheme $mode: $rps req/s, collector CPU s/10k $(awk '{print $NF}' <<< "${cpu[$scheme,$mode]:-}"), µs/exchange $(awk '{print $NF}' <<< "${cpuex[$scheme,$mode]:-}"), drops $(awk '{print $NF}' <<< "${drops[$scheme,$mode]:-}")" >&2
    done
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
# The machine's speed drifts between rounds (the same mode can differ by a third): each round's
# modes ran back to back, so a round's own ratio compares like with like. Their median, and the
# range, next to the ratio of medians.
paired() { # numerators denominators → "median (min-max)" of the per-round ratios
  local r
  r=$(paste -d' ' <(tr ' ' '\n' <<< "$1" | grep -v '^$') <(tr ' ' '\n' <<< "$2" | grep -v '^$') |
    awk '{printf "%.3f\n", $1 / $2}' | sort -n)
  printf '%.3f (%s-%s)' "$(median <<< "$r")" "$(head -1 <<< "$r")" "$(tail -1 <<< "$r")"
}
h1schemes=$(tr ' ' '\n' <<< "$SCHEMES" | grep -x 'https\?' | tr '\n' ' ' || true)
has() { [ -n "${results[$1]:-}" ]; }
med() { [ -n "${1:-}" ] && echo "$1" | median || echo -; }
if [ -n "$h1schemes" ]; then
  printf '\n%-7s %-14s %10s %10s %12s %12s %8s\n' scheme mode "req/s" "CPU s/10k" "µs/exchange" "drops (run)" "RSS MiB"
  for scheme in $h1schemes; do
    for mode in $MODES; do
      has "$scheme,$mode" || continue
      printf '%-7s %-14s %10.0f %10s %12s %12s %8s\n' "$scheme" "$mode" "$(echo "${results[$scheme,$mode]}" | median)" \
        "$(med "${cpu[$scheme,$mode]:-}")" "$(med "${cpuex[$scheme,$mode]:-}")" "$(med "${drops[$scheme,$mode]:-}")" "$(med "${rss[$scheme,$mode]:-}")"
    done
  done
  printf '\n(requests/s, medians of %s rounds of %s s after %s s of warm-up; CPU: collector CPU seconds per 10,000 requests and µs per exchange emitted; RSS at the end of the run)\n' "$ROUNDS" "$DURATION" "$WARMUP"
  for scheme in $h1schemes; do
    line=""
    for pair in collector/floor server/floor collector/trap server/trap kafka/floor; do
      has "$scheme,${pair%/*}" && has "$scheme,${pair#*/}" || continue
      line+=" $pair $(paired "${results[$scheme,${pair%/*}]}" "${results[$scheme,${pair#*/}]}"),"
    done
    [ -n "$line" ] && printf 'per-round ratios of requests/s, %s:%s\n' "$scheme" "${line%,}"
    for mode in $MODES; do
      has "$scheme,$mode" && [ -n "${drops[$scheme,$mode]:-}" ] || continue
      printf 'drops during the measured runs, %s %s: %s| from start-up to the end of warm-up: %s\n' "$scheme" "$mode" "${drops[$scheme,$mode]}" "${startup[$scheme,$mode]}"
    done
    for mode in $MODES; do
      [ -n "${jitrun[$scheme,$mode]:-}" ] || continue
      printf 'JIT, %s %s: warm-up added until it settled (s) %s| methods/time compiled in the measured runs %s\n' "$scheme" "$mode" "${settled[$scheme,$mode]}" "${jitrun[$scheme,$mode]}"
    done
    for mode in $MODES; do
      [ "${mode%-alt*}" = kafka ] && has "$scheme,$mode" || continue
      stdout=collector${mode#kafka}
      printf 'Kafka sink, %s %s: collector CPU s/10k stdout (%s) %s, kafka %s; per-round kafka/stdout CPU %s; broker (mock cluster, its own process) CPU s/10k %s\n' "$scheme" "$mode" "$stdout" \
        "$(med "${cpu[$scheme,$stdout]:-}")" "$(med "${cpu[$scheme,$mode]}")" \
        "$( has "$scheme,$stdout" && paired "${cpu[$scheme,$mode]}" "${cpu[$scheme,$stdout]}" || echo -)" "$(med "${brokercpu[$scheme,$mode]}")"
      has "$scheme,$stdout" && printf 'Kafka sink, %s %s: per-round kafka/stdout CPU per exchange emitted %s\n' "$scheme" "$mode" "$(paired "${cpuex[$scheme,$mode]}" "${cpuex[$scheme,$stdout]}")"
      printf 'Kafka sink, %s %s: messages shed or failed in the measured runs: %s| delivered/queued since start at the end of each run: %s\n' "$scheme" "$mode" "${kafkalost[$scheme,$mode]}" "${kafkadelivered[$scheme,$mode]}"
    done
    for mode in $MODES; do
      [ -n "${startupdrops[$scheme,$mode]:-}" ] || continue
      printf 'start-up under full load, %s %s: drops from exec to %s s after /ready: %s(median %s); exec to /ready ms: %s(median %s)\n' "$scheme" "$mode" "$STARTUP_SECS" \
        "${startupdrops[$scheme,$mode]}" "$(med "${startupdrops[$scheme,$mode]}")" "${readyms[$scheme,$mode]}" "$(echo "${readyms[$scheme,$mode]}" | tr ' ' '\n' | grep -v never | tr '\n' ' ' | median)"
      printf 'start-up under full load, %s %s: of those, kernel events lost (ring full and every other kernel stage): %s(median %s); the rest are exchanges seen without their start (those of the open connections in flight when capture began, and those cut by lost events)\n' "$scheme" "$mode" \
        "${startupkernel[$scheme,$mode]}" "$(med "${startupkernel[$scheme,$mode]}")"
      printf 'start-up under full load, %s %s: stop (SIGINT to exit / of which detaching the probes), ms: %s\n' "$scheme" "$mode" "${stopms[$scheme,$mode]}"
      printf '%s' "${startupreasons[$scheme,$mode]}"
    done
  done
fi
floor_summary() { # scheme, what the load was → the none/floor/collector table of that scheme, its ratios and drops
  local n f c
  n=$(echo "${results[$1,none]}" | median)
  f=$(echo "${results[$1,floor]}" | median)
  c=$(echo "${results[$1,collector]}" | median)
  printf '\n%-7s %9s %9s %10s %16s %10s\n' scheme none floor collector collector/floor "CPU s/10k"
  printf '%-7s %9.0f %9.0f %10.0f %16s %10s\n' "$1" "$n" "$f" "$c" "$(ratio "$c" "$f")" "$(echo "${cpu[$1,collector]}" | median)"
  printf '\n(%s: %s; requests/s, medians of %s rounds of %s s after %s s of warm-up)\n' "$1" "$2" "$3" "$DURATION" "$WARMUP"
  printf 'per-round ratios, %s: collector/floor %s\n' "$1" "$(paired "${results[$1,collector]}" "${results[$1,floor]}")"
  printf 'drops during the measured runs, %s: collector %s\n' "$1" "${drops[$1,collector]}"
  printf 'drops from start-up to the end of warm-up, %s: collector %s\n' "$1" "${startup[$1,collector]}"
  printf 'JIT, %s collector: warm-up added until it settled (s) %s| methods/time compiled in the measured runs %s\n' "$1" "${settled[$1,collector]}" "${jitrun[$1,collector]}"
}
if [ -n "${results[h2,none]:-}" ]; then
  floor_summary h2 "h2load -c $H2_CONNECTIONS -m $H2_STREAMS over TLS with ALPN h2, the same 1 KiB file" "$H2_ROUNDS"
  printf 'h2 capture (collector runs), %s' "$h2capture"
fi
if [ -n "${results[go,none]:-}" ]; then
  floor_summary go "wrk -c $CONNECTIONS over TLS against $GO_SERVER, 1 KiB answers" "$GO_ROUNDS"
  printf 'go floor: crypto/tls probe hits counted per floor run (warm-up and measured run): %s\n' "$gofloorhits"
  printf 'go capture (collector runs), %s' "$gocapture"
fi
