"""The alerts fire on the series they are for, and stay quiet just short of them:
`promtool test rules` (Debian's `prometheus` package; the test command installs it) on
the PrometheusRule the chart renders for production, against synthetic series.

Each alert has one case that fires, with its labels and its summary, and one that does
not (below the threshold, or not for long enough). The thresholds are the chart's values
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
