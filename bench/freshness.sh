#!/usr/bin/env bash
# Freshness: the time from a product change's 202 to the change being visible in the
# query API, over FRESH_CHANGES changes (default 1,000) made by FRESH_CLIENTS clients
# (default 8) on distinct lines, after FRESH_WARMUP changes made the same way and not
# counted (default 10,000, about half a minute: a Kafka broker started for the run spends
# its first minute compiling its hot paths; its CPU per change measured 2.2-2.8 ms after
# 1,000 warm-up changes, 1.5 ms after 5,000, 0.8 ms after 10,000, 0.6-0.9 ms on a broker
# that had run for minutes; see RESULTS.md). Each client reads its change back from query-service
# with the 202's `position` as `minPosition` (query-service answers as soon as the
# projection has it) before making its next change. The whole write and read path runs:
# command-service (relay) -> broker -> projector -> Redis -> query-service.
# Beside it, in the same run, the broker's own produce -> consume latency (bench
# kafka-pair: librdkafka with the relay's and the projector's settings, the same number
# of clients each waiting for its message), so the ratio shows what the services add;
# and the CPU time each process spent per change during the run.
#
# Run through the stack script, which installs what is missing and starts a broker:
#   infra/local/stack bench-reads      (this runs after the bill-query benchmark)
# Needs PHONEBILL_KAFKA_BROKERS and PHONEBILL_DATABASE_URL (a role that may create
# schemas and roles). Everything is namespaced by a run id and removed at the end.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="${PHONEBILL_CACHE:-$HOME/.cache/phonebill}"
TARGET="${CARGO_TARGET_DIR:-$CACHE/target}"
CHANGES="${FRESH_CHANGES:-1000}"
WARMUP="${FRESH_WARMUP:-10000}"
CLIENTS="${FRESH_CLIENTS:-8}"
PG="${PHONEBILL_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/phonebill}"
BROKERS="${PHONEBILL_KAFKA_BROKERS:?the broker to use}"
REDIS_URL="${PHONEBILL_REDIS_URL:-redis://127.0.0.1:6379}"
ID="fresh_$(date +%s)"
ROLE="q_$ID"
CPORT=18181 PPORT=18184 QPORT=18182
RUN="$(mktemp -d /tmp/phonebill-fresh.XXXXXX)"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$PG" -qc "DROP SCHEMA IF EXISTS ${ID}_cmd CASCADE" -c "DROP SCHEMA IF EXISTS ${ID}_read CASCADE" \
    -c "DROP SCHEMA IF EXISTS ${ID}_read_control CASCADE" \
    -c "DROP ROLE IF EXISTS $ROLE" >/dev/null 2>&1 || true
  redis-cli -u "$REDIS_URL" --scan --pattern "$ID:*" | xargs -r -d '\n' redis-cli -u "$REDIS_URL" del >/dev/null || true
  rm -rf "$RUN"
}
trap cleanup EXIT

wait_for() { local deadline=$((SECONDS + $1)); shift; until "$@" >/dev/null 2>&1; do [ $SECONDS -lt $deadline ] || { echo "timed out: $*" >&2; exit 1; }; sleep 0.2; done; }
l1_up() { curl -fsS "http://127.0.0.1:$QPORT/health/ready" | grep -q '"l1":"UP"'; }
hwm() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
# CPU time (clock ticks) of the processes whose command line matches $1, summed.
ticks() { pgrep -f "$1" | while read -r p; do awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null; done | awk '{s += $1} END {print s + 0}'; }
# Where the CPU goes: with 8 clients in a closed loop a 2-core machine is saturated, and
# freshness is then set by the CPU a change costs across all processes.
cpu_snapshot() {
  echo "$(ticks "^$TARGET/release/command-service") $(ticks "^$TARGET/release/projector") \
$(ticks "^$TARGET/release/query-service") $(ticks kafka.Kafka) $(ticks redis-server) $(ticks '^postgres')"
}

echo "building (release)..."
(cd "$ROOT" && cargo build --release --quiet -p command-service -p projector -p query-service -p bench)

lines=$((WARMUP + WARMUP / 24 + CHANGES + CHANGES / 24 + 10))
python3 "$ROOT/bench/generate_facts.py" --lines "$lines" >"$RUN/facts.jsonl"
export PHONEBILL_DATABASE_URL="$PG" PHONEBILL_KAFKA_BROKERS="$BROKERS" PHONEBILL_TOPIC_PREFIX="$ID." \
  PHONEBILL_TOPIC_PARTITIONS=12 PHONEBILL_REDIS_URL="$REDIS_URL" PHONEBILL_REDIS_KEY_PREFIX="$ID:" \
  PHONEBILL_RATE_LIMIT_PER_IP_PER_MINUTE=0 PHONEBILL_RATE_LIMIT_PER_CUSTOMER_PER_MINUTE=0 \
  RUST_LOG=warn MALLOC_ARENA_MAX=2 MALLOC_MMAP_THRESHOLD_=131072 MIMALLOC_PURGE_DELAY=0 MIMALLOC_ARENA_EAGER_COMMIT=0
