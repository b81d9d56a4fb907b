#!/usr/bin/env bash
# Whole customer journeys under load (bench/journeys, goose) against a running stack,
# with what only the machine knows beside the customers' figures: each process's CPU
# and memory, the query side's cache hits per layer, the consumers' lag, and the
# database's count of how each accepted change ended (exactly once, none lost).
#
# Run it through the stack script, which starts a stack of its own with enough demo
# customers (its own ports, schemas, key and topic prefixes) and stops it after:
#   infra/local/stack load
# Settings (environment):
#   LOAD_USERS       concurrent customers; a list ("1000 1500 2000") runs each level in
#                    turn on the same stack and stops after the first whose reads miss
#                    their targets (default 1000)
#   LOAD_RUN_TIME    how long each level runs, goose's syntax (default 10m)
#   LOAD_RATE        customers starting per second, and leaving (logging out) at the end
#                    (default 20: a login costs an argon2 hash at production cost,
#                    ~30 ms of a core)
#   LOAD_THINK_MS    pause between two steps of a customer, min-max (default 2000-6000)
#   LOAD_BARE_TIME   how long the bare-HTTP ceiling runs after each level (default 60s;
#                    0 skips it)
#   LOAD_OUT         where the results go (default <run dir>/load/<date>)
# Set by the stack script: LOAD_BIN (the services' binaries), LOAD_CLIENT_BIN (the load
# client's), LOAD_STACK_DIR (pid files),
# LOAD_WEB_PORT, LOAD_COMMAND_PORT, LOAD_QUERY_PORT, LOAD_KOS_PORT, LOAD_PROJECTOR_PORT,
# LOAD_PG_URL, LOAD_SCHEMA_PREFIX, LOAD_BROKER_DIR.
#
# Targets (the seed's at its peak, checked per level): no errors; p95 < 200 ms on every
# step but login (< 1 s) and a change's completion; every accepted change COMPLETED or
# FAILED exactly once. A ramp goes on while its reads hold: no errors, every read step's
# p95 < 200 ms, every change ended once.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
USERS="${LOAD_USERS:-1000}"
RUN_TIME="${LOAD_RUN_TIME:-10m}"
RATE="${LOAD_RATE:-20}"
BARE_TIME="${LOAD_BARE_TIME:-60s}"
OUT="${LOAD_OUT:-$LOAD_STACK_DIR/results/$(date -u +%Y%m%dT%H%M%SZ)}"
export JOURNEYS_THINK_MS="${LOAD_THINK_MS:-2000-6000}"
mkdir -p "$OUT"

# A thousand customers are a thousand sockets here and as many in nginx.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

pid_of() { cat "$LOAD_STACK_DIR/$1.pid"; }
# service name -> pids (nginx: master and workers; Kafka: the load stack's broker).
pids_of() {
  case "$1" in
    nginx) local m; m=$(cat "$LOAD_STACK_DIR/web/nginx.pid"); echo "$m $(pgrep -P "$m" | tr '\n' ' ')" ;;
    kafka) cat "$LOAD_BROKER_DIR/broker.pid" ;;
    postgres) pgrep -x postgres | tr '\n' ' ' ;;
    redis) pgrep -x redis-server | tr '\n' ' ' ;;
    *) pid_of "$1" ;;
  esac
}
PROCS="command-service query-service projector kos-mock nginx kafka postgres redis"
ticks() { # CPU clock ticks of a process group, summed
  local t=0 p
  for p in $(pids_of "$1"); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo $t
}
pss_mib() { # memory of a process group, MiB: proportional set size, so that PostgreSQL's
  # backends do not each count the shared buffers they map
  local kb=0 p
  for p in $(pids_of "$1"); do kb=$((kb + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0))); done
  echo $((kb / 1024))
}
metrics() { curl -fsS --max-time 5 "http://127.0.0.1:$1/metrics" 2>/dev/null || true; }
# Sum of a metric's series whose labels contain $2 (or all).
metric_sum() { awk -v name="$1" -v want="${2:-}" 'index($0, name) == 1 && index($0, want) { s += $NF } END { print s + 0 }'; }
lag_now() {
  local total=0 port
  for port in "$LOAD_COMMAND_PORT" "$LOAD_KOS_PORT" "$LOAD_PROJECTOR_PORT"; do
    total=$(awk -v a="$total" -v b="$(metrics "$port" | metric_sum 'phonebill_consumer_lag{')" 'BEGIN { print a + b }')
  done
  echo "$total"
}
cache_counts() { # layer:result=count for query-service's cache counters
  metrics "$LOAD_QUERY_PORT" | awk '/^phonebill_cache_requests_total\{/ {
    match($0, /layer="[^"]*"/); l = substr($0, RSTART + 7, RLENGTH - 8)
    match($0, /result="[^"]*"/); r = substr($0, RSTART + 8, RLENGTH - 9)
    print l ":" r "=" $NF }'
}

# Every 5 s while a level runs: each process's memory and the consumers' lag.
sample() { # file
  local started=$SECONDS
  echo "seconds,process,pss_mib" >"$1"
  echo "seconds,consumer_lag" >"$1.lag"
  while :; do
    for p in $PROCS; do echo "$((SECONDS - started)),$p,$(pss_mib "$p")" >>"$1"; done
    echo "$((SECONDS - started)),$(lag_now)" >>"$1.lag"
    sleep 5
  done
}

