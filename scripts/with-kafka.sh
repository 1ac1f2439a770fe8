#!/usr/bin/env bash
# Runs a command against real Apache Kafka brokers and exits with the command's status.
#
#   scripts/with-kafka.sh cargo test --workspace
#
# Two brokers: the plain one (KAFKA_BOOTSTRAP_SERVERS) and the secure one, SASL_SSL with
# SCRAM-SHA-512 (KAFKA_SECURE_BOOTSTRAP_SERVERS, KAFKA_SECURE_CA_LOCATION, KAFKA_SECURE_USERNAME,
# KAFKA_SECURE_PASSWORD). Each one whose variables are set already is used as it is. The others
# are started, side by side, with scripts/kafka.sh (which first stops one left by an earlier,
# killed run), their variables are exported to the command, and they are stopped and their data
# removed when the command ends, whether it passes, fails or is interrupted. A lock keeps two such
# runs in one tree from stopping each other's brokers: the second waits.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KAFKA=$ROOT/scripts/kafka.sh

[ $# -gt 0 ] || {
    echo "usage: $0 COMMAND [ARG...]" >&2
    exit 2
}

start_plain=true start_secure=true
if [ -n "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
    echo "with-kafka.sh: using the broker at $KAFKA_BOOTSTRAP_SERVERS" >&2
    start_plain=false
fi
if [ -n "${KAFKA_SECURE_BOOTSTRAP_SERVERS:-}" ]; then
    echo "with-kafka.sh: using the secure broker at $KAFKA_SECURE_BOOTSTRAP_SERVERS" >&2
    start_secure=false
fi
if [ "$start_plain" = false ] && [ "$start_secure" = false ]; then
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

stop_brokers() {
    local status=$?
    if [ "$start_plain" = true ]; then
        "$KAFKA" down || echo "with-kafka.sh: stopping the broker failed; see scripts/kafka.sh status" >&2
    fi
    if [ "$start_secure" = true ]; then
        KAFKA_SECURE=1 "$KAFKA" down ||
            echo "with-kafka.sh: stopping the secure broker failed; see KAFKA_SECURE=1 scripts/kafka.sh status" >&2
    fi
    exit "$status"
}
trap stop_brokers EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Both start at once: most of a start is the JVM warming up.
pids=()
if [ "$start_plain" = true ]; then
    "$KAFKA" up &
    pids+=($!)
fi
if [ "$start_secure" = true ]; then
    KAFKA_SECURE=1 "$KAFKA" up &
    pids+=($!)
fi
failed=false
for pid in "${pids[@]}"; do
    wait "$pid" || failed=true
done
[ "$failed" = false ] || exit 1

if [ "$start_plain" = true ]; then
    KAFKA_BOOTSTRAP_SERVERS=$("$KAFKA" bootstrap)
    export KAFKA_BOOTSTRAP_SERVERS
    echo "with-kafka.sh: KAFKA_BOOTSTRAP_SERVERS=$KAFKA_BOOTSTRAP_SERVERS" >&2
fi
if [ "$start_secure" = true ]; then
    while IFS='=' read -r name value; do
        export "$name=$value"
    done < <(KAFKA_SECURE=1 "$KAFKA" env)
    echo "with-kafka.sh: KAFKA_SECURE_BOOTSTRAP_SERVERS=$KAFKA_SECURE_BOOTSTRAP_SERVERS" >&2
fi
"$@"
