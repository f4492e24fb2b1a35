#!/usr/bin/env bash
# Real Apache Kafka (KRaft) on loopback for tests.
#
# The jars come from Maven Central (no download site is reachable from our machines):
# org.apache.kafka:kafka_2.13 and its runtime dependencies, plus log4j2 so the brokers
# log to a file, cached under $SLUICE_CACHE/kafka/<version>/libs (~/.cache/sluice by default). Every node is a combined
# controller+broker (process.roles=broker,controller); the controller quorum is all
# nodes. Cluster state (configs, data, logs, PIDs) lives under bin/kafka-cluster.
#
# Usage: hack/kafka.sh <command>
#   install              fetch the jars with Maven (skipped when already cached)
#   up [N]               start an N-node cluster (default $KAFKA_BROKERS, else 3), wait
#                        until every node serves Kafka requests and sees N unfenced
#                        brokers, print the bootstrap servers on stdout
#   down                 stop every node (SIGTERM, SIGKILL after $KAFKA_STOP_TIMEOUT s)
#                        and remove the cluster state
#   stop-node I [--kill] stop node I (0-based): SIGTERM (controlled shutdown) by
#                        default, SIGKILL with --kill
#   start-node I         restart node I with its config and data; wait until it serves
#                        requests and is unfenced
#   status               which nodes are up and which brokers each one sees
#   bootstrap            print the bootstrap servers of the current cluster
#
# Node I (0-based) has node.id I, listens on $KAFKA_HOST:$KAFKA_PORT_BASE+I for
# clients and on $KAFKA_HOST:$KAFKA_PORT_BASE+100+I for the controller quorum.
# Messages go to stderr; stdout carries only what a caller captures (bootstrap).
set -euo pipefail

KAFKA_VERSION="${KAFKA_VERSION:-4.4.0}"
LOG4J_VERSION="${LOG4J_VERSION:-2.25.3}"
DEPENDENCY_PLUGIN_VERSION=3.8.1
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
KAFKA_HOME="${KAFKA_HOME:-${SLUICE_CACHE:-$HOME/.cache/sluice}/kafka/$KAFKA_VERSION}"
LIBS="$KAFKA_HOME/libs"
STATE="${KAFKA_STATE_DIR:-$ROOT/bin/kafka-cluster}"
HOST="${KAFKA_HOST:-127.0.0.1}"
PORT_BASE="${KAFKA_PORT_BASE:-19092}"
READY_TIMEOUT="${KAFKA_READY_TIMEOUT:-120}"
STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-15}"
# Small heaps and a cheap JIT so three brokers fit beside the tests on two cores:
# SerialGC has no background GC threads; C1 only (TieredStopAtLevel=1) cuts the
# start-up CPU roughly in half at some cost in peak throughput.
HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xms64m -Xmx256m}"
JVM_OPTS="${KAFKA_JVM_OPTS:--XX:+UseSerialGC -XX:TieredStopAtLevel=1 -XX:CICompilerCount=1 -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true}"
# Extra server.properties lines for every node, e.g. $'broker.session.timeout.ms=4000'.
EXTRA_PROPS="${KAFKA_EXTRA_PROPS:-}"

log() { echo "kafka.sh: $*" >&2; }
die() {
  log "$*"
  exit 1
}

# ---------------------------------------------------------------------------- install

cmd_install() {
  if [[ -f "$LIBS/.complete" ]]; then
    log "Kafka $KAFKA_VERSION jars present in $LIBS"
    return 0
  fi
  command -v java >/dev/null || die "java not found (Kafka $KAFKA_VERSION needs Java 17+)"
  command -v mvn >/dev/null || die "mvn not found: apt-get install maven"
  mkdir -p "$KAFKA_HOME"
  # A throwaway pom whose only job is to resolve the broker's runtime classpath.
  # kafka_2.13 declares slf4j-api 1.7.x but no logging backend: log4j-slf4j-impl
  # (the SLF4J 1.x binding) + log4j-core give the log4j2 setup Kafka 4 ships with.
  cat >"$KAFKA_HOME/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.sluice.hack</groupId>
  <artifactId>kafka-jars</artifactId>
  <version>$KAFKA_VERSION</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>$KAFKA_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j-impl</artifactId>
      <version>$LOG4J_VERSION</version>
    </dependency>
  </dependencies>
  <build>
    <plugins>
      <plugin>
        <groupId>org.apache.maven.plugins</groupId>
        <artifactId>maven-dependency-plugin</artifactId>
        <version>$DEPENDENCY_PLUGIN_VERSION</version>
        <configuration>
          <includeScope>runtime</includeScope>
          <outputDirectory>\${project.basedir}/libs.tmp</outputDirectory>
        </configuration>
      </plugin>
    </plugins>
  </build>
</project>
POM
  rm -rf "$LIBS.tmp" "$LIBS"
  log "fetching org.apache.kafka:kafka_2.13:$KAFKA_VERSION and its runtime dependencies with Maven"
  # shellcheck disable=SC2086 # KAFKA_MVN_ARGS is a list of flags
  # (Debian's Maven 3.8 prints bare colour resets even with -B: strip them.)
  mvn -q -B ${KAFKA_MVN_ARGS:-} -f "$KAFKA_HOME/pom.xml" dependency:copy-dependencies 2>&1 \
    | sed $'s/\e\\[0m//g' >&2
  [[ -f "$LIBS.tmp/kafka_2.13-$KAFKA_VERSION.jar" ]] || die "Maven did not produce kafka_2.13-$KAFKA_VERSION.jar"
  ls "$LIBS.tmp" >"$LIBS.tmp/.complete"
  mv "$LIBS.tmp" "$LIBS"
  log "installed $(($(wc -l <"$LIBS/.complete"))) jars ($(du -sh "$LIBS" | cut -f1)) in $LIBS"
}

