#!/usr/bin/env bash
# The production-shaped profile's infrastructure: what production's managed services
# change for the clients, run locally (sourced by infra/local/stack).
#
#   Redis       a three-shard cluster, TLS only (no plain port), a password (Azure Cache
#               for Redis Premium with clustering: TLS on 6380, an access key)
#   PostgreSQL  a cluster of its own that accepts TLS connections only, with passwords
#               (scram-sha-256); clients connect with sslmode=verify-full against the
#               local CA (Azure Database for PostgreSQL Flexible Server requires TLS)
#   Kafka       a SASL_SSL listener with the PLAIN mechanism, user `$ConnectionString`
#               and a connection string as its password, as Event Hubs' Kafka endpoint
#               takes them
#
# Certificates are made here into the profile's folder: a CA and one server certificate
# for localhost and 127.0.0.1 (also the Redis nodes' client certificate on the cluster bus,
# which verifies both ends). Clients trust the CA through SSL_CERT_FILE (a bundle of the
# system's CAs and the local one), which OpenSSL (librdkafka) and rustls-native-certs (the
# Redis client) both read, and PostgreSQL's through sslrootcert in the URL.
#
# Settings (environment): PHONEBILL_PROD_LIKE_REDIS_PORT (first of three, default 17101),
# PHONEBILL_PROD_LIKE_PG_PORT (default 5442).

PROD_LIKE_REDIS_PORT="${PHONEBILL_PROD_LIKE_REDIS_PORT:-17101}"
PROD_LIKE_PG_PORT="${PHONEBILL_PROD_LIKE_PG_PORT:-5442}"
PROD_LIKE_PG_CLUSTER=phonebill_prod_like
# Event Hubs' user name is this literal; its password is the namespace's connection string.
PROD_LIKE_SASL_USER='$ConnectionString'

