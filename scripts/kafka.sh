#!/usr/bin/env bash
# Runs a real Apache Kafka cluster (KRaft, no ZooKeeper, no Docker) for tests.
#
#   scripts/kafka.sh fetch
#       Download the pinned Kafka jars from Maven Central into
#       .cache/kafka-<ver>/libs (skipped when already there).
#   scripts/kafka.sh start --brokers N --dir D [--owner-pid PID] [--timeout SECS]
#       Start N (1 or 3) combined broker+controller nodes on free loopback
#       ports, wait until the cluster's metadata lists all N brokers, and write
#       D/cluster.env. With --owner-pid, a watcher stops the cluster as soon as
#       that process is gone, so a killed or crashed test run leaves nothing
#       behind.
#   scripts/kafka.sh stop --dir D
#       Stop everything start put in D (TERM, then KILL after
#       KAFKA_STOP_TIMEOUT seconds, default 10). Safe to run twice.
#
# D/cluster.env is shell- and Go-readable KEY=VALUE lines:
#   BOOTSTRAP=127.0.0.1:p1,...    BROKERS=1=127.0.0.1:p1,...
#   CONTROLLERS=1=127.0.0.1:c1,...  LOG_DIRS=D/node-1/data,...
#   PIDS=pid1,...  WATCHER_PID=...  KAFKA_LIBS=...  CLUSTER_ID=...
# Each node's stdout/stderr goes to D/node-N.log.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
KAFKA_VERSION=${KAFKA_VERSION:-4.3.1}
LOG4J_VERSION=2.25.4 # the log4j-core version kafka_2.13 $KAFKA_VERSION depends on
DEP_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
CACHE=${KSEAL_CACHE:-$ROOT/.cache}
KHOME=$CACHE/kafka-$KAFKA_VERSION
LIBS=$KHOME/libs
# Small heaps: three brokers, a proxy and the JVM clients share a 2-core CI box.
KAFKA_HEAP_OPTS=${KAFKA_HEAP_OPTS:--Xms128m -Xmx512m}
KAFKA_JVM_OPTS=${KAFKA_JVM_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true}
KAFKA_STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-10}

cmd_fetch() {
  if [ -f "$KHOME/.complete" ]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn is missing (run scripts/deps.sh)"
  local work
  work=$(mktemp -d)
  # The pom only names what we need; Maven resolves the rest (runtime scope).
  # log4j-slf4j-impl routes Kafka's slf4j logging into log4j2 so the node
  # logs have content.
  cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.kseal</groupId>
  <artifactId>kafka-fetch</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka-tools</artifactId><version>$KAFKA_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
  echo "kafka.sh: fetching Apache Kafka $KAFKA_VERSION jars from Maven Central into $LIBS" >&2
  rm -rf "$KHOME"
  mkdir -p "$KHOME"
  if ! (cd "$work" && mvn -q -B -Dstyle.color=never "$DEP_PLUGIN:copy-dependencies" -DincludeScope=runtime \
    -DoutputDirectory="$KHOME/libs.tmp") >"$work/mvn.log" 2>&1; then
    cat "$work/mvn.log" >&2
    rm -rf "$work"
    die "mvn could not fetch the Kafka jars"
  fi
  rm -rf "$work"
  [ -f "$KHOME/libs.tmp/kafka_2.13-$KAFKA_VERSION.jar" ] || die "kafka_2.13-$KAFKA_VERSION.jar missing after fetch"
  mv "$KHOME/libs.tmp" "$LIBS"
  mkdir -p "$KHOME/config"
  # Broker logs: INFO to stdout (redirected to node-N.log), minus the chattiest.
  cat >"$KHOME/config/broker-log4j2.properties" <<'EOF'
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.target = SYSTEM_OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
logger.state.name = state.change.logger
logger.state.level = warn
logger.raft.name = org.apache.kafka.raft
logger.raft.level = warn
logger.request.name = kafka.request.logger
logger.request.level = warn
EOF
  # Client tools: warnings to stderr only, so stdout carries just the data.
  cat >"$KHOME/config/tools-log4j2.properties" <<'EOF'
status = warn
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.err.ref = err
EOF
  touch "$KHOME/.complete"
}

