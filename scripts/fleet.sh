#!/usr/bin/env bash
# The fleet run (issue 13, "Scale beyond one proxy"): kseal replicas in
# front of one 3-broker cluster started from the Kafka jars, a KEK per topic
# in the local KMS, clients spread over the replicas. It runs TestFleet
# (test/integration/fleet_test.go) and writes its table into BENCHMARKS.md
# between the fleet:begin and fleet:end markers.
#
#   scripts/fleet.sh            (or: make fleet)
#
# Knobs (environment): FLEET_REPLICAS=4 FLEET_TOPICS=100 FLEET_SECONDS=15
# FLEET_RECORD_BYTES=1024 FLEET_REFRESH=10s BENCH_OUT=BENCHMARKS.md
# FLEET_PROFILES=dir (a CPU profile of each serving replica per step; see
# TestFleet)
set -euo pipefail

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

scripts/deps.sh
scripts/kafka.sh fetch

OUT=${BENCH_OUT:-BENCHMARKS.md}
table=$(mktemp)
trap 'rm -f "$table"' EXIT
start=$SECONDS
load0=$(cut -d' ' -f1-3 /proc/loadavg)
KSEAL_FLEET=1 KSEAL_IT_RACE=0 FLEET_OUT=$table \
  go test -tags integration -count=1 -timeout 30m -run '^TestFleet$' -v ./test/integration/
load1=$(cut -d' ' -f1-3 /proc/loadavg)
echo "fleet run took $((SECONDS - start))s; load average before $load0, after $load1" >&2

{
  echo "Run $(date -u +%Y-%m-%d) on $(nproc) cores ($(uname -m)), kseal $(git describe --tags --always --dirty 2>/dev/null || echo unknown):" \
    "${FLEET_REPLICAS:-4} replicas, ${FLEET_TOPICS:-100} topics with a KEK each (local KMS), 3 partitions, 3 brokers," \
    "${FLEET_RECORD_BYTES:-1024}-byte records, ${FLEET_SECONDS:-15} s per step, franz-go producers with default settings" \
    "(linger 10 ms, idempotent: one Produce request in flight per broker), one per serving replica, then a control step: one replica, as many producers as the last step;" \
    "everything sharing the same cores unpinned. Load average (1, 5, 15 min) before the run $load0, after $load1: the machine is shared."
  echo
  cat "$table"
} >"$table.md"
python3 - "$OUT" "$table.md" <<'PY'
import sys
out, table = sys.argv[1], open(sys.argv[2]).read()
s = open(out).read()
begin, end = "<!-- fleet:begin -->", "<!-- fleet:end -->"
if begin not in s or end not in s:
    sys.exit(f"fleet.sh: {out} lacks the {begin} ... {end} markers")
head, rest = s.split(begin, 1)
_, tail = rest.split(end, 1)
open(out, "w").write(head + begin + "\n" + table.rstrip() + "\n" + end + tail)
PY
rm -f "$table.md"
echo "fleet.sh: results written to $OUT" >&2
