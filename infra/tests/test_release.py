"""Releases in production (values-prod.yaml, release.rollouts on): which services go
blue-green and which roll as a canary, the analysis each runs, and that a failing
release is rolled back within the design's 5 minutes (section 9: "ArgoCD Auto
Rollback: automatic rollback within 5 minutes of failing health checks"). Plus the
migration Jobs that run before the new pods.
"""

from __future__ import annotations

import re
from datetime import timedelta

import promql_parser
import pytest

from conftest import SERVICES, Objects, component, prod_values, render
from test_alerts_dashboard import PLATFORM_METRICS, base_metric, contract_metrics, duration, tree_facts

ROLLBACK_WITHIN = timedelta(minutes=5)  # design 9: rollback within 5 minutes
# (service, strategy, checks): the HTTP services blue-green; the consumers a canary step,
# since a second colour in the same consumer group would only split its partitions.
RELEASES = [
    ("command-service", "blueGreen", {"up", "error-rate", "latency", "consumer-lag", "dead-letters"}),
    ("query-service", "blueGreen", {"up", "error-rate", "latency"}),
    ("projector", "canary", {"up", "error-rate", "consumer-lag", "dead-letters", "parked-lines"}),
    ("kos-mock", "canary", {"up", "consumer-lag", "dead-letters"}),
]
# Thresholds from the design: 99.9 % availability; responses under 200 ms (phase 2).
THRESHOLDS = {
    "up": "result[0] == 1",
    "error-rate": "result[0] <= 0.001",
    "latency": "result[0] <= 0.2",
    "dead-letters": "result[0] == 0",
    "parked-lines": "result[0] <= 0",
}


EQUAL = str(promql_parser.MatchOp.Equal)


def metrics_of(objs: Objects, template: str) -> dict[str, dict]:
    return {m["name"]: m for m in objs.get("AnalysisTemplate", template)["spec"]["metrics"]}


def seconds(text: str) -> int:
    return int(duration(text).total_seconds())


@pytest.mark.parametrize("svc, strategy, checks", RELEASES, ids=[r[0] for r in RELEASES])
def test_each_service_is_released_by_its_strategy(prod_objects: Objects, svc, strategy, checks):
    name = component(svc)
    rollout = prod_objects.get("Rollout", name)["spec"]
    assert rollout["workloadRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": name,
                                      "scaleDown": "onsuccess"}
    assert rollout["selector"]["matchLabels"] == prod_objects.get("Service", name)["spec"]["selector"]
    assert list(rollout["strategy"]) == [strategy]
    assert set(metrics_of(prod_objects, name)) == checks
    if strategy == "blueGreen":
        bg = rollout["strategy"]["blueGreen"]
        assert (bg["activeService"], bg["previewService"]) == (name, f"{name}-preview")
        preview = prod_objects.get("Service", f"{name}-preview")["spec"]
        assert preview["selector"] == prod_objects.get("Service", name)["spec"]["selector"]
        assert bg["prePromotionAnalysis"]["templates"] == [{"templateName": f"{name}-preview"}]
        assert bg["postPromotionAnalysis"]["templates"] == [{"templateName": name}]
        # Before the switch the new colour has no customer traffic to measure.
        assert set(metrics_of(prod_objects, f"{name}-preview")) == checks - {"error-rate", "latency"}
    else:
        steps = rollout["strategy"]["canary"]["steps"]
        assert 0 < steps[0]["setWeight"] < 50
        assert steps[1]["analysis"]["templates"] == [{"templateName": name}]
        assert prod_objects.maybe("Service", f"{name}-preview") is None


def test_the_web_app_and_plain_installs_keep_rolling_deployments(prod_objects: Objects, local_objects: Objects):
    assert prod_objects.maybe("Rollout", "phonebill-web") is None
    assert not local_objects.all("Rollout") and not local_objects.all("AnalysisTemplate")
    assert {r["metadata"]["name"] for r in prod_objects.all("Rollout")} == {component(s) for s in SERVICES}


def test_every_analysis_a_rollout_names_exists_with_its_arguments(prod_objects: Objects):
    referenced = set()
    for rollout in prod_objects.all("Rollout"):
        strategy = rollout["spec"]["strategy"]
        runs = ([strategy["blueGreen"]["prePromotionAnalysis"], strategy["blueGreen"]["postPromotionAnalysis"]]
                if "blueGreen" in strategy else [s["analysis"] for s in strategy["canary"]["steps"] if "analysis" in s])
        for run in runs:
            assert run["args"] == [{"name": "hash", "valueFrom": {"podTemplateHashValue": "Latest"}}]
            for t in run["templates"]:
                referenced.add(t["templateName"])
                assert prod_objects.get("AnalysisTemplate", t["templateName"])["spec"]["args"] == [{"name": "hash"}]
    assert referenced == {t["metadata"]["name"] for t in prod_objects.all("AnalysisTemplate")}


