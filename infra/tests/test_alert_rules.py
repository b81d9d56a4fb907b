"""The alerts fire on the series they are for, and stay quiet just short of them:
`promtool test rules` (Debian's `prometheus` package; the test command installs it) on
the PrometheusRule the chart renders for production, against synthetic series.

Each alert has one case that fires, with its labels and its summary, and one that does
not (below the threshold, or not for long enough); the reconciliation alerts have more
(TIMED_CASES): quiet while pending, firing once their `for` or threshold has passed,
resolved when the series recovers. The thresholds are the chart's values
(values.yaml `alerts`), so a changed threshold that these series no longer straddle
fails here, as it should: the cases are then to be moved with it.
"""

import re
import shutil
import subprocess

import pytest
import yaml

from conftest import PROD_NAMESPACE, Objects

NS = PROD_NAMESPACE


def series(metric: str, values: str, **labels: str) -> dict:
    labels = {"namespace": NS, **labels}
    selector = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{metric}{{{selector}}}", "values": values}


def fires(alert: str, at: str, labels: dict, summary: str) -> dict:
    return {
        "eval_time": at,
        "alertname": alert,
        "exp_alerts": [{"exp_labels": labels, "exp_annotations": {"summary": summary}}],
    }


def quiet(alert: str, at: str) -> dict:
    return {"eval_time": at, "alertname": alert, "exp_alerts": []}


APP = {"app_kubernetes_io_name": "query-service"}
POD = {"pod": "phonebill-query-service-7d9f-abcde", "container": "query-service"}
LAG = {"group": "projector", "topic": "phonebill.product-change"}
PROJECTOR = {"app_kubernetes_io_name": "projector"}
RUNBOOK = "infra/README.md#{}"

