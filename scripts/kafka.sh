#!/usr/bin/env bash
# A single-node Apache Kafka 4.x (KRaft, broker+controller) on 127.0.0.1 for tests (SPEC §7).
#
#   scripts/kafka.sh up          fetch the jars once, format fresh storage, start, wait until ready
#   scripts/kafka.sh down        stop the broker (SIGTERM, then SIGKILL) and remove its data
#   scripts/kafka.sh status      say whether it runs and answers; exit 0 if so, 3 if not
#   scripts/kafka.sh logs [-f]   the broker log (last KAFKA_LOG_LINES lines, default 100)
#   scripts/kafka.sh bootstrap   print host:port of the running broker
#
# Environment: KAFKA_PORT (default 9092; when unset and 9092 is taken by something else, the next
# free pair of ports is used), KAFKA_CONTROLLER_PORT (default KAFKA_PORT+1), KAFKA_START_TIMEOUT
# (seconds, default 60), KAFKA_STOP_TIMEOUT (seconds, default 20), KAFKA_HEAP (default 512m).
#
# Jars: kafka/pom.xml, copied by Maven into .cache/kafka-libs. State: .kafka/ (pid, port, config,
# log); the log segments live in a temporary folder removed by `down`. `up` first stops any broker
# left running by an earlier run of this tree (a `java … kafka.Kafka .kafka/server.properties`).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
POM=$ROOT/kafka/pom.xml
LOG4J_CONFIG=$ROOT/kafka/log4j2.properties
LIBS=$ROOT/.cache/kafka-libs
STATE=$ROOT/.kafka
PID_FILE=$STATE/kafka.pid
PORT_FILE=$STATE/port
DATA_FILE=$STATE/data-dir
CONFIG=$STATE/server.properties
LOG=$STATE/broker.log
LOCK=$STATE/script.lock
START_TIMEOUT=${KAFKA_START_TIMEOUT:-60}
STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-20}
HEAP=${KAFKA_HEAP:-512m}

say() { echo "kafka.sh: $*" >&2; }
die() {
    say "error: $*"
    exit 1
}

# --- processes and ports --------------------------------------------------------------------

