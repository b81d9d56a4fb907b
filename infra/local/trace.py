"""Prints the traces of a correlation id from the local Jaeger, as span trees.

    python3 infra/local/trace.py CORRELATION_ID [JAEGER_QUERY_URL]
    (or: infra/local/stack trace CORRELATION_ID)

Every HTTP span carries the request's correlation id (`X-Correlation-Id`, answered on
every response, the 202 of a product change included): the trace it starts is found
by that attribute in every service, so a change and the reads that sent the same id
come out together. Each line: service, operation, kind, start offset and duration.
Standard library only.
"""

import json
import sys
import urllib.parse
import urllib.request


def get(base, path, **query):
    url = f"{base}{path}" + (f"?{urllib.parse.urlencode(query)}" if query else "")
    with urllib.request.urlopen(url, timeout=10) as answer:
        return json.load(answer)


def main():
    if len(sys.argv) < 2:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    correlation_id = sys.argv[1]
    base = (sys.argv[2] if len(sys.argv) > 2 else "http://127.0.0.1:16686").rstrip("/")
    traces = {}
    for service in get(base, "/api/services").get("data") or []:
        found = get(base, "/api/traces", service=service, limit=20, lookback="2h",
                    tags=json.dumps({"correlation_id": correlation_id}))
        for trace in found.get("data") or []:
            traces[trace["traceID"]] = trace
    if not traces:
        print(f"no trace with correlation_id {correlation_id} (yet: spans leave within "
              "5 s, OTEL_BSP_SCHEDULE_DELAY)", file=sys.stderr)
        return 1
    for trace_id in traces:
        # The whole trace, not only the spans the search matched.
        trace = get(base, f"/api/traces/{trace_id}")["data"][0]
        print_tree(trace)
    print(f"in the browser: {base}/#/?correlation={urllib.parse.quote(correlation_id)}")
    return 0


def print_tree(trace):
    spans = {s["spanID"]: s for s in trace["spans"]}
    children = {}
    roots = []
    for span in trace["spans"]:
        parents = [r["spanID"] for r in span.get("references", [])
                   if r["refType"] == "CHILD_OF" and r["spanID"] in spans]
        (children.setdefault(parents[0], []) if parents else roots).append(span)
    start = min(s["startTime"] for s in trace["spans"])
    print(f"trace {trace['traceID']} ({len(spans)} spans)")

    def show(span, depth):
        tags = {t["key"]: t["value"] for t in span.get("tags", [])}
        service = trace["processes"][span["processID"]]["serviceName"]
        print(f"{'  ' * depth}{service}: {span['operationName']} [{tags.get('span.kind', 'internal')}]"
              f" +{(span['startTime'] - start) / 1000:.1f} ms, {span['duration'] / 1000:.1f} ms")
        for child in sorted(children.get(span["spanID"], []), key=lambda s: s["startTime"]):
            show(child, depth + 1)

    for root in sorted(roots, key=lambda s: s["startTime"]):
        show(root, 1)


if __name__ == "__main__":
    sys.exit(main())