# (alert, series that fire it, when, its labels, its summary, series that do not fire it)
CASES = [
    (
        "PhonebillHighErrorRate",
        [series("http_server_requests_total", "0+10x20", status="500", **APP),
         series("http_server_requests_total", "0+90x20", status="200", **APP)],
        "10m", {**APP, "severity": "critical"},
        "query-service: more than 5% of requests fail (5xx) over 5m",
        # 4 % fail
        [series("http_server_requests_total", "0+4x20", status="500", **APP),
         series("http_server_requests_total", "0+96x20", status="200", **APP)],
    ),
    (
        "PhonebillHighLatency",
        [series("http_server_request_duration_seconds_sum", "0+400x20", **APP),
         series("http_server_request_duration_seconds_count", "0+100x20", **APP)],
        "10m", {**APP, "severity": "critical"},
        "query-service: average response time above 3s over 5m",
        # 2 s on average
        [series("http_server_request_duration_seconds_sum", "0+200x20", **APP),
         series("http_server_request_duration_seconds_count", "0+100x20", **APP)],
    ),
    (
        "PhonebillPodRestarts",
        [series("kube_pod_container_status_restarts_total", "0+1x20", **POD)],
        "15m", {**POD, "severity": "critical"},
        f"{POD['pod']} restarted more than 5 times in 10m",
        # three restarts, then none
        [series("kube_pod_container_status_restarts_total", "0+1x3 3x20", **POD)],
    ),
    (
        "PhonebillHighCPU",
        [series("container_cpu_usage_seconds_total", "0+54x40", **POD),
         series("kube_pod_container_resource_limits", "1x40", resource="cpu", **POD)],
        "30m", {**POD, "severity": "warning"},
        f"{POD['pod']} uses more than 85% of its CPU limit",
        # half a core of one
        [series("container_cpu_usage_seconds_total", "0+30x40", **POD),
         series("kube_pod_container_resource_limits", "1x40", resource="cpu", **POD)],
    ),
    (
        "PhonebillHighMemory",
        [series("container_memory_working_set_bytes", "950000000x30", **POD),
         series("kube_pod_container_resource_limits", "1000000000x30", resource="memory", **POD)],
        "20m", {**POD, "severity": "warning"},
        f"{POD['pod']} uses more than 90% of its memory limit",
        # 95 % for only three minutes
        [series("container_memory_working_set_bytes", "500000000x10 950000000x3 500000000x17", **POD),
         series("kube_pod_container_resource_limits", "1000000000x30", resource="memory", **POD)],
    ),
    (
        "PhonebillConsumerLag",
        [series("phonebill_consumer_lag", "5000x30", partition="0", **LAG)],
        "20m", {**LAG, "severity": "warning"},
        "Consumer group projector is more than 1000 messages behind on phonebill.product-change",
        [series("phonebill_consumer_lag", "500x30", partition="0", **LAG)],
    ),
    (
        "PhonebillConsumerDelay",
        [series("phonebill_consumer_lag_seconds", "0+60x40", partition="0", **LAG)],
        "20m", {**LAG, "severity": "warning"},
        "Consumer group projector has left a message of phonebill.product-change waiting for more than 120 s",
        # a steady 60 s behind: slow, not stuck
        [series("phonebill_consumer_lag_seconds", "60x40", partition="0", **LAG)],
    ),
    (
        "PhonebillDeadLetters",
        [series("phonebill_dead_letters_total", "0 0 0 1 1 1 1 1 1 1",
                topic="kos.results", reason="decode", **APP)],
        "5m", {"topic": "kos.results", "reason": "decode", "severity": "warning"},
        "Messages from kos.results went to the dead-letter topic (decode)",
        [series("phonebill_dead_letters_total", "0x10", topic="kos.results", reason="decode", **APP)],
    ),
    (
        "PhonebillParkedLines",
        [series("phonebill_parked_lines", "1x30", app_kubernetes_io_name="projector")],
        "20m", {"app_kubernetes_io_name": "projector", "severity": "warning"},
        "projector has lines parked behind an event it cannot apply",
        # parked for ten minutes, then retried
        [series("phonebill_parked_lines", "1x10 0x20", app_kubernetes_io_name="projector")],
    ),
    (
        "PhonebillDivergentLines",
        # one line found divergent at minute 3 and not found equal since
        [series("phonebill_reconciliation_divergent_lines", "0x2 1x10", **PROJECTOR)],
        "5m", {**PROJECTOR, "severity": "critical"},
        "projector found lines whose views differ from the event store",
        [series("phonebill_reconciliation_divergent_lines", "0x10", **PROJECTOR)],
    ),
    (
        "PhonebillReconciliationLag",
        [series("phonebill_reconciliation_oldest_lag_seconds", "400x20", **PROJECTOR)],
        "10m", {**PROJECTOR, "severity": "warning"},
        "projector: a sampled line's views are more than 300s behind the event store",
        # behind, but by 250 s, under the threshold
        [series("phonebill_reconciliation_oldest_lag_seconds", "250x20", **PROJECTOR)],
    ),
    (
        "PhonebillReconciliationStalled",
        # a pass every minute (the gauge is the unix time, promtool's clock starts at 0),
        # then none after minute 5: eleven minutes without one at minute 16
        [series("phonebill_reconciliation_last_pass_timestamp_seconds", "0+60x5 300x20", **PROJECTOR)],
        "20m", {**PROJECTOR, "severity": "warning"},
        "projector: the reconciliation check has not finished a pass for more than 600s",
        # a slow check that still finishes a pass every eight minutes
        [series("phonebill_reconciliation_last_pass_timestamp_seconds", "0x7 480x7 960x7", **PROJECTOR)],
    ),
]