# True when process $1 exists and is not a zombie.
alive() {
    local stat
    [ -n "${1:-}" ] && read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
    stat=${stat##*) }
    [ "${stat:0:1}" != Z ]
}

# True when process $1 is a broker started by this script in this tree: `java … kafka.Kafka
# <this tree's .kafka/server.properties>`. Guards against pid reuse and other trees' brokers.
is_our_broker() {
    local args
    alive "$1" || return 1
    mapfile -d '' -t args 2>/dev/null <"/proc/$1/cmdline" || return 1
    [ "${#args[@]}" -ge 3 ] && [ "${args[0]##*/}" = java ] &&
        [ "${args[-2]}" = kafka.Kafka ] && [ "${args[-1]}" = "$CONFIG" ]
}

# Pids of every running broker of this tree, whether or not the pid file still names it.
our_brokers() {
    local dir
    for dir in /proc/[0-9]*; do
        if is_our_broker "${dir#/proc/}"; then echo "${dir#/proc/}"; fi
    done
}

# Pid of the process listening on TCP port $1 (empty when none or not visible).
listener_pid() {
    local hex inodes inode fd
    hex=$(printf '%04X' "$1")
    inodes=$(awk -v p=":$hex" '$4 == "0A" && toupper(substr($2, length($2) - 4)) == p { print $10 }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null | sort -u)
    [ -n "$inodes" ] || return 0
    for fd in /proc/[0-9]*/fd/*; do
        inode=$(readlink "$fd" 2>/dev/null) || continue
        for i in $inodes; do
            if [ "$inode" = "socket:[$i]" ]; then
                fd=${fd#/proc/}
                echo "${fd%%/*}"
                return 0
            fi
        done
    done
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Sends SIGTERM, waits up to STOP_TIMEOUT seconds, then SIGKILL.
stop_pid() {
    local pid=$1 waited=0
    kill -TERM "$pid" 2>/dev/null || return 0
    while alive "$pid"; do
        if [ "$waited" -ge $((STOP_TIMEOUT * 10)) ]; then
            say "broker (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            while alive "$pid"; do sleep 0.1; done
            return 0
        fi
        sleep 0.1
        waited=$((waited + 1))
    done
}

# Stops every broker of this tree and removes its data. Safe to call when nothing runs.
stop_all() {
    local pid recorded
    recorded=$(cat "$PID_FILE" 2>/dev/null || true)
    for pid in $(our_brokers); do
        if [ "$pid" = "$recorded" ]; then
            say "stopping broker (pid $pid)"
        else
            say "stopping broker of this tree left without a pid file (pid $pid)"
        fi
        stop_pid "$pid"
    done
    if [ -f "$DATA_FILE" ]; then
        rm -rf -- "$(cat "$DATA_FILE")"
    fi
    rm -f "$PID_FILE" "$PORT_FILE" "$DATA_FILE"
}

# --- readiness -------------------------------------------------------------------------------

# Sends a Metadata request (v4, all topics) to 127.0.0.1:$1 and succeeds when the broker answers
# with at least one live broker, i.e. it is unfenced and serving clients.
metadata_ready() {
    local reply
    # size=19, api_key=3 (Metadata), api_version=4, correlation_id=42, client_id="ping",
    # topics=null (all), allow_auto_topic_creation=false.
    reply=$(timeout 2 bash -c '
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf "\x00\x00\x00\x13\x00\x03\x00\x04\x00\x00\x00\x2a\x00\x04ping\xff\xff\xff\xff\x00" >&3
        head -c 16 <&3 | od -An -v -tx1' _ "$1" 2>/dev/null) || return 1
    # shellcheck disable=SC2086
    set -- $reply
    # size(4) correlation_id(4) throttle_time_ms(4) brokers.length(4)
    [ $# -eq 16 ] && [ "$5$6$7$8" = "0000002a" ] && [ $((16#${13}${14}${15}${16})) -ge 1 ]
}

# --- up --------------------------------------------------------------------------------------

fetch_jars() {
    local stamp
    stamp=$(sha256sum "$POM" | cut -d' ' -f1)
    if [ -f "$LIBS/.complete" ] && [ "$(cat "$LIBS/.complete")" = "$stamp" ]; then
        return 0
    fi
    command -v mvn >/dev/null || die "Maven (mvn) is needed to fetch the Kafka jars; install it (apt-get install maven)"
    say "fetching Apache Kafka jars with Maven into ${LIBS#"$ROOT"/} (once)"
    rm -rf "$LIBS.tmp"
    mkdir -p "$STATE"
    if ! mvn -B -f "$POM" dependency:copy-dependencies -DoutputDirectory="$LIBS.tmp" >"$STATE/mvn.log" 2>&1; then
        rm -rf "$LIBS.tmp"
        tail -n 40 "$STATE/mvn.log" >&2
        die "mvn dependency:copy-dependencies on kafka/pom.xml failed (above: the end of ${STATE#"$ROOT"/}/mvn.log)"
    fi
    rm -rf "$LIBS"
    mv "$LIBS.tmp" "$LIBS"
    echo "$stamp" >"$LIBS/.complete"
}

choose_ports() {
    if [ -n "${KAFKA_PORT:-}" ]; then
        PORT=$KAFKA_PORT
        CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((PORT + 1))}
        port_in_use "$PORT" && die "port $PORT (KAFKA_PORT) is in use by $(describe_listener "$PORT")"
        port_in_use "$CONTROLLER_PORT" &&
            die "controller port $CONTROLLER_PORT is in use by $(describe_listener "$CONTROLLER_PORT"); set KAFKA_CONTROLLER_PORT"
        return 0
    fi
    for PORT in 9092 $(seq 19092 2 19190); do
        CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((PORT + 1))}
        if ! port_in_use "$PORT" && ! port_in_use "$CONTROLLER_PORT"; then
            [ "$PORT" = 9092 ] || say "port 9092 is in use by $(describe_listener 9092); using $PORT"
            return 0
        fi
    done
    die "no free port pair found in 9092, 19092..19191"
}

describe_listener() {
    local pid
    pid=$(listener_pid "$1")
    if [ -n "$pid" ]; then
        echo "pid $pid ($(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | cut -c1-120))"
    else
        echo "another process"
    fi
}

random_cluster_id() {
    local id
    # A Kafka Uuid: 16 random bytes, URL-safe base64 without padding, never starting with '-'.
    while :; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
        [ "${id:0:1}" != "-" ] && echo "$id" && return 0
    done
}

write_config() {
    cat >"$CONFIG" <<EOF
# Written by scripts/kafka.sh: a single-node test broker, not for production.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
log.dirs=$1
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=4
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=4
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=4
EOF
}

JAVA_OPTS=(-Xms128m "-Xmx$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$LOG4J_CONFIG")

cmd_up() {
    local data cluster_id pid launcher deadline
    command -v java >/dev/null || die "Java 17+ is needed to run Kafka; install it (apt-get install openjdk-17-jre-headless)"
    stop_all
    fetch_jars
    choose_ports
    data=$(mktemp -d "${TMPDIR:-/tmp}/kafka-data.XXXXXX")
    echo "$data" >"$DATA_FILE"
    write_config "$data"
    cluster_id=$(random_cluster_id)
    if ! java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC "-Dlog4j2.configurationFile=$LOG4J_CONFIG" \
        -cp "$LIBS/*" kafka.tools.StorageTool format --config "$CONFIG" --cluster-id "$cluster_id" \
        --ignore-formatted >"$STATE/format.log" 2>&1; then
        cat "$STATE/format.log" >&2
        die "formatting KRaft storage in $data failed"
    fi
    # Own session, and no descriptor but stdio inherited: the broker must not hold the caller's
    # locks or pipes (make test's lock, a test runner's output) after the caller dies. `setsid -w`
    # forks when the subshell leads its process group; it then lives exactly as long as the broker.
    (
        for fd in /proc/$BASHPID/fd/*; do
            fd=${fd##*/}
            [ "$fd" -gt 2 ] && eval "exec $fd>&-"
        done
        exec setsid -w java "${JAVA_OPTS[@]}" -cp "$LIBS/*" kafka.Kafka "$CONFIG"
    ) </dev/null >"$LOG" 2>&1 &
    launcher=$!
    echo "$PORT" >"$PORT_FILE"
    deadline=$((SECONDS + START_TIMEOUT))
    while :; do
        pid=$(our_brokers | head -n 1)
        [ -n "$pid" ] && echo "$pid" >"$PID_FILE"
        if [ -n "$pid" ] && metadata_ready "$PORT"; then
            break
        fi
        if ! alive "$launcher"; then
            say "broker exited during startup; last lines of ${LOG#"$ROOT"/}:"
            tail -n 40 "$LOG" >&2
            stop_all
            exit 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "broker (pid ${pid:-?}) did not answer a metadata request on 127.0.0.1:$PORT within ${START_TIMEOUT}s; last lines of ${LOG#"$ROOT"/}:"
            tail -n 40 "$LOG" >&2
            stop_all
            exit 1
        fi
        sleep 0.2
    done
    say "broker ready on 127.0.0.1:$PORT (pid $pid, controller 127.0.0.1:$CONTROLLER_PORT, log ${LOG#"$ROOT"/})"
}

