// The local trace viewer: the traces Jaeger holds, read through its query API
// (/api/services, /api/traces) and drawn as span trees with a time bar per span.
// The functions exported first are pure (tested by viewer.test.mjs under node); the
// rest runs in the browser, served by Jaeger itself from infra/local/trace-viewer.

/** The trace's spans in tree order: each after its parent, children by start time. */
export function spanRows(trace) {
  const spans = trace.spans || [];
  const byId = new Map(spans.map((s) => [s.spanID, s]));
  const children = new Map();
  const roots = [];
  for (const span of spans) {
    const parent = (span.references || []).find(
      (r) => r.refType === "CHILD_OF" && byId.has(r.spanID),
    );
    if (parent) {
      if (!children.has(parent.spanID)) children.set(parent.spanID, []);
      children.get(parent.spanID).push(span);
    } else {
      roots.push(span);
    }
  }
  const byStart = (a, b) => a.startTime - b.startTime;
  const start = Math.min(...spans.map((s) => s.startTime));
  const end = Math.max(...spans.map((s) => s.startTime + s.duration));
  const rows = [];
  const seen = new Set();
  const visit = (span, depth) => {
    if (seen.has(span.spanID)) return;
    seen.add(span.spanID);
    const tags = Object.fromEntries((span.tags || []).map((t) => [t.key, t.value]));
    rows.push({
      id: span.spanID,
      depth,
      service: trace.processes?.[span.processID]?.serviceName ?? "?",
      operation: span.operationName,
      kind: tags["span.kind"] ?? "",
      startMs: (span.startTime - start) / 1000,
      durationMs: span.duration / 1000,
      links: (span.references || []).filter((r) => r.refType === "FOLLOWS_FROM").length,
      tags,
    });
    for (const child of (children.get(span.spanID) || []).sort(byStart)) visit(child, depth + 1);
  };
  roots.sort(byStart).forEach((root) => visit(root, 0));
  // Spans whose parents only reach each other (no root): shown at the top level too.
  [...spans].sort(byStart).forEach((span) => visit(span, 0));
  return { rows, totalMs: spans.length ? (end - start) / 1000 : 0 };
}

/** One line of a search result: the trace's first span, services, span count, length. */
export function traceSummary(trace) {
  const { rows, totalMs } = spanRows(trace);
  const first = rows[0];
  const started = Math.min(...(trace.spans || []).map((s) => s.startTime));
  return {
    traceID: trace.traceID,
    title: first ? `${first.service}: ${first.operation}` : "(no spans)",
    services: [...new Set(rows.map((r) => r.service))].sort(),
    spans: rows.length,
    startedAt: Number.isFinite(started) ? new Date(started / 1000) : null,
    totalMs,
  };
}