# prod_like_certs DIR: the CA, the server certificate and key, the trust bundle and the
# secrets (passwords, signing key), made once per folder.
prod_like_certs() {
  local dir="$1"
  # Made once; made again when the certificate has less than a day left (30 days valid).
  if [ -f "$dir/secrets.env" ] && grep -q '^PROD_LIKE_KOS_DB_PASSWORD=' "$dir/secrets.env" \
     && [ -f "$dir/kos-signing-key" ] && [ -f "$dir/jwt.key" ] \
     && openssl x509 -checkend 86400 -noout -in "$dir/server.pem" >/dev/null 2>&1; then
    return 0
  fi
  command -v openssl >/dev/null || apt_install openssl
  rm -rf "$dir"
  mkdir -p "$dir"
  (
    cd "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=phonebill local CA" \
      -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
      -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr 2>/dev/null
    printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth,clientAuth" >server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
      -extfile server.ext -out server.pem 2>/dev/null
    # Kafka's PEM key store: the (PKCS#8) key and the chain in one file.
    cat server.key server.pem >kafka-keystore.pem
    cat /etc/ssl/certs/ca-certificates.crt ca.pem >trust.pem 2>/dev/null || cp ca.pem trust.pem
    chmod 600 ./*.key kafka-keystore.pem
    local redis_pw pg_pw query_pw sas
    redis_pw=$(openssl rand -hex 24) pg_pw=$(openssl rand -hex 24) query_pw=$(openssl rand -hex 24)
    sas=$(openssl rand -base64 32)
    # The shape of an Event Hubs namespace connection string (the broker checks it whole).
    {
      echo "PROD_LIKE_REDIS_PASSWORD=$redis_pw"
      echo "PROD_LIKE_PG_PASSWORD=$pg_pw"
      echo "PROD_LIKE_QUERY_PASSWORD=$query_pw"
      # Each service's own login (made by its migration step).
      echo "PROD_LIKE_COMMAND_DB_PASSWORD=$(openssl rand -hex 24)"
      echo "PROD_LIKE_PROJECTOR_DB_PASSWORD=$(openssl rand -hex 24)"
      echo "PROD_LIKE_KOS_DB_PASSWORD=$(openssl rand -hex 24)"
      echo "PROD_LIKE_SASL_PASSWORD='Endpoint=sb://phonebill-local.servicebus.windows.net/;SharedAccessKeyName=phonebill;SharedAccessKey=$sas'"
    } >secrets.env
    # The token signing key (command-service alone) and its public half (every service),
    # and KOS's message signing key (kos-mock alone) and its public half (its
    # consumers), as DER in base64 (service_kit::signed, service_kit::auth).
    openssl genpkey -algorithm ed25519 -out jwt.key 2>/dev/null
    echo "jwt1:$(openssl pkey -in jwt.key -outform DER | base64 -w0)" >jwt-signing-key
    echo "PROD_LIKE_JWT_VERIFY_KEYS=jwt1:$(openssl pkey -in jwt.key -pubout -outform DER | base64 -w0)" >>secrets.env
    openssl genpkey -algorithm ed25519 -out kos.key 2>/dev/null
    echo "kos1:$(openssl pkey -in kos.key -outform DER | base64 -w0)" >kos-signing-key
    echo "PROD_LIKE_KOS_VERIFY_KEYS=kos1:$(openssl pkey -in kos.key -pubout -outform DER | base64 -w0)" >>secrets.env
    chmod 600 secrets.env jwt.key jwt-signing-key kos.key kos-signing-key
  )
}

prod_like_secrets() { # DIR
  # shellcheck disable=SC1091
  source "$1/secrets.env"
}

# prod_like_redis DIR: three TLS-only nodes with a password, made one cluster.
prod_like_redis() {
  local dir="$1/redis" first="$PROD_LIKE_REDIS_PORT" port addresses=()
  prod_like_redis_stop "$1"
  rm -rf "$dir"; mkdir -p "$dir"
  for port in "$first" $((first + 1)) $((first + 2)); do
    addresses+=("127.0.0.1:$port")
    redis-server --daemonize yes --bind 127.0.0.1 --port 0 --tls-port "$port" \
      --tls-cert-file "$1/server.pem" --tls-key-file "$1/server.key" --tls-ca-cert-file "$1/ca.pem" \
      --tls-auth-clients no --tls-cluster yes --requirepass "$PROD_LIKE_REDIS_PASSWORD" \
      --masterauth "$PROD_LIKE_REDIS_PASSWORD" --save "" --appendonly no \
      --cluster-enabled yes --cluster-port $((port + 10000)) --cluster-config-file "$dir/nodes-$port.conf" --dir "$dir" \
      --logfile "$dir/redis-$port.log" --pidfile "$dir/redis-$port.pid" >/dev/null
  done
  wait_for "the TLS Redis cluster's nodes" 15 prod_like_redis_answers "$1" PONG ping
  prod_like_redis_cli "$1" "$first" --cluster create "${addresses[@]}" --cluster-replicas 0 --cluster-yes >/dev/null
  wait_for "the TLS Redis cluster" 30 prod_like_redis_answers "$1" cluster_state:ok cluster info
}

prod_like_redis_cli() { # DIR PORT ARGS...
  local dir="$1" port="$2"; shift 2
  REDISCLI_AUTH="$PROD_LIKE_REDIS_PASSWORD" redis-cli --tls --cacert "$dir/ca.pem" -h 127.0.0.1 -p "$port" "$@"
}

prod_like_redis_answers() { # DIR expected command...
  local dir="$1" want="$2" port first="$PROD_LIKE_REDIS_PORT"; shift 2
  for port in "$first" $((first + 1)) $((first + 2)); do
    prod_like_redis_cli "$dir" "$port" "$@" 2>/dev/null | grep -q "$want" || return 1
  done
}

prod_like_redis_stop() { # DIR
  local pidfile
  for pidfile in "$1"/redis/redis-*.pid; do
    [ -f "$pidfile" ] || continue
    kill "$(cat "$pidfile")" 2>/dev/null || true
    rm -f "$pidfile"
  done
}

prod_like_redis_url() { # every node, TLS and the password (the cluster client needs one)
  local first="$PROD_LIKE_REDIS_PORT" port urls=()
  for port in "$first" $((first + 1)) $((first + 2)); do
    urls+=("rediss://:$PROD_LIKE_REDIS_PASSWORD@127.0.0.1:$port")
  done
  (IFS=,; echo "${urls[*]}")
}

# prod_like_postgres DIR: a PostgreSQL cluster of its own (made afresh), TLS only, with
# the database `phonebill` owned by `phonebill_admin`, who may create roles (each
# service's migration step makes its login), as Azure's administrator login can.
prod_like_postgres() {
  local dir="$1" version conf
  version=$(ls /etc/postgresql | sort -V | tail -1)
  conf="/etc/postgresql/$version/$PROD_LIKE_PG_CLUSTER"
  prod_like_postgres_stop
  pg_createcluster -q "$version" "$PROD_LIKE_PG_CLUSTER" -p "$PROD_LIKE_PG_PORT" --start-conf=manual >/dev/null
  install -o postgres -g postgres -m 600 "$dir/server.key" "$conf/server.key"
  install -o postgres -g postgres -m 644 "$dir/server.pem" "$conf/server.pem"
  cat >>"$conf/postgresql.conf" <<EOF
# infra/local/prodlike.sh: TLS only, as Azure Database for PostgreSQL requires it.
listen_addresses = '127.0.0.1'
ssl = on
ssl_cert_file = '$conf/server.pem'
ssl_key_file = '$conf/server.key'
ssl_min_protocol_version = 'TLSv1.2'
password_encryption = 'scram-sha-256'
max_connections = 200
fsync = off
EOF
  # TLS connections with a password, or the local administrator over its socket; no
  # plain TCP line, so a client without TLS is refused.
  cat >"$conf/pg_hba.conf" <<EOF
local   all  postgres                 peer
hostssl all  all       127.0.0.1/32   scram-sha-256
EOF
  pg_ctlcluster --skip-systemctl-redirect "$version" "$PROD_LIKE_PG_CLUSTER" start
  wait_for "PostgreSQL (TLS only) on $PROD_LIKE_PG_PORT" 30 pg_isready -q -h 127.0.0.1 -p "$PROD_LIKE_PG_PORT"
  runuser -u postgres -- psql -q -p "$PROD_LIKE_PG_PORT" -v ON_ERROR_STOP=1 <<EOF >/dev/null
CREATE ROLE phonebill_admin LOGIN CREATEROLE PASSWORD '$PROD_LIKE_PG_PASSWORD';
CREATE DATABASE phonebill OWNER phonebill_admin;
EOF
}

prod_like_postgres_stop() {
  local version
  for version in $(ls /etc/postgresql 2>/dev/null); do
    [ -d "/etc/postgresql/$version/$PROD_LIKE_PG_CLUSTER" ] || continue
    pg_ctlcluster --skip-systemctl-redirect "$version" "$PROD_LIKE_PG_CLUSTER" stop -m fast 2>/dev/null || true
    pg_dropcluster "$version" "$PROD_LIKE_PG_CLUSTER" 2>/dev/null || true
    # What a half-dropped cluster leaves would stop pg_createcluster next time.
    rm -rf "/etc/postgresql/$version/$PROD_LIKE_PG_CLUSTER" "/var/lib/postgresql/$version/$PROD_LIKE_PG_CLUSTER"
  done
}

# The URL of a login on the TLS-only cluster, verifying the server against the local CA.
prod_like_pg_url() { # DIR user password
  echo "postgres://$2:$3@localhost:$PROD_LIKE_PG_PORT/phonebill?sslmode=verify-full&sslrootcert=$1/ca.pem"
}

# A service's own login with its password (STACK_LOGIN_URL of the profile).
prod_like_login_url() { # login
  local password
  case "$1" in
    phonebill_command) password="$PROD_LIKE_COMMAND_DB_PASSWORD" ;;
    phonebill_projector) password="$PROD_LIKE_PROJECTOR_DB_PASSWORD" ;;
    phonebill_kos) password="$PROD_LIKE_KOS_DB_PASSWORD" ;;
    phonebill_query) password="$PROD_LIKE_QUERY_PASSWORD" ;;
    *) echo "no password for login $1" >&2; return 1 ;;
  esac
  prod_like_pg_url "$STACK_DIR/tls" "$1" "$password"
}

# prod_like_kafka DIR BROKER_DIR PORT: a Kafka node whose clients' listener (PORT+1) is
# SASL_SSL (PORT stays plaintext for the broker's own tools).
prod_like_kafka() {
  local dir="$1" broker_dir="$2" port="$3"
  PHONEBILL_KAFKA_SASL_SSL_PORT=$((port + 1)) PHONEBILL_KAFKA_TLS_KEYSTORE="$dir/kafka-keystore.pem" \
    PHONEBILL_KAFKA_SASL_PLAIN_USER="$PROD_LIKE_SASL_USER" \
    PHONEBILL_KAFKA_SASL_PLAIN_PASSWORD="$PROD_LIKE_SASL_PASSWORD" \
    kafka_start "$broker_dir" "$port"
}

# The environment of a service (or an in-process test stack) on this profile: the
# transport settings exactly as the chart's production values set them. The private
# keys are apart: the token key for command-service (PROD_LIKE_COMMAND_ENV), KOS's
# message key for kos-mock (PROD_LIKE_KOS_ENV); every other service holds public keys.
prod_like_env() { # DIR KAFKA_PORT
  local dir="$1" port="$2"
  PROD_LIKE_ENV=(
    SSL_CERT_FILE="$dir/trust.pem"
    PHONEBILL_KAFKA_BROKERS="localhost:$((port + 1))"
    PHONEBILL_KAFKA_SECURITY_PROTOCOL=sasl_ssl
    PHONEBILL_KAFKA_SASL_MECHANISM=PLAIN
    PHONEBILL_KAFKA_SASL_USERNAME="$PROD_LIKE_SASL_USER"
    PHONEBILL_KAFKA_SASL_PASSWORD="$PROD_LIKE_SASL_PASSWORD"
    PHONEBILL_REDIS_CLUSTER=true
    PHONEBILL_REDIS_URL="$(prod_like_redis_url)"
    PHONEBILL_JWT_VERIFY_KEYS="$PROD_LIKE_JWT_VERIFY_KEYS"
    PHONEBILL_KOS_VERIFY_KEYS="$PROD_LIKE_KOS_VERIFY_KEYS"
  )
  PROD_LIKE_COMMAND_ENV=(PHONEBILL_JWT_SIGNING_KEY_FILE="$dir/jwt-signing-key")
  PROD_LIKE_KOS_ENV=(PHONEBILL_KOS_SIGNING_KEY_FILE="$dir/kos-signing-key")
}

prod_like_stop() { # DIR BROKER_DIR
  kafka_stop "$2"
  prod_like_redis_stop "$1"
  prod_like_postgres_stop
}
