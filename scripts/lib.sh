# shellcheck shell=bash
# Helpers every script in scripts/ sources, before any cd:
#
#   # shellcheck source=scripts/lib.sh
#   . "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# It sets ROOT (the repository) and SCRIPT (the caller's name, for
# messages), and defines:
#   die MSG...            print "SCRIPT: MSG" on stderr and exit 1
#   log MSG...            print "SCRIPT: MSG" on stderr
#   free_ports N          N distinct free TCP ports on 127.0.0.1, one a line
#   free_port             one free TCP port
#   free_block N          the first of N consecutive free TCP ports
#   wait_ready SECS PIDS CMD...
#                         run CMD until it succeeds; 1 if a pid of PIDS
#                         (comma- or space-separated) exits first, 2 after
#                         SECS seconds
#   stop_process PID PATTERN SECS
#                         stop PID (CONT, TERM, KILL after SECS) if its
#                         command line still holds PATTERN
#   start_watcher NAME OWNER DIR ENVFILE
#                         a background watcher that runs `SCRIPT stop --dir
#                         DIR` once process OWNER is gone; prints its pid
#   apt_install PKG [CMD] install Debian package PKG with apt-get (as root or
#                         through sudo) unless CMD (default PKG) is on PATH
#
# Ports: the free_* helpers pick from 20000 up to just below the kernel's
# ephemeral range (/proc/sys/net/ipv4/ip_local_port_range). A port the
# kernel hands out for bind(":0") is also one it hands to outgoing
# connections, which could take it between the check and the server's own
# bind; below the range only another listener can. A port is free when
# binding it on 127.0.0.1 works now.

SCRIPT=${SCRIPT:-$(basename "$0")}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() {
  echo "$SCRIPT: $*" >&2
  exit 1
}

log() { echo "$SCRIPT: $*" >&2; }

# _free_ports N CONSECUTIVE(0|1)
_free_ports() {
  command -v python3 >/dev/null 2>&1 || die "python3 is missing (it picks free ports)"
  python3 - "$1" "$2" <<'EOF'
import random, socket, sys
n, consecutive = int(sys.argv[1]), sys.argv[2] == "1"
lo = 20000
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
        eph = int(f.read().split()[0])
except (OSError, ValueError, IndexError):
    eph = 32768
hi = eph - 1 if eph > lo + 1000 else 30999
if hi - lo < n:
    sys.exit("free ports: range %d..%d is too small for %d ports" % (lo, hi, n))

def grab(p, held):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        s.close()
        return False
    held.append(s)
    return True

for _ in range(200):
    held, ports = [], []
    if consecutive:
        base = random.randint(lo, hi - n + 1)
        ports = [p for p in range(base, base + n) if grab(p, held)]
    else:
        for _ in range(20 * n):
            if len(ports) == n:
                break
            p = random.randint(lo, hi)
            if p not in ports and grab(p, held):
                ports.append(p)
    for s in held:
        s.close()
    if len(ports) == n:
        print(ports[0] if consecutive else "\n".join(map(str, ports)))
        sys.exit(0)
sys.exit("no free ports in %d..%d" % (lo, hi))
EOF
}

free_ports() { _free_ports "$1" 0; }
free_port() { _free_ports 1 0; }
free_block() { _free_ports "$1" 1; }

wait_ready() {
  local secs=$1 pids=$2 p
  shift 2
  local deadline=$((SECONDS + secs))
  until "$@"; do
    for p in ${pids//,/ }; do
      kill -0 "$p" 2>/dev/null || return 1
    done
    [ "$SECONDS" -lt "$deadline" ] || return 2
    sleep 0.2
  done
}

stop_process() {
  local pid=$1 pattern=$2 secs=$3
  ours() { [ -n "$pid" ] && grep -qa -- "$pattern" "/proc/$pid/cmdline" 2>/dev/null; }
  ours || return 0
  kill -CONT "$pid" 2>/dev/null || true # a test may have frozen it
  kill -TERM "$pid" 2>/dev/null || true
  local deadline=$((SECONDS + secs))
  while ours; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "pid $pid did not stop within ${secs}s, killing"
      kill -KILL "$pid" 2>/dev/null || true
      sleep 0.2
      return 0
    fi
    sleep 0.1
  done
}

# without_fds CMD...: replaces the (background) shell with CMD after closing
# every inherited descriptor above stderr, so a server or watcher started
# with `without_fds ... &` does not hold what its caller passed down: a test's
# output pipe (its Wait would block until the server exits) or the flock of
# /tmp/kseal-it.lock (blocking every other integration run).
without_fds() {
  local fd
  for fd in /proc/"$BASHPID"/fd/*; do
    fd=${fd##*/}
    if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec $fd>&-"; fi
  done
  exec "$@"
}

start_watcher() {
  local name=$1 owner=$2 dir=$3 envfile=$4
  # The watcher outlives the script: it polls the owner and, once the owner
  # is gone, replaces itself with `stop` (stop knows not to kill its
  # caller). It exits when the env file is gone (stopped by someone else).
  # shellcheck disable=SC2016 # expanded by the watcher's shell
  without_fds nohup bash -c 'while kill -0 "$1" 2>/dev/null && [ -f "$2/$3" ]; do sleep 1; done; [ -f "$2/$3" ] && exec "$4" stop --dir "$2"' \
    "$name" "$owner" "$dir" "$envfile" "$ROOT/scripts/$SCRIPT" </dev/null >"$dir/watcher.log" 2>&1 &
  echo $!
}

apt_install() {
  local pkg=$1 cmd=${2:-$1} sudo=""
  command -v "$cmd" >/dev/null 2>&1 && return 0
  command -v apt-get >/dev/null 2>&1 || die "$cmd is missing and there is no apt-get to install it (install $pkg)"
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || die "$cmd is missing and there is no root or sudo to install it (apt-get install $pkg)"
    sudo="sudo"
  fi
  log "installing $pkg with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null
  command -v "$cmd" >/dev/null 2>&1 || die "apt-get did not install $pkg"
}

# pip_venv HOME BIN PKG... installs the pinned PKGs from PyPI into the venv
# HOME/venv (once: HOME/.complete marks a finished install) and checks that
# HOME/venv/bin/BIN exists. Installs of one HOME are serialised with a lock
# file beside it, so two test runs never delete each other's venv; the lock
# is held in a subshell, so no server started later inherits it.
pip_venv() {
  local home=$1 bin=$2
  shift 2
  [ -f "$home/.complete" ] && return 0
  local python=${PYTHON:-python3}
  command -v "$python" >/dev/null 2>&1 || die "$python is missing"
  mkdir -p "$(dirname "$home")"
  (
    if command -v flock >/dev/null 2>&1; then flock 9; fi
    [ -f "$home/.complete" ] && exit 0
    log "installing $* from PyPI into $home/venv"
    rm -rf "$home"
    mkdir -p "$home"
    "$python" -m venv "$home/venv" || die "could not create a venv with $python (Debian: apt-get install python3-venv)"
    "$home/venv/bin/pip" install -q --disable-pip-version-check "$@" || die "pip could not install $*"
    [ -x "$home/venv/bin/$bin" ] || die "$bin missing after installing $*"
    touch "$home/.complete"
  ) 9>"$home.lock"
}
