#!/usr/bin/env bash
# End-to-end benchmark, kseal side by side with Kroxylicious: Apache Kafka's
# own perf tools against one real broker, through
#   direct        the clients talk to the broker;
#   passthrough   kseal without an encryption section (proxy plumbing only);
#   encrypted     kseal encrypting every topic, KEKs in OpenBao Transit
#                 (kms type vault, token auth);
#   kroxylicious  Kroxylicious (scripts/kroxylicious.sh) with its
#                 RecordEncryption filter, VaultKmsService against the same
#                 OpenBao, TemplateKekSelector "KEK-$(topicName)";
#   encrypted-local  (optional) kseal encrypting with its local KMS;
# for each workload (record size and producer compression); plus the Go
# micro-benchmarks of the hot packages. Everything runs in ONE invocation,
# interleaved (rep 1: every workload, every case; rep 2: ...), so the ratios
# compare numbers taken on the same machine minutes apart.
#
#   scripts/bench.sh            (or: make bench)
#
# It rewrites the results section of BENCHMARKS.md (between the
# bench:results markers; an unpinned run, BENCH_PIN=0, between the
# bench:results-unpinned markers, so a pinned and an unpinned table sit side
# by side) and leaves the rest of that file alone. Each case's table gives
# the proxy's CPU per record (utime+stime from /proc over the client run)
# and the MB/s one proxy core carries at that cost. It stops everything it
# started (broker, OpenBao, proxies) on exit, failure or Ctrl-C.
#
#   BENCH_PIN=0 scripts/bench.sh     (the unpinned run: everything shares
#                                     every core)
#
# Knobs (environment):
#   BENCH_REPS=3           runs per case and workload
#   BENCH_WORKLOADS="1024:none 1024:zstd 100:none 100:zstd"
#                          record size in bytes : producer compression.type
#                          (none gzip snappy lz4 zstd)
#   BENCH_CASES="direct passthrough encrypted kroxylicious"
#                          any of those and encrypted-local, in run order
#   BENCH_RECORDS          records per throughput run; default by record
#                          size: 100000 at >= 512 B, else 250000 (small
#                          records cost per record, not per byte)
#   BENCH_PARTITIONS=3     partitions per topic
#   BENCH_LAT_RECORDS=10000 BENCH_LAT_RATE=2000   fixed-rate latency run (the
#                          first fifth is the tool's warm-up, not in the numbers)
#   BENCH_PROXY_WARMUP=40000  unmeasured records produced and read back with
#                          kcat through each freshly started proxy (and
#                          directly, for direct) before measuring:
#                          Kroxylicious' JIT would otherwise be cold
#   BENCH_PIN=1            pin processes to cores with taskset (needs >= 2
#                          cores): BENCH_CPU_BROKER=0 (broker and OpenBao),
#                          BENCH_CPU_CLIENT=0 (perf tools, kcat),
#                          BENCH_CPU_PROXY=1 (kseal, Kroxylicious); any
#                          taskset -c list. BENCH_PIN=0: no pinning; the
#                          results then go to their own section
#                          (bench:results-unpinned) of BENCH_OUT.
#   BENCH_KROXY_JVM="-Xmx512m"  Kroxylicious' JVM flags (Temurin JDK)
#   BENCH_BENCHTIME=200ms  go test -benchtime for the micro-benchmarks
#   BENCH_MICRO_PKGS="./internal/records ./internal/recordcrypt ./internal/codec ./internal/encrypt"
#                          (empty: skip the micro-benchmarks)
#   BENCH_QUIET_WAIT=0     before the micro-benchmarks and before each run, wait
#                          up to this many seconds for the machine to be mostly
#                          idle (a shared box: other jobs make the numbers noisy)
#   BENCH_OUT=BENCHMARKS.md  the file whose section is rewritten (created if
#                          missing; e.g. a temporary file for a smoke run)
#   BENCH_SECTION          results (pinned) or results-unpinned; default by
#                          whether the run was pinned
#   BENCH_KEEP=1           keep the work dir for inspection
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

