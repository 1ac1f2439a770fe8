#!/usr/bin/env bash
# Hot-standby takeover time with many executions queued (issue 11, BENCHMARKS.md):
#
#   KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:9092 scripts/takeover.sh [QUEUED] [kill|term]
#
# Starts an owner (release build) with a pool that holds 4 executions, queues QUEUED requests of
# 1 KiB scripts (default 100000) with `loadgen`, starts a second instance with the same config
# (the standby, which keeps the state current), waits until it has caught up, then
# ends the owner with SIGKILL (`kill`, default: the group notices after its session timeout) or
# SIGTERM (`term`: the owner leaves the group) and times, from that moment, the standby's
# "Coordinator started." (queue and pool rebuilt, consuming). Prints one line of figures; logs
# stay in target/takeover/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
QUEUED=${1:-100000}
HOW=${2:-kill}
: "${KAFKA_BOOTSTRAP_SERVERS:?set KAFKA_BOOTSTRAP_SERVERS (scripts/kafka.sh up; scripts/kafka.sh bootstrap)}"
BIN=$ROOT/target/release/execution-coordinator
export NO_COLOR=1
[ -x "$BIN" ] || cargo build --release -p execution-coordinator
OUT=$ROOT/target/takeover
mkdir -p "$OUT"
RUN=tko$(date +%s)
CONFIG=$OUT/$RUN.toml
cat >"$CONFIG" <<EOF
[queue]
max_queue_size = $((QUEUED + 1000))
max_executions_per_user = $((QUEUED + 1000))
stale_timeout = "2h"
[resources]
total_cpu_cores = 0.5
overcommit_factor = 1.0
min_available_cpu_cores = 0.05
[kafka]
bootstrap_servers = "$KAFKA_BOOTSTRAP_SERVERS"
topic_prefix = "$RUN."
group_id = "$RUN"
[daemon]
metrics_addr = ""
stats_interval = "1s"
log_level = "info,librdkafka=warn,rdkafka=warn"
EOF

now_ms() { date +%s%3N; }
# Waits (bounded) until file $1 has a line matching $2; prints the line.
wait_log() {
    local deadline=$((SECONDS + ${3:-600}))
    until grep -m1 -- "$2" "$1"; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "takeover.sh: no \"$2\" in $1 in time" >&2
            tail -n 20 "$1" >&2
            return 1
        fi
        sleep 0.05
    done
}

"$BIN" run --config "$CONFIG" >"$OUT/$RUN.owner.log" 2>&1 &
OWNER=$!
trap 'kill -9 $OWNER ${STANDBY:-} 2>/dev/null || true' EXIT
wait_log "$OUT/$RUN.owner.log" "Partitions assigned" >/dev/null
"$BIN" loadgen --config "$CONFIG" --rate 0 --count "$QUEUED" --script-bytes 1024 --cpu 100m \
    --memory 64Mi --users 1000 --seed 7 --quiet >"$OUT/$RUN.loadgen.log" 2>&1
# The owner has queued them all when its ingress stats say so.
deadline=$((SECONDS + 600))
until grep -q "accepted=$QUEUED " "$OUT/$RUN.owner.log"; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "takeover.sh: the owner did not accept $QUEUED" >&2; exit 1; }
    sleep 0.5
done
"$BIN" run --config "$CONFIG" >"$OUT/$RUN.standby.log" 2>&1 &
STANDBY=$!
wait_log "$OUT/$RUN.standby.log" "Standby: keeping the state current" >/dev/null
# Caught up once it reached the end; a pool that keeps demoting its blocked head keeps the
# owner writing, so after two minutes it goes on with what the standby has.
wait_log "$OUT/$RUN.standby.log" "Standby caught up with the state topic" 120 >/dev/null ||
    echo "takeover.sh: the standby did not reach the end in 120 s; taking over from where it is" >&2
started=$(now_ms)
if [ "$HOW" = term ]; then kill -TERM "$OWNER"; else kill -9 "$OWNER"; fi
line=$(wait_log "$OUT/$RUN.standby.log" "Coordinator started." 120)
took=$(($(now_ms) - started))
kept=$(grep -m1 -o 'kept=[0-9]*' "$OUT/$RUN.standby.log" || echo kept=0)
read=$(grep -m1 -o ' read=[0-9]*' "$OUT/$RUN.standby.log" || echo read=?)
restored=$(grep -m1 -o 'restored_queued=[0-9]*' <<<"$line" || true)
restore_ms=$(grep "State restored." "$OUT/$RUN.standby.log" | grep -m1 -o 'elapsed_ms=[0-9]*' || true)
echo "takeover ($HOW, $QUEUED queued): ${took} ms from the owner's end to the standby's start; $kept$read $restored $restore_ms (logs: target/takeover/$RUN.*)"
kill -TERM "$STANDBY" 2>/dev/null || true
wait "$STANDBY" 2>/dev/null || true