# java_kafka runs a Kafka main class with the cached jars.
java_kafka() {
  # shellcheck disable=SC2086
  java $KAFKA_HEAP_OPTS $KAFKA_JVM_OPTS \
    -Dlog4j2.configurationFile="$KHOME/config/tools-log4j2.properties" \
    -cp "$LIBS/*" "$@"
}

cmd_start() {
  local n=1 dir="" owner="" timeout=120
  while [ $# -gt 0 ]; do
    case "$1" in
      --brokers) n=$2; shift 2 ;;
      --dir) dir=$2; shift 2 ;;
      --owner-pid) owner=$2; shift 2 ;;
      --timeout) timeout=$2; shift 2 ;;
      *) die "start: unknown argument $1" ;;
    esac
  done
  [ -n "$dir" ] || die "start: --dir is required"
  case "$n" in 1|2|3|4|5) ;; *) die "start: --brokers must be 1..5, got $n" ;; esac
  [ -f "$KHOME/.complete" ] || die "Kafka $KAFKA_VERSION is not fetched (run scripts/kafka.sh fetch)"
  command -v kcat >/dev/null 2>&1 || die "kcat is missing (run scripts/deps.sh)"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ ! -f "$dir/cluster.env" ] || die "start: $dir/cluster.env exists; stop that cluster first"

  local rf=$(( n < 3 ? n : 3 ))
  local minisr=$(( rf < 2 ? rf : 2 ))
  local ports
  mapfile -t ports < <(free_ports $((2 * n)))
  local voters="" bootstrap="" brokers="" controllers="" logdirs=""
  local i port cport
  for ((i = 1; i <= n; i++)); do
    port=${ports[$((2 * i - 2))]}
    cport=${ports[$((2 * i - 1))]}
    voters+="${voters:+,}$i@127.0.0.1:$cport"
    bootstrap+="${bootstrap:+,}127.0.0.1:$port"
    brokers+="${brokers:+,}$i=127.0.0.1:$port"
    controllers+="${controllers:+,}$i=127.0.0.1:$cport"
    logdirs+="${logdirs:+,}$dir/node-$i/data"
  done

  for ((i = 1; i <= n; i++)); do
    port=${ports[$((2 * i - 2))]}
    cport=${ports[$((2 * i - 1))]}
    mkdir -p "$dir/node-$i/data"
    cat >"$dir/node-$i/server.properties" <<EOF
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/node-$i/data
num.partitions=$((2 * n))
default.replication.factor=$rf
min.insync.replicas=1
auto.create.topics.enable=false
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$minisr
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$minisr
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
num.recovery.threads.per.data.dir=1
background.threads=2
log.segment.bytes=16777216
log.index.size.max.bytes=1048576
EOF
  done

  # A cluster id is 16 random bytes in unpadded base64url (what
  # `StorageTool random-uuid` prints), made here to save a JVM start.
  # One that starts with '-' would be taken for an option by kafka-storage
  # (1 id in 64): draw again.
  local cid
  cid=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
  while [[ $cid == -* ]]; do
    cid=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
  done
  local fpids=()
  for ((i = 1; i <= n; i++)); do
    java_kafka kafka.tools.StorageTool format --ignore-formatted -t "$cid" \
      -c "$dir/node-$i/server.properties" >"$dir/node-$i/format.log" 2>&1 &
    fpids+=($!)
  done
  for ((i = 1; i <= n; i++)); do
    wait "${fpids[$((i - 1))]}" || { cat "$dir/node-$i/format.log" >&2; die "formatting node $i storage failed"; }
  done

  local pids=""
  for ((i = 1; i <= n; i++)); do
    # shellcheck disable=SC2086
    without_fds java $KAFKA_HEAP_OPTS $KAFKA_JVM_OPTS \
      -Dlog4j2.configurationFile="$KHOME/config/broker-log4j2.properties" \
      -cp "$LIBS/*" kafka.Kafka "$dir/node-$i/server.properties" \
      </dev/null >"$dir/node-$i.log" 2>&1 &
    pids+="${pids:+,}$!"
  done

  cat >"$dir/cluster.env" <<EOF