REPS=${BENCH_REPS:-3}
read -r -a WORKLOADS <<<"${BENCH_WORKLOADS:-1024:none 1024:zstd 100:none 100:zstd}"
read -r -a CASES <<<"${BENCH_CASES:-direct passthrough encrypted kroxylicious}"
PARTITIONS=${BENCH_PARTITIONS:-3}
LAT_RECORDS=${BENCH_LAT_RECORDS:-10000}
LAT_RATE=${BENCH_LAT_RATE:-2000}
LAT_WARMUP=$((LAT_RECORDS / 5))
WARM_RECORDS=${BENCH_PROXY_WARMUP:-40000}
BENCHTIME=${BENCH_BENCHTIME:-200ms}
MICRO_PKGS=${BENCH_MICRO_PKGS-./internal/records ./internal/recordcrypt ./internal/codec ./internal/encrypt}
OUT=${BENCH_OUT:-$ROOT/BENCHMARKS.md}
CLIENT_TIMEOUT=${BENCH_CLIENT_TIMEOUT:-300}
# Every client JVM gets the same flags; full JIT, as a real client would have.
CLIENT_JVM=${BENCH_CLIENT_JVM:--Xms256m -Xmx512m}
KROXY_JVM=${BENCH_KROXY_JVM:--Xmx512m}
# The broker gets Kafka's own default GC flags (kafka-run-class.sh) and a
# 1 GiB heap instead of kafka.sh's test-suite settings (C1 only, serial GC),
# so the broker is not made artificially slow.
export KAFKA_HEAP_OPTS=${BENCH_KAFKA_HEAP_OPTS:--Xms1g -Xmx1g}
export KAFKA_JVM_OPTS=${BENCH_KAFKA_JVM_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true}

# Messages go to fd 3, the script's own stderr: a signal's trap may run while
# a function's stderr is redirected into a log file.
exec 3>&2
# scripts/lib.sh's die and log, to fd 3.
die() { echo "bench.sh: $*" >&3; exit 1; }
log() { echo "bench.sh: $*" >&3; }

for tool in go java python3 kcat timeout curl; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool is missing (scripts/deps.sh installs the tools)"
done
case $REPS in '' | *[!0-9]* | 0) die "BENCH_REPS must be a positive integer" ;; esac
[ ${#WORKLOADS[@]} -gt 0 ] || die "BENCH_WORKLOADS is empty"
case ${BENCH_SECTION:-results} in results | results-unpinned) ;; *) die "BENCH_SECTION must be results or results-unpinned" ;; esac
[ ${#CASES[@]} -gt 0 ] || die "BENCH_CASES is empty"
for w in "${WORKLOADS[@]}"; do
  case ${w%%:*} in '' | *[!0-9]*) die "BENCH_WORKLOADS: bad record size in '$w' (want SIZE:CODEC)" ;; esac
  if [ "${w%%:*}" -lt 1 ] || [ "${w%%:*}" -gt 1000000 ]; then die "BENCH_WORKLOADS: record size out of range in '$w'"; fi
  case ${w#*:} in none | gzip | snappy | lz4 | zstd) ;; *) die "BENCH_WORKLOADS: bad codec in '$w' (none gzip snappy lz4 zstd)" ;; esac
done
NEED_VAULT=0 NEED_LOCAL=0 NEED_KROXY=0
for c in "${CASES[@]}"; do
  case $c in
    direct | passthrough) ;;
    encrypted) NEED_VAULT=1 ;;
    encrypted-local) NEED_LOCAL=1 ;;
    kroxylicious) NEED_VAULT=1 NEED_KROXY=1 ;;
    *) die "BENCH_CASES: unknown case '$c' (direct passthrough encrypted encrypted-local kroxylicious)" ;;
  esac
done

# records_for SIZE: records per throughput run. Small records cost the
# clients and the proxies per record, not per byte, so they get fewer bytes.
records_for() {
  if [ -n "${BENCH_RECORDS:-}" ]; then echo "$BENCH_RECORDS"
  elif [ "$1" -ge 512 ]; then echo 100000
  else echo 250000
  fi
}

START_EPOCH=$(date +%s)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/kseal-bench.XXXXXX")
PROXY_PID=""
CLIENT_PID=""
RESULT=""
WATCHER_PID=""
KAFKA_DIR="$WORK/kafka"
BAO_DIR="$WORK/openbao"
BAO_PID=""
TICK=$(getconf CLK_TCK)
NPROC=$(nproc)

# ---------------------------------------------------------------- pinning

# PIN_* are command prefixes (arrays, possibly empty). They prefix the
# command itself, never a shell function, so that `cmd &` leaves $! = the
# pid of the process we measure (taskset execs it).
PIN=${BENCH_PIN:-1}
CPU_BROKER=${BENCH_CPU_BROKER:-0}
CPU_CLIENT=${BENCH_CPU_CLIENT:-0}
CPU_PROXY=${BENCH_CPU_PROXY:-1}
PIN_BROKER=() PIN_CLIENT=() PIN_PROXY=()
PIN_NOTE="none"
if [ "$PIN" = 1 ]; then
  if ! command -v taskset >/dev/null 2>&1; then
    log "taskset is missing: not pinning (BENCH_PIN=0 silences this)"; PIN=0
  elif [ "$NPROC" -lt 2 ]; then
    log "only $NPROC core: not pinning"; PIN=0
  else
    for cpus in "$CPU_BROKER" "$CPU_CLIENT" "$CPU_PROXY"; do
      taskset -c "$cpus" true 2>/dev/null || die "cannot pin to cores '$cpus' (BENCH_CPU_*; this machine: $(taskset -pc $$ | sed 's/.*: //'))"
    done
    PIN_BROKER=(taskset -c "$CPU_BROKER")
    PIN_CLIENT=(taskset -c "$CPU_CLIENT")
    PIN_PROXY=(taskset -c "$CPU_PROXY")
    PIN_NOTE="broker and OpenBao on core(s) $CPU_BROKER, clients on $CPU_CLIENT, proxy on $CPU_PROXY"
  fi
