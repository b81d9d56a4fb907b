"""Alerts (PrometheusRule) and the Grafana dashboard.

The design's alerts (8.1.2) are checked by parsing each PromQL expression (the
promql-parser wheel, Rust's promql-parser compiled for Python) and reading the
threshold, window and `for` off the syntax tree. Every metric the rules and the
dashboard read must be in the metric contract of infra/README.md, so the services'
authors have one list to implement.
"""

from __future__ import annotations

import json
import re
from datetime import timedelta

import promql_parser
import pytest

from conftest import CHART, INFRA, SERVICES, Objects

# (alert, threshold, range window in the expression, `for`, severity, source)
ALERTS = [
    ("PhonebillHighErrorRate", 0.05, "5m", "1m", "critical", "8.1.2 failed_requests > 5%, 5 min"),
    ("PhonebillHighLatency", 3, "5m", "1m", "critical", "8.1.2 avg_response_time > 3 s, 5 min"),
    ("PhonebillPodRestarts", 5, "10m", None, "critical", "8.1.2 pod_restarts > 5 in 10 min"),
    ("PhonebillHighCPU", 0.85, "5m", "10m", "warning", "8.1.2 cpu_utilization > 85%, 10 min"),
    ("PhonebillHighMemory", 0.90, None, "5m", "warning", "8.1.2 memory_utilization > 90%, 5 min"),
    ("PhonebillConsumerLag", 1000, None, "10m", "warning", "event pipeline: consumer lag"),
    ("PhonebillConsumerDelay", 120, None, "5m", "warning", "event pipeline: a message waiting > 120 s"),
    ("PhonebillDeadLetters", 0, "10m", None, "warning", "event pipeline: any dead letter"),
    ("PhonebillParkedLines", 0, None, "15m", "warning", "event pipeline: parked lines"),
    ("PhonebillDivergentLines", 0, None, "1m", "critical", "reconciliation: any divergent line"),
    ("PhonebillReconciliationLag", 300, None, "5m", "warning", "reconciliation: views behind > 300 s, 5 min"),
    ("PhonebillReconciliationStalled", 600, None, None, "warning", "reconciliation: no pass for 10 min"),
]

# Metrics that come from the platform (kube-state-metrics, cAdvisor), not from us.
PLATFORM_METRICS = {
    "kube_pod_container_status_restarts_total", "kube_pod_container_resource_limits",
    "container_cpu_usage_seconds_total", "container_memory_working_set_bytes", "kube_pod_info",
}

README = (INFRA / "README.md").read_text()
DASHBOARD_FILE = CHART / "dashboards" / "phonebill.json"


def duration(text: str) -> timedelta:
    n, unit = int(text[:-1]), text[-1]
    unit_name = {"s": "seconds", "m": "minutes", "h": "hours"}[unit]
    return timedelta(**{unit_name: n})


def tree_facts(expr: str) -> dict:
    node = promql_parser.parse(expr)
    facts = {"metrics": set(), "ranges": set(), "selectors": []}

    def visit(n, *_):
        if isinstance(n, promql_parser.VectorSelector):
            name = n.name or next((m.value for m in n.matchers.matchers if m.name == "__name__"), None)
            facts["metrics"].add(name)
            facts["selectors"].append({m.name: (str(m.op), m.value) for m in n.matchers.matchers})
        elif isinstance(n, promql_parser.MatrixSelector):
            facts["ranges"].add(n.range)

    promql_parser.walk(node, visit)
    facts["root"] = node
    return facts


def base_metric(name: str) -> str:
    return re.sub(r"_(bucket|sum|count)$", "", name)


