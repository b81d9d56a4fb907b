#!/usr/bin/env bash
# Replay benchmark: events/s and peak RSS of `phonebill-analyst replay` beside two
# yardsticks reading the same topics on the same broker in the same run (a raw rdkafka
# consumer, and one that also parses each envelope), the ratios, and the export's
# rows/s and peak RSS in each format.
#
#   bench/replay.sh                      # BENCH_LINES=10000 -> 110,002 events
#   BENCH_LINES=909091 bench/replay.sh   # 10,000,003 events (about 20 minutes on 2 cores)
#   REPLAY_ARGS="--memory-mib 16" ...    # flags for the replay; BENCH_EXPORT=0: no export
#
# Starts its own Kafka node (infra/local/kafka.sh) on a free port, publishes the history with
# `produce-events`, reads it with `raw-consume` (once as is, once parsing every envelope),
# then replays it into a fresh namespace with the progress bar drawn (under `script`, so
# stderr is a terminal).
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
DECODE=$("$BIN/raw-consume" --decode --brokers "127.0.0.1:$PORT" \
  --topics "${PREFIX}phonebill.product-change,${PREFIX}kos.billing,${PREFIX}phonebill.bill-inquiries")
echo "$RAW"
echo "$DECODE"
export PHONEBILL_KAFKA_BROKERS="127.0.0.1:$PORT" PHONEBILL_TOPIC_PREFIX="$PREFIX" \
  PHONEBILL_DATABASE_URL="$DB" PHONEBILL_DATABASE_SCHEMA="$ID" PHONEBILL_REDIS_KEY_PREFIX="$ID:" \
  PHONEBILL_QUERY_ROLE="${ID}_q" PHONEBILL_KAFKA_CREATE_TOPICS=false RUST_LOG=warn,rdkafka=off
# `script` gives the replay a terminal, so the progress bar is drawn while measured.
script -qefc "$BIN/phonebill-analyst replay --id r1 ${REPLAY_ARGS:-} > $RUN/report.json" /dev/null
REPORT=$(tail -1 "$RUN/report.json")
echo "$REPORT"
python3 - "$RAW $DECODE" "$REPORT" <<'PY'
import json, sys
raw = dict(kv.split("=") for kv in sys.argv[1].split())
rep = json.loads(sys.argv[2])
r, d, p = float(raw["raw_rate"]), float(raw["decode_rate"]), rep["events_per_second"]
print(f"raw consumer: {r:,.0f} events/s; raw consumer parsing each envelope: {d:,.0f} events/s; "
      f"replay: {p:,.0f} events/s ({rep['messages']:,} events, {rep['seconds']:.1f} s incl. "
      f"bulk writes and Redis fill); ratio {100 * p / r:.1f} % of the raw consumer, "
      f"{100 * p / d:.1f} % of the parsing one; peak RSS {rep['peak_rss_mib']} MiB, "
      f"{rep['evicted_rows']:,} rows left memory and were read back when needed")
PY
# Export of the same history (the largest topic), in each format, with the process's
# peak RSS (`/usr/bin/time`); BENCH_EXPORT=0 skips it.
if [ "${BENCH_EXPORT:-1}" = 1 ]; then
  for fmt in jsonl csv parquet; do
    /usr/bin/time -f "%e %M" -o "$RUN/time" "$BIN/phonebill-analyst" export \
      --topic phonebill.product-change --format "$fmt" --out "$RUN/export.$fmt" > "$RUN/export.json"
    python3 - "$fmt" "$RUN/time" "$RUN/export.json" "$RUN/export.$fmt" <<'PY'
import json, os, sys
fmt, (secs, kib) = sys.argv[1], open(sys.argv[2]).read().split()[-2:]
rows = json.loads(open(sys.argv[3]).read().strip().splitlines()[-1])["rows"]
size = os.path.getsize(sys.argv[4]) / 2**20
print(f"export {fmt}: {rows:,} rows in {float(secs):.1f} s, {rows / float(secs):,.0f} rows/s, "
      f"{size:,.0f} MiB written, peak RSS {int(kib) / 1024:.1f} MiB")
PY
    rm -f "$RUN/export.$fmt"
  done
fi
psql "$DB" -qc "DROP ROLE IF EXISTS ${ID}_q" >/dev/null 2>&1 || true
