#!/usr/bin/env bash
# Warm bill queries vs raw Redis GETs of the same view key, same concurrency, same run.
#
#   query-service/bench/bills.sh            # 64 and 1000 connections, 15 s each
#   CONNS="64" DURATION=10s query-service/bench/bills.sh
#   QUERY_BIN=/tmp/query-service-old ...   # A/B against another build
#   RATE_LIMITS=shared ...                  # limits on, counted in Redis (or: local)
#   CALLGRIND=1 query-service/bench/bills.sh  # instructions per warm bill query instead
#     (from the stack: CALLGRIND=1 SKIP_FRESHNESS=1 infra/local/stack bench-reads)
#
# CALLGRIND=1 runs query-service under valgrind's callgrind, sends warm bill queries for
# CALLGRIND_SECS (default 15) from 16 connections and prints the instructions executed
# per query: in the HTTP workers (the two threads that ran the most) and in all threads.
# Instruction counts repeat from run to run where throughput wanders by ±20 %, so they
# show a change to the query path that an A/B of req/s cannot. The profiles stay in
# $CALLGRIND_DIR (default a temporary folder) for callgrind_annotate. Time-driven work
# (the inquiry publisher's 10 ms tick, librdkafka's statistics) runs at wall-clock rate
# while the queries run ~50x slower, so the other threads' share is inflated.
#
# Needs: PostgreSQL (PHONEBILL_DATABASE_URL, superuser-ish: creates a schema and a role),
# Redis (REDIS_HOST/REDIS_PORT), a broker (PHONEBILL_KAFKA_BROKERS), wrk, redis-benchmark,
# python3. `infra/local/stack bench-reads` provides them all and runs this script.
# Everything it creates is namespaced by a run id and removed at the end.
#
# Every request carries the bill owner's token (signed with the local development key),
# so the measured path includes token verification, the revocation check and the
# ownership rule. The rate limits are off: one client making every request would hit
# them at once.
set -euo pipefail
cd "$(dirname "$0")/../.."

CONNS=${CONNS:-"64 1000"}
DURATION=${DURATION:-15s}
THREADS=${THREADS:-2}
DB=${PHONEBILL_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/phonebill}
BROKERS=${PHONEBILL_KAFKA_BROKERS:-127.0.0.1:29092}
REDIS_HOST=${REDIS_HOST:-127.0.0.1}
REDIS_PORT=${REDIS_PORT:-6379}
TARGET=${CARGO_TARGET_DIR:-target}
RUN=bench$(date +%s)
SCHEMA=$RUN
ROLE=q_$RUN
PREFIX="$RUN:"
LINE=010-7777-0001
MONTH=2026-03
KEY="${PREFIX}bill:{line:${LINE}}:${MONTH}"
PPORT=${PROJECTOR_PORT:-18083}
QPORT=${QUERY_PORT:-18082}
ulimit -n 65536 2>/dev/null || true
# glibc gives each thread its own arena; two keep the projector small. query-service runs
# on mimalloc, told to return freed pages at once (as its image does).
export MALLOC_ARENA_MAX=${MALLOC_ARENA_MAX:-2}
export MIMALLOC_PURGE_DELAY=${MIMALLOC_PURGE_DELAY:-0} MIMALLOC_ARENA_EAGER_COMMIT=${MIMALLOC_ARENA_EAGER_COMMIT:-0}

cargo build --release -q -p projector -p query-service -p bench
# QUERY_BIN: another query-service binary (an older build copied aside) for A/B runs.
QUERY_BIN=${QUERY_BIN:-$TARGET/release/query-service}
export PHONEBILL_DATABASE_SCHEMA=$SCHEMA PHONEBILL_QUERY_ROLE=$ROLE PHONEBILL_QUERY_ROLE_LOGIN=true \
       PHONEBILL_KAFKA_BROKERS=$BROKERS PHONEBILL_TOPIC_PREFIX="$RUN." PHONEBILL_TOPIC_PARTITIONS=3 \
       PHONEBILL_REDIS_URL="redis://$REDIS_HOST:$REDIS_PORT" PHONEBILL_REDIS_KEY_PREFIX="$PREFIX" \
       PHONEBILL_CONSUMER_GROUP="$RUN.projector" RUST_LOG=warn
