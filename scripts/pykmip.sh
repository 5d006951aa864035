#!/usr/bin/env bash
# Runs PyKMIP's server (from PyPI) as a local KMIP server for tests.
#
#   scripts/pykmip.sh install
#       Create a venv under .cache/pykmip-<ver> and pip-install the pinned
#       PyKMIP with the versions of cryptography and SQLAlchemy it was checked
#       with (skipped when already there).
#   scripts/pykmip.sh start --dir D [--port P] [--owner-pid PID] [--timeout SECS]
#       Install if needed, make a CA, a server certificate (for 127.0.0.1 and
#       localhost) and a client certificate (CN kseal, extendedKeyUsage
#       clientAuth, which PyKMIP requires) with openssl, write the server
#       config with a sqlite database in D, start pykmip-server on 127.0.0.1
#       (a free port, or P), wait until it accepts TLS connections, and write
#       D/pykmip.env. With --owner-pid, a watcher stops the server as soon as
#       that process is gone.
#   scripts/pykmip.sh stop --dir D
#       Stop what start put in D (TERM, then KILL after 5 s). Safe to run
#       twice.
#
# D/pykmip.env is shell- and Go-readable KEY=VALUE lines:
#   KMIP_ENDPOINT=127.0.0.1:p  KMIP_PORT=p  KMIP_CA_FILE=  KMIP_CERT_FILE=
#   KMIP_KEY_FILE=  KMIP_SERVER_NAME=localhost  PYKMIP_PID=  WATCHER_PID=
# The server log goes to D/pykmip.log. Keys live in D/pykmip.db.
#
# The certificates are ECDSA P-256 and the server is limited to the TLS 1.2
# ECDHE-ECDSA AES-GCM suites: PyKMIP's default TLS 1.2 list holds only
# RSA-key-exchange and CBC-SHA256 suites that Go's TLS client does not
# offer by default.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
PYKMIP_VERSION=${PYKMIP_VERSION:-0.11.0}
# Checked together with PyKMIP 0.11.0 on Python 3.11.
CRYPTOGRAPHY_VERSION=51.0.1
SQLALCHEMY_VERSION=2.1.9
CACHE=${KSEAL_CACHE:-$ROOT/.cache}
PHOME=$CACHE/pykmip-$PYKMIP_VERSION
VENV=$PHOME/venv
PYTHON=${PYTHON:-python3}

cmd_install() {
  pip_venv "$PHOME" pykmip-server "pykmip==$PYKMIP_VERSION" "cryptography==$CRYPTOGRAPHY_VERSION" "sqlalchemy==$SQLALCHEMY_VERSION"
}

