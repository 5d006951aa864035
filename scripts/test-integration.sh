#!/usr/bin/env bash
# Runs the integration suite: installs what it needs (scripts/deps.sh), fetches
# the pinned Kafka jars (scripts/kafka.sh fetch), then runs test/integration
# against a real 3-broker cluster, through kseal. Extra arguments go to
# `go test` (e.g. -run TestAdmin -v).
#
# Environment: KSEAL_IT_DIRECT=1 bypasses kseal (to tell a proxy bug from a
# test bug), KSEAL_IT_RACE=1 builds kseal with the race detector (off by
# default: it multiplies kseal's memory, and the soak and slow-consumer tests
# assert memory bounds; `make unit` runs the proxy under -race with kfake),
# KSEAL_IT_KEEP=1 keeps the cluster folder, KSEAL_IT_LOGS=1 prints kseal's
# log for passing tests too.
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

scripts/deps.sh
scripts/kafka.sh fetch

# Clear what earlier runs left in test/.work: stopped clusters, and kseal logs
# of failed tests once they are an hour old. A cluster still running
# (cluster.env present) belongs to another run, or its watcher is stopping it.
if [ -d test/.work ]; then
  for d in test/.work/cluster-*; do
    if [ -f "$d/cluster.env.stopped" ] && [ ! -f "$d/cluster.env" ]; then
      rm -rf "$d"
    fi
  done
  find test/.work -mindepth 1 -maxdepth 1 -name 'kseal-*' -mmin +60 -exec rm -rf {} +
fi

export KSEAL_IT_RACE=${KSEAL_IT_RACE:-0}
start=$SECONDS
status=0
go test -tags integration -count=1 -timeout 20m ./test/integration/... "$@" || status=$?
echo "integration suite took $((SECONDS - start))s" >&2
exit $status
