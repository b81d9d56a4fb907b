#!/usr/bin/env bash
# Replay benchmark: events/s of `phonebill-analyst replay` beside a raw rdkafka consumer reading
# the same topics on the same broker in the same run, and the ratio (target >= 70 %).
#
#   bench/replay.sh                      # BENCH_LINES=10000 -> 110,002 events
#
# Starts its own Kafka node (infra/local/kafka.sh) on a free port, publishes the history with
# `produce-events`, reads it once with `raw-consume`, then replays it into a fresh
# namespace with the progress bar drawn (under `script`, so stderr is a terminal).
# Needs PostgreSQL and Redis as for the tests; uses its own schema, key prefix and topics.
set -euo pipefail
cd "$(dirname "$0")/.."
export PHONEBILL_CACHE="${PHONEBILL_CACHE:-$HOME/.cache/phonebill}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PHONEBILL_CACHE/target}"
# shellcheck source=infra/local/kafka.sh
source infra/local/kafka.sh
LINES="${BENCH_LINES:-10000}"
DB="${PHONEBILL_BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/phonebill}"
cargo build --release -q -p analyst -p bench
BIN="$CARGO_TARGET_DIR/release"
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
RUN=$(mktemp -d)
ID="bench$(date +%s)"
cleanup() {
  kafka_stop "$RUN/broker"
  psql "$DB" -qc "DROP SCHEMA IF EXISTS ${ID} CASCADE; DROP SCHEMA IF EXISTS ${ID}_control CASCADE; DROP SCHEMA IF EXISTS ${ID}_r1 CASCADE" >/dev/null 2>&1 || true
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
"$BIN/produce-events" --brokers "127.0.0.1:$PORT" --topic-prefix "$PREFIX" --lines "$LINES"
RAW=$("$BIN/raw-consume" --brokers "127.0.0.1:$PORT" \
  --topics "${PREFIX}phonebill.product-change,${PREFIX}kos.billing,${PREFIX}phonebill.bill-inquiries")
echo "$RAW"
export PHONEBILL_KAFKA_BROKERS="127.0.0.1:$PORT" PHONEBILL_TOPIC_PREFIX="$PREFIX" \
  PHONEBILL_DATABASE_URL="$DB" PHONEBILL_DATABASE_SCHEMA="$ID" PHONEBILL_REDIS_KEY_PREFIX="$ID:" \
  PHONEBILL_QUERY_ROLE="${ID}_q" PHONEBILL_KAFKA_CREATE_TOPICS=false RUST_LOG=warn,rdkafka=off
# `script` gives the replay a terminal, so the progress bar is drawn while measured.
script -qefc "$BIN/phonebill-analyst replay --id r1 > $RUN/report.json" /dev/null
REPORT=$(tail -1 "$RUN/report.json")
echo "$REPORT"
python3 - "$RAW" "$REPORT" <<'PY'
import json, sys
raw = dict(kv.split("=") for kv in sys.argv[1].split())
rep = json.loads(sys.argv[2])
r, p = float(raw["raw_rate"]), rep["events_per_second"]
print(f"raw consumer: {r:,.0f} events/s; replay: {p:,.0f} events/s "
      f"({rep['messages']:,} events, {rep['seconds']:.1f} s incl. bulk writes and Redis fill); "
      f"ratio {100 * p / r:.1f} % (target 70 %)")
PY
psql "$DB" -qc "DROP ROLE IF EXISTS ${ID}_q" >/dev/null 2>&1 || true