# RATE_LIMITS: off (default: one client making every request would hit any real limit at
# once), or local / shared: both limits on but set too high to refuse anything, counted
# by the replica or in Redis (PHONEBILL_RATE_LIMIT_SHARED), to measure what counting costs.
case "${RATE_LIMITS:-off}" in
  off) LIMIT=0 SHARED=false ;;
  local) LIMIT=1000000000 SHARED=false ;;
  shared) LIMIT=1000000000 SHARED=true ;;
  *) echo "RATE_LIMITS is off, local or shared" >&2; exit 2 ;;
esac
export PHONEBILL_RATE_LIMIT_PER_IP_PER_MINUTE=$LIMIT PHONEBILL_RATE_LIMIT_PER_CUSTOMER_PER_MINUTE=$LIMIT \
       PHONEBILL_RATE_LIMIT_SHARED=$SHARED

# The owner's access token, as command-service's login would issue it: EdDSA with the
# local development key `local-dev` (query-service verifies it with that key's public
# half). openssl signs; Python's standard library has no Ed25519.
TOKEN=$(LINE=$LINE python3 - <<'PY'
import base64, json, os, subprocess, tempfile, time, uuid
def b64(data): return base64.urlsafe_b64encode(data).rstrip(b"=").decode()
# The development seed as PKCS#8 DER (RFC 8410: a fixed prefix, then the 32 bytes).
pkcs8 = bytes.fromhex("302e020100300506032b657004220420") + b"phonebill-jwt-local-dev-key-0001"
now = int(time.time())
header = {"alg": "EdDSA", "typ": "JWT", "kid": "local-dev"}
claims = {"iss": "phonebill", "aud": "phonebill-api", "sub": "CUST001", "role": "customer",
          "lines": [os.environ["LINE"]], "iat": now, "exp": now + 1800, "jti": str(uuid.uuid4())}
signing_input = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
with tempfile.TemporaryDirectory() as d:
    key, text = os.path.join(d, "key.der"), os.path.join(d, "text")
    open(key, "wb").write(pkcs8)
    open(text, "wb").write(signing_input.encode())
    signature = subprocess.run(
        ["openssl", "pkeyutl", "-sign", "-keyform", "DER", "-inkey", key, "-rawin", "-in", text],
        check=True, capture_output=True).stdout
print(signing_input + "." + b64(signature))
PY
)
AUTH="Authorization: Bearer $TOKEN"

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -f "${BODY:-}"
  # The projector's control schema (which read namespace is active) is <schema>_control.
  psql -q "$DB" -c "DROP SCHEMA IF EXISTS \"$SCHEMA\" CASCADE" -c "DROP SCHEMA IF EXISTS \"${SCHEMA}_control\" CASCADE" \
    -c "DROP ROLE IF EXISTS \"$ROLE\"" >/dev/null 2>&1 || true
  redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" --scan --pattern "${PREFIX}*" | xargs -r -d '\n' redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" del >/dev/null || true
}
trap cleanup EXIT

# One bill, applied through the projector exactly as if consumed from kos.billing.
FACTS=$(mktemp)
cat >"$FACTS" <<JSON
{"event_id":"00000000-0000-4000-8000-00000000b111","event_type":"BillIssued","event_version":1,"aggregate_id":"$LINE","sequence":1,"occurred_at":"2026-04-01T00:00:00Z","correlation_id":"00000000-0000-4000-8000-000000000001","causation_id":"00000000-0000-4000-8000-000000000001","payload":{"line_number":"$LINE","customer_id":"CUST001","month":"$MONTH","product_code":"5G-STANDARD-001","product_name":"5G Standard","contract":{"commitment_months":24,"started_on":"2025-01-01","ends_on":"2026-12-31"},"monthly_fee":69000,"usage_charges":1000,"discounts":[{"name":"family","amount":5000}],"total_amount":65000,"usage":{"voice_minutes":100,"sms_count":10,"data_mb":2048},"early_termination_fee":120000,"device_installment_balance":300000,"billing":{"billing_date":"2026-04-01","due_date":"2026-04-25","payment_status":"UNPAID","payment_method":"CARD"},"issued_at":"2026-04-01T00:00:00Z"}}
JSON
PHONEBILL_DATABASE_URL=$DB "$TARGET/release/projector" apply-facts "$FACTS"
rm -f "$FACTS"

