#!/usr/bin/env bash
# Runs Lowkey Vault (an Azure Key Vault test double, a Spring Boot jar from
# Maven Central) as a local Azure Key Vault for tests.
#
#   scripts/lowkey.sh install
#       Fetch the pinned lowkey-vault-app jar from Maven Central into
#       .cache/lowkey-vault-<ver>/ (skipped when already there). With
#       LOWKEY_VAULT_JAR=/path/to/lowkey-vault-app-<ver>.jar that jar is used
#       instead and nothing is downloaded.
#   scripts/lowkey.sh start --dir D [--port P --token-port TP] [--owner-pid PID] [--timeout SECS]
#       Install if needed, start Lowkey Vault on free loopback ports (or P and
#       TP, to restart where it ran before), wait until it answers, save the
#       certificate it serves as D/lowkey-ca.pem (so clients verify TLS instead
#       of skipping verification), and write D/lowkey.env. With --owner-pid, a
#       watcher stops the server as soon as that process is gone.
#   scripts/lowkey.sh stop --dir D
#       Stop what start put in D (TERM, then KILL after 10 s). Safe to run
#       twice.
#
# D/lowkey.env is shell- and Go-readable KEY=VALUE lines:
#   LOWKEY_VAULT_URL=https://localhost:P   LOWKEY_PORT=P  LOWKEY_TOKEN_PORT=TP
#   LOWKEY_IDENTITY_ENDPOINT=http://127.0.0.1:TP/metadata/identity/oauth2/token
#   LOWKEY_CA_FILE=D/lowkey-ca.pem  LOWKEY_PID=...  WATCHER_PID=...  LOWKEY_VERSION=...
# The vault is Lowkey's default vault for https://localhost:P; the identity
# endpoint is its managed identity (IMDS-style) token endpoint, plain HTTP.
# Lowkey keeps everything in memory: a restarted server has no keys.
# Its log goes to D/lowkey.log.
#
# Versions: 7.x needs Java 25 (the Temurin JDK in /usr/lib/jvm is used when
# `java` is older), 3.4.x runs on Java 17. LOWKEY_VERSION and LOWKEY_JAVA
# override the choice.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
LOWKEY_VERSION=${LOWKEY_VERSION:-7.1.13}
GROUP=com.github.nagyesta.lowkey-vault
ARTIFACT=lowkey-vault-app
DEP_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
CACHE=${KSEAL_CACHE:-$ROOT/.cache}
LHOME=$CACHE/lowkey-vault-$LOWKEY_VERSION
JAR=${LOWKEY_VAULT_JAR:-$LHOME/$ARTIFACT-$LOWKEY_VERSION.jar}
# A small heap and a quick JIT: CI has 2 cores for everything.
LOWKEY_JVM_OPTS=${LOWKEY_JVM_OPTS:--Xms64m -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Xshare:auto -Djava.awt.headless=true}
TEMURIN25=/usr/lib/jvm/temurin-25-jdk-amd64/bin/java

cmd_install() {
  if [ -n "${LOWKEY_VAULT_JAR:-}" ]; then
    [ -f "$LOWKEY_VAULT_JAR" ] || die "LOWKEY_VAULT_JAR=$LOWKEY_VAULT_JAR does not exist"
    return 0
  fi
  if [ -f "$LHOME/.complete" ] && [ -f "$JAR" ]; then
    return 0
  fi
  command -v mvn >/dev/null 2>&1 || die "mvn is missing (Maven fetches the Lowkey Vault jar)"
  echo "lowkey.sh: fetching $GROUP:$ARTIFACT:$LOWKEY_VERSION from Maven Central into $LHOME" >&2
  rm -rf "$LHOME"
  mkdir -p "$LHOME"
  local work log
  work=$(mktemp -d)
  log=$work/mvn.log
  # The app is a self-contained Spring Boot jar: no dependencies to resolve.
  if ! (cd "$work" && mvn -B -U "$DEP_PLUGIN:copy" -Dartifact="$GROUP:$ARTIFACT:$LOWKEY_VERSION:jar" \
    -DoutputDirectory="$LHOME" >"$log" 2>&1); then
    grep -m1 'ERROR' "$log" >&2 || true
    rm -rf "$work" "$LHOME"
    die "Maven could not fetch $GROUP:$ARTIFACT:$LOWKEY_VERSION. If the Maven repository reachable here does not carry the app jar, put one on disk and set LOWKEY_VAULT_JAR=/path/to/$ARTIFACT-<ver>.jar (and LOWKEY_VERSION to its version), or set KSEAL_IT_NO_AZURE=1 to skip the Azure integration test."
  fi
  rm -rf "$work"
  [ -f "$JAR" ] || die "$JAR missing after the fetch"
  touch "$LHOME/.complete"
}