# make_certs DIR writes ca.pem, server.pem/server-key.pem and
# client.pem/client-key.pem into DIR.
make_certs() {
  local d=$1
  command -v openssl >/dev/null 2>&1 || die "openssl is missing"
  (
    cd "$d"
    umask 077
    openssl ecparam -name prime256v1 -genkey -noout -out ca-key.pem
    openssl req -x509 -new -key ca-key.pem -sha256 -days 30 -subj "/CN=kseal test KMIP CA" \
      -addext "basicConstraints=critical,CA:true" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -out ca.pem 2>/dev/null
    local name
    for name in server client; do
      openssl ecparam -name prime256v1 -genkey -noout -out "$name-key.pem"
      openssl req -new -key "$name-key.pem" -subj "/CN=$([ "$name" = server ] && echo localhost || echo kseal)" \
        -out "$name.csr" 2>/dev/null
    done
    printf '%s\n' "basicConstraints=CA:false" "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=serverAuth" "subjectAltName=DNS:localhost,IP:127.0.0.1" >server.ext
    printf '%s\n' "basicConstraints=CA:false" "keyUsage=critical,digitalSignature" \
      "extendedKeyUsage=clientAuth" >client.ext
    for name in server client; do
      openssl x509 -req -in "$name.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -sha256 -days 30 \
        -extfile "$name.ext" -out "$name.pem" 2>/dev/null
    done
    rm -f ./*.csr ./*.ext ca.srl
  ) || die "could not make the test certificates in $d"
}

# answers PORT reports whether something accepts TCP connections on PORT
# (the server listens only once its TLS context is loaded).
answers() {
  "$PYTHON" - "$1" <<'EOF' 2>/dev/null
import socket, sys
socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
EOF
}

cmd_start() {
  local dir="" port="" owner="" timeout=60
  while [ $# -gt 0 ]; do
    case "$1" in
      --dir) dir=$2; shift 2 ;;
      --port) port=$2; shift 2 ;;
      --owner-pid) owner=$2; shift 2 ;;
      --timeout) timeout=$2; shift 2 ;;
      *) die "start: unknown argument $1" ;;
    esac
  done
  [ -n "$dir" ] || die "start: --dir is required"
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  [ ! -f "$dir/pykmip.env" ] || die "start: $dir/pykmip.env exists (stop it first)"
  cmd_install
  [ -n "$port" ] || port=$(free_port)
  [ -f "$dir/ca.pem" ] || make_certs "$dir"
  mkdir -p "$dir/policies"

  cat >"$dir/server.conf" <<EOF
[server]
hostname=127.0.0.1
port=$port
certificate_path=$dir/server.pem
key_path=$dir/server-key.pem
ca_path=$dir/ca.pem
auth_suite=TLS1.2
policy_path=$dir/policies
enable_tls_client_auth=True
tls_cipher_suites=TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
logging_level=INFO
database_path=$dir/pykmip.db
EOF

  # The server runs in a session of its own (its pid is the process group),
  # with every inherited descriptor above stderr closed: pykmip-server
  # starts a multiprocessing manager process that would otherwise outlive
  # a killed server and keep open what the caller passed down (such as the
  # flock of /tmp/kseal-it.lock, blocking every other integration run).
  "$VENV/bin/python" -c 'import os, sys; os.closerange(3, 65536); os.setsid(); os.execv(sys.argv[1], sys.argv[1:])' \
    "$VENV/bin/pykmip-server" -f "$dir/server.conf" -l "$dir/pykmip.log" </dev/null >"$dir/pykmip.out" 2>&1 &
  local pid=$!

  cat >"$dir/pykmip.env" <<EOF
KMIP_ENDPOINT=127.0.0.1:$port
KMIP_PORT=$port
KMIP_CA_FILE=$dir/ca.pem
KMIP_CERT_FILE=$dir/client.pem
KMIP_KEY_FILE=$dir/client-key.pem
KMIP_SERVER_NAME=localhost
PYKMIP_PID=$pid
EOF
  if [ -n "$owner" ]; then
    # The watcher runs while pykmip.env exists, so that file is written first.
    echo "WATCHER_PID=$(start_watcher pykmip-watcher "$owner" "$dir" pykmip.env)" >>"$dir/pykmip.env"
  fi

  local rc=0
  wait_ready "$timeout" "$pid" answers "$port" || rc=$?
  if [ "$rc" != 0 ]; then
    tail -n 30 "$dir/pykmip.out" "$dir/pykmip.log" >&2 || true
    cmd_stop --dir "$dir" >&2 || true
    [ "$rc" != 1 ] || die "start: pykmip-server (pid $pid) exited during startup"
    die "start: pykmip-server not answering on port $port after ${timeout}s"
  fi
  echo "pykmip.sh: PyKMIP $PYKMIP_VERSION ready at 127.0.0.1:$port ($dir)" >&2
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
  [ -f "$dir/pykmip.env" ] || return 0
  local pid watcher
  pid=$(sed -n 's/^PYKMIP_PID=//p' "$dir/pykmip.env")
  watcher=$(sed -n 's/^WATCHER_PID=//p' "$dir/pykmip.env")
  if [ -n "$watcher" ] && [ "$watcher" != "$$" ]; then
    kill "$watcher" 2>/dev/null || true
  fi
  # Only signal our own server: the pid may have been reused after a crash.
  stop_process "$pid" pykmip-server 5
  # Then what is left of its process group (the multiprocessing manager),
  # checking each member is a pykmip-server of ours.
  local p
  if [ -n "$pid" ]; then
    for p in $(pgrep -g "$pid" 2>/dev/null || true); do
      stop_process "$p" pykmip-server 2
    done
  fi
  mv "$dir/pykmip.env" "$dir/pykmip.env.stopped"
}

case "${1:-}" in
  install) shift; cmd_install "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  *) echo "usage: $0 install | start --dir D [--port P] [--owner-pid PID] | stop --dir D" >&2; exit 2 ;;
esac