def contract_metrics() -> set[str]:
    """Metric names in the README table under 'Metrics the services expose'."""
    section = README.split("### Metrics the services expose", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_:]+)`", section, re.MULTILINE))


def _rules(objs: Objects) -> dict[str, dict]:
    [rule] = objs.all("PrometheusRule")
    return {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}


@pytest.mark.parametrize("alert, threshold, window, for_, severity, source", ALERTS, ids=[a[0] for a in ALERTS])
def test_alert_matches_the_design(prod_objects: Objects, alert, threshold, window, for_, severity, source):
    rule = _rules(prod_objects)[alert]
    facts = tree_facts(rule["expr"])
    root = facts["root"]
    assert isinstance(root, promql_parser.BinaryExpr) and str(root.op) == ">", source
    assert isinstance(root.rhs, promql_parser.NumberLiteral)
    assert root.rhs.val == pytest.approx(threshold), source
    assert facts["ranges"] == ({duration(window)} if window else set()), source
    assert rule.get("for") == for_, source
    assert rule["labels"]["severity"] == severity
    # Scoped to the release's namespace.
    for sel in facts["selectors"]:
        assert sel.get("namespace") == ("MatchOp.Equal", "phonebill-prod"), (alert, sel)


def test_every_alert_is_tested_and_documented(prod_objects: Objects):
    rules = _rules(prod_objects)
    assert set(rules) == {a[0] for a in ALERTS}
    for name, rule in rules.items():
        anchor = rule["annotations"]["runbook"].split("#", 1)[1]
        assert re.search(rf"^#+ {name}\s*$", README, re.MULTILINE), f"README has no section for {name}"
        assert anchor == name.lower()


def test_resource_alerts_cover_every_service(prod_objects: Objects):
    for alert in ("PhonebillPodRestarts", "PhonebillHighCPU", "PhonebillHighMemory"):
        for sel in tree_facts(_rules(prod_objects)[alert]["expr"])["selectors"]:
            op, value = sel["container"]
            assert op == "MatchOp.Re" and set(value.split("|")) == set(SERVICES), alert


def test_alert_metrics_are_in_the_contract(prod_objects: Objects):
    used = set()
    for rule in _rules(prod_objects).values():
        used |= {base_metric(m) for m in tree_facts(rule["expr"])["metrics"]}
    missing = used - PLATFORM_METRICS - contract_metrics()
    assert not missing, f"metrics used by alerts but not in the README contract: {missing}"


# ---------------------------------------------------------------- dashboard

def dashboard() -> dict:
    return json.loads(DASHBOARD_FILE.read_text())


def targets(d: dict):
    for panel in d["panels"]:
        for t in panel.get("targets", []):
            yield panel["title"], t["expr"]


def test_dashboard_queries_parse_and_use_the_contract():
    used = set()
    for title, expr in targets(dashboard()):
        facts = tree_facts(expr)  # raises on bad PromQL
        used |= {base_metric(m) for m in facts["metrics"]}
        for sel in facts["selectors"]:
            assert sel.get("namespace") == ("MatchOp.Equal", "$namespace"), title
    missing = used - PLATFORM_METRICS - contract_metrics()
    assert not missing, f"metrics used by the dashboard but not in the README contract: {missing}"


def test_dashboard_has_the_business_and_technical_panels():
    titles = {p["title"] for p in dashboard()["panels"]}
    assert {
        "Bill inquiry success rate", "Product change success rate",  # business (8.2.2)
        "DB connection pool in use", "Cache hit ratio", "Consumer lag (messages)",  # technical
        "Error rate (5xx)", "Response time", "Dead letters and parked lines",
        "Divergent lines", "Reconciliation lag (s)", "Lines checked per second",  # reconciliation
    } <= titles


def test_every_alert_metric_is_on_the_dashboard(prod_objects: Objects):
    """What an alert fires on can be seen on the dashboard (its history, other series)."""
    charted = set()
    for _, expr in targets(dashboard()):
        charted |= {base_metric(m) for m in tree_facts(expr)["metrics"]}
    for name, rule in _rules(prod_objects).items():
        missing = {base_metric(m) for m in tree_facts(rule["expr"])["metrics"]} - charted
        assert not missing, f"{name} reads {missing}, which no dashboard panel shows"


def test_divergent_lines_stat_turns_red_above_zero(prod_values_merged: dict):
    """Given the divergent-lines stat, when any line is divergent (the alert's threshold
    is 0), then it is red; at 0 it is green."""
    [panel] = [p for p in dashboard()["panels"] if p["title"] == "Divergent lines"]
    assert panel["type"] == "stat"
    [target] = panel["targets"]
    assert "phonebill_reconciliation_divergent_lines" in tree_facts(target["expr"])["metrics"]
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[0] == {"color": "green", "value": None}
    threshold = prod_values_merged["alerts"]["divergentLines"]["threshold"]
    red = [s["value"] for s in steps if s["color"] == "red"]
    # an integer gauge: red from the first whole line above the alert's threshold
    assert red == [threshold + 1], steps


def test_dashboard_layout_has_no_overlap():
    cells = set()
    for p in dashboard()["panels"]:
        g = p["gridPos"]
        assert g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, p["title"]
                cells.add((x, y))


def test_dashboard_ships_in_the_chart(prod_objects: Objects):
    cm = prod_objects.get("ConfigMap", "phonebill-dashboard")
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["phonebill.json"]) == dashboard()


def test_every_contract_metric_is_used(prod_objects: Objects, prod_values_merged: dict):
    used = set()
    for rule in _rules(prod_objects).values():
        used |= {base_metric(m) for m in tree_facts(rule["expr"])["metrics"]}
    for _, expr in targets(dashboard()):
        used |= {base_metric(m) for m in tree_facts(expr)["metrics"]}
    for svc in prod_values_merged["services"].values():
        # HPA custom metrics come from the adapter, named after the contract's metrics.
        for m in svc["autoscaling"].get("customMetrics", []):
            used.add(m["name"].replace("_per_second", "_total"))
    assert contract_metrics() - used == set(), "README lists metrics nothing reads"
