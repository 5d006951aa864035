#!/usr/bin/env bash
# Kroxylicious (the Java Kafka proxy with a RecordEncryption filter), for the
# side-by-side benchmark in scripts/bench.sh. No Docker, no GitHub download:
# everything comes from Maven Central.
#
# Kroxylicious' app module (io.kroxylicious:kroxylicious-app, its main class
# and start script) is not on the Maven Central this project reaches, but the
# runtime (io.kroxylicious.proxy.KafkaProxy, ConfigParser), the
# RecordEncryption filter and the Vault KMS provider are. So this script
# fetches those three modules with their dependencies and compiles our own
# 20-line launcher (bench/kroxylicious/Launcher.java), which parses the YAML
# config and runs a KafkaProxy the way the app's `--config FILE` does.
#
#   scripts/kroxylicious.sh version
#       Print the version `fetch` uses: $KROXYLICIOUS_VERSION if set, else the
#       newest version Maven Central lists (maven-metadata.xml) for all three
#       modules, else (offline) the newest one already in the cache.
#   scripts/kroxylicious.sh fetch
#       Resolve the three modules at that version with their runtime
#       dependencies into .cache/kroxylicious-<ver>/libs (with mvn and a
#       generated pom, like scripts/kafka.sh), compile the launcher into
#       .cache/kroxylicious-<ver>/classes with the Temurin JDK and write a
#       log4j2 config (warnings only). Skipped when already there.
#   scripts/kroxylicious.sh run --config FILE [--version V]
#       (default: the newest version fetched) exec the proxy in the foreground on the Temurin JDK: the pid of the
#       caller's background job is the JVM's, so the caller can stop it, pin
#       it (taskset) and read its /proc counters. Extra JVM flags come from
#       $KROXYLICIOUS_JVM_OPTS (default: -Xmx512m).
#
# Environment: KROXYLICIOUS_VERSION, KROXYLICIOUS_JAVA_HOME (default
# /usr/lib/jvm/temurin-25-jdk-amd64: recent Kroxylicious needs Java 21+; Kafka
# and its tools keep using the default Java 17), KROXYLICIOUS_JVM_OPTS,
# KSEAL_CACHE (default .cache/ in the repository).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CACHE=${KSEAL_CACHE:-$ROOT/.cache}
CENTRAL=${MAVEN_CENTRAL_URL:-https://repo.maven.apache.org/maven2}
DEP_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
LOG4J_VERSION=2.25.4 # an slf4j2 binding, so the proxy's warnings reach its log
JAVA_HOME_KX=${KROXYLICIOUS_JAVA_HOME:-/usr/lib/jvm/temurin-25-jdk-amd64}
MODULES=(kroxylicious-runtime kroxylicious-record-encryption kroxylicious-kms-provider-hashicorp-vault)

# central_versions MODULE prints the versions Central lists for
# io.kroxylicious:MODULE, one a line (nothing when unreachable).
central_versions() {
  curl -fsSL --max-time 20 "$CENTRAL/io/kroxylicious/$1/maven-metadata.xml" 2>/dev/null |
    sed -n 's:.*<version>\([^<]*\)</version>.*:\1:p' || true
}

# newest reads versions on stdin and prints the highest release (no -SNAPSHOT,
# no qualifier), comparing numerically field by field.
newest() {
  grep -E '^[0-9]+(\.[0-9]+)*$' | sort -t. -k1,1n -k2,2n -k3,3n -k4,4n | tail -n 1
}

# cached_newest prints the newest version fetched into the cache (or nothing).
cached_newest() {
  find "$CACHE" -maxdepth 2 -path "$CACHE/kroxylicious-*/.complete" 2>/dev/null |
    sed 's:.*/kroxylicious-\([^/]*\)/\.complete:\1:' | newest || true
}

resolve_version() {
  if [ -n "${KROXYLICIOUS_VERSION:-}" ]; then
    echo "$KROXYLICIOUS_VERSION"
    return
  fi
  local m common="" v
  for m in "${MODULES[@]}"; do
    v=$(central_versions "$m" | sort -u)
    if [ -z "$v" ]; then common=""; break; fi
    if [ -z "$common" ]; then common=$v; else common=$(comm -12 <(echo "$common") <(echo "$v")); fi
    [ -n "$common" ] || break
  done
  v=$(echo "$common" | newest)
  if [ -z "$v" ]; then
    v=$(cached_newest)
    [ -n "$v" ] || die "cannot list Kroxylicious versions on $CENTRAL and nothing is cached"
    echo "kroxylicious.sh: Maven Central unreachable, using cached $v" >&2
  fi
  echo "$v"
}

cmd_fetch() {
  local ver
  ver=$(resolve_version)
  local home=$CACHE/kroxylicious-$ver
  if [ -f "$home/.complete" ]; then
    echo "$ver"
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn is missing (run scripts/deps.sh)"
  [ -x "$JAVA_HOME_KX/bin/javac" ] || die "no JDK at $JAVA_HOME_KX (set KROXYLICIOUS_JAVA_HOME to a JDK 21+)"
  local work
  work=$(mktemp -d)
  {
    cat <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local.kseal</groupId>
  <artifactId>kroxylicious-fetch</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
EOF
    local m
    for m in "${MODULES[@]}"; do
      echo "    <dependency><groupId>io.kroxylicious</groupId><artifactId>$m</artifactId><version>$ver</version></dependency>"
    done
    cat <<EOF
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>$LOG4J_VERSION</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>$LOG4J_VERSION</version></dependency>
  </dependencies>
</project>
EOF
  } >"$work/pom.xml"
  echo "kroxylicious.sh: fetching Kroxylicious $ver (runtime, record encryption, Vault KMS) from Maven Central into $home" >&2
  rm -rf "$home"
  mkdir -p "$home"
  if ! (cd "$work" && mvn -q -B -Dstyle.color=never "$DEP_PLUGIN:copy-dependencies" -DincludeScope=runtime \
    -DoutputDirectory="$home/libs") >"$work/mvn.log" 2>&1; then
    cat "$work/mvn.log" >&2
    rm -rf "$work"
    die "mvn could not fetch Kroxylicious $ver"
  fi
  rm -rf "$work"
  for m in "${MODULES[@]}"; do
    [ -f "$home/libs/$m-$ver.jar" ] || die "$m-$ver.jar missing after fetch"
  done
  mkdir -p "$home/classes"
  "$JAVA_HOME_KX/bin/javac" -nowarn -d "$home/classes" -cp "$home/libs/*" "$ROOT/bench/kroxylicious/Launcher.java" ||
    die "compiling bench/kroxylicious/Launcher.java against Kroxylicious $ver failed"
  cat >"$home/log4j2.properties" <<'EOF'
status = warn
appender.err.type = Console
appender.err.name = err
appender.err.target = SYSTEM_ERR
appender.err.layout.type = PatternLayout
appender.err.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.err.ref = err
EOF
  touch "$home/.complete"
  echo "$ver"
}

cmd_run() {
  local config="" ver=${KROXYLICIOUS_VERSION:-}
  while [ $# -gt 0 ]; do
    case "$1" in
      --config) config=$2; shift 2 ;;
      --version) ver=$2; shift 2 ;;
      *) die "run: unknown argument $1" ;;
    esac
  done
  [ -n "$config" ] || die "run: --config is required"
  [ -n "$ver" ] || ver=$(cached_newest)
  [ -n "$ver" ] || die "nothing fetched yet (run scripts/kroxylicious.sh fetch)"
  local home=$CACHE/kroxylicious-$ver
  [ -f "$home/.complete" ] || die "Kroxylicious $ver is not fetched (run scripts/kroxylicious.sh fetch)"
  # --sun-misc-unsafe-memory-access and --enable-native-access only silence
  # Java 24+ warnings about what Netty does anyway (Unsafe, native epoll).
  # shellcheck disable=SC2086
  exec "$JAVA_HOME_KX/bin/java" ${KROXYLICIOUS_JVM_OPTS:--Xmx512m} \
    --sun-misc-unsafe-memory-access=allow --enable-native-access=ALL-UNNAMED \
    -Dlog4j2.configurationFile="$home/log4j2.properties" \
    -cp "$home/classes:$home/libs/*" Launcher "$config"
}

case "${1:-}" in
  version) shift; resolve_version ;;
  fetch) shift; cmd_fetch "$@" ;;
  run) shift; cmd_run "$@" ;;
  *) echo "usage: $0 version | fetch | run --config FILE [--version V]" >&2; exit 2 ;;
esac