# More cases for the reconciliation alerts, where when they fire matters as much as
# whether: (alert, series, when, fires with these labels or stays quiet (None), summary).
DIVERGENT_AT_3M = [series("phonebill_reconciliation_divergent_lines", "0x2 1x10", **PROJECTOR)]
BEHIND_AT_5M = [series("phonebill_reconciliation_oldest_lag_seconds", "0x4 400x20", **PROJECTOR)]
TIMED_CASES = [
    # found divergent at minute 3: pending for its `for` (1m), firing from minute 4
    ("PhonebillDivergentLines", DIVERGENT_AT_3M, "3m", None, None),
    ("PhonebillDivergentLines", DIVERGENT_AT_3M, "4m", {**PROJECTOR, "severity": "critical"},
     "projector found lines whose views differ from the event store"),
    # divergent from minute 3, found equal again at minute 7: resolved
    ("PhonebillDivergentLines",
     [series("phonebill_reconciliation_divergent_lines", "0x2 1x3 0x10", **PROJECTOR)], "8m", None, None),
    # one replica sees a divergent line, the other none: it fires all the same
    ("PhonebillDivergentLines",
     [series("phonebill_reconciliation_divergent_lines", "0x10", pod="projector-a", **PROJECTOR),
      series("phonebill_reconciliation_divergent_lines", "2x10", pod="projector-b", **PROJECTOR)],
     "5m", {**PROJECTOR, "severity": "critical"},
     "projector found lines whose views differ from the event store"),
    # more than 300 s behind from minute 5: pending for its `for` (5m), firing from minute 10
    ("PhonebillReconciliationLag", BEHIND_AT_5M, "9m", None, None),
    ("PhonebillReconciliationLag", BEHIND_AT_5M, "10m", {**PROJECTOR, "severity": "warning"},
     "projector: a sampled line's views are more than 300s behind the event store"),
    # more than 300 s behind for four minutes only (its `for` is 5m), then caught up
    ("PhonebillReconciliationLag",
     [series("phonebill_reconciliation_oldest_lag_seconds", "0x5 400x3 0x12", **PROJECTOR)], "10m", None, None),
    # last pass at minute 5: exactly ten minutes without one at minute 15 is not yet more
    ("PhonebillReconciliationStalled",
     [series("phonebill_reconciliation_last_pass_timestamp_seconds", "0+60x5 300x20", **PROJECTOR)],
     "15m", None, None),
    ("PhonebillReconciliationStalled",
     [series("phonebill_reconciliation_last_pass_timestamp_seconds", "0+60x5 300x20", **PROJECTOR)],
     "16m", {**PROJECTOR, "severity": "warning"},
     "projector: the reconciliation check has not finished a pass for more than 600s"),
]


def rules_of(objs: Objects) -> dict:
    [rule] = objs.all("PrometheusRule")
    return {"groups": rule["spec"]["groups"]}


def test_every_alert_has_a_case(prod_objects: Objects):
    alerts = {r["alert"] for g in rules_of(prod_objects)["groups"] for r in g["rules"]}
    assert alerts == {c[0] for c in CASES}


def test_the_alerts_fire_on_their_series_and_not_short_of_them(prod_objects: Objects, tmp_path):
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (infra/local/stack test does)"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules_of(prod_objects)))
    tests = []
    for alert, firing, at, labels, summary, short in CASES:
        expected = fires(alert, at, labels, summary)
        expected["exp_alerts"][0]["exp_annotations"]["runbook"] = RUNBOOK.format(alert.lower())
        tests.append({"interval": "1m", "input_series": firing, "alert_rule_test": [expected]})
        tests.append({"interval": "1m", "input_series": short, "alert_rule_test": [quiet(alert, at)]})
    for alert, input_series, at, labels, summary in TIMED_CASES:
        if labels is None:
            expected = quiet(alert, at)
        else:
            expected = fires(alert, at, labels, summary)
            expected["exp_alerts"][0]["exp_annotations"]["runbook"] = RUNBOOK.format(alert.lower())
        tests.append({"interval": "1m", "input_series": input_series, "alert_rule_test": [expected]})
    (tmp_path / "tests.yaml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests})
    )
    run = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_a_case_that_should_not_pass_fails(prod_objects: Objects, tmp_path):
    """The check itself can fail: a firing series expected to stay quiet is reported."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: apt-get install prometheus (infra/local/stack test does)"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules_of(prod_objects)))
    alert, firing, at = CASES[0][0], CASES[0][1], CASES[0][2]
    (tmp_path / "tests.yaml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yaml"], "evaluation_interval": "1m",
        "tests": [{"interval": "1m", "input_series": firing, "alert_rule_test": [quiet(alert, at)]}],
    }))
    run = subprocess.run(
        [promtool, "test", "rules", "tests.yaml"], cwd=tmp_path, capture_output=True, text=True
    )
    assert run.returncode != 0
    assert re.search(alert, run.stdout + run.stderr)
