#!/usr/bin/env bash
# Runs moto (an AWS API emulator, from PyPI) as a local AWS KMS for tests.
#
#   scripts/moto.sh install
#       Create a venv under .cache/moto-<ver> and pip-install the pinned moto
#       and the web server it needs into it (skipped when already there).
#   scripts/moto.sh start --dir D [--port P] [--owner-pid PID] [--timeout SECS]
#       Install if needed, start moto_server on 127.0.0.1 (a free port, or P
#       to restart on the port used before), wait until it answers, and write
#       D/moto.env. With --owner-pid, a watcher stops the server as soon as
#       that process is gone, so a killed test run leaves nothing behind.
#   scripts/moto.sh stop --dir D
#       Stop what start put in D (TERM, then KILL after 5 s). Safe to run
#       twice.
#
# D/moto.env is shell- and Go-readable KEY=VALUE lines:
#   MOTO_ENDPOINT=http://127.0.0.1:p  MOTO_PORT=p  MOTO_PID=...  WATCHER_PID=...
#   AWS_ACCESS_KEY_ID=...  AWS_SECRET_ACCESS_KEY=...  AWS_REGION=...
# The credentials are dummies: moto accepts any. Its log goes to D/moto.log.
# moto keeps everything in memory: a restarted server has no keys.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
MOTO_VERSION=${MOTO_VERSION:-5.2.5}
# moto_server needs only Flask and flask-cors for KMS. The moto[server] extra
# would add cfn-lint, sympy, docker and more for other services: 320 MB and
# minutes of install on a fresh CI machine instead of 140 MB and seconds.
FLASK_VERSION=3.1.3
FLASK_CORS_VERSION=6.0.5
CACHE=${KSEAL_CACHE:-$ROOT/.cache}
MHOME=$CACHE/moto-$MOTO_VERSION
VENV=$MHOME/venv
PYTHON=${PYTHON:-python3}

cmd_install() {
  pip_venv "$MHOME" moto_server "moto==$MOTO_VERSION" "flask==$FLASK_VERSION" "flask-cors==$FLASK_CORS_VERSION"
}

# answers PORT reports whether a server answers HTTP on PORT.
answers() {
  "$PYTHON" - "$1" <<'EOF' 2>/dev/null
import sys, urllib.request, urllib.error
try:
    urllib.request.urlopen("http://127.0.0.1:%s/moto-api/" % sys.argv[1], timeout=1)
except urllib.error.HTTPError:
    pass
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
  [ ! -f "$dir/moto.env" ] || die "start: $dir/moto.env exists (stop it first)"
  cmd_install
  [ -n "$port" ] || port=$(free_port)

  without_fds "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" </dev/null >"$dir/moto.log" 2>&1 &
  local pid=$!

  cat >"$dir/moto.env" <<EOF
MOTO_ENDPOINT=http://127.0.0.1:$port
MOTO_PORT=$port
MOTO_PID=$pid
AWS_ACCESS_KEY_ID=kseal-test
AWS_SECRET_ACCESS_KEY=kseal-test-secret
AWS_REGION=us-east-1
EOF
  if [ -n "$owner" ]; then
    # The watcher runs while moto.env exists, so that file is written first
    # (a watcher started earlier could find no file and exit at once).
    echo "WATCHER_PID=$(start_watcher moto-watcher "$owner" "$dir" moto.env)" >>"$dir/moto.env"
  fi

  # Ready means the server answers HTTP (any status) on its port.
  local rc=0
  wait_ready "$timeout" "$pid" answers "$port" || rc=$?
  if [ "$rc" != 0 ]; then
    tail -n 30 "$dir/moto.log" >&2
    cmd_stop --dir "$dir" >&2 || true
    [ "$rc" != 1 ] || die "start: moto_server (pid $pid) exited during startup"
    die "start: moto_server not answering on port $port after ${timeout}s"
  fi
  echo "moto.sh: moto $MOTO_VERSION ready at http://127.0.0.1:$port ($dir)" >&2
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
  [ -f "$dir/moto.env" ] || return 0
  local pid watcher
  pid=$(sed -n 's/^MOTO_PID=//p' "$dir/moto.env")
  watcher=$(sed -n 's/^WATCHER_PID=//p' "$dir/moto.env")
  if [ -n "$watcher" ] && [ "$watcher" != "$$" ]; then
    kill "$watcher" 2>/dev/null || true
  fi
  # Only signal our own server: the pid may have been reused after a crash.
  stop_process "$pid" moto_server 5
  mv "$dir/moto.env" "$dir/moto.env.stopped"
}

case "${1:-}" in
  install) shift; cmd_install "$@" ;;
  start) shift; cmd_start "$@" ;;
  stop) shift; cmd_stop "$@" ;;
  *) echo "usage: $0 install | start --dir D [--port P] [--owner-pid PID] | stop --dir D" >&2; exit 2 ;;
esac
