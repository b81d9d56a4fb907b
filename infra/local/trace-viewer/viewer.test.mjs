// The trace viewer's pure parts: node --test infra/local/trace-viewer/
import assert from "node:assert/strict";
import { test } from "node:test";

import { formatMs, parseRoute, spanRows, traceSummary } from "./static/viewer.js";

// A trace as Jaeger's /api/traces/{id} returns it (times in µs), spans out of order.
const TRACE = {
  traceID: "4bf92f3577b34da6a3ce929d0e0e4736",
  processes: { p1: { serviceName: "command-service" }, p2: { serviceName: "kos-mock" } },
  spans: [
    {
      spanID: "c", operationName: "t process", processID: "p2", startTime: 1_000_300, duration: 50,
      references: [{ refType: "CHILD_OF", spanID: "b" }], tags: [{ key: "span.kind", value: "consumer" }],
    },
    {
      spanID: "a", operationName: "POST /api/v1/product-changes", processID: "p1",
      startTime: 1_000_000, duration: 2_000, references: [],
      tags: [{ key: "span.kind", value: "server" }, { key: "correlation_id", value: "x" }],
    },
    {
      spanID: "b", operationName: "t publish", processID: "p1", startTime: 1_000_100, duration: 10,
      references: [{ refType: "CHILD_OF", spanID: "a" }],
    },
    {
      spanID: "d", operationName: "batch", processID: "p2", startTime: 1_000_500, duration: 100,
      // Its parent is in another trace: shown as a root, with the link counted.
      references: [{ refType: "CHILD_OF", spanID: "elsewhere" }, { refType: "FOLLOWS_FROM", spanID: "a" }],
    },
  ],
};

test("spans come in tree order, each under its parent, with offsets from the trace's start", () => {
  const { rows, totalMs } = spanRows(TRACE);
  assert.deepEqual(rows.map((r) => [r.id, r.depth]), [["a", 0], ["b", 1], ["c", 2], ["d", 0]]);
  assert.equal(totalMs, 2);
  assert.deepEqual(rows[2], {
    id: "c", depth: 2, service: "kos-mock", operation: "t process", kind: "consumer",
    startMs: 0.3, durationMs: 0.05, links: 0, tags: { "span.kind": "consumer" },
  });
  assert.equal(rows[3].links, 1);
});

test("spans whose parents only reach each other are still shown, once each", () => {
  const loop = {
    processes: {},
    spans: [
      { spanID: "x", startTime: 1, duration: 1, references: [{ refType: "CHILD_OF", spanID: "y" }] },
      { spanID: "y", startTime: 2, duration: 1, references: [{ refType: "CHILD_OF", spanID: "x" }] },
    ],
  };
  assert.deepEqual(spanRows(loop).rows.map((r) => [r.id, r.depth]), [["x", 0], ["y", 1]]);
  assert.deepEqual(spanRows({ spans: [] }), { rows: [], totalMs: 0 });
});

test("a search result names the trace by its first span and lists its services", () => {
  const summary = traceSummary(TRACE);
  assert.equal(summary.title, "command-service: POST /api/v1/product-changes");
  assert.deepEqual(summary.services, ["command-service", "kos-mock"]);
  assert.equal(summary.spans, 4);
  assert.equal(summary.startedAt.getTime(), 1_000);
});

test("the address opens a trace or a search by correlation id", () => {
  assert.deepEqual(parseRoute("#/trace/4BF92F"), { view: "trace", id: "4bf92f" });
  assert.deepEqual(parseRoute("#/?correlation=abc&service=projector"), {
    view: "search", correlation: "abc", service: "projector", lookback: "1h",
  });
  assert.equal(parseRoute("#/trace/not-hex").view, "search");
  assert.equal(parseRoute("").view, "search");
});

test("durations read in the unit that fits", () => {
  assert.equal(formatMs(0.05), "50 µs");
  assert.equal(formatMs(2.5), "2.50 ms");
  assert.equal(formatMs(42.25), "42.3 ms");
  assert.equal(formatMs(1500), "1.50 s");
});
