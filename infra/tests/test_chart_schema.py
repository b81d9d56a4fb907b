"""Every object the chart renders is valid for Kubernetes 1.29, offline.

Built-in kinds are checked by kubernetes-validate (the upstream OpenAPI schemas,
strict: unknown fields fail). The custom resources (SecretProviderClass,
PrometheusRule, ServiceMonitor) are not in those schemas; they are checked against
the JSON schemas in infra/tests/schemas/, written from the CRDs of the
secrets-store CSI driver and the Prometheus Operator. Argo Rollouts' kinds (Rollout,
AnalysisTemplate) are checked against the CRDs that ship in Argo Rollouts' Go module,
also strictly.
"""

from __future__ import annotations

import json

import jsonschema
import kubernetes_validate
import pytest

from conftest import (
    CHART,
    INFRA,
    Objects,
    argo_crd_schemas,
    chart,
    load_yaml,
    merge_values,
    prod_values,
    render,
)

K8S_VERSION = "1.29"
CRD_SCHEMAS = {
    p.stem: json.loads(p.read_text()) for p in (INFRA / "tests" / "schemas").glob("*.json")
}

# Every optional feature switched on, so no template goes unvalidated.
ALL_FEATURES = {
    "metricsAdapter": {"enabled": True},
    "metrics": {"scrapeAnnotations": True},
    "ingress": {"tls": {"secretName": "phonebill-tls"}},
    "networkPolicy": {"egress": {"extra": [{"port": 443, "cidrs": ["203.0.113.0/24"]}]}},
    "services": {
        name: {"imageDigest": "sha256:" + "ab" * 32}
        for name in ("command-service", "query-service", "projector", "kos-mock")
    },
}

RENDERS = {
    "values.yaml": lambda: render({}, namespace="phonebill"),
    "values-prod.yaml": lambda: render(prod_values()),
    "values-prod.yaml+all-features": lambda: render(prod_values(ALL_FEATURES)),
    "values-prod.yaml+no-autoscaling": lambda: render(
        prod_values(
            {"services": {n: {"autoscaling": {"enabled": False}} for n in ALL_FEATURES["services"]}}
        )
    ),
}


def _validate(doc: dict) -> None:
    if doc["kind"] in argo_crd_schemas():
        api_version, schema = argo_crd_schemas()[doc["kind"]]
        assert doc["apiVersion"] == api_version, doc["apiVersion"]
        jsonschema.validate(doc, schema)
    elif doc["kind"] in CRD_SCHEMAS:
        jsonschema.validate(doc, CRD_SCHEMAS[doc["kind"]])
    else:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("render_name", RENDERS)
def test_every_rendered_object_is_valid_for_kubernetes_1_29(render_name):
    docs = RENDERS[render_name]()
    assert docs, "the chart rendered nothing"
    errors = []
    for doc in docs:
        try:
            _validate(doc)
        except Exception as exc:  # collect all, report together
            errors.append(f"{doc['kind']}/{doc['metadata'].get('name')}: {exc}".splitlines()[0])
    assert not errors, "\n".join(errors)
    # Names must be unique per kind, or one object silently replaces another.
    keys = [(d["kind"], d["metadata"]["name"]) for d in docs]
    assert len(keys) == len(set(keys)), sorted(keys)


def test_production_renders_every_kind(prod_objects: Objects):
    assert prod_objects.kinds() == {
        "AnalysisTemplate", "ConfigMap", "CronJob", "Deployment", "HorizontalPodAutoscaler",
        "Ingress", "Job", "NetworkPolicy", "PodDisruptionBudget", "PrometheusRule", "Rollout",
        "SecretProviderClass", "Service", "ServiceAccount", "ServiceMonitor",
    }


def test_local_render_is_the_small_cluster_shape(local_objects: Objects):
    kinds = local_objects.kinds()
    assert {"Deployment", "Service", "ServiceAccount", "ConfigMap", "Ingress"} <= kinds
    # No autoscaling, budgets, policies, Key Vault or Prometheus Operator objects locally.
    assert not kinds & {
        "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy",
        "SecretProviderClass", "PrometheusRule", "ServiceMonitor", "CronJob",
        "Rollout", "AnalysisTemplate",
    }
    for d in local_objects.all("Deployment"):
        assert d["spec"]["replicas"] == 1


