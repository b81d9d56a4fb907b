#!/usr/bin/env bash
# What tracing costs the bill query path: warm bill queries (query-service/bench/bills.sh,
# the same requests, tokens and Redis) with query-service's trace exporter off, then on
# at the chart's default sampling of reads (parentbased_traceidratio, TRACE_RATIO, default
# 0.01) exporting to a local Jaeger, alternated TRACE_ROUNDS times (default 3) in one run;
# prints each run, the medians and the ratio on/off of queries/s and p99.
#
# Run through the stack script, which installs what is missing, starts a broker and
# builds Jaeger once:
#   infra/local/stack bench-traces
# Needs what bills.sh needs, and OTLP_ENDPOINT (Jaeger's OTLP/HTTP receiver).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ROUNDS="${TRACE_ROUNDS:-3}"
RATIO="${TRACE_RATIO:-0.01}"
ENDPOINT="${OTLP_ENDPOINT:?the OTLP/HTTP receiver of a Jaeger, e.g. http://127.0.0.1:14318}"
export CONNS="${CONNS:-64}" DURATION="${DURATION:-15s}" BARE=0 CATCHUP_SECS=1

traced="OTEL_EXPORTER_OTLP_ENDPOINT=$ENDPOINT OTEL_TRACES_SAMPLER=parentbased_traceidratio"
traced+=" OTEL_TRACES_SAMPLER_ARG=$RATIO OTEL_SERVICE_NAME=query-service-bench"

results="$(mktemp)"
trap 'rm -f "$results"' EXIT
for round in $(seq "$ROUNDS"); do
  for mode in off on; do
    env=""
    [ "$mode" = off ] || env="$traced"
    out=$(QUERY_ENV="$env" bash "$ROOT/query-service/bench/bills.sh")
    row=$(awk -v c="$CONNS" '$1 == c && $5 == "|" {print $2, $4}' <<<"$out")
    spans=$(grep '^TRACES' <<<"$out" || true)
    [ -n "$row" ] || { echo "no result row in:"; echo "$out"; exit 1; } >&2
    if [ "$mode" = on ] && [ -z "$spans" ] && [ "$RATIO" != 0 ]; then
      echo "tracing was on but query-service counted no spans" >&2; exit 1
    fi
    echo "round $round, tracing $mode: $row ${spans:+($spans)}" | sed -E 's/: ([0-9.]+) ([0-9.]+)/: \1 queries\/s, p99 \2 ms/'
    echo "$mode $row" >>"$results"
  done
done
python3 - "$results" "$RATIO" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
med = {m: (statistics.median(float(r[1]) for r in rows if r[0] == m),
           statistics.median(float(r[2]) for r in rows if r[0] == m)) for m in ("off", "on")}
(qoff, poff), (qon, pon) = med["off"], med["on"]
print(f"median, tracing off: {qoff:,.0f} queries/s, p99 {poff:.2f} ms")
print(f"median, tracing on (ratio {sys.argv[2]}): {qon:,.0f} queries/s, p99 {pon:.2f} ms")
print(f"on/off: queries/s {qon / qoff:.3f}, p99 {pon / poff:.3f}")
PY