fi
[ "$PIN" = 1 ] || PIN=0

# ---------------------------------------------------------------- cleanup

cleanup() {
  local rc=$?
  set +e
  trap '' INT TERM # a second Ctrl-C must not cut the clean-up short
  [ -z "$WATCHER_PID" ] || kill "$WATCHER_PID" 2>/dev/null
  if [ -n "$CLIENT_PID" ]; then
    kill -TERM "$CLIENT_PID" 2>/dev/null # timeout passes it on to the JVM
    wait "$CLIENT_PID" 2>/dev/null
  fi
  stop_proxy
  "$ROOT/scripts/kafka.sh" stop --dir "$KAFKA_DIR" >/dev/null 2>&1
  "$ROOT/scripts/openbao.sh" stop --dir "$BAO_DIR" >/dev/null 2>&1
  if [ "${BENCH_KEEP:-0}" = 1 ] || [ $rc -ne 0 ]; then
    # Keep the logs and configs, not gigabytes of topic data.
    rm -rf "$KAFKA_DIR"/node-*/data "$WORK"/warm-*.txt
    log "work dir kept: $WORK"
  else
    rm -rf "$WORK"
  fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# If this script is killed outright (no trap runs), kafka.sh's and
# openbao.sh's own watchers stop the broker and OpenBao; this one stops the
# proxy and the client of the current run (pids in proxy.pid and
# client.pid, checked to still be what we started before they are signalled;
# TERM to `timeout` reaches the client JVM).
# shellcheck disable=SC2016 # expanded by the watcher's shell
nohup bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done
  p=$(cat "$2" 2>/dev/null)
  [ -n "$p" ] && grep -qaE "kseal|Launcher" "/proc/$p/cmdline" 2>/dev/null && kill -TERM "$p"
  p=$(cat "$3" 2>/dev/null)
  [ -n "$p" ] && grep -qa "^timeout" "/proc/$p/cmdline" 2>/dev/null && kill -TERM "$p"
  exit 0' bench-watcher $$ "$WORK/proxy.pid" "$WORK/client.pid" </dev/null >/dev/null 2>&1 &
WATCHER_PID=$!

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

# java_tool runs a Kafka tool (pinned). It runs in the background and is
# waited for, so that a signal to this script is handled at once (bash runs
# traps only after a foreground command ends) and cleanup can stop it.
java_tool() {
  # shellcheck disable=SC2086
  "${PIN_CLIENT[@]}" timeout "$CLIENT_TIMEOUT" java $CLIENT_JVM \
    -Dlog4j2.configurationFile="$KAFKA_HOME/config/tools-log4j2.properties" \
    -cp "$KAFKA_LIBS/*" "$@" &
  CLIENT_PID=$!
  echo "$CLIENT_PID" >"$WORK/client.pid"
  local rc=0
  wait "$CLIENT_PID" || rc=$?
  CLIENT_PID=""
  : >"$WORK/client.pid"
  return $rc
}

bao() { BAO_ADDR=$BAO_ADDR BAO_TOKEN=$BAO_ROOT "$BAO_BIN" "$@"; }

write_kseal_config() { # FILE KMS(none|vault|local)
  cat >"$1" <<EOF
log: {level: warn}
drainTimeout: 5s
virtualClusters:
  - name: bench
    upstream: {bootstrapServers: ["$BOOTSTRAP"]}
    gateway: {bindAddress: 127.0.0.1, advertisedHost: 127.0.0.1, bootstrapPort: $PROXY_PORT, brokerPortStart: $((PROXY_PORT + 1)), brokerPortCount: 8}
EOF
  case $2 in
    vault) cat >>"$1" <<EOF
    encryption:
      kms: {type: vault, config: {address: "$BAO_ADDR", tokenFile: "$WORK/proxy.token"}}
      policy: {rules: [{topicRegex: '.*', kek: 'KEK-\$(topicName)'}]}
EOF
      ;;
    local) cat >>"$1" <<EOF
    encryption:
      kms: {type: local, config: {keyStore: $WORK/keys.json, masterKeyFile: $WORK/master.key}}
      policy: {rules: [{topicRegex: '.*', kek: 'KEK-\$(topicName)'}]}
EOF
      ;;
  esac
}

