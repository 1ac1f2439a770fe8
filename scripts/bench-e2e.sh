#!/usr/bin/env bash
# `make bench`: the core criterion benchmarks and the end-to-end benchmarks through a real Apache
# Kafka broker, then one table of both. Needs a broker: run it as
#
#   scripts/with-kafka.sh scripts/bench-e2e.sh        (what `make bench` does)
#
# Every end-to-end scenario runs in each topic layout × delivery mode: E2E_LAYOUTS
# (per_event_type,shared; default both) and E2E_MODES (exactly-once,at-least-once; default both).
#
# Environment: BENCH_QUICK=1 for a short run of both (sets CORE_BENCH_QUICK=1 and E2E_QUICK=1);
# the E2E_* knobs documented in actors/benches/e2e/main.rs (E2E_SCENARIOS, E2E_LAYOUTS,
# E2E_MODES, E2E_THROUGHPUT_N, E2E_PERF=1, …). Logs, latency samples and results.json of the
# end-to-end run go to target/e2e-bench/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

if [ -z "${KAFKA_BOOTSTRAP_SERVERS:-}" ]; then
    echo "bench-e2e.sh: KAFKA_BOOTSTRAP_SERVERS is not set; run it through scripts/with-kafka.sh (make bench)" >&2
    exit 2
fi
if [ "${BENCH_QUICK:-0}" != 0 ]; then
    export CORE_BENCH_QUICK=1 E2E_QUICK=1
fi

# Criterion results older than this run are left out of the table.
BENCH_STARTED=$(date +%s)
export BENCH_STARTED
started=$SECONDS

cargo bench --workspace

echo
echo "== make bench: one table ($(date -u +%Y-%m-%dT%H:%MZ), $((SECONDS - started)) s, command: make bench) =="
E2E_BENCH_ROLE=report cargo bench -q -p execution-coordinator --bench e2e
