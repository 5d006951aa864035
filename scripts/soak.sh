#!/usr/bin/env bash
# The long soak (`make soak`): the robustness tests of test/integration with
# long settings, against a fresh 3-broker Kafka cluster that the test run
# starts and stops itself (its TestMain), so nothing else shares it.
#
#   TestSoak             idempotent producers and a consumer group through an
#                        encrypting kseal for KSEAL_SOAK_DURATION (default
#                        5m): exactly-once, checksums, kseal's RSS flat
#   TestFault*           broker kill -9 and restart and kseal restart, each
#                        KSEAL_FAULT_ROUNDS times (default 3) in one stream;
#                        KMS outage, slow consumers, oversize ciphertext
#   TestZZAtRest         no plaintext canary in any log segment afterwards
#
# Bounded: go test gets a timeout of the soak duration plus 20 minutes.
# Other knobs (see test/integration/soak_test.go): KSEAL_SOAK_PRODUCERS,
# KSEAL_SOAK_CONSUMERS, KSEAL_SOAK_RATE (records/s per producer),
# KSEAL_SOAK_MAX_RSS_MIB. Extra arguments go to go test (e.g. -run TestSoak).
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

export KSEAL_SOAK_DURATION=${KSEAL_SOAK_DURATION:-5m}
export KSEAL_FAULT_ROUNDS=${KSEAL_FAULT_ROUNDS:-3}

# Go duration syntax ("90s", "5m", "1h30m") to whole seconds, so the bound
# below is right whatever unit was used.
soak_secs=$(python3 - "$KSEAL_SOAK_DURATION" <<'EOF'
import re, sys
s = sys.argv[1]
units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", s)
if not parts or "".join(n + u for n, u in parts) != s:
    sys.exit(f"soak.sh: KSEAL_SOAK_DURATION={s!r} is not a duration like 90s, 5m or 1h30m")
print(int(sum(float(n) * units[u] for n, u in parts)))
EOF
)
timeout=$((soak_secs + 20 * 60))

scripts/deps.sh
scripts/kafka.sh fetch

echo "soak.sh: soak $KSEAL_SOAK_DURATION, $KSEAL_FAULT_ROUNDS fault rounds, bounded at ${timeout}s" >&2
start=$SECONDS
status=0
go test -tags integration -count=1 -timeout "${timeout}s" -v \
  -run '^(TestSoak|TestFault.*|TestLedger|TestAtRestScanner|TestZZAtRest)$' \
  ./test/integration/ "$@" || status=$?
echo "soak.sh: took $((SECONDS - start))s, exit status $status" >&2
exit $status
