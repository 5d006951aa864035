#!/usr/bin/env bash
# CPU profiles of kseal under Kafka's perf tools, and its CPU per record,
# pinned like scripts/bench.sh: broker and clients on core 0, kseal on core 1.
# Two cases: a passthrough kseal (no encryption section: the plumbing alone)
# and an encrypting one (local KMS). kseal serves pprof on its admin listener
# (admin.profiling); the summaries (`go tool pprof -top`) go to
# bench/profiles/CASE-produce-1k-CODEC.txt and CASE-consume-1k-CODEC.txt
# (override the directory with OUT=dir), each headed by kseal's CPU per
# record over the client's run: utime+stime of the kseal process from
# /proc/PID/stat before and after, divided by the records moved. Every
# repetition's figure also goes to OUT/cpu-per-record.tsv.
#
#   scripts/profile.sh     (after scripts/kafka.sh fetch; about 3 minutes)
#
# Knobs (environment):
#   PROFILE_CASES="passthrough encrypted"   which kseal configurations
#   PROFILE_CODECS="none zstd"              producer compression.type
#   PROFILE_RECORDS=300000                  1 KiB records per client run
#   PROFILE_REPS=1                          client runs per case and codec (the
#                                           profile covers the first; every run
#                                           adds a CPU-per-record row)
#   PROFILE_PPROF=1                         0: CPU per record only, no profiles
#   KSEAL_BIN=path                          a prebuilt kseal to measure (default:
#                                           build this tree)
#   PROFILE_PIN=1                           0: no taskset (shared cores)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
read -r -a CASES <<<"${PROFILE_CASES:-passthrough encrypted}"
read -r -a CODECS <<<"${PROFILE_CODECS:-none zstd}"
RECORDS=${PROFILE_RECORDS:-300000}
REPS=${PROFILE_REPS:-1}
PPROF=${PROFILE_PPROF:-1}
PIN=${PROFILE_PIN:-1}
W=$(mktemp -d "${TMPDIR:-/tmp}/kseal-profile.XXXXXX")
OUT=${OUT:-$ROOT/bench/profiles}; mkdir -p "$OUT"
TICK=$(getconf CLK_TCK)
cd "$ROOT"
for c in "${CASES[@]}"; do
  case $c in passthrough | encrypted) ;; *) die "PROFILE_CASES: unknown case '$c' (passthrough encrypted)" ;; esac
done
if [ -n "${KSEAL_BIN:-}" ]; then cp "$KSEAL_BIN" "$W/kseal"; else go build -o "$W/kseal" ./cmd/kseal; fi
# Command prefixes, not functions: `cmd &` must leave $! = kseal's pid.
PIN0=() PIN1=()
if [ "$PIN" = 1 ]; then PIN0=(taskset -c 0) PIN1=(taskset -c 1); fi
KP=""
trap '[ -z "$KP" ] || kill "$KP" 2>/dev/null; scripts/kafka.sh stop --dir "$W/kafka" >/dev/null 2>&1; rm -rf "$W"' EXIT
KAFKA_HEAP_OPTS="-Xms1g -Xmx1g" scripts/kafka.sh start --brokers 1 --dir "$W/kafka" >/dev/null
# shellcheck source=/dev/null # written by kafka.sh start
. "$W/kafka/cluster.env"
# shellcheck disable=SC2153 # PIDS comes from cluster.env
BPID=${PIDS%%,*}; [ "$PIN" != 1 ] || taskset -a -cp 0 "$BPID" >/dev/null
PORT=$(free_block 9) # the bootstrap port, then one per broker
ADMIN=$(free_port)
while [ "$ADMIN" -ge "$PORT" ] && [ "$ADMIN" -le $((PORT + 8)) ]; do ADMIN=$(free_port); done
config() { # CASE
  cat <<EOF2
log: {level: warn}
admin: {listen: "127.0.0.1:$ADMIN", profiling: true}
virtualClusters:
  - name: bench
    upstream: {bootstrapServers: ["$BOOTSTRAP"]}
    gateway: {bindAddress: 127.0.0.1, advertisedHost: 127.0.0.1, bootstrapPort: $PORT, brokerPortStart: $((PORT + 1)), brokerPortCount: 8}
EOF2
  [ "$1" = encrypted ] || return 0
  cat <<EOF2
    encryption:
      kms: {type: local, config: {keyStore: $W/keys.json, masterKeyFile: $W/master.key}}
      policy: {rules: [{topicRegex: '.*', kek: 'KEK-\$(topicName)'}]}
EOF2
}
jt() { "${PIN0[@]}" java -Xms256m -Xmx512m "-Dlog4j2.configurationFile=$KAFKA_HOME/config/tools-log4j2.properties" -cp "$KAFKA_LIBS/*" "$@"; }
topics=()
for c in "${CASES[@]}"; do for z in warm "${CODECS[@]}"; do for r in $(seq "$REPS"); do topics+=("$c-$z-$r"); done; done; done
jt "$ROOT/bench/CreateTopics.java" "$BOOTSTRAP" 3 "${topics[@]}" >/dev/null
config encrypted > "$W/encrypted.yaml"
if printf '%s\n' "${CASES[@]}" | grep -qx encrypted; then
  "$W/kseal" kms init --config "$W/encrypted.yaml" >/dev/null
  for t in "${topics[@]}"; do case $t in encrypted-*) "$W/kseal" kms create --config "$W/encrypted.yaml" "KEK-$t" >/dev/null ;; esac; done
