#!/usr/bin/env bash
# Apache Kafka (KRaft mode) for the local stack, the tests and the benchmarks.
#
# The broker is assembled from Apache Kafka's own Maven artifacts (infra/local/kafka/pom.xml)
# into $PHONEBILL_CACHE/tools/kafka-<version>/libs, once, and run as `kafka.Kafka` with
# the machine's Java 17 and a bounded heap. Nothing else is downloaded.
#
# Sourced by infra/local/stack and the bench scripts (functions kafka_*), or run:
#   infra/local/kafka.sh ensure                   resolve the jars (skipped when present)
#   infra/local/kafka.sh start DIR PORT [NODE VOTERS]
#                                                 a broker+controller node working in DIR
#                                                 (log dir DIR/data, pid DIR/broker.pid);
#                                                 NODE and VOTERS ("1@127.0.0.1:p,...")
#                                                 make it one node of a cluster
#   infra/local/kafka.sh stop DIR                 SIGTERM, then SIGKILL after 30 s
#   infra/local/kafka.sh kill DIR                 SIGKILL (fault tests)
#   infra/local/kafka.sh topics PORT ARGS...      TopicCommand (e.g. --describe)
#   infra/local/kafka.sh groups PORT ARGS...      ConsumerGroupCommand (e.g. --describe --all-groups)
#   infra/local/kafka.sh offsets PORT ARGS...     GetOffsetShell (e.g. --topic T: end offsets)
#   infra/local/kafka.sh acls PORT ARGS...        AclCommand (e.g. --add --allow-principal
#                                                 User:projector --operation Read --topic T)
#                                                 (PORT: a local port, or host:port,... to
#                                                 bootstrap from several nodes)
#
# A node's controller listens on PORT+1000 unless VOTERS says otherwise. Settings
# (environment): PHONEBILL_KAFKA_HEAP (default "-Xms128m -Xmx512m"), PHONEBILL_PARTITIONS
# (default partitions of auto-created topics, 12); PHONEBILL_KAFKA_SASL_SSL_PORT adds a
# SASL_SSL listener for clients (advertised as localhost) with the PEM key store
# PHONEBILL_KAFKA_TLS_KEYSTORE and the one PLAIN user PHONEBILL_KAFKA_SASL_PLAIN_USER /
# PHONEBILL_KAFKA_SASL_PLAIN_PASSWORD (infra/local/prodlike.sh). PHONEBILL_KAFKA_OAUTH_PORT
# adds a SASL_PLAINTEXT OAUTHBEARER listener whose tokens are checked against the JWKS
# file PHONEBILL_KAFKA_OAUTH_JWKS, the issuer PHONEBILL_KAFKA_OAUTH_ISSUER and the
# audience PHONEBILL_KAFKA_OAUTH_AUDIENCE, the principal being the token's `sub`, and
# turns on ACLs: what no ACL allows is denied there (`acls`), while the PLAINTEXT
# listener's anonymous clients keep every right (tests create topics and grant ACLs
# through it). The broker identity tests use it (infra/local/stack test).
set -euo pipefail

KAFKA_SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$KAFKA_SCRIPT_DIR/kafka/pom.xml")"
KAFKA_HOME="${PHONEBILL_CACHE:-$HOME/.cache/phonebill}/tools/kafka-$KAFKA_VERSION"
KAFKA_HEAP="${PHONEBILL_KAFKA_HEAP:--Xms128m -Xmx512m}"

kafka_log() { printf '\033[1m[kafka]\033[0m %s\n' "$*" >&2; }

kafka_java() {
  local java="${JAVA_HOME:+$JAVA_HOME/bin/}java"
  command -v "$java" >/dev/null || { kafka_log "Java 17 or newer is needed (Debian: openjdk-17-jre-headless)"; return 1; }
  echo "$java"
}

# The jars, resolved by Maven into the tools cache (about 55 MB, half a minute, once).
kafka_ensure() {
  [ -f "$KAFKA_HOME/libs/.complete" ] && return 0
  command -v mvn >/dev/null || {
    kafka_log "installing Maven (Debian's) to resolve the broker's jars"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq maven >/dev/null
  }
  kafka_log "resolving Apache Kafka $KAFKA_VERSION from the Maven repository into $KAFKA_HOME (once)"
  local tmp="$KAFKA_HOME/libs.partial"
  rm -rf "$tmp"; mkdir -p "$tmp"
  mvn -q -B -f "$KAFKA_SCRIPT_DIR/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp" >&2
  ls "$tmp"/kafka_2.13-"$KAFKA_VERSION".jar >/dev/null
  rm -rf "$KAFKA_HOME/libs"; mv "$tmp" "$KAFKA_HOME/libs"
  touch "$KAFKA_HOME/libs/.complete"
}