/** What the address asks for: `#/trace/<id>`, else a search (`#/?correlation=…&service=…`). */
export function parseRoute(hash) {
  const path = (hash || "").replace(/^#/, "");
  const trace = path.match(/^\/trace\/([0-9a-fA-F]{1,32})$/);
  if (trace) return { view: "trace", id: trace[1].toLowerCase() };
  const query = new URLSearchParams(path.split("?")[1] || "");
  return {
    view: "search",
    correlation: query.get("correlation") || "",
    service: query.get("service") || "",
    lookback: query.get("lookback") || "1h",
  };
}

/** A duration for people: µs under a millisecond, ms under a second, else s. */
export function formatMs(ms) {
  if (ms < 1) return `${Math.round(ms * 1000)} µs`;
  if (ms < 1000) return `${ms.toFixed(ms < 10 ? 2 : 1)} ms`;
  return `${(ms / 1000).toFixed(2)} s`;
}

// ---- In the browser -----------------------------------------------------------------

async function api(path, query = {}) {
  const params = new URLSearchParams(query).toString();
  const answer = await fetch(`/api/${path}${params ? `?${params}` : ""}`);
  if (!answer.ok) throw new Error(`${path}: HTTP ${answer.status}`);
  return (await answer.json()).data || [];
}

function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) {
    if (key === "style") Object.assign(node.style, value);
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function searchTraces(route) {
  const services = route.service ? [route.service] : await api("services");
  const tags = route.correlation ? { tags: JSON.stringify({ correlation_id: route.correlation }) } : {};
  const found = new Map();
  for (const service of services) {
    for (const trace of await api("traces", { service, limit: 20, lookback: route.lookback, ...tags })) {
      found.set(trace.traceID, trace);
    }
  }
  return [...found.values()].map(traceSummary).sort((a, b) => b.startedAt - a.startedAt);
}

function renderSearch(main, route, summaries) {
  const what = route.correlation ? `correlation id ${route.correlation}` : "the last hour";
  main.append(el("h2", {}, `Traces of ${what}: ${summaries.length}`));
  const list = el("table", { class: "results" },
    el("tr", {}, el("th", {}, "trace"), el("th", {}, "started"), el("th", {}, "services"),
      el("th", {}, "spans"), el("th", {}, "length")));
  for (const s of summaries) {
    list.append(el("tr", {},
      el("td", {}, el("a", { href: `#/trace/${s.traceID}` }, s.title)),
      el("td", {}, s.startedAt ? s.startedAt.toLocaleTimeString() : ""),
      el("td", {}, s.services.join(", ")),
      el("td", {}, s.spans),
      el("td", {}, formatMs(s.totalMs))));
  }
  main.append(list);
}

function renderTrace(main, id, trace) {
  const { rows, totalMs } = spanRows(trace);
  main.append(el("h2", {}, `Trace ${id}: ${rows.length} spans, ${formatMs(totalMs)}`));
  const table = el("div", { class: "spans" });
  for (const row of rows) {
    const left = totalMs ? (row.startMs / totalMs) * 100 : 0;
    const width = totalMs ? Math.max((row.durationMs / totalMs) * 100, 0.3) : 100;
    const details = el("pre", { class: "tags", hidden: "" },
      Object.entries(row.tags).map(([k, v]) => `${k} = ${v}`).join("\n"));
    table.append(
      el("div", { class: "span", onclick: () => details.toggleAttribute("hidden") },
        el("span", { class: "name", style: { paddingLeft: `${row.depth * 1.2}em` } },
          el("b", {}, row.service), ` ${row.operation}`,
          row.kind ? el("i", {}, ` ${row.kind}`) : "",
          row.links ? el("i", {}, ` +${row.links} linked`) : ""),
        el("span", { class: "bar" },
          el("span", { class: `fill ${row.kind}`, style: { left: `${left}%`, width: `${width}%` } }),
          el("span", { class: "duration", style: { left: `${Math.min(left + width, 85)}%` } },
            `${formatMs(row.startMs)} + ${formatMs(row.durationMs)}`))),
      details);
  }
  main.append(table);
}

async function show() {
  const route = parseRoute(window.location.hash);
  const main = document.querySelector("main");
  main.replaceChildren(el("p", {}, "Loading…"));
  try {
    if (route.view === "trace") {
      const [trace] = await api(`traces/${route.id}`);
      main.replaceChildren();
      if (trace) renderTrace(main, route.id, trace);
      else main.append(el("p", {}, `No trace ${route.id} (yet: spans leave within 5 s).`));
    } else {
      const summaries = await searchTraces(route);
      main.replaceChildren();
      renderSearch(main, route, summaries);
    }
  } catch (e) {
    main.replaceChildren(el("p", { class: "error" }, `Jaeger did not answer: ${e.message}`));
  }
}

function start() {
  const form = document.querySelector("form");
  const route = parseRoute(window.location.hash);
  form.correlation.value = route.view === "search" ? route.correlation : "";
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const trace = form.trace.value.trim();
    const correlation = form.correlation.value.trim();
    window.location.hash = trace
      ? `#/trace/${trace}`
      : `#/?correlation=${encodeURIComponent(correlation)}`;
  });
  window.addEventListener("hashchange", show);
  show();
}

if (typeof window !== "undefined" && typeof document !== "undefined") start();