# Kroxylicious 0.12 schema: a virtual cluster with a port-per-broker gateway
# (bootstrap on PROXY_PORT, broker node N on PROXY_PORT+1+N), one
# RecordEncryption filter for every cluster.
write_kroxy_config() { # FILE
  cat >"$1" <<EOF
virtualClusters:
  - name: bench
    targetCluster:
      bootstrapServers: $BOOTSTRAP
    gateways:
      - name: default
        portIdentifiesNode:
          bootstrapAddress: 127.0.0.1:$PROXY_PORT
filterDefinitions:
  - name: encrypt
    type: RecordEncryption
    config:
      kms: VaultKmsService
      kmsConfig:
        vaultTransitEngineUrl: $BAO_ADDR/v1/transit
        vaultToken:
          passwordFile: $WORK/proxy.token
      selector: TemplateKekSelector
      selectorConfig:
        template: "KEK-\$(topicName)"
defaultFilters:
  - encrypt
EOF
}

# start_proxy CASE LOGFILE starts the case's proxy (nothing for direct),
# pinned, and waits until metadata through it lists the broker.
start_proxy() {
  case $1 in
    direct) return 0 ;;
    kroxylicious)
      KROXYLICIOUS_JVM_OPTS=$KROXY_JVM "${PIN_PROXY[@]}" "$ROOT/scripts/kroxylicious.sh" run \
        --config "$WORK/kroxylicious.yaml" --version "$KROXY_VERSION" >"$2" 2>&1 &
      ;;
    *) "${PIN_PROXY[@]}" "$KSEAL" run --config "$WORK/$1.yaml" >"$2" 2>&1 & ;;
  esac
  PROXY_PID=$!
  echo "$PROXY_PID" >"$WORK/proxy.pid"
  local deadline=$((SECONDS + 60))
  until kcat -L -b "127.0.0.1:$PROXY_PORT" -m 2 2>/dev/null | grep -q '1 brokers'; do
    if ! kill -0 "$PROXY_PID" 2>/dev/null; then
      tail -n 20 "$2" >&2
      wait "$PROXY_PID" 2>/dev/null || true
      PROXY_PID=""
      : >"$WORK/proxy.pid"
      return 1
    fi
    [ $SECONDS -lt $deadline ] || { tail -n 20 "$2" >&2; return 1; }
    sleep 0.2
  done
}

stop_proxy() {
  [ -n "$PROXY_PID" ] || return 0
  kill -TERM "$PROXY_PID" 2>/dev/null || true
  for _ in $(seq 75); do
    kill -0 "$PROXY_PID" 2>/dev/null || break
    sleep 0.2
  done
  kill -KILL "$PROXY_PID" 2>/dev/null || true
  wait "$PROXY_PID" 2>/dev/null || true
  PROXY_PID=""
  : >"$WORK/proxy.pid"
}

# value_class BOOTSTRAP TOPIC prints "plaintext" if the first record's value
# is the perf tool's payload (only A-Z), else "ciphertext", or "none".
value_class() {
  local f="$WORK/value.bin"
  kcat -C -b "$1" -t "$2" -p 0 -o beginning -c 1 -e -q -f '%s' >"$f" 2>/dev/null || true
  if [ ! -s "$f" ]; then echo none; return; fi
  if [ "$(LC_ALL=C tr -d '[:upper:]' <"$f" | wc -c)" = 0 ]; then echo plaintext; else echo ciphertext; fi
}

# warm_file SIZE prints a file of BENCH_PROXY_WARMUP SIZE-byte A-Z values,
# one a line (made once per size).
warm_file() {
  local f="$WORK/warm-$1.txt"
  [ -f "$f" ] || python3 - "$1" "$WARM_RECORDS" "$f" <<'EOF'
import random, string, sys
size, n, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
line = "".join(random.choice(string.ascii_uppercase) for _ in range(size)) + "\n"
with open(path, "w") as f:
    for _ in range(n):
        f.write(line)
EOF
  echo "$f"
}

# warm_up BOOTSTRAP TOPIC SIZE CODEC LOGFILE: produce the warm-up file to
# TOPIC and read it all back, with kcat (no JVM start). Not measured.
warm_up() {
  local f n got
  f=$(warm_file "$3")
  n=$(wc -l <"$f")
  # Batches of at most 64 KiB: librdkafka's default (1 MB) would exceed the
  # broker's 1 MiB limit once encryption has grown every record.
  "${PIN_CLIENT[@]}" kcat -P -b "$1" -t "$2" -X "compression.codec=$4" -X linger.ms=5 -X batch.size=65536 \
    -l "$f" >"$5" 2>&1 || return 1
  got=$("${PIN_CLIENT[@]}" kcat -C -b "$1" -t "$2" -o beginning -e -q -f '.\n' 2>>"$5" | wc -l)
  [ "$got" = "$n" ] || { echo "warm-up read back $got of $n records" >>"$5"; return 1; }
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
  S_BAO=$(cpu_ticks "$BAO_PID")
  S_PROXY=0
  [ -z "$PROXY_PID" ] || S_PROXY=$(cpu_ticks "$PROXY_PID")
  children_cpu
  S_CHILD=$CHILD_CPU
}