kafka_run_class() { # class args...
  local java; java="$(kafka_java)"
  "$java" -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$KAFKA_SCRIPT_DIR/kafka/log4j2.properties" \
    -cp "$KAFKA_HOME/libs/*" "$@"
}

kafka_port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# kafka_start DIR PORT [NODE VOTERS]: starts the node unless its pid file names a live
# process; formats DIR/data on first use (a restart keeps the log). Returns once the
# broker listens and has logged that it started (120 s at most: a node of a cluster
# waits for the quorum, and a loaded 2-core machine starts a JVM slowly).
kafka_start() {
  local dir="$1" port="$2" node="${3:-1}" voters="${4:-}"
  local controller_port=$((port + 1000))
  [ -n "$voters" ] || voters="$node@127.0.0.1:$controller_port"
  controller_port="$(tr ',' '\n' <<<"$voters" | sed -n "s/^$node@[^:]*:\([0-9]*\)$/\1/p")"
  [ -n "$controller_port" ] || { kafka_log "node $node is not among the voters $voters"; return 1; }
  local nodes; nodes=$(tr ',' '\n' <<<"$voters" | grep -c .)
  local replicas=$((nodes < 3 ? nodes : 3)) min_isr=$((nodes < 3 ? 1 : 2))
  mkdir -p "$dir"
  if [ -f "$dir/broker.pid" ] && kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null; then return 0; fi
  kafka_port_open "$port" && { kafka_log "port $port is taken by a process this script did not start"; return 1; }
  local listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port"
  local advertised="PLAINTEXT://127.0.0.1:$port" protocols="PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  if [ -n "${PHONEBILL_KAFKA_OAUTH_PORT:-}" ]; then
    listeners+=",OAUTH://127.0.0.1:$PHONEBILL_KAFKA_OAUTH_PORT"
    advertised+=",OAUTH://127.0.0.1:$PHONEBILL_KAFKA_OAUTH_PORT"
    protocols+=",OAUTH:SASL_PLAINTEXT"
  fi
  if [ -n "${PHONEBILL_KAFKA_SASL_SSL_PORT:-}" ]; then
    listeners+=",SASL_SSL://127.0.0.1:$PHONEBILL_KAFKA_SASL_SSL_PORT"
    advertised+=",SASL_SSL://localhost:$PHONEBILL_KAFKA_SASL_SSL_PORT"
    protocols+=",SASL_SSL:SASL_SSL"
  fi
  cat >"$dir/server.properties" <<EOF
# Written by infra/local/kafka.sh.
process.roles=broker,controller
node.id=$node
controller.quorum.voters=$voters
listeners=$listeners
advertised.listeners=$advertised
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=$protocols
log.dirs=$dir/data
num.partitions=${PHONEBILL_PARTITIONS:-12}
default.replication.factor=$replicas
min.insync.replicas=$min_isr
offsets.topic.replication.factor=$replicas
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=$replicas
transaction.state.log.min.isr=$min_isr
share.coordinator.state.topic.replication.factor=$replicas
share.coordinator.state.topic.min.isr=$min_isr
# A group's first join is not held back for more members (Kafka's default waits 3 s).
group.initial.rebalance.delay.ms=0
# Tests create many short-lived topics; keep each partition's preallocated index small.
log.index.size.max.bytes=1048576
# A stopped node hands its leaderships over before it exits (rolling restarts).
controlled.shutdown.enable=true
# A node that stops heartbeating (SIGKILL, a lost machine) is fenced and its partitions'
# leadership moves after 3 s instead of Kafka's 9 s.
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500
EOF
  if [ -n "${PHONEBILL_KAFKA_SASL_SSL_PORT:-}" ]; then
    # The clients' listener as Event Hubs' Kafka endpoint is: TLS, then SASL PLAIN with
    # one user and its password (the connection string).
    cat >>"$dir/server.properties" <<EOF
sasl.enabled.mechanisms=PLAIN
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$PHONEBILL_KAFKA_SASL_PLAIN_USER="$PHONEBILL_KAFKA_SASL_PLAIN_PASSWORD";
listener.name.sasl_ssl.ssl.keystore.type=PEM
listener.name.sasl_ssl.ssl.keystore.location=$PHONEBILL_KAFKA_TLS_KEYSTORE
EOF
    chmod 600 "$dir/server.properties"
  fi
  local jvm_oauth=()
  if [ -n "${PHONEBILL_KAFKA_OAUTH_PORT:-}" ]; then
    local jwks="file://$PHONEBILL_KAFKA_OAUTH_JWKS"
    # The validator class must be named: Kafka's default for a broker (ClientJwtValidator)
    # only parses a token, accepting any signature, issuer and audience. It takes effect
    # in this listener-wide form (the listener-and-mechanism form is ignored), and the
    # JWKS file must be allowed by the JVM property below or the broker refuses to start.
    cat >>"$dir/server.properties" <<EOF
listener.name.oauth.sasl.enabled.mechanisms=OAUTHBEARER
listener.name.oauth.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required ;
listener.name.oauth.oauthbearer.sasl.server.callback.handler.class=org.apache.kafka.common.security.oauthbearer.OAuthBearerValidatorCallbackHandler
listener.name.oauth.sasl.oauthbearer.jwt.validator.class=org.apache.kafka.common.security.oauthbearer.BrokerJwtValidator
listener.name.oauth.oauthbearer.sasl.oauthbearer.jwks.endpoint.url=$jwks
listener.name.oauth.oauthbearer.sasl.oauthbearer.expected.issuer=$PHONEBILL_KAFKA_OAUTH_ISSUER
listener.name.oauth.oauthbearer.sasl.oauthbearer.expected.audience=$PHONEBILL_KAFKA_OAUTH_AUDIENCE
listener.name.oauth.oauthbearer.sasl.oauthbearer.sub.claim.name=sub
# A connection signs in again before its token expires, as on Event Hubs.
listener.name.oauth.oauthbearer.connections.max.reauth.ms=3600000
authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
allow.everyone.if.no.acl.found=false
# The PLAINTEXT listener's clients and the node's own registration are anonymous.
super.users=User:ANONYMOUS
EOF
    jvm_oauth=("-Dorg.apache.kafka.sasl.oauthbearer.allowed.urls=$jwks")
  fi
  if [ ! -f "$dir/data/meta.properties" ]; then
    local cluster_id="${PHONEBILL_KAFKA_CLUSTER_ID:-}"
    [ -n "$cluster_id" ] || cluster_id=$(kafka_run_class kafka.tools.StorageTool random-uuid 2>/dev/null | tail -1)
    kafka_run_class kafka.tools.StorageTool format --ignore-formatted -t "$cluster_id" \
      -c "$dir/server.properties" >"$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; return 1; }
  fi
  local java; java="$(kafka_java)"
  # Ready = listening and one more "started" line in the (appended) log than before.
  local started; started=$(kafka_started_lines "$dir")
  # shellcheck disable=SC2086
  nohup "$java" $KAFKA_HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
    ${jvm_oauth[@]+"${jvm_oauth[@]}"} -Djava.awt.headless=true -Dlog4j2.configurationFile="$KAFKA_SCRIPT_DIR/kafka/log4j2.properties" \
    -cp "$KAFKA_HOME/libs/*" kafka.Kafka "$dir/server.properties" >>"$dir/broker.log" 2>&1 &
  echo $! >"$dir/broker.pid"
  local pid=$! deadline=$((SECONDS + 120))
  until kafka_port_open "$port" && [ "$(kafka_started_lines "$dir")" -gt "$started" ]; do
    kill -0 "$pid" 2>/dev/null || { tail -20 "$dir/broker.log" >&2; kafka_log "the broker on $port exited"; return 1; }
    [ $SECONDS -lt $deadline ] || { kafka_log "the broker on $port is not ready after 120 s ($dir/broker.log)"; return 1; }
    sleep 0.1
  done
}

# kafka_oauth_keys DIR: the key of a local token issuer for the OAUTHBEARER listener:
# DIR/issuer.der (Ed25519, PKCS#8) and DIR/jwks.json (its public key, kid
# "local-issuer"), made once.
kafka_oauth_keys() {
  local dir="$1"
  [ -f "$dir/jwks.json" ] && return 0
  mkdir -p "$dir"
  openssl genpkey -algorithm ED25519 -outform DER -out "$dir/issuer.der"
  local x
  x=$(openssl pkey -inform DER -in "$dir/issuer.der" -pubout -outform DER | tail -c 32 | base64 | tr '+/' '-_' | tr -d '=\n')
  printf '{"keys":[{"kty":"OKP","crv":"Ed25519","alg":"EdDSA","use":"sig","kid":"local-issuer","x":"%s"}]}\n' "$x" >"$dir/jwks.json"
}

kafka_started_lines() { # DIR
  local n; n=$(grep -c 'Kafka Server started' "$1/broker.log" 2>/dev/null) || true
  echo "${n:-0}"
}

kafka_signal_stop() { # DIR SIGNAL
  local file="$1/broker.pid" pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -"$2" "$pid" 2>/dev/null || true
    for _ in $(seq 1 300); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

kafka_stop() { kafka_signal_stop "$1" TERM; }
kafka_kill() { kafka_signal_stop "$1" KILL; }

kafka_bootstrap() { case "$1" in *:*) echo "$1" ;; *) echo "127.0.0.1:$1" ;; esac; }

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  case "${1:-}" in
    ensure) kafka_ensure ;;
    start) shift; kafka_ensure; kafka_start "$@" ;;
    stop) kafka_stop "$2" ;;
    kill) kafka_kill "$2" ;;
    topics) port="$2"; shift 2; kafka_run_class org.apache.kafka.tools.TopicCommand --bootstrap-server "$(kafka_bootstrap "$port")" "$@" ;;
    groups) port="$2"; shift 2; kafka_run_class org.apache.kafka.tools.consumer.group.ConsumerGroupCommand --bootstrap-server "$(kafka_bootstrap "$port")" "$@" ;;
    acls) port="$2"; shift 2; kafka_run_class org.apache.kafka.tools.AclCommand --bootstrap-server "$(kafka_bootstrap "$port")" "$@" ;;
    offsets) port="$2"; shift 2; kafka_run_class org.apache.kafka.tools.GetOffsetShell --bootstrap-server "$(kafka_bootstrap "$port")" "$@" ;;
    *) sed -n '2,/^set -euo/{/^#/p}' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 2 ;;
  esac
fi
