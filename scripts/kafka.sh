#!/usr/bin/env bash
# A local single-node Apache Kafka (KRaft: one JVM is controller and broker) for the tests, the demo and
# the benchmarks, run from jars that Maven resolves from Maven Central (scripts/kafka/pom.xml).
#
# Usage: scripts/kafka.sh start  [BOOTSTRAP]   start (or find) the broker; the last stdout line is its address
#        scripts/kafka.sh stop   [BOOTSTRAP]   stop the broker this script started (pid file only)
#        scripts/kafka.sh status [BOOTSTRAP]   print "running <address> ..." or "stopped ..."; exit 0 either way
#        scripts/kafka.sh reset                stop the broker and delete its data (topics, offsets)
#        scripts/kafka.sh topics [TopicCommand options]   e.g. topics --create --topic t --partitions 3
#        scripts/kafka.sh tool CLASS [options]            any Kafka command-line class, e.g.
#                                                         org.apache.kafka.tools.ConsoleProducer
# BOOTSTRAP (host:port[,host:port]) names an existing cluster: start then only waits for it to answer and
# prints it, status asks it, stop leaves it alone.
#
# Environment: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (KAFKA_PORT+1), KAFKA_START_TIMEOUT (90 s),
# KAFKA_HEAP_OPTS (-Xms256m -Xmx768m), KAFKA_STATE_DIR (.kafka: a second broker needs its own), JAVA_HOME.
# KAFKA_BROKERS is deliberately not read: the jest setup
# exports it after `start`, and the teardown's `stop` must still stop the broker it started.
#
# State, all under .kafka/ (git-ignored): libs/ (jars), data/ (KRaft metadata and topic logs), logs/
# (server.log, and kafka.out for what the JVM itself prints), server.properties (rendered from
# scripts/kafka/server.properties.in on each start), kafka.pid.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
conf_dir=$root/scripts/kafka
state=${KAFKA_STATE_DIR:-$root/.kafka}
libs=$state/libs
data=$state/data
logs=$state/logs
pidfile=$state/kafka.pid
props=$state/server.properties