# delta sets DELTA to "wall proxy_cpu others_cores broker_cpu client_cpu"
# (seconds) since the last snap. others_cores is the average number of cores
# used by processes that are not this benchmark (other users of the
# machine): a noise indicator. OpenBao's CPU counts as ours.
delta() {
  local wall busy broker bao px child
  wall=$(date +%s.%N)
  busy=$(machine_busy)
  broker=$(cpu_ticks "$BROKER_PID")
  bao=$(cpu_ticks "$BAO_PID")
  px=0
  [ -z "$PROXY_PID" ] || px=$(cpu_ticks "$PROXY_PID")
  children_cpu
  child=$CHILD_CPU
  DELTA=$(awk -v w0="$S_WALL" -v w1="$wall" -v b0="$S_BUSY" -v b1="$busy" -v r0="$S_BROKER" -v r1="$broker" \
    -v v0="$S_BAO" -v v1="$bao" -v k0="$S_PROXY" -v k1="$px" -v c0="$S_CHILD" -v c1="$child" -v hz="$TICK" 'BEGIN {
      w = w1 - w0; if (w <= 0) w = 1e-9
      k = (k1 - k0) / hz
      r = (r1 - r0) / hz
      v = (v1 - v0) / hz
      c = c1 - c0
      o = (b1 - b0) / hz - r - v - k - c
      if (o < 0) o = 0
      printf "%.2f %.2f %.2f %.2f %.2f\n", w, k, o / w, r, c }')
}

# run_producer BOOTSTRAP TOPIC N THROUGHPUT SIZE CODEC LOGFILE [WARMUP] sets
# RESULT to "rec/s MB/s avg p50 p99 p999". (Not printed: a $(...) around
# it would run the client in a subshell, out of the traps' reach.)
# With WARMUP, the numbers are the tool's steady-state ones, which leave out
# the first WARMUP records (client JIT, connection setup, metadata).
run_producer() {
  local warm=${8:-0} args=()
  [ "$warm" = 0 ] || args+=(--warmup-records "$warm")
  # --command-property takes several values: it goes last.
  [ "$6" = none ] || args+=(--command-property "compression.type=$6")
  java_tool org.apache.kafka.tools.ProducerPerformance --bootstrap-server "$1" --topic "$2" \
    --num-records "$3" --record-size "$5" --throughput "$4" "${args[@]}" >"$7" 2>&1 || return 1
  # Summary: "N [steady state ]records sent, R records/sec (M MB/sec), A ms
  # avg latency, X ms max latency, P ms 50th, P ms 95th, P ms 99th, P ms 99.9th."
  local line
  if [ "$warm" = 0 ]; then
    line=$(grep -E '^[0-9]+ records sent' "$7" | grep '99.9th' | tail -n 1)
  else
    line=$(grep -E '^[0-9]+ steady state records sent' "$7" | grep '99.9th' | tail -n 1)
  fi
  [ -n "$line" ] || return 1
  [ "$(echo "$line" | awk '{print $1}')" = "$(($3 - warm))" ] || return 1
  RESULT=$(echo "$line" | sed -E 's/^[0-9]+ (steady state )?records sent, ([0-9.]+) records\/sec \(([0-9.]+) MB\/sec\), ([0-9.]+) ms avg latency, [0-9.]+ ms max latency, ([0-9.]+) ms 50th, [0-9.]+ ms 95th, ([0-9.]+) ms 99th, ([0-9.]+) ms 99.9th.*/\2 \3 \4 \5 \6 \7/')
}

# run_consumer BOOTSTRAP TOPIC N GROUP LOGFILE sets RESULT to "rec/s MB/s"
# (fetch phase, i.e. without the consumer group join).
run_consumer() {
  java_tool org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$1" --topic "$2" \
    --num-records "$3" --group "$4" --hide-header >"$5" 2>&1 || return 1
  # start, end, MB, MB/s, nMsg, nMsg/s, rebalance ms, fetch ms, fetch MB/s, fetch nMsg/s
  local line
  line=$(grep -E '^[0-9]{4}-' "$5" | tail -n 1)
  [ -n "$line" ] || return 1
  RESULT=$(echo "$line" | awk -F', *' -v n="$3" '{ if ($5 + 0 != n) exit 1; print $10, $9 }')
}

# wid SIZE:CODEC -> the workload's id in topic and file names (1024-zstd).
wid() { echo "${1%%:*}-${1#*:}"; }

