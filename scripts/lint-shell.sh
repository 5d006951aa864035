#!/usr/bin/env bash
# Runs shellcheck on every script in scripts/ (`make lint`), following the
# scripts/lib.sh they source. A fresh machine gets shellcheck from apt-get
# (as root or through sudo); only when that is impossible is the check
# skipped, loudly.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

if ! command -v shellcheck >/dev/null 2>&1 && ! (apt_install shellcheck); then
  cat >&2 <<'MSG'
************************************************************************
lint-shell.sh: shellcheck is missing and could not be installed:
the shell scripts in scripts/ were NOT checked.
************************************************************************
MSG
  exit 0
fi
shellcheck --version | sed -n 2p >&2
shellcheck -x scripts/*.sh
