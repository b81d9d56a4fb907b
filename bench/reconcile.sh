#!/usr/bin/env bash
# Reconciliation benchmark: the time `phonebill-analyst reconcile` takes over BENCH_LINES
# lines (default 100,000), each with BENCH_CHANGES product changes of three events
# (default 1), in the event store and rebuilt into a namespace by a replay.
#
#   bench/reconcile.sh
#
# Starts its own Kafka node (infra/local/kafka.sh) on a free port; `produce-events` writes
# the history to the topics and the same product changes to an event store schema made
# by `command-service migrate`; a replay builds the read side; then four runs of
# reconcile are timed: ledgers only (--no-views), ledgers and change requests (the
# default), with the broker's copy of the topic (--broker), and with every Redis view
# (--redis). Each must find every line equal.
# Needs PostgreSQL and Redis as for the tests; uses its own schemas, key prefix and topics.
set -euo pipefail
cd "$(dirname "$0")/.."
export PHONEBILL_CACHE="${PHONEBILL_CACHE:-$HOME/.cache/phonebill}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PHONEBILL_CACHE/target}"
# shellcheck source=infra/local/kafka.sh
source infra/local/kafka.sh
LINES="${BENCH_LINES:-100000}"
CHANGES="${BENCH_CHANGES:-1}"
DB="${PHONEBILL_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/phonebill}"
cargo build --release -q -p analyst -p bench -p command-service
BIN="$CARGO_TARGET_DIR/release"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RUN=$(mktemp -d)
ID="rbench$(date +%s)"
cleanup() {
  kafka_stop "$RUN/broker"
  psql "$DB" -qc "DROP SCHEMA IF EXISTS ${ID} CASCADE; DROP SCHEMA IF EXISTS ${ID}_control CASCADE; DROP SCHEMA IF EXISTS ${ID}_r1 CASCADE; DROP SCHEMA IF EXISTS ${ID}_cmd CASCADE" >/dev/null 2>&1 || true
  psql "$DB" -qc "DROP ROLE IF EXISTS ${ID}_q" >/dev/null 2>&1 || true
  redis-cli --scan --pattern "${ID}:*" | xargs -r -n 1000 redis-cli unlink >/dev/null || true
  rm -rf "$RUN"
}
trap cleanup EXIT
kafka_ensure
kafka_start "$RUN/broker" "$PORT"
PREFIX="$ID."
for t in phonebill.product-change kos.billing phonebill.bill-inquiries; do
  kafka_run_class org.apache.kafka.tools.TopicCommand --bootstrap-server "127.0.0.1:$PORT" \
    --create --topic "$PREFIX$t" --partitions 12 >/dev/null
done
PHONEBILL_DATABASE_URL="$DB" PHONEBILL_DATABASE_SCHEMA="${ID}_cmd" RUST_LOG=warn "$BIN/command-service" migrate
"$BIN/produce-events" --brokers "127.0.0.1:$PORT" --topic-prefix "$PREFIX" --lines "$LINES" \
  --bills 0 --changes "$CHANGES" --event-store-schema "${ID}_cmd" --database-url "$DB"
export PHONEBILL_KAFKA_BROKERS="127.0.0.1:$PORT" PHONEBILL_TOPIC_PREFIX="$PREFIX" \
  PHONEBILL_DATABASE_URL="$DB" PHONEBILL_DATABASE_SCHEMA="$ID" PHONEBILL_REDIS_KEY_PREFIX="$ID:" \
  PHONEBILL_EVENT_STORE_SCHEMA="${ID}_cmd" PHONEBILL_QUERY_ROLE="${ID}_q" \
  PHONEBILL_KAFKA_CREATE_TOPICS=false RUST_LOG=warn,rdkafka=off
"$BIN/phonebill-analyst" replay --id r1 --quiet >"$RUN/replay.json"
echo "replay: $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["messages"], "events in", round(r["seconds"],1), "s")' "$RUN/replay.json")"
# As autovacuum does after a bulk load, so plans are those of a table in service.
psql "$DB" -qc "ANALYZE ${ID}_cmd.events; ANALYZE ${ID}_r1.applied; ANALYZE ${ID}_r1.apply_log; ANALYZE ${ID}_r1.change_requests; ANALYZE ${ID}_r1.parked"
for mode in --no-views "" --broker --redis; do
  start=$(date +%s.%N)
  # shellcheck disable=SC2086 # an empty mode is no argument
  "$BIN/phonebill-analyst" reconcile --namespace r1 --json --quiet $mode >"$RUN/report.json"
  end=$(date +%s.%N)
  python3 - "$RUN/report.json" "${mode:-(ledgers and change requests)}" "$start" "$end" "$LINES" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
wall = float(sys.argv[4]) - float(sys.argv[3])
lines = int(sys.argv[5])
assert r["lines"] == lines and r["equal"] == lines, f"not every line equal: {r['lines']} lines, {r['equal']} equal, {r['divergent']} divergent"
print(f"reconcile {sys.argv[2]}: {r['lines']:,} lines, {r['eventsCommitted']:,} events, all equal; "
      f"{r['elapsedMs'] / 1000:.1f} s in the run, {wall:.1f} s for the process; "
      f"{r['lines'] / (r['elapsedMs'] / 1000):,.0f} lines/s")
PY
done
