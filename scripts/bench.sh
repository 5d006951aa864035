#!/usr/bin/env bash
# End-to-end benchmark: Apache Kafka's own perf tools against one real broker,
# (1) direct, (2) through kseal without encryption (passthrough), (3) through
# kseal encrypting every topic with the local KMS; plus the Go
# micro-benchmarks of the hot packages. All cases run in ONE invocation,
# interleaved (direct, passthrough, encrypted, direct, ...), so the ratios
# compare numbers taken on the same machine minutes apart.
#
#   scripts/bench.sh            (or: make bench)
#
# It rewrites the results section of BENCHMARKS.md (between the
# bench:results markers) and leaves the rest of that file alone. It stops
# everything it started (broker, proxies) on exit, failure or Ctrl-C.
#
# Knobs (environment):
#   BENCH_REPS=3           runs per case
#   BENCH_RECORDS=300000   records per throughput run (1 KiB each)
#   BENCH_PARTITIONS=3     partitions per topic
#   BENCH_LAT_RECORDS=20000 BENCH_LAT_RATE=2000   fixed-rate latency run (the
#                          first fifth is the tool's warm-up, not in the numbers)
#   BENCH_BENCHTIME=200ms  go test -benchtime for the micro-benchmarks
#   BENCH_QUIET_WAIT=0     before the micro-benchmarks and before each run, wait
#                          up to this many seconds for the machine to be mostly
#                          idle (a shared box: other jobs make the numbers noisy)
#   BENCH_OUT=BENCHMARKS.md  BENCH_KEEP=1 (keep the work dir for inspection)
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

REPS=${BENCH_REPS:-3}
RECORDS=${BENCH_RECORDS:-300000}
RECORD_SIZE=1024
PARTITIONS=${BENCH_PARTITIONS:-3}
LAT_RECORDS=${BENCH_LAT_RECORDS:-20000}
LAT_RATE=${BENCH_LAT_RATE:-2000}
LAT_WARMUP=$((LAT_RECORDS / 5))
BENCHTIME=${BENCH_BENCHTIME:-200ms}
MICRO_PKGS=${BENCH_MICRO_PKGS:-./internal/records ./internal/recordcrypt ./internal/codec}
OUT=${BENCH_OUT:-$ROOT/BENCHMARKS.md}
CLIENT_TIMEOUT=${BENCH_CLIENT_TIMEOUT:-300}
# Every client JVM gets the same flags; full JIT, as a real client would have.
CLIENT_JVM=${BENCH_CLIENT_JVM:--Xms256m -Xmx512m}
# The broker gets Kafka's own default GC flags (kafka-run-class.sh) and a
# 1 GiB heap instead of kafka.sh's test-suite settings (C1 only, serial GC),
# so the broker is not made artificially slow.
export KAFKA_HEAP_OPTS=${BENCH_KAFKA_HEAP_OPTS:--Xms1g -Xmx1g}
export KAFKA_JVM_OPTS=${BENCH_KAFKA_JVM_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true}

CASES=(direct passthrough encrypted)

die() { echo "bench.sh: $*" >&2; exit 1; }
log() { echo "bench.sh: $*" >&2; }

for tool in go java python3 kcat timeout; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (scripts/deps.sh installs the tools)"
done

START_EPOCH=$(date +%s)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kseal-bench.XXXXXX")
KSEAL_PID=""
KAFKA_DIR="$WORK/kafka"

