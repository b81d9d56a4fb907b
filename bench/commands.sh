#!/usr/bin/env bash
# Command-side benchmark: accepted product changes per second and latency at 32
# concurrent clients on distinct lines, beside the raw single-row INSERT rate of the same
# PostgreSQL (pgbench, 32 clients, one durable commit per row) measured in the same run.
#
# Run through the stack script, which installs what is missing:
#   infra/local/stack bench            (defaults: 32 clients, 20000 changes, 20 s pgbench)
# Settings: BENCH_CLIENTS, BENCH_CHANGES, BENCH_PGBENCH_SECONDS, BENCH_DATABASE_URL, and
# BENCH_SERVICE_BIN (another command-service binary, e.g. an older build kept aside, for
# A/B runs on one machine: its own migrations set up its schema).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${PHONEBILL_CACHE:-$HOME/.cache/phonebill}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
export PHONEBILL_CACHE="$CACHE"
# shellcheck source=infra/local/kafka.sh
source "$ROOT/infra/local/kafka.sh"
CLIENTS="${BENCH_CLIENTS:-32}"
CHANGES="${BENCH_CHANGES:-20000}"
PGBENCH_SECONDS="${BENCH_PGBENCH_SECONDS:-20}"
WARMUP=1000
PG="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/phonebill}"
RUN="$(mktemp -d /tmp/phonebill-bench.XXXXXX)"
ID="bench_$(date +%s)"
BROKER_PORT=19292
SERVICE="${BENCH_SERVICE_BIN:-$CARGO_TARGET_DIR/release/command-service}"
HTTP_PORT=18081

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  kafka_stop "$RUN/broker"
  wait 2>/dev/null || true
  psql "$PG" -qc "DROP SCHEMA IF EXISTS $ID CASCADE; DROP TABLE IF EXISTS ${ID}_raw" >/dev/null 2>&1 || true
  rm -rf "$RUN"
}
trap cleanup EXIT

wait_for() { local deadline=$((SECONDS + $1)); shift; until "$@" >/dev/null 2>&1; do [ $SECONDS -lt $deadline ] || { echo "timed out: $*" >&2; exit 1; }; sleep 0.2; done; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

command -v pgbench >/dev/null || { echo "pgbench is needed (Debian: postgresql-contrib / postgresql-client)" >&2; exit 1; }
echo "building (release)..."
(cd "$ROOT" && cargo build --release --quiet -p command-service -p bench)

# A Kafka node of the benchmark's own, its log in the run folder.
kafka_ensure
kafka_start "$RUN/broker" "$BROKER_PORT"

lines=$((CHANGES + WARMUP + CHANGES / 24 + 10))
python3 "$ROOT/bench/generate_facts.py" --lines "$lines" >"$RUN/facts.jsonl"
export PHONEBILL_DATABASE_URL="$PG" PHONEBILL_DATABASE_SCHEMA="$ID" PHONEBILL_KAFKA_BROKERS="127.0.0.1:$BROKER_PORT" \
  PHONEBILL_TOPIC_PREFIX="$ID." PHONEBILL_HTTP_ADDR="127.0.0.1:$HTTP_PORT" RUST_LOG=warn \
  PHONEBILL_RATE_LIMIT_PER_IP_PER_MINUTE=0 PHONEBILL_RATE_LIMIT_PER_CUSTOMER_PER_MINUTE=0 \
  MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=131072  # as deployed (infra/helm values: why)
"$SERVICE" load-facts "$RUN/facts.jsonl"
# The load generator logs in once as the demo admin (who may change every line).
"$SERVICE" set-password admin --role admin --password demo-admin >/dev/null
"$SERVICE" >"$RUN/service.log" 2>&1 &
service=$!
pids+=($service)
wait_for 60 curl -fsS "http://127.0.0.1:$HTTP_PORT/health/ready"

LOAD="$CARGO_TARGET_DIR/release/load-commands"
echo "warm-up: $WARMUP changes"
"$LOAD" --url "http://127.0.0.1:$HTTP_PORT" --clients "$CLIENTS" --first-line 1 --last-line "$WARMUP" --quiet >/dev/null
echo "measuring: $CHANGES changes, $CLIENTS clients"
service_line=$("$LOAD" --url "http://127.0.0.1:$HTTP_PORT" --clients "$CLIENTS" --first-line $((WARMUP + 1)) \
  --last-line $((WARMUP + CHANGES + CHANGES / 24)) --pid "$service" | tee /dev/stderr | grep '^RESULT')

echo "raw PostgreSQL: single-row INSERT, one commit each, $CLIENTS clients, ${PGBENCH_SECONDS}s (pgbench)"
psql "$PG" -qc "CREATE TABLE ${ID}_raw (id bigserial PRIMARY KEY, line text NOT NULL, payload json NOT NULL)"
cat >"$RUN/insert.sql" <<SQL
INSERT INTO ${ID}_raw (line, payload) VALUES ('010-0000-0001', '{"ProductChangeRequested": {"request_id": "00000000-0000-4000-8000-000000000001"}}');
SQL
raw_tps=$(pgbench -n -c "$CLIENTS" -j 2 -T "$PGBENCH_SECONDS" -f "$RUN/insert.sql" "$PG" 2>/dev/null \
  | awk '/^tps = / {print $3}')

rate=$(sed -E 's/.* rate=([0-9.]+).*/\1/' <<<"$service_line")
rss=$(sed -E 's/.* peak_rss_mib=([0-9.]+).*/\1/' <<<"$service_line")
ratio=$(python3 -c "print(f'{$rate / $raw_tps * 100:.1f}')")
echo
echo "== command-side benchmark ($(nproc) cores, $CLIENTS clients) =="
printf 'accepted product changes: %8.0f /s   %s\n' "$rate" "$(sed -E 's/.*(p50_ms=[0-9.]+ p99_ms=[0-9.]+).*/\1/' <<<"$service_line")"
printf 'raw single-row INSERTs:   %8.0f /s   (pgbench, same PostgreSQL, same run)\n' "$raw_tps"
printf 'ratio: %s %% of the raw insert rate (target >= 25 %%)\n' "$ratio"
printf 'command-service peak RSS: %s MiB (target < 64 MiB)\n' "$rss"
