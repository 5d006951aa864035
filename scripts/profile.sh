#!/usr/bin/env bash
# CPU profiles of an encrypting kseal (local KMS) under Kafka's perf tools,
# pinned like scripts/bench.sh: broker and clients on core 0, kseal on core 1.
# kseal serves pprof on its admin listener (admin.profiling); the summaries
# (`go tool pprof -top`) go to bench/profiles/ (override with OUT=dir).
#
#   scripts/profile.sh     (after scripts/kafka.sh fetch; about 2 minutes)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
W=$(mktemp -d "${TMPDIR:-/tmp}/kseal-profile.XXXXXX")
OUT=${OUT:-$ROOT/bench/profiles}; mkdir -p "$OUT"
cd "$ROOT"
go build -o "$W/kseal" ./cmd/kseal
KAFKA_HEAP_OPTS="-Xms1g -Xmx1g" scripts/kafka.sh start --brokers 1 --dir "$W/kafka" >/dev/null
# shellcheck source=/dev/null # written by kafka.sh start
. "$W/kafka/cluster.env"
# shellcheck disable=SC2153 # PIDS comes from cluster.env
BPID=${PIDS%%,*}; taskset -a -cp 0 "$BPID" >/dev/null
PORT=$(free_block 9) # the bootstrap port, then one per broker
ADMIN=$(free_port)
while [ "$ADMIN" -ge "$PORT" ] && [ "$ADMIN" -le $((PORT + 8)) ]; do ADMIN=$(free_port); done
cat > "$W/k.yaml" <<EOF2
log: {level: warn}
admin: {listen: "127.0.0.1:$ADMIN", profiling: true}
virtualClusters:
  - name: bench
    upstream: {bootstrapServers: ["$BOOTSTRAP"]}
    gateway: {bindAddress: 127.0.0.1, advertisedHost: 127.0.0.1, bootstrapPort: $PORT, brokerPortStart: $((PORT + 1)), brokerPortCount: 8}
    encryption:
      kms: {type: local, config: {keyStore: $W/keys.json, masterKeyFile: $W/master.key}}
      policy: {rules: [{topicRegex: '.*', kek: 'KEK-\$(topicName)'}]}
EOF2
"$W/kseal" kms init --config "$W/k.yaml" >/dev/null
jt() { taskset -c 0 java -Xms256m -Xmx512m "-Dlog4j2.configurationFile=$KAFKA_HOME/config/tools-log4j2.properties" -cp "$KAFKA_LIBS/*" "$@"; }
jt "$ROOT/bench/CreateTopics.java" "$BOOTSTRAP" 3 p-none p-zstd >/dev/null
for t in p-none p-zstd; do "$W/kseal" kms create --config "$W/k.yaml" "KEK-$t" >/dev/null; done
taskset -c 1 "$W/kseal" run --config "$W/k.yaml" > "$W/kseal.log" 2>&1 &
KP=$!; trap 'kill "$KP" 2>/dev/null; scripts/kafka.sh stop --dir "$W/kafka" >/dev/null 2>&1; rm -rf "$W"' EXIT
sleep 2
prof() { # NAME SECONDS CMD...
  local name=$1 secs=$2; shift 2
  curl -s -o "$W/$name.pprof" "http://127.0.0.1:$ADMIN/debug/pprof/profile?seconds=$secs" &
  local cp=$!
  "$@" > "$W/$name.client.log" 2>&1
  wait "$cp"
  { echo "# kseal CPU profile: $name"; echo "# client: $*" | sed "s#$KAFKA_LIBS#KAFKA_LIBS#g; s#-Dlog4j2[^ ]*##"; echo "# profile window ${secs} s (the client ran inside it)"; tail -n 1 "$W/$name.client.log" | sed 's/^/# client result: /';
    go tool pprof -top -nodecount=30 "$W/kseal" "$W/$name.pprof" 2>/dev/null | sed -n '4,50p'; } > "$OUT/$name.txt"
}
for c in none zstd; do
  prof "produce-1k-$c" 12 jt org.apache.kafka.tools.ProducerPerformance --bootstrap-server "127.0.0.1:$PORT" --topic "p-$c" --num-records 300000 --record-size 1024 --throughput -1 --command-property "compression.type=$c"
  prof "consume-1k-$c" 8 jt org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "127.0.0.1:$PORT" --topic "p-$c" --num-records 300000 --group "g-$c" --hide-header
done
echo "profiles in $OUT"