BOOTSTRAP=$bootstrap
BROKERS=$brokers
CONTROLLERS=$controllers
LOG_DIRS=$logdirs
PIDS=$pids
KAFKA_LIBS=$LIBS
KAFKA_HOME=$KHOME
CLUSTER_ID=$cid
EOF

  if [ -n "$owner" ]; then
    # The watcher runs while cluster.env exists, so that file is written first.
    echo "WATCHER_PID=$(start_watcher kafka-watcher "$owner" "$dir" cluster.env)" >>"$dir/cluster.env"
  fi

  # Ready means: every node is alive and a metadata request lists all n
  # brokers (they have registered with the controller quorum and are
  # unfenced).
  local got=0 rc=0
  brokers_up() {
    got=$(kcat -L -J -b "$bootstrap" -m 5 2>/dev/null | python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("brokers") or []))' 2>/dev/null || echo 0)
    [ "$got" = "$n" ]
  }
  wait_ready "$timeout" "$pids" brokers_up || rc=$?
  if [ "$rc" != 0 ]; then
    for ((i = 1; i <= n; i++)); do echo "--- node-$i.log (tail)" >&2; tail -n 30 "$dir/node-$i.log" >&2; done
    cmd_stop --dir "$dir" >&2 || true
    [ "$rc" != 1 ] || die "start: a Kafka node exited during startup"
    die "start: cluster not ready after ${timeout}s (metadata lists $got of $n brokers)"
  fi
  echo "kafka.sh: $n-broker Kafka $KAFKA_VERSION ready at $bootstrap ($dir)" >&2
}

cmd_stop() {
  local dir=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --dir) dir=$2; shift 2 ;;
      *) die "stop: unknown argument $1" ;;
    esac
  done
  [ -n "$dir" ] || die "stop: --dir is required"
  [ -f "$dir/cluster.env" ] || return 0
  local PIDS="" WATCHER_PID=""
  PIDS=$(sed -n 's/^PIDS=//p' "$dir/cluster.env")
  WATCHER_PID=$(sed -n 's/^WATCHER_PID=//p' "$dir/cluster.env")
  if [ -n "$WATCHER_PID" ] && [ "$WATCHER_PID" != "$$" ]; then
    kill "$WATCHER_PID" 2>/dev/null || true
  fi
  local p alive
  for p in ${PIDS//,/ }; do
    # Only signal our own Kafka: a pid may have been reused after a crash.
    if grep -q "kafka.Kafka" "/proc/$p/cmdline" 2>/dev/null; then
      kill -TERM "$p" 2>/dev/null || true
    fi
  done
  local deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
  while :; do
    alive=""
    for p in ${PIDS//,/ }; do
      if grep -q "kafka.Kafka" "/proc/$p/cmdline" 2>/dev/null; then alive+=" $p"; fi
    done
    [ -n "$alive" ] || break
    if [ $SECONDS -ge $deadline ]; then
      echo "kafka.sh: nodes$alive did not stop within ${KAFKA_STOP_TIMEOUT}s, killing" >&2
      # shellcheck disable=SC2086
      kill -KILL $alive 2>/dev/null || true
      sleep 0.2
      break
    fi
    sleep 0.2
  done
  mv "$dir/cluster.env" "$dir/cluster.env.stopped"
}

case "${1:-}" in
  fetch) shift; cmd_fetch "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  *) echo "usage: $0 fetch | start --brokers N --dir D [--owner-pid PID] | stop --dir D" >&2; exit 2 ;;
esac