# run_case CASE WORKLOAD REP: a proxy warm-up, then one produce, consume
# and fixed-rate run; appends a row to runs.tsv (status FAILED and empty
# metrics when something broke).
run_case() {
  local c=$1 w=$2 rep=$3 size=${2%%:*} codec=${2#*:} id
  id=$(wid "$w")
  local topic="bench-$c-$id-$rep" lat="lat-$c-$id-$rep" warm="warm-$c-$id-$rep" p="$WORK/$c-$id-$rep"
  local bs="$BOOTSTRAP" records prod="" cons="" latr="" d1="" d2="" d3="" rss="" rest="" ok=OK
  records=$(records_for "$size")
  wait_quiet
  local t0=$SECONDS
  log "run $rep/$REPS, ${size} B $codec: $c"
  if [ "$c" != direct ]; then
    start_proxy "$c" "$p.proxy.log" || { log "$c: the proxy did not start"; ok=FAILED; }
    bs="127.0.0.1:$PROXY_PORT"
  fi
  if [ $ok = OK ]; then
    warm_up "$bs" "$warm" "$size" "$codec" "$p.warmup.log" || { ok=FAILED; log "$c: warm-up failed, see below"; tail -n 5 "$p.warmup.log" >&2; }
  fi
  if [ $ok = OK ]; then
    snap
    if run_producer "$bs" "$topic" "$records" -1 "$size" "$codec" "$p.produce.log"; then prod=$RESULT; else ok=FAILED; log "$c: producer failed, see below"; tail -n 5 "$p.produce.log" >&2; fi
    delta
    d1=$DELTA
  fi
  if [ $ok = OK ]; then
    snap
    if run_consumer "$bs" "$topic" "$records" "g-$topic" "$p.consume.log"; then cons=$RESULT; else ok=FAILED; log "$c: consumer failed, see below"; tail -n 5 "$p.consume.log" >&2; fi
    delta
    d2=$DELTA
  fi
  if [ $ok = OK ]; then
    snap
    if run_producer "$bs" "$lat" "$LAT_RECORDS" "$LAT_RATE" "$size" "$codec" "$p.latency.log" "$LAT_WARMUP"; then latr=$RESULT; else ok=FAILED; log "$c: fixed-rate producer failed"; tail -n 5 "$p.latency.log" >&2; fi
    delta
    d3=$DELTA
  fi
  if [ $ok = OK ]; then
    # What an admin with disk access sees vs what the client sees.
    rest=$(value_class "$BOOTSTRAP" "$topic")
    local want=ciphertext
    case $c in direct | passthrough) want=plaintext ;; esac
    if [ "$rest" != "$want" ]; then log "$c: value at rest is $rest, want $want"; ok=FAILED; fi
    if [ "$c" != direct ] && [ "$(value_class "$bs" "$topic")" != plaintext ]; then
      log "$c: the client did not read back plaintext"; ok=FAILED
    fi
  fi
  if [ -n "$PROXY_PID" ]; then
    rss=$(awk '/^VmHWM:/ {printf "%.1f", $2 / 1024}' "/proc/$PROXY_PID/status" 2>/dev/null || true)
  fi
  stop_proxy
  # shellcheck disable=SC2206 # splitting the space-separated fields is the point
  local -a f=(${prod:-- - - - - -} ${cons:-- -} ${latr:-- - - - - -} ${d1:-- - - - -} ${d2:-- - - - -} ${d3:-- - - - -})
  {
    printf '%s\t%s\t%s\t%s\t%s\t%s' "$size" "$codec" "$records" "$c" "$rep" "$ok"
    printf '\t%s' "${f[@]}" "${rss:--}" "${rest:--}"
    printf '\n'
  } >>"$WORK/runs.tsv"
  log "  $ok in $((SECONDS - t0)) s"
  [ $ok = OK ]
}

# ---------------------------------------------------------------- setup

"$ROOT/scripts/kafka.sh" fetch
KROXY_VERSION=""
if [ $NEED_KROXY = 1 ]; then
  KROXY_VERSION=$("$ROOT/scripts/kroxylicious.sh" fetch) || die "could not fetch Kroxylicious (scripts/kroxylicious.sh fetch)"
fi
if [ $NEED_VAULT = 1 ]; then
  "$ROOT/scripts/openbao.sh" install
fi

log "building kseal"
KSEAL="$WORK/kseal"
go build -o "$KSEAL" ./cmd/kseal

wait_quiet

# Micro-benchmarks first, while nothing else of ours runs (not pinned).
MICRO_OK=1
MICRO_OTHERS=""
BROKER_PID="" # none yet: snap/delta then count only the go test tree
: >"$WORK/micro.txt"
if [ -n "$MICRO_PKGS" ]; then
  log "go micro-benchmarks ($BENCHTIME each)"
  snap
  # shellcheck disable=SC2086
  go test -run '^$' -bench . -benchmem -benchtime "$BENCHTIME" -count 1 $MICRO_PKGS >"$WORK/micro.txt" 2>&1 || MICRO_OK=0
  delta
  MICRO_OTHERS=$(echo "$DELTA" | awk '{print $3}')
  [ $MICRO_OK = 1 ] || { log "micro-benchmarks failed:"; tail -n 20 "$WORK/micro.txt" >&2; }