# How each accepted change ended, by the event store: waits (60 s at most) for changes
# still with KOS, then counts terminal events per request id.
end_check() { # accepted-ids-file out-file
  local ids="$1" sql
  [ -s "$ids" ] || { echo '{"accepted": 0, "ended_once": 0, "ended_twice_or_more": 0, "not_ended": 0}' >"$2"; return; }
  sql="CREATE TEMP TABLE accepted(id text);
\\copy accepted FROM '$ids'
WITH ends AS (SELECT payload::jsonb -> event_type ->> 'request_id' AS id, count(*) AS n
                FROM ${LOAD_SCHEMA_PREFIX}command.events
               WHERE event_type IN ('ProductChangeCompleted', 'ProductChangeFailed')
                 AND payload::jsonb -> event_type ->> 'request_id' IN (SELECT id FROM accepted)
               GROUP BY 1)
SELECT json_build_object('accepted', (SELECT count(*) FROM accepted),
  'ended_once', count(*) FILTER (WHERE n = 1),
  'ended_twice_or_more', count(*) FILTER (WHERE n > 1),
  'not_ended', (SELECT count(*) FROM accepted) - count(*)) FROM ends;"
  local deadline=$((SECONDS + 60)) answer
  while :; do
    answer=$(psql "$LOAD_PG_URL" -Atq <<<"$sql")
    if python3 -c 'import json,sys; sys.exit(json.loads(sys.argv[1])["not_ended"] != 0)' "$answer" || [ $SECONDS -ge $deadline ]; then break; fi
    sleep 1
  done
  echo "$answer" >"$2"
}

run_level() { # users
  local users="$1" dir="$OUT/$1-customers" p
  mkdir -p "$dir"
  echo "== $users concurrent customers for $RUN_TIME (starting $RATE a second), results in $dir"
  declare -A before
  for p in $PROCS; do before[$p]=$(ticks "$p"); done
  cache_counts >"$dir/cache.before"
  sample "$dir/samples.csv" & local sampler=$!
  local started=$SECONDS
  JOURNEYS_SUMMARY="$dir/journeys.json" JOURNEYS_ACCEPTED="$dir/accepted.txt" \
    "$LOAD_CLIENT_BIN" --host "http://127.0.0.1:$LOAD_WEB_PORT" --users "$users" \
      --increase-rate "$RATE" --decrease-rate "$RATE" --run-time "$RUN_TIME" --no-reset-metrics --no-telnet --no-websocket --quiet \
      --report-file "$dir/report.html" >"$dir/goose.log" 2>&1 &
  local client=$!
  local client_ticks=0
  while kill -0 "$client" 2>/dev/null; do
    client_ticks=$(awk '{print $14 + $15}' "/proc/$client/stat" 2>/dev/null || echo "$client_ticks")
    sleep 1
  done
  wait "$client" || { tail -20 "$dir/goose.log"; echo "the load client failed" >&2; kill "$sampler"; return 1; }
  local seconds=$((SECONDS - started))
  kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null || true
  {
    echo "process,cpu_seconds,peak_pss_mib"
    for p in $PROCS; do
      echo "$p,$(( ($(ticks "$p") - ${before[$p]}) / 100 )),$(awk -F, -v p="$p" '$2 == p && $3 > m { m = $3 } END { print m + 0 }' "$dir/samples.csv")"
    done
    echo "journeys (the load client),$((client_ticks / 100)),"
  } >"$dir/processes.csv"
  cache_counts >"$dir/cache.after"
  end_check "$dir/accepted.txt" "$dir/changes.json"

  if [ "$BARE_TIME" != 0 ]; then
    local bare_port=$((LOAD_WEB_PORT + 50))
    echo '{"ok": true}' >"$dir/bare-body.json"
    "$LOAD_BIN/bare-http" --addr "127.0.0.1:$bare_port" --body "$dir/bare-body.json" >"$dir/bare-http.log" 2>&1 &
    local bare=$!
    local deadline=$((SECONDS + 30))
    until curl -fsS "http://127.0.0.1:$bare_port/" >/dev/null 2>&1; do [ $SECONDS -lt $deadline ] || break; sleep 0.2; done
    JOURNEYS_SCENARIO=bare JOURNEYS_SUMMARY="$dir/bare.json" JOURNEYS_ACCEPTED=/dev/null \
      "$LOAD_CLIENT_BIN" --host "http://127.0.0.1:$bare_port" --users "$users" \
        --increase-rate "$((RATE * 5))" --run-time "$BARE_TIME" --no-reset-metrics --no-telnet --no-websocket --quiet >"$dir/bare.log" 2>&1 || true
    kill "$bare" 2>/dev/null; wait "$bare" 2>/dev/null || true
  fi

  python3 "$ROOT/bench/journeys_report.py" "$dir" "$users" "$seconds"
}

echo "results: $OUT"
for users in $USERS; do
  run_level "$users" || exit 1
  python3 -c 'import json,sys; sys.exit(0 if json.load(open(sys.argv[1]))["reads_hold"] else 1)' \
    "$OUT/$users-customers/summary.json" || { echo "== $users customers: the reads miss their targets, the ramp stops here"; break; }
done
