#!/usr/bin/env bash
# Installs and checks the tools the integration suite needs. Idempotent: it
# only installs what is missing, so it is cheap to run before every suite.
#   kcat     librdkafka's command-line client (Debian package), an independent
#            Kafka client implementation
#   java     17+ runs the Apache Kafka broker and the Java console clients
#   mvn      fetches the pinned Kafka jars from Maven Central (scripts/kafka.sh)
#   python3  picks free loopback ports (scripts/lib.sh)
set -euo pipefail
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

apt_install kcat

command -v java >/dev/null 2>&1 || die "java is missing (need a JDK 17+)"
jv=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
[ "${jv%%.*}" -ge 17 ] 2>/dev/null || die "java is version '$jv', Kafka 4.x needs 17+"
command -v javac >/dev/null 2>&1 || die "javac is missing (need a JDK, not a JRE: the suite runs a small Java client from source)"
command -v mvn >/dev/null 2>&1 || die "mvn is missing (Maven fetches the Kafka jars)"
command -v python3 >/dev/null 2>&1 || die "python3 is missing (used to pick free ports)"