fi

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
log "starting a 1-broker Kafka cluster"
"${PIN_BROKER[@]}" "$ROOT/scripts/kafka.sh" start --brokers 1 --dir "$KAFKA_DIR" --owner-pid $$
# shellcheck disable=SC1091
. "$KAFKA_DIR/cluster.env"
# shellcheck disable=SC2153 # PIDS comes from cluster.env
BROKER_PID=${PIDS%%,*}

PROXY_PORT=$(free_block 9)
topics=(warmup)
for rep in $(seq "$REPS"); do
  for w in "${WORKLOADS[@]}"; do
    for c in "${CASES[@]}"; do
      id=$(wid "$w")
      topics+=("bench-$c-$id-$rep" "lat-$c-$id-$rep" "warm-$c-$id-$rep")
    done
  done
done
log "creating ${#topics[@]} topics ($PARTITIONS partitions each)"
java_tool "$ROOT/bench/CreateTopics.java" "$BOOTSTRAP" "$PARTITIONS" "${topics[@]}"

# kek_topics CASE prints the topics whose KEK the case needs.
kek_topics() {
  local t
  for t in "${topics[@]}"; do
    case $t in bench-"$1"-[0-9]* | lat-"$1"-[0-9]* | warm-"$1"-[0-9]*) echo "$t" ;; esac
  done
}

BAO_ADDR="" BAO_ROOT="" BAO_BIN=""
if [ $NEED_VAULT = 1 ]; then
  log "starting OpenBao (Transit KEKs for both proxies)"
  "${PIN_BROKER[@]}" "$ROOT/scripts/openbao.sh" start --dir "$BAO_DIR" --owner-pid $$
  BAO_ADDR=$(sed -n 's/^BAO_ADDR=//p' "$BAO_DIR/openbao.env")
  BAO_ROOT=$(sed -n 's/^BAO_TOKEN=//p' "$BAO_DIR/openbao.env")
  BAO_BIN=$(sed -n 's/^BAO_BIN=//p' "$BAO_DIR/openbao.env")
  BAO_PID=$(sed -n 's/^BAO_PID=//p' "$BAO_DIR/openbao.env")
  # Both proxies get the same least-privilege token: read the key, make a
  # data key, decrypt one (docs/kms-vault.md; Kroxylicious needs the same).
  cat >"$WORK/proxy-policy.hcl" <<'EOF'
path "transit/keys/KEK-*" { capabilities = ["read"] }
path "transit/datakey/plaintext/KEK-*" { capabilities = ["update"] }
path "transit/decrypt/KEK-*" { capabilities = ["update"] }
EOF
  bao policy write bench-proxy "$WORK/proxy-policy.hcl" >/dev/null || die "OpenBao: policy write failed"
  (umask 077 && bao token create -policy=bench-proxy -no-default-policy -ttl=24h -field=token >"$WORK/proxy.token") ||
    die "OpenBao: token create failed"
  n=0
  for c in encrypted kroxylicious; do
    for t in $(kek_topics "$c"); do
      bao write -f "transit/keys/KEK-$t" >/dev/null || die "OpenBao: creating KEK-$t failed"
      n=$((n + 1))
    done
  done
  log "created $n Transit KEKs"
fi

for c in "${CASES[@]}"; do
  case $c in
    passthrough) write_kseal_config "$WORK/$c.yaml" none ;;
    encrypted) write_kseal_config "$WORK/$c.yaml" vault ;;
    encrypted-local) write_kseal_config "$WORK/$c.yaml" local ;;
    kroxylicious) write_kroxy_config "$WORK/kroxylicious.yaml" ;;
  esac
done
if [ $NEED_LOCAL = 1 ]; then
  "$KSEAL" kms init --config "$WORK/encrypted-local.yaml" >/dev/null || die "local KMS init failed"
  for t in $(kek_topics encrypted-local); do
    "$KSEAL" kms create --config "$WORK/encrypted-local.yaml" "KEK-$t" >/dev/null || die "local KMS: creating KEK-$t failed"
  done
fi

# Warm the broker's JIT (produce and fetch paths, every codec in use) so the
# first measured run is not the slowest by construction.
log "broker warm-up (not measured)"
codecs=$(for w in "${WORKLOADS[@]}"; do echo "${w#*:}"; done | sort -u)
for codec in $codecs; do
  run_producer "$BOOTSTRAP" warmup 60000 -1 1024 "$codec" "$WORK/warmup.produce.log" ||
    die "warm-up producer failed: $(tail -n 5 "$WORK/warmup.produce.log")"
