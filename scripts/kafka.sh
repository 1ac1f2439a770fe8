#!/usr/bin/env bash
# A single-node Apache Kafka 4.x (KRaft, broker+controller) on 127.0.0.1 for tests.
#
#   scripts/kafka.sh up          fetch the jars once, format fresh storage, start, wait until ready
#   scripts/kafka.sh down        stop the broker (SIGTERM, then SIGKILL) and remove its data
#   scripts/kafka.sh status      say whether it runs and answers; exit 0 if so, 3 if not
#   scripts/kafka.sh logs [-f]   the broker log (last KAFKA_LOG_LINES lines, default 100)
#   scripts/kafka.sh bootstrap   print host:port of the running broker
#   scripts/kafka.sh env         (secure broker) print the client's variables, one NAME=value a line
#
# KAFKA_SECURE=1 selects a second, separate broker (own ports, data, state in .kafka/secure/) whose
# only client listener is SASL_SSL with SCRAM-SHA-512, as managed clusters have: `up` makes a CA
# and a server certificate for 127.0.0.1/localhost with openssl, and creates the SCRAM users
# (`execution-coordinator` for clients, `broker` for the broker itself) with random passwords when
# it formats the storage. `env` prints KAFKA_SECURE_BOOTSTRAP_SERVERS, KAFKA_SECURE_CA_LOCATION,
# KAFKA_SECURE_USERNAME and KAFKA_SECURE_PASSWORD for tests.
#
# Environment: KAFKA_PORT (default 9092; when unset and 9092 is taken by something else, the next
# free pair of ports is used), KAFKA_CONTROLLER_PORT (default KAFKA_PORT+1), KAFKA_START_TIMEOUT
# (seconds, default 60), KAFKA_STOP_TIMEOUT (seconds, default 20), KAFKA_HEAP (default 512m). The
# secure broker takes KAFKA_SECURE_PORT and KAFKA_SECURE_CONTROLLER_PORT instead (default 9094).
#
# Jars: kafka/pom.xml, copied by Maven into .cache/kafka-libs. State: .kafka/ (pid, port, config,
# log); the log segments live in a temporary folder removed by `down`. `up` first stops any broker
# left running by an earlier run of this tree (a `java … kafka.Kafka .kafka/server.properties`).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
POM=$ROOT/kafka/pom.xml
LOG4J_CONFIG=$ROOT/kafka/log4j2.properties
LIBS=$ROOT/.cache/kafka-libs
SECURE=${KAFKA_SECURE:-0}
case "$SECURE" in
0 | "") SECURE=0 ;;
1) ;;
*) echo "kafka.sh: KAFKA_SECURE must be 0 or 1 (got $SECURE)" >&2 && exit 2 ;;
esac
if [ "$SECURE" = 1 ]; then
    STATE=$ROOT/.kafka/secure
    PORT_VAR=KAFKA_SECURE_PORT
    REQUESTED_PORT=${KAFKA_SECURE_PORT:-}
    REQUESTED_CONTROLLER_PORT=${KAFKA_SECURE_CONTROLLER_PORT:-}
    DEFAULT_PORTS="9094 $(seq 19194 2 19292)"
    UP_COMMAND="KAFKA_SECURE=1 scripts/kafka.sh up"
else
    STATE=$ROOT/.kafka
    PORT_VAR=KAFKA_PORT
    REQUESTED_PORT=${KAFKA_PORT:-}
    REQUESTED_CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-}
    DEFAULT_PORTS="9092 $(seq 19092 2 19190)"
    UP_COMMAND="scripts/kafka.sh up"
fi
TLS=$STATE/tls
CLIENT_ENV=$STATE/client.env
PID_FILE=$STATE/kafka.pid
PORT_FILE=$STATE/port
DATA_FILE=$STATE/data-dir
CONFIG=$STATE/server.properties
LOG=$STATE/broker.log
LOCK=$STATE/script.lock
START_TIMEOUT=${KAFKA_START_TIMEOUT:-60}
STOP_TIMEOUT=${KAFKA_STOP_TIMEOUT:-20}
HEAP=${KAFKA_HEAP:-512m}

if [ "$SECURE" = 1 ]; then
    say() { echo "kafka.sh (secure): $*" >&2; }
else
    say() { echo "kafka.sh: $*" >&2; }