fi

cpu_ticks() { # PID: utime+stime in clock ticks (fields after the command name)
  local s; s=$(cat "/proc/$1/stat"); s=${s##*) }
  # shellcheck disable=SC2086
  set -- $s
  echo $(( ${12} + ${13} ))
}
# measure NAME REP CMD...: runs the client, with a CPU profile of kseal
# around the first repetition, and notes kseal's CPU per record.
measure() {
  local name=$1 rep=$2; shift 2
  local cp="" t0 t1 w0 w1 us
  if [ "$PPROF" = 1 ] && [ "$rep" = 1 ]; then
    # The window is the client's expected run time; the client runs inside it.
    curl -s -o "$W/$name.pprof" "http://127.0.0.1:$ADMIN/debug/pprof/profile?seconds=$PWIN" &
    cp=$!
  fi
  w0=$(date +%s.%N); t0=$(cpu_ticks "$KP")
  "$@" > "$W/$name.$rep.client.log" 2>&1 || { tail -n 5 "$W/$name.$rep.client.log" >&2; die "$name: the client failed"; }
  t1=$(cpu_ticks "$KP"); w1=$(date +%s.%N)
  us=$(awk -v a="$t0" -v b="$t1" -v hz="$TICK" -v n="$RECORDS" 'BEGIN { printf "%.3f", (b - a) / hz / n * 1e6 }')
  local secs; secs=$(awk -v a="$w0" -v b="$w1" 'BEGIN { printf "%.1f", b - a }')
  printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$(date -u +%FT%TZ)" "$name" "$rep" "$us" "$(( t1 - t0 ))" "$(cut -d' ' -f1 /proc/loadavg)" >> "$OUT/cpu-per-record.tsv"
  log "$name run $rep: $us us of kseal CPU per record ($(( t1 - t0 )) ticks, ${secs} s, load $(cut -d' ' -f1 /proc/loadavg))"
  echo "$us" >> "$W/$name.us"
  [ -z "$cp" ] || wait "$cp"
  tail -n 1 "$W/$name.$rep.client.log" >> "$W/$name.results"
}
summary() { # NAME
  local name=$1
  {
    echo "# kseal CPU profile: $name"
    echo "# kseal CPU per record (utime+stime from /proc over the client run, $RECORDS records of 1 KiB): $(tr '\n' ' ' < "$W/$name.us")us"
    echo "# client: $CLIENT" | sed "s#$KAFKA_LIBS#KAFKA_LIBS#g; s#-Dlog4j2[^ ]*##"
    echo "# pinned: $([ "$PIN" = 1 ] && echo "broker and client on core 0, kseal on core 1" || echo no); load average at the end $(cut -d' ' -f1-3 /proc/loadavg)"
    sed 's/^/# client result: /' "$W/$name.results"
    if [ -s "$W/$name.pprof" ]; then
      echo "# profile window ${PWIN} s (the first run inside it)"
      go tool pprof -top -nodecount=40 "$W/kseal" "$W/$name.pprof" 2>/dev/null | sed -n '4,60p'
    fi
  } > "$OUT/$name.txt"
}

[ -f "$OUT/cpu-per-record.tsv" ] || printf 'time\tname\trep\tus_per_record\tticks\tload1\n' > "$OUT/cpu-per-record.tsv"
for c in "${CASES[@]}"; do
  config "$c" > "$W/$c.yaml"
  "${PIN1[@]}" "$W/kseal" run --config "$W/$c.yaml" > "$W/kseal-$c.log" 2>&1 &
  KP=$!
  wait_ready 30 "$KP" curl -sf -o /dev/null "http://127.0.0.1:$ADMIN/readyz" || { cat "$W/kseal-$c.log" >&2; die "kseal ($c) did not start"; }
  # Warm-up, not measured: connections, metadata, the broker's JIT.
  jt org.apache.kafka.tools.ProducerPerformance --bootstrap-server "127.0.0.1:$PORT" --topic "$c-warm-1" --num-records 50000 --record-size 1024 --throughput -1 >/dev/null 2>&1
  for z in "${CODECS[@]}"; do
    rm -f "$W"/*.us "$W"/*.results
    for r in $(seq "$REPS"); do
      CLIENT="ProducerPerformance --num-records $RECORDS --record-size 1024 --throughput -1 --command-property compression.type=$z"
      PWIN=$(( RECORDS / 25000 + 2 ))
      measure "$c-produce-1k-$z" "$r" jt org.apache.kafka.tools.ProducerPerformance --bootstrap-server "127.0.0.1:$PORT" --topic "$c-$z-$r" --num-records "$RECORDS" --record-size 1024 --throughput -1 --command-property "compression.type=$z"
    done
    summary "$c-produce-1k-$z"
    for r in $(seq "$REPS"); do
      CLIENT="ConsumerPerformance --num-records $RECORDS --hide-header"
      PWIN=$(( RECORDS / 60000 + 4 ))
      measure "$c-consume-1k-$z" "$r" jt org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "127.0.0.1:$PORT" --topic "$c-$z-$r" --num-records "$RECORDS" --group "g-$c-$z-$r" --hide-header
    done
    summary "$c-consume-1k-$z"
  done
  kill "$KP"; wait "$KP" 2>/dev/null || true; KP=""
done
echo "profiles in $OUT"
