#!/usr/bin/env bash
# Runs a real Apache Hadoop KMS (org.apache.hadoop:hadoop-kms from Maven
# Central, started from its jars: no Docker, no Hadoop tarball) for kseal's
# hadoop KMS provider tests.
#
#   scripts/hadoop-kms.sh fetch
#       Download hadoop-kms $HADOOP_KMS_VERSION and its runtime dependencies
#       into .cache/hadoop-kms-<ver>/libs (skipped when already there).
#   scripts/hadoop-kms.sh start --dir D [--user U] [--owner-pid PID] [--timeout SECS]
#       Write D/conf (kms-site.xml with a JCEKS key provider in
#       D/kms.keystore, simple authentication, a free loopback port;
#       kms-acls.xml giving user U, default "kseal", every key operation),
#       start KMSWebServer, wait until GET /kms/v1/keys/names answers for U,
#       and write D/hadoop-kms.env. A second start on the same D after stop
#       restarts the same server: same port, same key store (same keys and
#       versions). --user applies to a first start only. With --owner-pid, a
#       watcher stops the server once that process is gone, so a killed test
#       run leaves nothing behind.
#   scripts/hadoop-kms.sh stop --dir D
#       Stop the server start put in D (TERM, then KILL after 10 s). Keeps
#       D/kms.keystore. Safe to run twice.
#
# D/hadoop-kms.env is shell- and Go-readable KEY=VALUE lines:
#   HADOOP_KMS_ADDR=http://127.0.0.1:p   HADOOP_KMS_USER=U
#   HADOOP_KMS_PID=...   WATCHER_PID=...
# The server's output goes to D/kms.log. The key store's password is
# Hadoop's built-in default ("none"): this is a throwaway test server, not a
# way to run Hadoop KMS.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
HADOOP_KMS_VERSION=${HADOOP_KMS_VERSION:-3.4.3}
DEP_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
CACHE=${KSEAL_CACHE:-$ROOT/.cache}
HHOME=$CACHE/hadoop-kms-$HADOOP_KMS_VERSION
LIBS=$HHOME/libs
# A small heap and a quick JIT: the KMS shares a 2-core box with Kafka.
# Java 17 closes java.lang to reflection; Hadoop's own scripts open it too.
HADOOP_KMS_JVM_OPTS=${HADOOP_KMS_JVM_OPTS:--Xms64m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true --add-opens=java.base/java.lang=ALL-UNNAMED --add-opens=java.base/java.util=ALL-UNNAMED}
STOP_TIMEOUT=10

cmd_fetch() {
  if [ -f "$HHOME/.complete" ]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn is missing (run scripts/deps.sh)"
  mkdir -p "$CACHE"
  # Two test runs fetching at once would delete each other's jars.
  exec 9>"$CACHE/hadoop-kms-$HADOOP_KMS_VERSION.lock"
  if command -v flock >/dev/null 2>&1; then flock 9; fi
  if [ -f "$HHOME/.complete" ]; then
    exec 9>&-
    return 0
  fi
  local work
  work=$(mktemp -d)
  cat >"$work/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.kseal</groupId>
  <artifactId>hadoop-kms-fetch</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.hadoop</groupId><artifactId>hadoop-kms</artifactId><version>$HADOOP_KMS_VERSION</version></dependency>
  </dependencies>
</project>
EOF
  log "fetching Apache Hadoop KMS $HADOOP_KMS_VERSION jars from Maven Central into $LIBS"
  rm -rf "$HHOME"
  mkdir -p "$HHOME"
  if ! (cd "$work" && mvn -q -B -Dstyle.color=never "$DEP_PLUGIN:copy-dependencies" -DincludeScope=runtime \
    -DoutputDirectory="$HHOME/libs.tmp") >"$work/mvn.log" 2>&1; then
    cat "$work/mvn.log" >&2
    rm -rf "$work"
    die "mvn could not fetch the Hadoop KMS jars"
  fi
  rm -rf "$work"
  [ -f "$HHOME/libs.tmp/hadoop-kms-$HADOOP_KMS_VERSION.jar" ] || die "hadoop-kms-$HADOOP_KMS_VERSION.jar missing after fetch"
  mv "$HHOME/libs.tmp" "$LIBS"
  touch "$HHOME/.complete"
  exec 9>&-
}

prop() { printf '  <property><name>%s</name><value>%s</value></property>\n' "$1" "$2"; }