fi
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
    rm -f "$PID_FILE" "$PORT_FILE" "$DATA_FILE" "$CLIENT_ENV"
    rm -rf "$TLS"
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

# The secure broker speaks only TLS on its client port, so it is ready when the port accepts
# connections and the broker has logged that it finished starting (after it is unfenced).
secure_ready() {
    port_in_use "$1" && grep -q "Kafka Server started" "$LOG" 2>/dev/null
}

ready() {
    if [ "$SECURE" = 1 ]; then secure_ready "$1"; else metadata_ready "$1"; fi
}

# --- up --------------------------------------------------------------------------------------

fetch_jars() {
    local stamp
    stamp=$(sha256sum "$POM" | cut -d' ' -f1)
    if [ -f "$LIBS/.complete" ] && [ "$(cat "$LIBS/.complete")" = "$stamp" ]; then
        return 0
    fi
    # The plain and the secure broker start side by side: one fetches, the other waits for it
    # and then finds the jars in place.
    mkdir -p "$(dirname "$LIBS")"
    exec 7>"$LIBS.lock"
    flock -w 1800 7 || die "another fetch of the Kafka jars still holds ${LIBS#"$ROOT"/}.lock after 30 minutes"
    if [ -f "$LIBS/.complete" ] && [ "$(cat "$LIBS/.complete")" = "$stamp" ]; then
        exec 7>&-
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
    exec 7>&-
}

choose_ports() {
    local first=${DEFAULT_PORTS%% *}
    if [ -n "$REQUESTED_PORT" ]; then
        PORT=$REQUESTED_PORT
        CONTROLLER_PORT=${REQUESTED_CONTROLLER_PORT:-$((PORT + 1))}
        port_in_use "$PORT" && die "port $PORT ($PORT_VAR) is in use by $(describe_listener "$PORT")"
        port_in_use "$CONTROLLER_PORT" &&
            die "controller port $CONTROLLER_PORT is in use by $(describe_listener "$CONTROLLER_PORT"); set ${PORT_VAR%_PORT}_CONTROLLER_PORT"
        return 0
    fi
    for PORT in $DEFAULT_PORTS; do
        CONTROLLER_PORT=${REQUESTED_CONTROLLER_PORT:-$((PORT + 1))}
        if ! port_in_use "$PORT" && ! port_in_use "$CONTROLLER_PORT"; then
            [ "$PORT" = "$first" ] || say "port $first is in use by $(describe_listener "$first"); using $PORT"
            return 0
        fi
    done
    die "no free port pair found in: $DEFAULT_PORTS"
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
    {
        echo "# Written by scripts/kafka.sh: a single-node test broker, not for production."
        if [ "$SECURE" = 1 ]; then write_secure_listeners; else write_plaintext_listeners; fi
        write_common_config "$1"
    } >"$CONFIG"
}

write_plaintext_listeners() {
    cat <<EOF
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
EOF
}

# One SASL_SSL listener for clients and the broker itself (SCRAM-SHA-512, TLS with the test CA);
# the controller stays on PLAINTEXT 127.0.0.1.
write_secure_listeners() {
    cat <<EOF
listeners=SASL_SSL://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=SASL_SSL://127.0.0.1:$PORT
inter.broker.listener.name=SASL_SSL
listener.security.protocol.map=SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT
sasl.enabled.mechanisms=SCRAM-SHA-512
sasl.mechanism.inter.broker.protocol=SCRAM-SHA-512
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="broker" password="$BROKER_PASSWORD";
ssl.keystore.type=PEM
ssl.keystore.location=$TLS/broker-keystore.pem
ssl.truststore.type=PEM
ssl.truststore.location=$TLS/ca.pem
EOF
}