# java_major prints the major version of the java binary $1.
java_major() {
  local v
  v=$("$1" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
  echo "${v%%.*}"
}

# pick_java prints the java to run LOWKEY_VERSION with.
pick_java() {
  if [ -n "${LOWKEY_JAVA:-}" ]; then
    echo "$LOWKEY_JAVA"
    return
  fi
  local need=17
  [ "${LOWKEY_VERSION%%.*}" -lt 4 ] 2>/dev/null || need=25
  local j
  for j in "$(command -v java 2>/dev/null || true)" "$TEMURIN25"; do
    if [ -z "$j" ] || [ ! -x "$j" ]; then continue; fi
    if [ "$(java_major "$j")" -ge "$need" ] 2>/dev/null; then
      echo "$j"
      return
    fi
  done
  die "Lowkey Vault $LOWKEY_VERSION needs Java $need+; none found (set LOWKEY_JAVA)"
}

# ready PORT TOKEN_PORT reports whether the vault answers /ping and the token
# port hands out tokens.
ready() {
  curl -sfk -o /dev/null --max-time 2 "https://127.0.0.1:$1/ping" &&
    curl -sf -o /dev/null --max-time 2 -H 'Metadata: true' \
      "http://127.0.0.1:$2/metadata/identity/oauth2/token?resource=https://localhost:$1"
}

cmd_start() {
  local dir="" port="" tport="" owner="" timeout=60
  while [ $# -gt 0 ]; do
    case "$1" in
      --dir) dir=$2; shift 2 ;;
      --port) port=$2; shift 2 ;;
      --token-port) tport=$2; shift 2 ;;
      --owner-pid) owner=$2; shift 2 ;;
      --timeout) timeout=$2; shift 2 ;;
      *) die "start: unknown argument $1" ;;
    esac
  done
  [ -n "$dir" ] || die "start: --dir is required"
  command -v curl >/dev/null 2>&1 || die "curl is missing (used to wait for readiness)"
  command -v python3 >/dev/null 2>&1 || die "python3 is missing (used to pick free ports)"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ ! -f "$dir/lowkey.env" ] || die "start: $dir/lowkey.env exists (stop it first)"
  cmd_install
  local java
  java=$(pick_java)
  if [ -z "$port" ] || [ -z "$tport" ]; then
    local picked
    mapfile -t picked < <(free_ports 2)
    [ ${#picked[@]} -eq 2 ] || die "start: no free ports"
    [ -n "$port" ] || port=${picked[0]}
    [ -n "$tport" ] || tport=${picked[1]}
  fi
  [ "$port" != "$tport" ] || die "start: --port and --token-port must differ"

  # shellcheck disable=SC2086 # LOWKEY_JVM_OPTS is a list of options
  "$java" $LOWKEY_JVM_OPTS -jar "$JAR" \
    --server.port="$port" --server.address=127.0.0.1 --app.token.port="$tport" \
    </dev/null >"$dir/lowkey.log" 2>&1 &
  local pid=$!

  cat >"$dir/lowkey.env" <<EOF
LOWKEY_VAULT_URL=https://localhost:$port
LOWKEY_PORT=$port
LOWKEY_TOKEN_PORT=$tport
LOWKEY_IDENTITY_ENDPOINT=http://127.0.0.1:$tport/metadata/identity/oauth2/token
LOWKEY_CA_FILE=$dir/lowkey-ca.pem
LOWKEY_PID=$pid
LOWKEY_VERSION=$LOWKEY_VERSION
EOF
  if [ -n "$owner" ]; then
    # The watcher runs while lowkey.env exists, so that file is written first
    # (a watcher started earlier could find no file and exit at once).
    echo "WATCHER_PID=$(start_watcher lowkey-watcher "$owner" "$dir" lowkey.env)" >>"$dir/lowkey.env"
  fi

  # Ready means the vault answers /ping and the token port hands out tokens.
  local rc=0
  wait_ready "$timeout" "$pid" ready "$port" "$tport" || rc=$?
  if [ "$rc" != 0 ]; then
    tail -n 30 "$dir/lowkey.log" >&2
    cmd_stop --dir "$dir" >&2 || true
    [ "$rc" != 1 ] || die "start: Lowkey Vault (pid $pid) exited during startup"
    die "start: Lowkey Vault not ready on ports $port/$tport after ${timeout}s"
  fi

  # Trust what the server serves (its built-in self-signed certificate,
  # issued for localhost and 127.0.0.1) rather than skipping verification.
  if ! openssl s_client -connect "127.0.0.1:$port" -servername localhost </dev/null 2>/dev/null |
    openssl x509 -outform PEM >"$dir/lowkey-ca.pem" 2>/dev/null; then
    keytool -printcert -rfc -sslserver "127.0.0.1:$port" >"$dir/lowkey-ca.pem" 2>/dev/null ||
      { cmd_stop --dir "$dir" >&2 || true; die "start: could not read the server's certificate (need openssl or keytool)"; }
  fi
  echo "lowkey.sh: Lowkey Vault $LOWKEY_VERSION ready at https://localhost:$port (token port $tport, $dir)" >&2
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
  [ -f "$dir/lowkey.env" ] || return 0
  local pid watcher
  pid=$(sed -n 's/^LOWKEY_PID=//p' "$dir/lowkey.env")
  watcher=$(sed -n 's/^WATCHER_PID=//p' "$dir/lowkey.env")
  if [ -n "$watcher" ] && [ "$watcher" != "$$" ]; then
    kill "$watcher" 2>/dev/null || true
  fi
  # Only signal our own server: the pid may have been reused after a crash.
  stop_process "$pid" --app.token.port 10
  mv "$dir/lowkey.env" "$dir/lowkey.env.stopped"
}

case "${1:-}" in
  install) shift; cmd_install "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  *) die "usage: $0 install | start --dir D [--port P --token-port TP] [--owner-pid PID] [--timeout SECS] | stop --dir D" ;;
esac