cmd_start() {
  local dir="" owner="" user=kseal timeout=60
  while [ $# -gt 0 ]; do
    case "$1" in
      --dir) dir=$2; shift 2 ;;
      --user) user=$2; shift 2 ;;
      --owner-pid) owner=$2; shift 2 ;;
      --timeout) timeout=$2; shift 2 ;;
      *) die "start: unknown argument $1" ;;
    esac
  done
  [ -n "$dir" ] || die "start: --dir is required"
  case "$user" in
    *[!A-Za-z0-9._-]* | "") die "start: --user must be letters, digits, '.', '_' or '-'" ;;
  esac
  command -v java >/dev/null 2>&1 || die "java is missing (run scripts/deps.sh)"
  command -v curl >/dev/null 2>&1 || die "curl is missing"
  cmd_fetch
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ ! -f "$dir/hadoop-kms.env" ] || die "start: $dir/hadoop-kms.env exists; stop that server first"
  local port
  if [ -f "$dir/port" ]; then
    # A restart: same address, so a client configured for it reconnects.
    port=$(cat "$dir/port")
    user=$(cat "$dir/user")
  else
    port=$(free_port)
  fi
  mkdir -p "$dir/conf" "$dir/tmp" "$dir/log"
  {
    echo '<configuration>'
    prop hadoop.kms.key.provider.uri "jceks://file@$dir/kms.keystore"
    prop hadoop.kms.authentication.type simple
    prop hadoop.kms.http.host 127.0.0.1
    prop hadoop.kms.http.port "$port"
    echo '</configuration>'
  } >"$dir/conf/kms-site.xml"
  # KMSWebServer insists on a core-site.xml in its config directory.
  {
    echo '<configuration>'
    prop hadoop.tmp.dir "$dir/tmp"
    echo '</configuration>'
  } >"$dir/conf/core-site.xml"
  # Service ACLs default to everyone; key ACLs default to no one, so the
  # test user gets every key operation through the default key ACLs.
  {
    echo '<configuration>'
    local op
    for op in MANAGEMENT GENERATE_EEK DECRYPT_EEK READ; do
      prop "default.key.acl.$op" "$user"
    done
    echo '</configuration>'
  } >"$dir/conf/kms-acls.xml"
  cat >"$dir/conf/kms-log4j.properties" <<'EOF'
log4j.rootLogger=WARN, out
log4j.appender.out=org.apache.log4j.ConsoleAppender
log4j.appender.out.layout=org.apache.log4j.PatternLayout
log4j.appender.out.layout.ConversionPattern=%d %p %c: %m%n
log4j.logger.org.apache.hadoop.crypto.key.kms.server.KMSWebApp=INFO
log4j.logger.kms-audit=WARN
EOF
  echo "$port" >"$dir/port"
  echo "$user" >"$dir/user"
  local addr="http://127.0.0.1:$port"
  # shellcheck disable=SC2086 # HADOOP_KMS_JVM_OPTS is a list of options
  without_fds java $HADOOP_KMS_JVM_OPTS \
    -Dkms.config.dir="$dir/conf" -Dkms.log.dir="$dir/log" \
    -Dlog4j.configuration="file:$dir/conf/kms-log4j.properties" \
    -cp "$LIBS/*" org.apache.hadoop.crypto.key.kms.server.KMSWebServer </dev/null >>"$dir/kms.log" 2>&1 &
  local pid=$!
  cat >"$dir/hadoop-kms.env" <<EOF
HADOOP_KMS_ADDR=$addr
HADOOP_KMS_USER=$user
HADOOP_KMS_PID=$pid
EOF
  if [ -n "$owner" ]; then
    # The watcher runs while hadoop-kms.env exists, so that file is written first.
    echo "WATCHER_PID=$(start_watcher hadoop-kms-watcher "$owner" "$dir" hadoop-kms.env)" >>"$dir/hadoop-kms.env"
  fi
  answers() {
    [ "$(curl -s -o /dev/null -w '%{http_code}' "$addr/kms/v1/keys/names?user.name=$user")" = 200 ]
  }
  local rc=0
  wait_ready "$timeout" "$pid" answers || rc=$?
  if [ "$rc" != 0 ]; then
    echo "--- kms.log (tail)" >&2
    tail -n 30 "$dir/kms.log" >&2
    cmd_stop --dir "$dir" >&2 || true
    if [ "$rc" = 1 ]; then die "start: KMSWebServer (pid $pid) exited during startup"; fi
    die "start: KMS not answering after ${timeout}s"
  fi
  log "Hadoop KMS $HADOOP_KMS_VERSION ready at $addr ($dir)"
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
  [ -f "$dir/hadoop-kms.env" ] || return 0
  local pid watcher
  pid=$(sed -n 's/^HADOOP_KMS_PID=//p' "$dir/hadoop-kms.env")
  watcher=$(sed -n 's/^WATCHER_PID=//p' "$dir/hadoop-kms.env")
  if [ -n "$watcher" ] && [ "$watcher" != "$$" ]; then
    kill "$watcher" 2>/dev/null || true
  fi
  # Only signal our own server: the pid may have been reused after a crash.
  stop_process "$pid" "kms.config.dir=$dir/conf" "$STOP_TIMEOUT"
  rm -f "$dir/hadoop-kms.env"
}

case "${1:-}" in
  fetch) shift; cmd_fetch "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  *) echo "usage: $0 fetch | start --dir D [--user U] [--owner-pid PID] [--timeout SECS] | stop --dir D" >&2; exit 2 ;;
esac