HOSTPART=${DB#*@}
QUERY_CMD=("$QUERY_BIN")
QUERY_ERR=/dev/stderr
READY_TRIES=100
if [ -n "${CALLGRIND:-}" ]; then
  CALLGRIND_DIR=${CALLGRIND_DIR:-$(mktemp -d)}
  QUERY_CMD=(valgrind --tool=callgrind --instr-atstart=no --separate-threads=yes
             --callgrind-out-file="$CALLGRIND_DIR/callgrind.out.%p" "$QUERY_BIN")
  QUERY_ERR=$CALLGRIND_DIR/valgrind.log
  READY_TRIES=1200   # starting under valgrind takes a while
fi
# QUERY_ENV: extra NAME=value settings for query-service alone (bench/traces.sh turns
# the trace exporter on with them).
read -r -a QUERY_ENV_ARGS <<<"${QUERY_ENV:-}"
env "${QUERY_ENV_ARGS[@]}" PHONEBILL_DATABASE_URL="postgres://$ROLE@$HOSTPART" PHONEBILL_HTTP_ADDR=127.0.0.1:$QPORT \
  "${QUERY_CMD[@]}" 2>>"$QUERY_ERR" &
PIDS+=($!); QUERY_PID=$!
URL="http://127.0.0.1:$QPORT/api/v1/bills?lineNumber=$LINE&month=$MONTH"
for _ in $(seq "$READY_TRIES"); do
  curl -sf "http://127.0.0.1:$QPORT/health/ready" | grep -q '"l1":"UP"' && break
  sleep 0.1
done
BODY=$(mktemp)
curl -sf -H "$AUTH" "$URL" >"$BODY"   # warm: L1 and Redis hold the bill
redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" exists "$KEY" | grep -q 1

if [ -n "${CALLGRIND:-}" ]; then
  callgrind_control -i on "$QUERY_PID" >/dev/null
  out=$(wrk -t1 -c16 -d"${CALLGRIND_SECS:-15}s" -H "$AUTH" "$URL")
  callgrind_control -i off "$QUERY_PID" >/dev/null
  callgrind_control -d "$QUERY_PID" >/dev/null
  queries=$(awk '/requests in/ {print $1}' <<<"$out")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  [ -z "$non2xx" ] || { echo "non-2xx answers: $non2xx" >&2; exit 1; }
  # One file per thread; each ends with its total.
  totals=$(for f in "$CALLGRIND_DIR"/callgrind.out.*; do awk '/^totals:/ {print $2}' "$f"; done | sort -rn)
  workers=$(head -2 <<<"$totals" | awk '{s += $1} END {print s}')
  all=$(awk '{s += $1} END {print s}' <<<"$totals")
  echo "callgrind: $queries bill queries; instructions per query: HTTP workers $((workers / queries)), all threads $((all / queries)) (profiles in $CALLGRIND_DIR)"
  exit 0
fi

# The machine's HTTP ceiling, for reading the ratio: the same bill bytes served from
# memory on the same per-core workers, with nothing else (bench/src/bare_http.rs); and
# the same with the headers a bill answer carries (`+headers`), which tells what the
# headers cost from what the query path's code costs. BARE=0 leaves both out.
BARE=${BARE:-1}
BPORT=${BARE_PORT:-18090}
if [ "$BARE" = 1 ]; then
  "$TARGET/release/bare-http" --addr 127.0.0.1:$BPORT --body "$BODY" &
  PIDS+=($!)
  "$TARGET/release/bare-http" --addr 127.0.0.1:$((BPORT + 1)) --body "$BODY" --bill-headers &
  PIDS+=($!)
  for p in $BPORT $((BPORT + 1)); do
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$p/" >/dev/null && break; sleep 0.1; done
  done
fi

ms() { # wrk latency ("1.23ms", "850.00us", "1.02s") -> ms
  awk -v v="$1" 'BEGIN { n=v+0; if (v ~ /us$/) n/=1000; else if (v ~ /ms$/) n=n; else if (v ~ /s$/) n*=1000; printf "%.2f", n }'
}
bare_rate() { # port -> "req/s ratio-to-redis" of a bare-http at this concurrency
  local rate
  rate=$(wrk -t"$THREADS" -c"$c" -d"$DURATION" "http://127.0.0.1:$1/" | awk '/^Requests\/sec/ {print $2}')
  awk -v a="$rate" -v b="$rrps" 'BEGIN { printf "%s %.2fx", a, a/b }'
}
printf "%-6s %12s %9s %9s | %12s %9s %9s | %7s | %12s %7s | %12s %7s\n" conns "http req/s" "p50 ms" "p99 ms" "redis GET/s" "p50 ms" "p99 ms" ratio "bare http/s" "ratio" "+headers/s" "ratio"
for c in $CONNS; do
  out=$(wrk -t"$THREADS" -c"$c" -d"$DURATION" --latency -H "$AUTH" "$URL")
  rps=$(awk '/^Requests\/sec/ {print $2}' <<<"$out")
  p50=$(ms "$(awk '$1=="50%" {print $2}' <<<"$out")")
  p99=$(ms "$(awk '$1=="99%" {print $2}' <<<"$out")")
  non2xx=$(awk '/Non-2xx/ {print $NF}' <<<"$out")
  # The same key, the same concurrency, straight at Redis.
  csv=$(redis-benchmark -h "$REDIS_HOST" -p "$REDIS_PORT" -c "$c" -n $((c * 400 > 400000 ? c * 400 : 400000)) --csv GET "$KEY" | tail -1)
  rrps=$(cut -d, -f2 <<<"$csv" | tr -d '"')
  rp50=$(cut -d, -f5 <<<"$csv" | tr -d '"')
  rp99=$(cut -d, -f7 <<<"$csv" | tr -d '"')
  ratio=$(awk -v a="$rps" -v b="$rrps" 'BEGIN { printf "%.2fx", a/b }')
  bare="- -" hbare="- -"
  if [ "$BARE" = 1 ]; then
    bare=$(bare_rate "$BPORT") hbare=$(bare_rate $((BPORT + 1)))
  fi
  printf "%-6s %12s %9s %9s | %12s %9s %9s | %7s | %12s %7s | %12s %7s %s\n" "$c" "$rps" "$p50" "$p99" "$rrps" "$rp50" "$rp99" "$ratio" $bare $hbare "${non2xx:+(non-2xx: $non2xx)}"
done
rss() { awk '/VmHWM/ {printf "%.1f MiB", $2/1024}' "/proc/$1/status"; }
METRICS=$(curl -s "http://127.0.0.1:$QPORT/metrics")
recorded=$(awk '/^phonebill_bill_inquiries_recorded_total/ {print $2}' <<<"$METRICS")
dropped=$(awk '/^phonebill_bill_inquiries_dropped_total/ {print $2}' <<<"$METRICS")
l1=$(awk '/^phonebill_cache_requests_total.*layer="l1".*result="hit"/ {print $2}' <<<"$METRICS")
echo "query-service: peak RSS $(rss $QUERY_PID); inquiries recorded ${recorded:-0}, dropped ${dropped:-0}; L1 hits ${l1:-0}"
spans() { awk -v o="outcome=\"$1\"" 'index($0, "phonebill_trace_spans_total") == 1 && index($0, o) {print $2}' <<<"$METRICS"; }
if grep -q '^phonebill_trace_spans_total' <<<"$METRICS"; then
  echo "TRACES ended=$(spans ended) exported=$(spans exported) export_failed=$(spans export_failed)"
fi

# The projector runs after the measurement (on this 2-core box it would otherwise take
# CPU from the server under test; in production it is its own pod): it consumes the
# inquiry backlog the run produced, and its peak RSS is taken while it does.
PHONEBILL_DATABASE_URL=$DB PHONEBILL_HTTP_ADDR=127.0.0.1:$PPORT "$TARGET/release/projector" &
PIDS+=($!); PROJECTOR_PID=$!
CATCHUP=${CATCHUP_SECS:-60}
start=$(date +%s); projected=0
while (( $(date +%s) - start < CATCHUP )); do
  sleep 5
  projected=$(psql -qAt "$DB" -c "SELECT count(*) FROM \"$SCHEMA\".bill_inquiries" 2>/dev/null || echo 0)
  [[ "$projected" -ge "${recorded%.*}" ]] 2>/dev/null && break
done
secs=$(( $(date +%s) - start ))
echo "projector: peak RSS $(rss $PROJECTOR_PID) while projecting $projected inquiries in ${secs}s ($(( projected / (secs > 0 ? secs : 1) ))/s)"