PHONEBILL_DATABASE_SCHEMA="${ID}_cmd" "$TARGET/release/command-service" load-facts "$RUN/facts.jsonl"
PHONEBILL_DATABASE_SCHEMA="${ID}_cmd" "$TARGET/release/command-service" set-password admin --role admin --password demo-admin >/dev/null
PHONEBILL_DATABASE_SCHEMA="${ID}_cmd" PHONEBILL_HTTP_ADDR="127.0.0.1:$CPORT" \
  "$TARGET/release/command-service" >"$RUN/command.log" 2>&1 &
command=$!; pids+=("$command")
PHONEBILL_DATABASE_SCHEMA="${ID}_read" PHONEBILL_HTTP_ADDR="127.0.0.1:$PPORT" PHONEBILL_QUERY_ROLE="$ROLE" \
  PHONEBILL_QUERY_ROLE_LOGIN=true PHONEBILL_CONSUMER_GROUP="$ID.projector" \
  "$TARGET/release/projector" >"$RUN/projector.log" 2>&1 &
projector=$!; pids+=("$projector")
wait_for 60 curl -fsS "http://127.0.0.1:$CPORT/health/ready"
wait_for 60 curl -fsS "http://127.0.0.1:$PPORT/health/ready"
PHONEBILL_DATABASE_SCHEMA="${ID}_read" PHONEBILL_HTTP_ADDR="127.0.0.1:$QPORT" \
  PHONEBILL_DATABASE_URL="postgres://$ROLE@${PG#*@}" \
  "$TARGET/release/query-service" >"$RUN/query.log" 2>&1 &
query=$!; pids+=("$query")
wait_for 60 l1_up

# Every 25th generated line is suspended and skipped, hence a range 1/24 longer.
first=1
if [ "$WARMUP" -gt 0 ]; then
  echo "warm-up: $WARMUP changes"
  "$TARGET/release/load-commands" --url "http://127.0.0.1:$CPORT" --query-url "http://127.0.0.1:$QPORT" \
    --clients "$CLIENTS" --first-line 1 --last-line $((WARMUP + WARMUP / 24)) --quiet >/dev/null
  first=$((WARMUP + WARMUP / 24 + 1))
fi
last=$((first - 1)) n=0
while [ "$n" -lt "$CHANGES" ]; do last=$((last + 1)); [ $((last % 25)) -eq 0 ] || n=$((n + 1)); done
echo "freshness: $CHANGES changes, $CLIENTS clients, each read back with minPosition"
cpu_before=$(cpu_snapshot)
out=$("$TARGET/release/load-commands" --url "http://127.0.0.1:$CPORT" --query-url "http://127.0.0.1:$QPORT" \
  --clients "$CLIENTS" --first-line "$first" --last-line "$last" --quiet)
cpu_after=$(cpu_snapshot)
fresh=$(grep '^FRESHNESS' <<<"$out")
errors=$(sed -E 's/.* errors=([0-9]+).*/\1/' <<<"$(grep '^RESULT' <<<"$out")")
echo "$fresh errors=$errors"
pair=$("$TARGET/release/kafka-pair" --brokers "$BROKERS" --clients "$CLIENTS" --messages "$CHANGES")
echo "broker alone (produce -> consume, $CLIENTS clients): $pair"
python3 - "$fresh" "$pair" <<'PY'
import sys
def fields(line): return dict(kv.split("=") for kv in line.split()[1:] if "=" in kv)
f, p = fields(sys.argv[1]), fields(sys.argv[2])
for q in ("p50_ms", "p99_ms"):
    print(f"{q}: freshness {float(f[q]):.1f} ms, broker alone {float(p[q]):.1f} ms, ratio {float(f[q]) / float(p[q]):.1f}x")
PY
python3 - "$cpu_before" "$cpu_after" "$CHANGES" "$(getconf CLK_TCK)" <<'PY'
import sys
before, after = (list(map(int, a.split())) for a in sys.argv[1:3])
changes, hz = int(sys.argv[3]), int(sys.argv[4])
names = ("command-service", "projector", "query-service", "Kafka (all brokers)", "Redis", "PostgreSQL (all)")
ms = [(a - b) * 1000 / hz / changes for a, b in zip(after, before)]
print("CPU per change: " + ", ".join(f"{n} {m:.1f} ms" for n, m in zip(names, ms)) + f"; total {sum(ms):.1f} ms")
PY
echo "peak RSS: command-service $(hwm "$command") MiB, projector $(hwm "$projector") MiB, query-service $(hwm "$query") MiB"