def test_a_failing_release_is_rolled_back_within_five_minutes(prod_objects: Objects):
    """Pods never available: progressDeadlineAbort. A check failing: the analysis aborts
    at its (failureLimit + 1)-th failed measurement, at most one scrape late, and the
    old version still runs: blue-green keeps the old colour up for longer than the
    post-promotion analysis, so the abort sends traffic back at once."""
    for rollout in prod_objects.all("Rollout"):
        spec = rollout["spec"]
        assert spec["progressDeadlineAbort"] is True
        assert timedelta(seconds=spec["progressDeadlineSeconds"]) <= ROLLBACK_WITHIN
    scrape = seconds(prod_objects.all("ServiceMonitor")[0]["spec"]["endpoints"][0]["interval"])
    for template in prod_objects.all("AnalysisTemplate"):
        for m in template["spec"]["metrics"]:
            detect = seconds(m["initialDelay"]) + seconds(m["interval"]) * (m["failureLimit"] + 1) + scrape
            assert timedelta(seconds=detect) <= ROLLBACK_WITHIN, (template["metadata"]["name"], m["name"])
            # A check that may fail every time cannot abort anything.
            assert m["failureLimit"] < m["count"], (template["metadata"]["name"], m["name"])
    for rollout in prod_objects.all("Rollout"):
        bg = rollout["spec"]["strategy"].get("blueGreen")
        if bg:
            post = metrics_of(prod_objects, bg["postPromotionAnalysis"]["templates"][0]["templateName"])
            longest = max(seconds(m["initialDelay"]) + seconds(m["interval"]) * m["count"] for m in post.values())
            assert bg["scaleDownDelaySeconds"] > longest, rollout["metadata"]["name"]


def test_the_thresholds_are_the_designs(prod_objects: Objects, prod_values_merged: dict):
    lag_alert = prod_values_merged["alerts"]["consumerLag"]["threshold"]
    for template in prod_objects.all("AnalysisTemplate"):
        for m in template["spec"]["metrics"]:
            expected = THRESHOLDS.get(m["name"], f"result[0] < {lag_alert}")
            assert m["successCondition"] == expected, (template["metadata"]["name"], m["name"])


def test_the_queries_read_the_new_colour_of_the_service_and_only_contract_metrics(prod_objects: Objects):
    allowed = contract_metrics() | PLATFORM_METRICS | {"up"}
    for template in prod_objects.all("AnalysisTemplate"):
        svc = template["metadata"]["labels"]["app.kubernetes.io/name"]
        for m in template["spec"]["metrics"]:
            query = m["provider"]["prometheus"]["query"]
            assert "{{args.hash}}" in query
            facts = tree_facts(query.replace("{{args.hash}}", "0123456789"))
            assert {base_metric(n) for n in facts["metrics"] if n} <= allowed, query
            for selector in facts["selectors"]:
                if not selector:  # vector(0)
                    continue
                assert selector["namespace"] == (EQUAL, "phonebill-prod"), query
                assert selector["app_kubernetes_io_name"] == (EQUAL, svc), query
                assert selector["rollouts_pod_template_hash"] == (EQUAL, "0123456789"), query
            # Nothing to measure answers 0, never an empty result (which would fail).
            assert query.endswith(" or vector(0)"), query
            assert isinstance(facts["root"], promql_parser.BinaryExpr), query
    # The series carry the hash because the ServiceMonitors copy it from the pods.
    for sm in prod_objects.all("ServiceMonitor"):
        assert "rollouts-pod-template-hash" in sm["spec"]["podTargetLabels"]


def test_the_latency_check_leaves_out_login_only(prod_objects: Objects):
    query = metrics_of(prod_objects, component("query-service"))["latency"]["provider"]["prometheus"]["query"]
    assert 'route!~"/api/v1/auth/login"' in query
    assert query.startswith("histogram_quantile(0.99, ")


def test_migrations_run_in_a_wave_before_the_workloads(prod_objects: Objects):
    jobs = prod_objects.all("Job")
    assert sorted(j["metadata"]["labels"]["app.kubernetes.io/component"] for j in jobs) == [
        "command-service", "kos-mock", "projector"]
    wave = lambda o: int(o["metadata"].get("annotations", {}).get("argocd.argoproj.io/sync-wave", "0"))  # noqa: E731
    for job in jobs:
        svc = job["metadata"]["labels"]["app.kubernetes.io/component"]
        pod = job["spec"]["template"]["spec"]
        [c] = pod["containers"]
        assert c["args"] == ["migrate"]
        assert pod["restartPolicy"] == "Never"
        # The service's own image and configuration, but an account (and so an identity
        # and secrets) of its own: it alone holds the administrator's database URL.
        service_pod = prod_objects.get("Deployment", component(svc))["spec"]["template"]["spec"]
        assert c["image"] == service_pod["containers"][0]["image"]
        assert pod["serviceAccountName"] == f"{component(svc)}-migrate" != service_pod["serviceAccountName"]
        assert c.get("envFrom") == service_pod["containers"][0].get("envFrom")
        # Its own name label, so the service's Service, HPA and PDB do not count it.
        assert job["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == f"{svc}-migrate"
        assert wave(job) == -1
    # What the Jobs' pods need exists before them: wave -2.
    needed = prod_objects.all("ServiceAccount") + prod_objects.all("SecretProviderClass") + [
        prod_objects.get("ConfigMap", "phonebill-config")]
    # One account and one SecretProviderClass per service and per migration Job, and the
    # ConfigMap.
    assert len(needed) == 2 * (len(SERVICES) + len(jobs)) + 1 and all(wave(o) == -2 for o in needed)
    others = [o for o in prod_objects.docs if o not in needed and o["kind"] != "Job"]
    assert others and all(wave(o) == 0 for o in others)


def test_a_new_release_runs_a_new_migration_job():
    """A Job's pod template cannot change: each release gets a Job of its own name."""
    def names(digest: str) -> set[str]:
        values = prod_values({"services": {"command-service": {"imageDigest": "sha256:" + digest * 64}}})
        return {j["metadata"]["name"] for j in Objects(render(values)).all("Job")
                if j["metadata"]["labels"]["app.kubernetes.io/component"] == "command-service"}
    first, second = names("a"), names("b")
    assert len(first) == len(second) == 1 and first != second
    assert names("a") == first  # and the same release renders the same name
    assert re.fullmatch(r"phonebill-command-service-migrate-[0-9a-f]{10}", first.pop())
