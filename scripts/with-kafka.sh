#!/usr/bin/env bash
# Runs a command against a real Apache Kafka broker and exits with the command's status.
#
#   scripts/with-kafka.sh cargo test --workspace
#
# With KAFKA_BOOTSTRAP_SERVERS set, the command uses that broker. Otherwise a fresh broker is
# started with scripts/kafka.sh (which first stops one left by an earlier, killed run),
# KAFKA_BOOTSTRAP_SERVERS is exported to the command, and the broker is stopped and its data
# removed when the command ends, whether it passes, fails or is interrupted. A lock keeps two
# such runs in one tree from stopping each other's broker: the second waits.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KAFKA=$ROOT/scripts/kafka.sh

[ $# -gt 0 ] || {
    echo "usage: $0 COMMAND [ARG...]" >&2
    exit 2
}

if [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
    echo "with-kafka.sh: using the broker at $KAFKA_BOOTSTRAP_SERVERS" >&2
    exec "$@"
fi

mkdir -p "$ROOT/.kafka"
exec 9>"$ROOT/.kafka/run.lock"
if ! flock -n 9; then
    echo "with-kafka.sh: waiting for another run in this tree to release its broker" >&2
    flock -w 3600 9 || {
        echo "with-kafka.sh: still locked after an hour: ${ROOT}/.kafka/run.lock" >&2
        exit 1
    }
fi

stop_broker() {
    local status=$?
    "$KAFKA" down || echo "with-kafka.sh: stopping the broker failed; see scripts/kafka.sh status" >&2
    exit "$status"
}
trap stop_broker EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$KAFKA" up
KAFKA_BOOTSTRAP_SERVERS=$("$KAFKA" bootstrap)
export KAFKA_BOOTSTRAP_SERVERS
echo "with-kafka.sh: KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS" >&2
"$@"