def test_the_crd_schemas_reject_what_they_should(prod_objects: Objects):
    """The hand-written CRD schemas are not a rubber stamp."""
    import copy

    rule = copy.deepcopy(prod_objects.all("PrometheusRule")[0])
    rule["spec"]["groups"][0]["rules"][0]["for"] = "five minutes"
    with pytest.raises(jsonschema.ValidationError):
        _validate(rule)
    spc = copy.deepcopy(prod_objects.all("SecretProviderClass")[0])
    spc["spec"]["secretObjects"][0]["data"][0].pop("key")
    with pytest.raises(jsonschema.ValidationError):
        _validate(spc)
    sm = copy.deepcopy(prod_objects.all("ServiceMonitor")[0])
    sm["spec"]["endpoints"][0]["intervall"] = "30s"
    with pytest.raises(jsonschema.ValidationError):
        _validate(sm)
    dep = copy.deepcopy(prod_objects.all("Deployment")[0])
    dep["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = {"cores": 1}
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate(dep)
    rollout = copy.deepcopy(prod_objects.all("Rollout")[0])
    rollout["spec"]["strategy"]["blueGreen" if "blueGreen" in rollout["spec"]["strategy"] else "canary"]["scaleDownDelay"] = 30
    with pytest.raises(jsonschema.ValidationError):
        _validate(rollout)
    template = copy.deepcopy(prod_objects.all("AnalysisTemplate")[0])
    template["spec"]["metrics"][0]["provider"]["prometheus"]["query"] = 1
    with pytest.raises(jsonschema.ValidationError):
        _validate(template)


@pytest.mark.parametrize("values_file", ["values.yaml", "values-prod.yaml"])
def test_helm_lint_is_clean(values_file):
    import helm_python

    values = {} if values_file == "values.yaml" else prod_values()
    result = helm_python.lint(str(CHART), values, kube_version="v1.29.0", strict=True)
    problems = [m for m in result["messages"] if m["severity"] > 1]  # 1 = INFO
    assert not result["errors"] and not problems, result


def test_values_schema_rejects_a_misspelt_key():
    """values.schema.json is strict, so a typo in values-prod.yaml fails the deploy
    instead of being silently ignored."""
    import helm_python

    with pytest.raises(helm_python.HelmValuesError, match="replica"):
        render(prod_values({"services": {"query-service": {"replica": 5}}}))
    with pytest.raises(helm_python.HelmValuesError):
        render(prod_values({"services": {"query-service": {"resources": {"limits": {"cpu": "two"}}}}}))


@pytest.mark.parametrize(
    "missing, message",
    [
        ("secrets.azureKeyVault.name", "secrets.azureKeyVault.name is required"),
        ("secrets.azureKeyVault.clientIds.projector", "secrets.azureKeyVault.clientIds.projector is required"),
        ("kafka.brokers", "kafka.brokers is required"),
        ("image.registry", "image.registry is required in production"),
        ("jwt.verifyKeys", "jwt.verifyKeys is required in production"),
        ("kosSigning.verifyKeys", "kosSigning.verifyKeys is required in production"),
        ("ingress.host", "ingress.host is required"),
    ],
)
def test_production_without_an_installation_input_fails_clearly(missing, message):
    import helm_python

    section, *path = missing.split(".")
    override: dict = {}
    cursor = override.setdefault(section, {})
    for key in path[:-1]:
        cursor = cursor.setdefault(key, {})
    cursor[path[-1]] = ""
    with pytest.raises(helm_python.HelmRenderError, match=message.replace(".", r"\.")):
        render(prod_values(override))


def test_production_refuses_plaintext_kafka():
    import helm_python

    with pytest.raises(helm_python.HelmRenderError, match="sasl_ssl"):
        render(prod_values({"kafka": {"securityProtocol": "plaintext"}}))


def test_a_consumer_cannot_scale_past_its_partitions():
    import helm_python

    with pytest.raises(helm_python.HelmRenderError, match="exceeds kafka.partitions"):
        render(prod_values({"services": {"projector": {"autoscaling": {"maxReplicas": 13}}}}))


def test_ingress_routes_only_to_public_services():
    import helm_python

    routes = load_yaml(CHART / "values.yaml")["ingress"]["routes"] + [
        {"path": "/admin/", "pathType": "Prefix", "service": "kos-mock"}
    ]
    with pytest.raises(helm_python.HelmRenderError, match="not an enabled public service"):
        render(prod_values({"ingress": {"routes": routes}}))


def test_merge_matches_helm():
    """The test helper that layers -f files agrees with Helm's own coalescing."""
    base = load_yaml(CHART / "values.yaml")
    ours = merge_values(base, prod_values())
    helms = chart().merge_values(prod_values())
    assert json.dumps(ours, sort_keys=True) == json.dumps(helms, sort_keys=True)


# ---------------------------------------------------------------- the web app

def test_web_is_served_behind_the_ingress(local_objects: Objects, prod_objects: Objects):
    for objs, replicas in ((local_objects, 1), (prod_objects, 2)):
        name = next(d["metadata"]["name"] for d in objs.all("Deployment") if d["metadata"]["name"].endswith("-web"))
        dep = objs.get("Deployment", name)
        assert dep["spec"]["replicas"] == replicas
        pod = dep["spec"]["template"]["spec"]
        [c] = pod["containers"]
        assert c["image"].split("@")[0].split(":")[0].endswith("/web")
        assert c["securityContext"]["readOnlyRootFilesystem"] is True
        assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
        assert pod["automountServiceAccountToken"] is False
        assert "envFrom" not in c and "env" not in c, "the web app holds no configuration or secret"
        assert objs.get("Service", name)["spec"]["ports"][0]["name"] == "http"
        [ing] = objs.all("Ingress")
        paths = ing["spec"]["rules"][0]["http"]["paths"]
        assert {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": name, "port": {"name": "http"}}}} in paths
    name = next(d["metadata"]["name"] for d in prod_objects.all("Deployment") if d["metadata"]["name"].endswith("-web"))
    assert prod_objects.get("PodDisruptionBudget", name)["spec"]["minAvailable"] == 1
    policy = prod_objects.get("NetworkPolicy", name)
    assert policy["spec"]["egress"] == [], "the web pods call nothing"
    assert policy["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 8080}]


def test_a_route_to_a_disabled_web_app_fails():
    import helm_python

    with pytest.raises(helm_python.HelmRenderError, match="not an enabled public service"):
        render(prod_values({"web": {"enabled": False}}))
