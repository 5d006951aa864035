#!/usr/bin/env bash
# Installs confluent-kafka (Python, with its own bundled librdkafka) from PyPI
# into a venv under .cache/, for tests that need a librdkafka newer than the
# Debian one behind kcat (SCRAM against Kafka 4.x needs librdkafka >= 2.6.1,
# librdkafka#4895). Prints the venv's python on stdout.
#
#   scripts/confluent-kafka.sh        (idempotent; safe to run concurrently)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
VERSION=${CONFLUENT_KAFKA_VERSION:-2.6.1}
CACHE=$ROOT/.cache
HOME_DIR=$CACHE/confluent-kafka-$VERSION

if [ ! -f "$HOME_DIR/.complete" ]; then
  mkdir -p "$CACHE"
  exec 9>"$CACHE/confluent-kafka-$VERSION.lock"
  if command -v flock >/dev/null 2>&1; then flock 9; fi
  if [ ! -f "$HOME_DIR/.complete" ]; then
    command -v python3 >/dev/null 2>&1 || die "python3 is missing"
    echo "confluent-kafka.sh: installing confluent-kafka==$VERSION from PyPI into $HOME_DIR" >&2
    rm -rf "$HOME_DIR"
    python3 -m venv "$HOME_DIR" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
    "$HOME_DIR/bin/pip" install -q --disable-pip-version-check "confluent-kafka==$VERSION" ||
      die "pip could not install confluent-kafka==$VERSION"
    "$HOME_DIR/bin/python" -c 'import confluent_kafka' || die "confluent_kafka does not import"
    touch "$HOME_DIR/.complete"
  fi
  exec 9>&-
fi
echo "$HOME_DIR/bin/python"