# ---------------------------------------------------------------------- cluster state

node_dir() { echo "$STATE/$1"; }
client_port() { echo $((PORT_BASE + $1)); }
controller_port() { echo $((PORT_BASE + 100 + $1)); }

# Loads the size/ports/host the running cluster was created with (cluster.env), so
# every command acts on that cluster whatever the caller's environment says.
load_cluster() {
  [[ -f "$STATE/cluster.env" ]] || die "no cluster in $STATE: run hack/kafka.sh up"
  # shellcheck source=/dev/null
  source "$STATE/cluster.env"
  [[ "$CLUSTER_NODES" =~ ^[1-9]$ ]] || die "corrupt $STATE/cluster.env"
  PORT_BASE="$CLUSTER_PORT_BASE"
  HOST="$CLUSTER_HOST"
  LIBS="$CLUSTER_LIBS"
}

bootstrap_servers() {
  local i out=""
  for ((i = 0; i < CLUSTER_NODES; i++)); do
    out+="${out:+,}$HOST:$(client_port "$i")"
  done
  echo "$out"
}

# node_pid I: prints the PID of node I when that process is alive and is really
# node I's broker (guards against a recycled PID), else fails.
node_pid() {
  local pidfile pid
  pidfile="$(node_dir "$1")/pid"
  [[ -s "$pidfile" ]] || return 1
  pid="$(<"$pidfile")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$(node_dir "$1")/server.properties" || return 1
  echo "$pid"
}