cmd_status() {
    local pid port
    pid=$(cat "$PID_FILE" 2>/dev/null || true)
    port=$(cat "$PORT_FILE" 2>/dev/null || true)
    if is_our_broker "$pid" && metadata_ready "$port"; then
        echo "running: pid $pid, bootstrap 127.0.0.1:$port"
    elif is_our_broker "$pid"; then
        echo "starting or unhealthy: pid $pid, not answering on 127.0.0.1:$port"
        exit 3
    else
        echo "stopped"
        exit 3
    fi
}

cmd_bootstrap() {
    local pid
    pid=$(cat "$PID_FILE" 2>/dev/null || true)
    is_our_broker "$pid" || die "no broker is running; start it with scripts/kafka.sh up"
    echo "127.0.0.1:$(cat "$PORT_FILE")"
}

cmd_logs() {
    [ -f "$LOG" ] || die "no broker log yet (${LOG#"$ROOT"/})"
    if [ "${1:-}" = "-f" ]; then
        exec tail -n "${KAFKA_LOG_LINES:-100}" -F "$LOG"
    fi
    tail -n "${KAFKA_LOG_LINES:-100}" "$LOG"
}

with_lock() {
    mkdir -p "$STATE"
    exec 8>"$LOCK"
    flock -w 120 8 || die "another scripts/kafka.sh up/down holds ${LOCK#"$ROOT"/}"
    "$@"
}

case "${1:-}" in
up) with_lock cmd_up ;;
down) with_lock stop_all ;;
status) cmd_status ;;
logs) cmd_logs "${2:-}" ;;
bootstrap) cmd_bootstrap ;;
*)
    echo "usage: $0 up|down|status|logs [-f]|bootstrap" >&2
    exit 2
    ;;
esac