done
run_consumer "$BOOTSTRAP" warmup $((60000 * $(echo "$codecs" | wc -w))) g-warmup "$WORK/warmup.consume.log" ||
  die "warm-up consumer failed: $(tail -n 5 "$WORK/warmup.consume.log")"

# ---------------------------------------------------------------- runs

printf '%s\n' "size codec records case rep status prod_rps prod_mbs prod_avg prod_p50 prod_p99 prod_p999 cons_rps cons_mbs lat_rps lat_mbs lat_avg lat_p50 lat_p99 lat_p999 prod_wall prod_cpu prod_others prod_broker prod_client cons_wall cons_cpu cons_others cons_broker cons_client lat_wall lat_cpu lat_others lat_broker lat_client rss at_rest" |
  tr ' ' '\t' >"$WORK/runs.tsv"
FAILED=0
for rep in $(seq "$REPS"); do
  for w in "${WORKLOADS[@]}"; do
    for c in "${CASES[@]}"; do
      run_case "$c" "$w" "$rep" || FAILED=1
    done
  done
done
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)

# ---------------------------------------------------------------- report

# jvm_flags JAVA CPUS: the flags the JVM picks on those cores (the GC
# depends on the number of cores it may use).
jvm_flags() {
  local pin=()
  [ "$PIN" = 0 ] || pin=(taskset -c "$2")
  "${pin[@]}" "$1" "${@:3}" -XX:+PrintCommandLineFlags -version 2>&1 | head -n 1 |
    tr ' ' '\n' | grep -E 'Use[A-Za-z]*GC|MaxHeapSize' | tr '\n' ' ' | sed 's/ $//'
}
KX_JAVA=${KROXYLICIOUS_JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}/bin/java

rev=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
[ -z "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] || rev="$rev (with uncommitted changes)"
knobs=$(env | grep '^BENCH_' | sort | sed -E "s/^([^=]+)=(.*[ ].*)$/\1='\2'/" | tr '\n' ' ' || true)
# The JVM option variables are lists: split on purpose.
# shellcheck disable=SC2086
client_flags=$(jvm_flags java "$CPU_CLIENT" $CLIENT_JVM)
kroxy_flags=""
# shellcheck disable=SC2086
if [ "$NEED_KROXY" != 0 ]; then kroxy_flags=$(jvm_flags "$KX_JAVA" "$CPU_PROXY" $KROXY_JVM); fi
SECTION=${BENCH_SECTION:-}
if [ -z "$SECTION" ]; then
  if [ "$PIN" = 1 ]; then SECTION=results; else SECTION=results-unpinned; fi
fi
cat >"$WORK/meta.env" <<EOF
section=$SECTION
command=${knobs}scripts/bench.sh
date=$(date -u '+%Y-%m-%d %H:%M UTC')
nproc=$NPROC
cpu=$(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')
mem=$(awk '/^MemTotal:/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)
kernel=$(uname -r)
kafka=$(basename "$KAFKA_HOME" | sed 's/^kafka-//')
java=$(java -version 2>&1 | head -n 1)
go=$(go version | awk '{print $3, $4}')
kseal=$rev
cases=${CASES[*]}
workloads=${WORKLOADS[*]}
partitions=$PARTITIONS
reps=$REPS
lat_records=$LAT_RECORDS
lat_rate=$LAT_RATE
lat_warmup=$LAT_WARMUP
warm_records=$WARM_RECORDS
quiet_wait=$QUIET_WAIT
pin=$PIN_NOTE
benchtime=$BENCHTIME
micro_pkgs=$MICRO_PKGS
micro_ok=$MICRO_OK
micro_others=$MICRO_OTHERS
load_start=$LOAD_START
load_end=$LOAD_END
duration_s=$(( $(date +%s) - START_EPOCH ))
broker_jvm=$KAFKA_HEAP_OPTS $KAFKA_JVM_OPTS
client_jvm=$CLIENT_JVM ($client_flags)
openbao=$([ $NEED_VAULT = 0 ] || "$BAO_BIN" version 2>/dev/null | head -n 1)
kroxylicious=$KROXY_VERSION
kroxylicious_java=$([ $NEED_KROXY = 0 ] || "$KX_JAVA" -version 2>&1 | sed -n 2p)
kroxylicious_jvm=$([ "$NEED_KROXY" = 0 ] || echo "$KROXY_JVM ($kroxy_flags)")
EOF
python3 "$ROOT/bench/report.py" "$WORK/meta.env" "$WORK/runs.tsv" "$WORK/micro.txt" "$OUT"
log "wrote $OUT in $(( $(date +%s) - START_EPOCH ))s"
[ $FAILED = 0 ] || die "some runs failed (see $OUT and the logs in $WORK)"
[ $MICRO_OK = 1 ] || die "the micro-benchmarks failed (see $WORK/micro.txt)"