cleanup() {
  local rc=$?
  set +e
  stop_kseal
  "$ROOT/scripts/kafka.sh" stop --dir "$KAFKA_DIR" >/dev/null 2>&1
  if [ "${BENCH_KEEP:-0}" = 1 ] || [ $rc -ne 0 ]; then
    # Keep the logs and configs, not gigabytes of topic data.
    rm -rf "$KAFKA_DIR"/node-*/data
    log "work dir kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ---------------------------------------------------------------- helpers

# cpu_ticks PID prints utime+stime of PID in clock ticks (0 if it is gone).
# Fields are counted after the ")" that ends the command name, which may
# itself contain spaces.
cpu_ticks() {
  local s
  [ -n "$1" ] || { echo 0; return; }
  s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  s=${s##*) }
  # shellcheck disable=SC2086
  set -- $s
  echo $(( ${12} + ${13} ))
}

# machine_busy prints user+nice+system ticks of the whole machine.
machine_busy() {
  local _cpu u n s _rest
  read -r _cpu u n s _rest </proc/stat
  echo $((u + n + s))
}

# children_cpu sets CHILD_CPU to the CPU seconds of this shell's waited-for
# children (and their descendants). It must not run in a subshell: a forked
# shell starts with no children's time, so `times` would print zeros.
children_cpu() {
  times >"$WORK/times"
  CHILD_CPU=$(sed -n 2p "$WORK/times" | awk '{
    t = 0
    for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
    printf "%.2f\n", t }')
}

TICK=$(getconf CLK_TCK)
NPROC=$(nproc)

# free_block N prints a port P such that P..P+N-1 are all free on 127.0.0.1.
free_block() {
  python3 - "$1" <<'EOF'
import random, socket, sys
n = int(sys.argv[1])
for _ in range(200):
    base = random.randint(20000, 30000 - n)
    held = []
    try:
        for p in range(base, base + n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(s)
            s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        for s in held:
            s.close()
    print(base)
    sys.exit(0)
sys.exit("no free port block")
EOF
}

java_tool() {
  # shellcheck disable=SC2086
  timeout "$CLIENT_TIMEOUT" java $CLIENT_JVM \
    -Dlog4j2.configurationFile="$KAFKA_HOME/config/tools-log4j2.properties" \
    -cp "$KAFKA_LIBS/*" "$@"
}

write_config() { # FILE ENCRYPT(0|1)
  cat >"$1" <<EOF
log: {level: warn}
drainTimeout: 5s
virtualClusters:
  - name: bench
    upstream: {bootstrapServers: ["$BOOTSTRAP"]}
    gateway: {bindAddress: 127.0.0.1, advertisedHost: 127.0.0.1, bootstrapPort: $PROXY_PORT, brokerPortStart: $((PROXY_PORT + 1)), brokerPortCount: 8}
EOF
  if [ "$2" = 1 ]; then
    cat >>"$1" <<EOF
    encryption:
      kms: {type: local, config: {keyStore: $WORK/keys.json, masterKeyFile: $WORK/master.key}}
      policy: {rules: [{topicRegex: '.*', kek: 'KEK-\$(topicName)'}]}
EOF
  fi
}

start_kseal() { # CONFIG LOGFILE
  "$KSEAL" run --config "$1" >"$2" 2>&1 &
  KSEAL_PID=$!
  local deadline=$((SECONDS + 20))
  # Ready when metadata through the proxy lists the broker.
  until kcat -L -b "127.0.0.1:$PROXY_PORT" -m 2 2>/dev/null | grep -q '1 brokers'; do
    if ! kill -0 "$KSEAL_PID" 2>/dev/null; then
      tail -n 20 "$2" >&2
      KSEAL_PID=""
      return 1
    fi
    [ $SECONDS -lt $deadline ] || { tail -n 20 "$2" >&2; return 1; }
    sleep 0.2
  done
}

stop_kseal() {
  [ -n "$KSEAL_PID" ] || return 0
  kill -TERM "$KSEAL_PID" 2>/dev/null || true
  local i
  for i in $(seq 50); do
    kill -0 "$KSEAL_PID" 2>/dev/null || break
    sleep 0.2
  done
  kill -KILL "$KSEAL_PID" 2>/dev/null || true
  wait "$KSEAL_PID" 2>/dev/null || true
  KSEAL_PID=""
}

# value_class BOOTSTRAP TOPIC prints "plaintext" if the first record's value
# is the perf tool's payload (only A-Z), else "ciphertext", or "none".
value_class() {
  local f="$WORK/value.bin"
  kcat -C -b "$1" -t "$2" -p 0 -o beginning -c 1 -e -q -f '%s' >"$f" 2>/dev/null || true
  if [ ! -s "$f" ]; then echo none; return; fi
  if [ "$(LC_ALL=C tr -d 'A-Z' <"$f" | wc -c)" = 0 ]; then echo plaintext; else echo ciphertext; fi
}

# wait_quiet waits up to BENCH_QUIET_WAIT seconds until the machine is
# less than 20% busy over 3 s (our idle broker uses a few percent), so that
# on a shared box other jobs disturb fewer runs. It never fails.
QUIET_WAIT=${BENCH_QUIET_WAIT:-0}
wait_quiet() {
  [ "$QUIET_WAIT" -gt 0 ] || return 0
  local deadline=$((SECONDS + QUIET_WAIT)) b0 b1 pct said=""
  while :; do
    b0=$(machine_busy); sleep 3; b1=$(machine_busy)
    pct=$(( (b1 - b0) * 100 / (3 * TICK * NPROC) ))
    [ "$pct" -ge 20 ] || return 0
    if [ $SECONDS -ge $deadline ]; then log "machine still ${pct}% busy after ${QUIET_WAIT}s; measuring anyway"; return 0; fi
    [ -n "$said" ] || log "machine ${pct}% busy (other jobs), waiting up to ${QUIET_WAIT}s for it to quieten"
    said=1
  done
}

# Snapshot of the CPU counters the "others" column is computed from.
snap() {
  S_WALL=$(date +%s.%N)
  S_BUSY=$(machine_busy)
  S_BROKER=$(cpu_ticks "$BROKER_PID")
  S_KSEAL=0
  [ -z "$KSEAL_PID" ] || S_KSEAL=$(cpu_ticks "$KSEAL_PID")
  children_cpu
  S_CHILD=$CHILD_CPU
}

# delta sets DELTA to "wall kseal_cpu others_cores broker_cpu client_cpu"
# (seconds) since the last snap. others_cores is the average number of cores
# used by processes that are not this benchmark (other users of the
# machine): a noise indicator.
delta() {
  local wall busy broker ks child
  wall=$(date +%s.%N)
  busy=$(machine_busy)
  broker=$(cpu_ticks "$BROKER_PID")
  ks=0
  [ -z "$KSEAL_PID" ] || ks=$(cpu_ticks "$KSEAL_PID")
  children_cpu
  child=$CHILD_CPU
  DELTA=$(awk -v w0="$S_WALL" -v w1="$wall" -v b0="$S_BUSY" -v b1="$busy" -v r0="$S_BROKER" -v r1="$broker" \
    -v k0="$S_KSEAL" -v k1="$ks" -v c0="$S_CHILD" -v c1="$child" -v hz="$TICK" 'BEGIN {
      w = w1 - w0; if (w <= 0) w = 1e-9
      k = (k1 - k0) / hz
      r = (r1 - r0) / hz
      c = c1 - c0
      o = (b1 - b0) / hz - r - k - c
      if (o < 0) o = 0
      printf "%.2f %.2f %.2f %.2f %.2f\n", w, k, o / w, r, c }')
}

# run_producer BOOTSTRAP TOPIC N THROUGHPUT LOGFILE [WARMUP]
#   -> "rec/s MB/s avg p50 p99 p999"
# With WARMUP, the numbers are the tool's steady-state ones, which leave out
# the first WARMUP records (client JIT, connection setup, metadata).
run_producer() {
  local warm=${6:-0} args=()
  [ "$warm" = 0 ] || args=(--warmup-records "$warm")
  java_tool org.apache.kafka.tools.ProducerPerformance --bootstrap-server "$1" --topic "$2" \
    --num-records "$3" --record-size "$RECORD_SIZE" --throughput "$4" "${args[@]}" >"$5" 2>&1 || return 1
  # Summary: "N [steady state ]records sent, R records/sec (M MB/sec), A ms
  # avg latency, X ms max latency, P ms 50th, P ms 95th, P ms 99th, P ms 99.9th."
  local line
  if [ "$warm" = 0 ]; then
    line=$(grep -E '^[0-9]+ records sent' "$5" | grep '99.9th' | tail -n 1)
  else
    line=$(grep -E '^[0-9]+ steady state records sent' "$5" | grep '99.9th' | tail -n 1)
  fi
  [ -n "$line" ] || return 1
  [ "$(echo "$line" | awk '{print $1}')" = "$(($3 - warm))" ] || return 1
  echo "$line" | sed -E 's/^[0-9]+ (steady state )?records sent, ([0-9.]+) records\/sec \(([0-9.]+) MB\/sec\), ([0-9.]+) ms avg latency, [0-9.]+ ms max latency, ([0-9.]+) ms 50th, [0-9.]+ ms 95th, ([0-9.]+) ms 99th, ([0-9.]+) ms 99.9th.*/\2 \3 \4 \5 \6 \7/'
}

# run_consumer BOOTSTRAP TOPIC N GROUP LOGFILE -> "rec/s MB/s" (fetch phase,
# i.e. without the consumer group join).
run_consumer() {
  java_tool org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$1" --topic "$2" \
    --num-records "$3" --group "$4" --hide-header >"$5" 2>&1 || return 1
  # start, end, MB, MB/s, nMsg, nMsg/s, rebalance ms, fetch ms, fetch MB/s, fetch nMsg/s
  local line
  line=$(grep -E '^[0-9]{4}-' "$5" | tail -n 1)
  [ -n "$line" ] || return 1
  echo "$line" | awk -F', *' -v n="$3" '{ if ($5 + 0 != n) exit 1; print $10, $9 }'
}

# run_case CASE REP: one produce, consume and fixed-rate run; appends a row
# to runs.tsv (status FAILED and empty metrics when something broke).
run_case() {
  local c=$1 rep=$2 topic="bench-$1-$2" lat="lat-$1-$2" bs="$BOOTSTRAP" p="$WORK/$1-$2"
  local prod="" cons="" latr="" d1="" d2="" d3="" rss="" rest="" ok=OK
  wait_quiet
  log "run $rep/$REPS: $c"
  if [ "$c" != direct ]; then
    start_kseal "$WORK/$c.yaml" "$p.kseal.log" || { log "$c: kseal did not start"; ok=FAILED; }
    bs="127.0.0.1:$PROXY_PORT"
  fi
  if [ $ok = OK ]; then
    snap
    prod=$(run_producer "$bs" "$topic" "$RECORDS" -1 "$p.produce.log") || { ok=FAILED; log "$c: producer failed, see below"; tail -n 5 "$p.produce.log" >&2; }
    delta
    d1=$DELTA
  fi
  if [ $ok = OK ]; then
    snap
    cons=$(run_consumer "$bs" "$topic" "$RECORDS" "g-$topic" "$p.consume.log") || { ok=FAILED; log "$c: consumer failed, see below"; tail -n 5 "$p.consume.log" >&2; }
    delta
    d2=$DELTA
  fi
  if [ $ok = OK ]; then
    snap
    latr=$(run_producer "$bs" "$lat" "$LAT_RECORDS" "$LAT_RATE" "$p.latency.log" "$LAT_WARMUP") || { ok=FAILED; log "$c: fixed-rate producer failed"; tail -n 5 "$p.latency.log" >&2; }
    delta
    d3=$DELTA
  fi
  if [ $ok = OK ]; then
    # What an admin with disk access sees vs what the client sees.
    rest=$(value_class "$BOOTSTRAP" "$topic")
    local want=plaintext
    [ "$c" != encrypted ] || want=ciphertext
    if [ "$rest" != "$want" ]; then log "$c: value at rest is $rest, want $want"; ok=FAILED; fi
    if [ "$c" != direct ] && [ "$(value_class "$bs" "$topic")" != plaintext ]; then
      log "$c: the client did not read back plaintext"; ok=FAILED
    fi
  fi
  if [ -n "$KSEAL_PID" ]; then
    rss=$(awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$KSEAL_PID/status" 2>/dev/null || true)
  fi
  stop_kseal
  # case rep status | prod rec/s MB/s avg p50 p99 p999 | cons rec/s MB/s |
  # lat rec/s MB/s avg p50 p99 p999 | prod wall kseal_cpu others broker_cpu client_cpu |
  # cons (same five) | lat (same five) | rss | at_rest
  # shellcheck disable=SC2206 # splitting the space-separated fields is the point
  local -a f=(${prod:-- - - - - -} ${cons:-- -} ${latr:-- - - - - -} ${d1:-- - - - -} ${d2:-- - - - -} ${d3:-- - - - -})
  printf '%s\t%s\t%s' "$c" "$rep" "$ok" >>"$WORK/runs.tsv"
  printf '\t%s' "${f[@]}" "${rss:--}" "${rest:--}" >>"$WORK/runs.tsv"
  printf '\n' >>"$WORK/runs.tsv"
  [ $ok = OK ]
}

# ---------------------------------------------------------------- setup

"$ROOT/scripts/kafka.sh" fetch

log "building kseal"
KSEAL="$WORK/kseal"
go build -o "$KSEAL" ./cmd/kseal

wait_quiet

# Micro-benchmarks first, while nothing else of ours runs.
log "go micro-benchmarks ($BENCHTIME each)"
MICRO_OK=1
BROKER_PID="" # none yet: snap/delta then count only the go test tree
snap
# shellcheck disable=SC2086
go test -run '^$' -bench . -benchmem -benchtime "$BENCHTIME" -count 1 $MICRO_PKGS >"$WORK/micro.txt" 2>&1 || MICRO_OK=0
delta
MICRO_OTHERS=$(echo "$DELTA" | awk '{print $3}')
[ $MICRO_OK = 1 ] || { log "micro-benchmarks failed:"; tail -n 20 "$WORK/micro.txt" >&2; }

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "starting a 1-broker Kafka cluster"
"$ROOT/scripts/kafka.sh" start --brokers 1 --dir "$KAFKA_DIR" --owner-pid $$
# shellcheck disable=SC1091
. "$KAFKA_DIR/cluster.env"
BROKER_PID=${PIDS%%,*}

PROXY_PORT=$(free_block 9)
write_config "$WORK/passthrough.yaml" 0
write_config "$WORK/encrypted.yaml" 1

topics=(warmup)
for rep in $(seq "$REPS"); do
  for c in "${CASES[@]}"; do topics+=("bench-$c-$rep" "lat-$c-$rep"); done
done
log "creating ${#topics[@]} topics ($PARTITIONS partitions each)"
java_tool "$ROOT/bench/CreateTopics.java" "$BOOTSTRAP" "$PARTITIONS" "${topics[@]}"

ENC_OK=1
"$KSEAL" kms init --config "$WORK/encrypted.yaml" >/dev/null || ENC_OK=0
for t in "${topics[@]}"; do
  case $t in *-encrypted-*) "$KSEAL" kms create --config "$WORK/encrypted.yaml" "KEK-$t" >/dev/null || ENC_OK=0 ;; esac
done
[ $ENC_OK = 1 ] || log "local KMS setup failed: the encrypted case will fail"

# Warm the broker's JIT (produce and fetch paths) so the first measured run
# is not the slowest by construction.
log "warm-up (not measured)"
run_producer "$BOOTSTRAP" warmup 100000 -1 "$WORK/warmup.produce.log" >/dev/null || die "warm-up producer failed: $(tail -n 5 "$WORK/warmup.produce.log")"
run_consumer "$BOOTSTRAP" warmup 100000 g-warmup "$WORK/warmup.consume.log" >/dev/null || die "warm-up consumer failed: $(tail -n 5 "$WORK/warmup.consume.log")"

# ---------------------------------------------------------------- runs

: >"$WORK/runs.tsv"
FAILED=0
for rep in $(seq "$REPS"); do
  for c in "${CASES[@]}"; do
    run_case "$c" "$rep" || FAILED=1
  done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report

rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || rev="$rev (with uncommitted changes)"
knobs=$(env | grep '^BENCH_' | sort | tr '\n' ' ' || true)
cat >"$WORK/meta.env" <<EOF
command=${knobs}scripts/bench.sh
date=$(date -u '+%Y-%m-%d %H:%M UTC')
nproc=$(nproc)
cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
mem=$(awk '/^MemTotal:/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
kernel=$(uname -r)
kafka=$(basename "$KAFKA_HOME" | sed 's/^kafka-//')
java=$(java -version 2>&1 | head -n 1)
go=$(go version | awk '{print $3, $4}')
kseal=$rev
records=$RECORDS
record_size=$RECORD_SIZE
partitions=$PARTITIONS
reps=$REPS
lat_records=$LAT_RECORDS
lat_rate=$LAT_RATE
lat_warmup=$LAT_WARMUP
quiet_wait=$QUIET_WAIT
benchtime=$BENCHTIME
micro_pkgs=$MICRO_PKGS
micro_ok=$MICRO_OK
micro_others=$MICRO_OTHERS
load_start=$LOAD_START
load_end=$LOAD_END
duration_s=$(( $(date +%s) - START_EPOCH ))
broker_jvm=$KAFKA_HEAP_OPTS $KAFKA_JVM_OPTS
client_jvm=$CLIENT_JVM
EOF
python3 "$ROOT/bench/report.py" "$WORK/meta.env" "$WORK/runs.tsv" "$WORK/micro.txt" "$OUT"
log "wrote $OUT in $(( $(date +%s) - START_EPOCH ))s"
[ $FAILED = 0 ] || die "some runs failed (see BENCHMARKS.md and the logs in $WORK)"
[ $MICRO_OK = 1 ] || die "the micro-benchmarks failed (see $WORK/micro.txt)"