write_common_config() {
    cat <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$CONTROLLER_PORT
controller.listener.names=CONTROLLER
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

random_secret() { head -c 16 /dev/urandom | od -An -v -tx1 | tr -d ' \n'; }

# A CA, and a broker certificate it signs for 127.0.0.1 and localhost, made fresh by every `up`
# (P-256 keys: fast to make). The broker's PEM keystore is its key followed by its certificate.
make_tls() {
    command -v openssl >/dev/null ||
        die "openssl is needed to make the secure broker's certificates; install it (apt-get install openssl)"
    rm -rf "$TLS"
    mkdir -p "$TLS"
    chmod 700 "$TLS"
    if ! (
        cd "$TLS"
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 7 \
            -subj "/CN=execution-coordinator test CA" -keyout ca.key -out ca.pem \
            -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
        openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
            -subj "/CN=localhost" -keyout broker.key -out broker.csr
        printf '%s\n' "subjectAltName=IP:127.0.0.1,DNS:localhost" "basicConstraints=CA:FALSE" \
            "keyUsage=critical,digitalSignature,keyEncipherment" \
            "extendedKeyUsage=serverAuth,clientAuth" >broker.ext
        openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 7 \
            -extfile broker.ext -out broker.pem
        cat broker.key broker.pem >broker-keystore.pem
    ) >"$STATE/tls.log" 2>&1; then
        cat "$STATE/tls.log" >&2
        die "making the test certificates with openssl failed"
    fi
}

JAVA_OPTS=(-Xms128m "-Xmx$HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true
    "-Dlog4j2.configurationFile=$LOG4J_CONFIG")

cmd_up() {
    local data cluster_id pid launcher deadline client_password
    local format_args=()
    command -v java >/dev/null || die "Java 17+ is needed to run Kafka; install it (apt-get install openjdk-17-jre-headless)"
    stop_all
    fetch_jars
    choose_ports
    data=$(mktemp -d "${TMPDIR:-/tmp}/kafka-data.XXXXXX")
    echo "$data" >"$DATA_FILE"
    if [ "$SECURE" = 1 ]; then
        make_tls
        BROKER_PASSWORD=$(random_secret)
        client_password=$(random_secret)
        # SCRAM users written into the metadata log at format time: no admin call needed.
        format_args=(--add-scram "SCRAM-SHA-512=[name=broker,password=$BROKER_PASSWORD]"
            --add-scram "SCRAM-SHA-512=[name=execution-coordinator,password=$client_password]")
    fi
    write_config "$data"
    cluster_id=$(random_cluster_id)
    if ! java -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC "-Dlog4j2.configurationFile=$LOG4J_CONFIG" \
        -cp "$LIBS/*" kafka.tools.StorageTool format --config "$CONFIG" --cluster-id "$cluster_id" \
        --ignore-formatted "${format_args[@]}" >"$STATE/format.log" 2>&1; then
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
        if [ -n "$pid" ] && ready "$PORT"; then
            break
        fi
        if ! alive "$launcher"; then
            say "broker exited during startup; last lines of ${LOG#"$ROOT"/}:"
            tail -n 40 "$LOG" >&2
            stop_all
            exit 1
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "broker (pid ${pid:-?}) was not ready on 127.0.0.1:$PORT within ${START_TIMEOUT}s; last lines of ${LOG#"$ROOT"/}:"
            tail -n 40 "$LOG" >&2
            stop_all
            exit 1
        fi
        sleep 0.2
    done
    if [ "$SECURE" = 1 ]; then
        (
            umask 077
            printf '%s\n' "KAFKA_SECURE_BOOTSTRAP_SERVERS=127.0.0.1:$PORT" \
                "KAFKA_SECURE_CA_LOCATION=$TLS/ca.pem" \
                "KAFKA_SECURE_USERNAME=execution-coordinator" \
                "KAFKA_SECURE_PASSWORD=$client_password" >"$CLIENT_ENV"
        )
    fi
    say "broker ready on 127.0.0.1:$PORT (pid $pid, controller 127.0.0.1:$CONTROLLER_PORT, log ${LOG#"$ROOT"/})"
}

cmd_status() {
    local pid port
    pid=$(cat "$PID_FILE" 2>/dev/null || true)
    port=$(cat "$PORT_FILE" 2>/dev/null || true)
    if is_our_broker "$pid" && ready "$port"; then
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
    is_our_broker "$pid" || die "no broker is running; start it with $UP_COMMAND"
    echo "127.0.0.1:$(cat "$PORT_FILE")"
}

cmd_env() {
    local pid
    [ "$SECURE" = 1 ] || die "env is for the secure broker: KAFKA_SECURE=1 $0 env"
    pid=$(cat "$PID_FILE" 2>/dev/null || true)
    is_our_broker "$pid" && [ -f "$CLIENT_ENV" ] ||
        die "no secure broker is running; start it with $UP_COMMAND"
    cat "$CLIENT_ENV"
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
env) cmd_env ;;
*)
    echo "usage: [KAFKA_SECURE=1] $0 up|down|status|logs [-f]|bootstrap|env" >&2
    exit 2
    ;;
esac