is_port() { [[ $1 =~ ^[0-9]{1,5}$ ]] && (( 10#$1 > 0 && 10#$1 <= 65535 )); }
port=${KAFKA_PORT:-9092}
is_port "$port" || { echo "kafka: KAFKA_PORT must be a port number, got '$port'" >&2; exit 2; }
controller_port=${KAFKA_CONTROLLER_PORT:-$((10#$port + 1))}
if ! is_port "$controller_port" || (( 10#$controller_port == 10#$port )); then
  echo "kafka: KAFKA_CONTROLLER_PORT must be a port number other than KAFKA_PORT, got '$controller_port'" >&2
  exit 2
fi
start_timeout=${KAFKA_START_TIMEOUT:-90}
# Small heap: a single-node test broker shares its machine with the processor, the tests and the tools.
heap_opts=${KAFKA_HEAP_OPTS:--Xms256m -Xmx768m}
local_address=127.0.0.1:$port
java=${JAVA_HOME:+$JAVA_HOME/bin/}java

say() { echo "kafka: $*" >&2; }
die() { say "$*"; exit 1; }

# ---- processes -------------------------------------------------------------------------------------

# The pid in the pid file when it is a live JVM running our kafka.Kafka with our properties; empty
# otherwise. Checking the command line guards against a reused pid; a zombie (the broker exited but its
# parent, which may be a container's init, has not reaped it) has an empty command line and counts as gone.
broker_pid() {
  [ -f "$pidfile" ] || return 0
  local pid
  pid=$(tr -dc '0-9' <"$pidfile")
  [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] || return 0
  if tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "kafka.Kafka $props"; then echo "$pid"; fi
}

# The client address of the running broker, from the properties it was started with: KAFKA_PORT may
# differ now.
running_address() {
  sed -n 's|^listeners=PLAINTEXT://\([^,]*\).*|\1|p' "$props" 2>/dev/null | head -1
}

# Serialises start and stop: two test runs starting at once must not format or launch twice.
take_lock() {
  mkdir -p "$state"
  exec 9>"$state/kafka.lock"
  flock -w 180 9 || die "another scripts/kafka.sh holds $state/kafka.lock for more than 180 s"
}

port_open() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

# ---- jars and Kafka's own command-line classes ------------------------------------------------------

check_java() {
  command -v "$java" >/dev/null || die "java not found: Kafka 4 needs Java 17 or newer (set JAVA_HOME or install openjdk-17-jre-headless)"
  local version major
  version=$("$java" -version 2>&1 | sed -n 's/.*version "\([^"]*\)".*/\1/p' | head -1)
  major=${version%%.*}
  if ! [[ $major =~ ^[0-9]+$ ]] || (( major < 17 )); then
    die "Kafka 4 needs Java 17 or newer; $java is '${version:-unknown}'"
  fi
}

# Copies the broker's jars into .kafka/libs once, and again whenever the pom changes. A fresh folder each
# time: jars of two Kafka versions on one classpath would mix classes at random.
ensure_libs() {
  local want have=
  want=$(cksum <"$conf_dir/pom.xml")
  [ -f "$libs/.pom-cksum" ] && have=$(cat "$libs/.pom-cksum")
  [ "$want" = "$have" ] && return 0
  command -v mvn >/dev/null || die "mvn not found: it resolves Kafka's jars from Maven Central (apt-get install maven)"
  say "resolving Kafka's jars with Maven into $libs (once; about 45 MB)"
  rm -rf "$libs.new"
  # An absolute output directory: Maven resolves a relative one against the pom's folder, not the cwd.
  mkdir -p "$logs"
  if ! mvn -B -q -f "$conf_dir/pom.xml" dependency:copy-dependencies -DoutputDirectory="$libs.new" \
      >"$logs/maven.log" 2>&1; then
    tail -n 20 "$logs/maven.log" >&2
    die "mvn could not resolve the jars of scripts/kafka/pom.xml (is Maven Central reachable?); see $logs/maven.log"
  fi
  echo "$want" >"$libs.new/.pom-cksum"
  rm -rf "$libs"
  mv "$libs.new" "$libs"
}

# Runs a Kafka command-line class with its logging on stderr, leaving stdout to the class.
run_tool() {
  "$java" -Xmx256m -Djava.awt.headless=true -Dlog4j2.configurationFile="$conf_dir/tools-log4j2.properties" \
    -cp "$libs/*" "$@"
}

# A real metadata round trip (list topics). Kafka 4.4 opens its client port only once it has started, but
# an open port can also belong to some other program, or to a broker that then fails to serve metadata.
answers() {
  local client=$state/tools-client.properties
  # Fail in seconds, not after the admin client's default minute of retries, so the caller's loop decides.
  printf 'request.timeout.ms=10000\ndefault.api.timeout.ms=15000\n' >"$client"
  timeout 30 "$java" -Xmx128m -XX:TieredStopAtLevel=1 -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$conf_dir/tools-log4j2.properties" -cp "$libs/*" \
    org.apache.kafka.tools.TopicCommand --bootstrap-server "$1" --command-config "$client" --list >/dev/null 2>&1
}

# ---- the local broker -------------------------------------------------------------------------------

render_properties() {
  local line
  while IFS= read -r line || [ -n "$line" ]; do
    line=${line//@PORT@/$port}
    line=${line//@CONTROLLER_PORT@/$controller_port}
    line=${line//@DATA_DIR@/$data}
    printf '%s\n' "$line"
  done <"$conf_dir/server.properties.in" >"$props.new"
  local left
  left=$(grep -v '^[[:space:]]*#' "$props.new" | grep -o '@[A-Z_]*@' | head -1 || true)
  [ -z "$left" ] || die "unknown placeholder $left in scripts/kafka/server.properties.in"
  mv "$props.new" "$props"
}

# Formats the storage once. Other ports on a later start are fine: the single voter re-registers its new
# controller endpoint in the metadata log.
ensure_formatted() {
  [ -f "$data/meta.properties" ] && return 0
  # No meta.properties: nothing worth keeping (a first start, or a format that was interrupted).
  rm -rf "$data"
  mkdir -p "$data"
  local cluster_id
  cluster_id=$(run_tool kafka.tools.StorageTool random-uuid) || die "kafka.tools.StorageTool random-uuid failed"
  say "formatting $data (cluster id $cluster_id)"
  if ! run_tool kafka.tools.StorageTool format --standalone -t "$cluster_id" -c "$props" >"$logs/format.log" 2>&1; then
    cat "$logs/format.log" >&2
    die "formatting $data failed (kafka.tools.StorageTool format); see $logs/format.log"
  fi
}

launch() {
  mkdir -p "$logs"
  rm -f "$pidfile"
  # setsid: the broker outlives this script and the test run that called it, and a Ctrl-C in that
  # terminal does not reach it; only `stop` ends it. The wrapper writes its own pid, which exec hands on
  # to the JVM. Every inherited descriptor is replaced or closed: an open stdout would keep the caller's
  # pipe (jest's execFileSync) waiting for the broker to exit, and fd 9 would hold the start lock forever.
  # shellcheck disable=SC2016,SC2086  # $$ is the wrapper's own; heap_opts is a list of JVM options
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pidfile" \
    "$java" $heap_opts -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -Djava.awt.headless=true -Dkafka.logs.dir="$logs" -Dlog4j2.configurationFile="$conf_dir/log4j2.properties" \
    -cp "$libs/*" kafka.Kafka "$props" \
    </dev/null >"$logs/kafka.out" 2>&1 9>&- &
  local _
  for _ in $(seq 50); do
    [ -s "$pidfile" ] && return 0
    sleep 0.1
  done
  die "the broker did not start (no pid file after 5 s); see $logs/kafka.out"
}

show_log_tail() {
  local f
  for f in "$logs/kafka.out" "$logs/server.log"; do
    [ -s "$f" ] || continue
    say "last lines of $f:"
    tail -n 15 "$f" | sed 's/^/    /' >&2
  done
}

wait_until_ready() {
  local started=$SECONDS pid=$1
  while (( SECONDS - started < start_timeout )); do
    if [ -z "$(broker_pid)" ]; then
      show_log_tail
      rm -f "$pidfile"
      die "the broker exited during start-up; see $logs/server.log"
    fi
    if port_open 127.0.0.1 "$port" && answers "$local_address"; then
      say "ready at $local_address after $((SECONDS - started)) s (pid $pid)"
      return 0
    fi
    sleep 0.2
  done
  show_log_tail
  # A half-started JVM with 768 MB of heap is worse than none: the next start begins clean.
  stop_local >/dev/null 2>&1 || true
  die "the broker did not answer on $local_address within $start_timeout s; stopped it. See $logs/server.log"
}

start_local() {
  take_lock
  local pid
  pid=$(broker_pid)
  if [ -n "$pid" ]; then
    local address
    address=$(running_address)
    if [ -n "$address" ] && [ "$address" != "$local_address" ]; then
      say "already running at $address, not $local_address (stop it first to change KAFKA_PORT)"
      local_address=$address
      port=${address##*:}
    fi
    say "already running (pid $pid); checking that it answers"
    wait_until_ready "$pid"
    echo "$local_address"
    return 0
  fi
  rm -f "$pidfile"
  port_open 127.0.0.1 "$port" &&
    die "something else listens on 127.0.0.1:$port; set KAFKA_PORT, or use that cluster: scripts/kafka.sh start 127.0.0.1:$port"
  port_open 127.0.0.1 "$controller_port" &&
    die "something else listens on the controller port 127.0.0.1:$controller_port; set KAFKA_CONTROLLER_PORT"
  check_java
  ensure_libs
  mkdir -p "$logs"
  render_properties
  ensure_formatted
  say "starting Kafka on $local_address (controller 127.0.0.1:$controller_port); logs in $logs"
  launch
  pid=$(tr -dc '0-9' <"$pidfile")
  wait_until_ready "$pid"
  echo "$local_address"
}

# Polls every 0.1 s, at most $1 times, until the broker's process is gone.
wait_broker_gone() {
  local _
  for _ in $(seq "$1"); do
    [ -n "$(broker_pid)" ] || return 0
    sleep 0.1
  done
}

stop_local() {
  local pid
  pid=$(broker_pid)
  if [ -z "$pid" ]; then
    rm -f "$pidfile"
    say "already stopped"
    return 0
  fi
  say "stopping the broker (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  # A clean shutdown of one node takes a few seconds; past 30 s something is stuck.
  wait_broker_gone 300
  if [ -n "$(broker_pid)" ]; then
    say "no exit after 30 s of SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    wait_broker_gone 50
  fi
  [ -z "$(broker_pid)" ] || die "pid $pid is still alive after SIGKILL"
  rm -f "$pidfile"
  say "stopped"
}

status_local() {
  local pid address
  pid=$(broker_pid)
  if [ -z "$pid" ]; then
    echo "stopped"
    return 0
  fi
  address=$(running_address)
  address=${address:-$local_address}
  if port_open "${address%:*}" "${address##*:}"; then
    echo "running $address (pid $pid)"
  else
    echo "running $address (pid $pid, still starting)"
  fi
}

# ---- main -------------------------------------------------------------------------------------------

usage() { sed -n '/^# Usage/,/^#$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }

command=${1:-}
[ $# -gt 0 ] && shift
case $command in
  start|stop|status)
    [ $# -le 1 ] || usage
    bootstrap=${1:-}
    [ -z "$bootstrap" ] || [[ $bootstrap =~ ^[^,[:space:]]+:[0-9]+(,[^,[:space:]]+:[0-9]+)*$ ]] ||
      die "'$bootstrap' is not a bootstrap address (host:port[,host:port...])"
    ;;
esac

case $command in
  start)
    if [ -n "$bootstrap" ]; then
      check_java
      ensure_libs
      say "waiting for the existing cluster at $bootstrap"
      started=$SECONDS
      until answers "$bootstrap"; do
        (( SECONDS - started < start_timeout )) || die "no Kafka answered at $bootstrap within $start_timeout s"
        sleep 1
      done
      echo "$bootstrap"
    else
      start_local
    fi
    ;;
  stop)
    if [ -n "$bootstrap" ]; then
      say "leaving $bootstrap alone: only the broker started by this script (.kafka/kafka.pid) is stopped"
    else
      take_lock
      stop_local
    fi
    ;;
  status)
    if [ -n "$bootstrap" ]; then
      check_java
      ensure_libs
      if answers "$bootstrap"; then echo "running $bootstrap"; else echo "stopped: nothing answers at $bootstrap"; fi
    else
      status_local
    fi
    ;;
  reset)
    take_lock
    stop_local
    say "deleting $data"
    rm -rf "$data"
    ;;
  topics)
    check_java
    ensure_libs
    if printf '%s\n' "$@" | grep -qx -- '--bootstrap-server'; then
      run_tool org.apache.kafka.tools.TopicCommand "$@"
    else
      run_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$local_address" "$@"
    fi
    ;;
  tool)
    [ $# -ge 1 ] || usage
    check_java
    ensure_libs
    run_tool "$@"
    ;;
  *)
    usage
    ;;
esac