# probe_brokers PORT: sends a Metadata v8 request (no topics) to HOST:PORT and
# prints the ids of the unfenced brokers in the answer ("0 1 2"); fails when
# nothing answers in 5 s. Pure bash, so no JVM or Go build is needed to check.
probe_brokers() {
  local raw
  # Request: int32 size=25, api key 3 (Metadata), version 8, correlation id 1,
  # client id "kafka.sh", topics=[] (none), allow_auto_topic_creation=false,
  # include_cluster/topic_authorized_operations=false. The response (header v0) is
  # read byte by byte: int32 size, then exactly that many bytes.
  # shellcheck disable=SC2016 # the inner script expands its own arguments
  raw="$(timeout 5 bash -c '
    exec 3<>"/dev/tcp/$0/$1" || exit 1
    printf "\000\000\000\031\000\003\000\010\000\000\000\001\000\010kafka.sh\000\000\000\000\000\000\000" >&3
    read -r -a sz < <(dd bs=1 count=4 status=none <&3 | od -An -tu1 -v)
    [[ ${#sz[@]} -eq 4 ]] || exit 1
    n=$(( (sz[0] << 24) | (sz[1] << 16) | (sz[2] << 8) | sz[3] ))
    (( n > 0 && n < 1048576 )) || exit 1
    dd bs=1 count="$n" status=none <&3 | od -An -tu1 -v
  ' "$HOST" "$1" 2>/dev/null)" || return 1
  local -a b
  read -r -d '' -a b <<<"$raw" || true
  # correlation id (4) + throttle_time_ms (4), then the brokers array.
  ((${#b[@]} >= 12)) || return 1
  (((b[0] << 24 | b[1] << 16 | b[2] << 8 | b[3]) == 1)) || return 1
  local pos=8 count i id len ids=()
  count=$((b[pos] << 24 | b[pos + 1] << 16 | b[pos + 2] << 8 | b[pos + 3]))
  pos=$((pos + 4))
  for ((i = 0; i < count; i++)); do
    ((pos + 6 <= ${#b[@]})) || return 1
    id=$((b[pos] << 24 | b[pos + 1] << 16 | b[pos + 2] << 8 | b[pos + 3]))
    len=$((b[pos + 4] << 8 | b[pos + 5]))               # host
    pos=$((pos + 6 + len + 4))                          # + port
    ((pos + 2 <= ${#b[@]})) || return 1
    len=$((b[pos] << 8 | b[pos + 1]))                   # rack (nullable: 0xffff)
    ((len == 0xffff)) && len=0
    pos=$((pos + 2 + len))
    ids+=("$id")
  done
  printf '%s\n' "${ids[@]}" | sort -n | tr '\n' ' ' | sed 's/ $//'
  echo
}

# shellcheck disable=SC2016 # the inner script expands its own arguments
port_open() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$HOST" "$1" 2>/dev/null; }

write_configs() {
  local n=$1 cluster_id=$2 i dir voters="" rf=$(($1 < 3 ? $1 : 3)) min_isr=$(($1 < 2 ? $1 : 2))
  for ((i = 0; i < n; i++)); do
    voters+="${voters:+,}$i@$HOST:$(controller_port "$i")"
  done
  mkdir -p "$STATE"
  cat >"$STATE/cluster.env" <<ENV
CLUSTER_NODES=$n
CLUSTER_ID=$cluster_id
CLUSTER_PORT_BASE=$PORT_BASE
CLUSTER_HOST=$HOST
CLUSTER_LIBS=$LIBS
CLUSTER_VERSION=$KAFKA_VERSION
ENV
  cat >"$STATE/log4j2.properties" <<'LOG'
# Everything at INFO into <node>/logs/server.log (Kafka's own config splits it into
# several files); request logging off.
status = warn
name = sluice-kafka
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
logger.request.name = kafka.request.logger
logger.request.level = warn
LOG
  for ((i = 0; i < n; i++)); do
    dir="$(node_dir "$i")"
    mkdir -p "$dir/data" "$dir/logs"
    cat >"$dir/server.properties" <<PROPS
# Written by hack/kafka.sh: node $i of a $n-node KRaft cluster (combined mode).
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://$HOST:$(client_port "$i"),CONTROLLER://$HOST:$(controller_port "$i")
advertised.listeners=PLAINTEXT://$HOST:$(client_port "$i")
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
log.dirs=$dir/data

# Topics: tests create theirs explicitly (and set min.insync.replicas per topic).
auto.create.topics.enable=false
num.partitions=1
default.replication.factor=$rf
min.insync.replicas=1
unclean.leader.election.enable=false

# Internal topics: replicated as far as the cluster allows, few partitions so the
# first group/transaction doesn't create 50 partitions per broker.
offsets.topic.replication.factor=$rf
offsets.topic.num.partitions=6
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$min_isr
transaction.state.log.num.partitions=6
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$min_isr

# Failure detection: a node that stops heartbeating (SIGKILL) is fenced after 3 s
# instead of 9 s, losing its leaderships and ISR places; a killed node restarted
# before that is refused (DUPLICATE_BROKER_REGISTRATION) until it happens.
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000

# Groups: no 3 s wait before the first rebalance; session timeouts down to
# 500 ms (the default minimum is 6 s), so tests can use short ones and a killed
# consumer leaves its group quickly (kfake is started the same way).
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=500

# Share groups (KIP-932): the tests' timings, as kfake is started for them. The
# defaults are a 5 s heartbeat, a 45 s session and locks of at least 15 s; the
# tests set their groups' lock and delivery count limit with group configs,
# which these minimums must allow.
group.share.heartbeat.interval.ms=200
group.share.min.heartbeat.interval.ms=100
group.share.session.timeout.ms=2000
group.share.min.session.timeout.ms=1000
group.share.min.record.lock.duration.ms=1000

# Small footprint: fewer threads, small segments, an 8 MiB (not 128 MiB) heap
# buffer for the log cleaner.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
log.segment.bytes=16777216
log.cleaner.dedupe.buffer.size=8388608
PROPS
    if [[ -n "$EXTRA_PROPS" ]]; then
      printf '\n# KAFKA_EXTRA_PROPS\n%s\n' "$EXTRA_PROPS" >>"$dir/server.properties"
    fi
  done
}

java_cmd() { # NODE MAIN_CLASS ARGS...: the java command line for node NODE
  local dir
  dir="$(node_dir "$1")"
  shift
  # shellcheck disable=SC2086 # HEAP_OPTS/JVM_OPTS are lists of flags
  printf '%s\0' java $HEAP_OPTS $JVM_OPTS \
    "-Dkafka.logs.dir=$dir/logs" "-Dlog4j2.configurationFile=$STATE/log4j2.properties" \
    -cp "$LIBS/*" "$@"
}

format_node() {
  local dir cmd=()
  dir="$(node_dir "$1")"
  mapfile -d '' cmd < <(java_cmd "$1" kafka.tools.StorageTool format \
    --cluster-id "$CLUSTER_ID" --config "$dir/server.properties")
  "${cmd[@]}" >"$dir/logs/format.log" 2>&1
}

start_node() {
  local dir cmd=()
  dir="$(node_dir "$1")"
  mapfile -d '' cmd < <(java_cmd "$1" kafka.Kafka "$dir/server.properties")
  rm -f "$dir/pid"
  # setsid: the broker outlives this script and the caller's Ctrl-C; the inner
  # bash records its own PID, which exec hands over to the JVM.
  # shellcheck disable=SC2016 # the inner script expands its own arguments
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$dir/pid" "${cmd[@]}" \
    </dev/null >>"$dir/logs/stdout.log" 2>&1 &
  local t
  for ((t = 0; t < 50; t++)); do
    [[ -s "$dir/pid" ]] && return 0
    sleep 0.1
  done
  die "node $1 did not start (see $dir/logs/stdout.log)"
}

node_failed() { # NODE: report why node NODE died and exit
  local dir
  dir="$(node_dir "$1")"
  log "node $1 exited; last lines of $dir/logs/server.log and stdout.log:"
  tail -n 20 "$dir/logs/server.log" >&2 2>/dev/null || true
  tail -n 20 "$dir/logs/stdout.log" >&2 2>/dev/null || true
  exit 1
}

# wait_ready WANT NODE...: waits until each NODE is alive and answers Metadata
# listing at least WANT unfenced brokers, itself included.
wait_ready() {
  local want=$1 i ids ok
  shift
  local deadline=$((SECONDS + READY_TIMEOUT))
  while :; do
    ok=1
    for i in "$@"; do
      node_pid "$i" >/dev/null || node_failed "$i"
      ids="$(probe_brokers "$(client_port "$i")")" || { ok=0; break; }
      # shellcheck disable=SC2206 # split the id list
      local arr=($ids)
      if ((${#arr[@]} < want)) || [[ " $ids " != *" $i "* ]]; then
        ok=0
        break
      fi
    done
    ((ok)) && return 0
    ((SECONDS < deadline)) || die "cluster not ready after ${READY_TIMEOUT}s (logs in $STATE/*/logs)"
    sleep 0.5
  done
}

stop_pids() { # SIGNAL NODE...: signal the nodes, wait STOP_TIMEOUT s, then SIGKILL
  local sig=$1 i pid deadline
  shift
  local nodes=()
  for i in "$@"; do
    if pid="$(node_pid "$i")"; then
      kill -s "$sig" "$pid" 2>/dev/null || true
      nodes+=("$i")
    fi
  done
  deadline=$((SECONDS + STOP_TIMEOUT))
  for i in "${nodes[@]}"; do
    while pid="$(node_pid "$i")"; do
      if ((SECONDS >= deadline)); then
        log "node $i (pid $pid) still running after ${STOP_TIMEOUT}s: SIGKILL"
        kill -s KILL "$pid" 2>/dev/null || true
      fi
      sleep 0.2
    done
    rm -f "$(node_dir "$i")/pid"
  done
}

# ------------------------------------------------------------------------- commands

cmd_up() {
  local n="${1:-${KAFKA_BROKERS:-3}}" i
  [[ "$n" =~ ^[1-9]$ ]] || die "up: node count must be 1..9 (1 or 3 make sense), got '$n'"
  [[ -f "$LIBS/.complete" ]] || cmd_install
  if [[ -f "$STATE/cluster.env" ]]; then
    local want_libs="$LIBS" running=0
    load_cluster
    for ((i = 0; i < CLUSTER_NODES; i++)); do
      node_pid "$i" >/dev/null && running=$((running + 1))
    done
    if ((running == CLUSTER_NODES && CLUSTER_NODES == n)) && [[ "$LIBS" == "$want_libs" ]]; then
      log "$n-node cluster already up"
      bootstrap_servers
      return 0
    elif ((running > 0)); then
      die "a $CLUSTER_NODES-node cluster ($running up) exists in $STATE: hack/kafka.sh down first (or start-node)"
    fi
    log "removing stale cluster state in $STATE"
    rm -rf "$STATE"
    LIBS="$want_libs"
    PORT_BASE="${KAFKA_PORT_BASE:-19092}"
    HOST="${KAFKA_HOST:-127.0.0.1}"
  fi
  for ((i = 0; i < n; i++)); do
    for port in "$(client_port "$i")" "$(controller_port "$i")"; do
      port_open "$port" && die "port $HOST:$port is in use (set KAFKA_PORT_BASE)"
    done
  done
  command -v setsid >/dev/null || die "setsid not found (util-linux)"
  local start=$SECONDS
  # A Kafka Uuid: 16 random bytes, base64url without padding. Like Kafka's own
  # Uuid.randomUuid, never one that starts with '-': the storage tool would
  # read it as an option ("argument --cluster-id/-t: expected one argument"),
  # about one run in 64.
  CLUSTER_ID=-
  while [[ $CLUSTER_ID == -* ]]; do
    CLUSTER_ID="$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=')"
  done
  CLUSTER_NODES=$n
  write_configs "$n" "$CLUSTER_ID"
  log "formatting $n node(s), cluster id $CLUSTER_ID"
  local pids=()
  for ((i = 0; i < n; i++)); do
    format_node "$i" &
    pids+=($!)
  done
  for i in "${!pids[@]}"; do
    wait "${pids[$i]}" || { cat "$(node_dir "$i")/logs/format.log" >&2; die "formatting node $i failed"; }
  done
  for ((i = 0; i < n; i++)); do
    start_node "$i"
  done
  log "started $n node(s) (Kafka $KAFKA_VERSION); waiting until every node sees $n brokers"
  mapfile -t nodes < <(seq 0 $((n - 1)))
  wait_ready "$n" "${nodes[@]}"
  bootstrap_servers >"$STATE/bootstrap"
  log "ready in $((SECONDS - start))s"
  bootstrap_servers
}

cmd_down() {
  if [[ ! -f "$STATE/cluster.env" ]]; then
    log "no cluster in $STATE"
    return 0
  fi
  load_cluster
  mapfile -t nodes < <(seq 0 $((CLUSTER_NODES - 1)))
  stop_pids TERM "${nodes[@]}"
  rm -rf "$STATE"
  log "cluster stopped and removed"
}

node_arg() {
  if [[ ! "${1:-}" =~ ^[0-9]+$ ]] || (($1 >= CLUSTER_NODES)); then
    die "node must be 0..$((CLUSTER_NODES - 1)), got '${1:-}'"
  fi
}

cmd_stop_node() {
  load_cluster
  node_arg "${1:-}"
  local sig=TERM
  case "${2:-}" in
  --kill | kill | KILL | -9) sig=KILL ;;
  "" | --term | term | TERM) ;;
  *) die "stop-node: unknown flag '$2' (--kill or --term)" ;;
  esac
  node_pid "$1" >/dev/null || {
    log "node $1 is not running"
    return 0
  }
  stop_pids "$sig" "$1"
  log "node $1 stopped (SIG$sig)"
}

cmd_start_node() {
  load_cluster
  node_arg "${1:-}"
  if node_pid "$1" >/dev/null; then
    log "node $1 is already running"
    return 0
  fi
  local start=$SECONDS
  start_node "$1"
  wait_ready 1 "$1"
  log "node $1 ready in $((SECONDS - start))s"
}

cmd_status() {
  load_cluster
  local i pid ids rc=0
  echo "Kafka $CLUSTER_VERSION, $CLUSTER_NODES node(s), cluster id $CLUSTER_ID, bootstrap $(bootstrap_servers)"
  for ((i = 0; i < CLUSTER_NODES; i++)); do
    if pid="$(node_pid "$i")"; then
      if ids="$(probe_brokers "$(client_port "$i")")"; then
        echo "node $i: up   pid $pid  $HOST:$(client_port "$i")  sees brokers [$ids]"
      else
        echo "node $i: up   pid $pid  $HOST:$(client_port "$i")  not answering yet"
      fi
    else
      echo "node $i: down"
      rc=3
    fi
  done
  return "$rc"
}

cmd_bootstrap() {
  load_cluster
  bootstrap_servers
}

main() {
  local sub="${1:-}"
  shift || true
  case "$sub" in
  install) cmd_install ;;
  up) cmd_up "$@" ;;
  down) cmd_down ;;
  stop-node) cmd_stop_node "$@" ;;
  start-node) cmd_start_node "$@" ;;
  status) cmd_status ;;
  bootstrap) cmd_bootstrap ;;
  *)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
  esac
}

main "$@"
