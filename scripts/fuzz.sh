#!/usr/bin/env bash
# Runs every fuzz target for a short time (default 10s each). The seed corpora
# in testdata/fuzz already run as plain tests in `go test`.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-5s}
for pkg in $(go list ./internal/...); do
  dir=$(go list -f '{{.Dir}}' "$pkg")
  for f in $(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$dir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u); do
    echo "fuzz $pkg $f ($t)"
    go test -run '^$' -fuzz "^$f\$" -fuzztime "$t" "$pkg" >/tmp/kseal-fuzz.log 2>&1 || { cat /tmp/kseal-fuzz.log; exit 1; }
  done
done
