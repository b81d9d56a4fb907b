"""The rendered production manifests carry every number of the production design.

Source: the shared design document seed/000_a90e9f181511ae38.txt ("물리 아키텍처 설계서 - 운영환경").
The design has three application services; this project has four binaries:
  Auth Service + Product-Change Service -> command-service (product-change numbers)
  Bill-Inquiry Service                  -> query-service
  KOS-Mock Service (6.1.1)              -> kos-mock
  (not in the design)                   -> projector (sized in values-prod.yaml)
Each row names where its number comes from. A change to values-prod.yaml or to a
template that moves a number away from the design fails here.
"""

from __future__ import annotations

import re

import pytest

from conftest import PROD_INPUTS, SERVICES, Objects, component, prod_values, quantity, render

# ---------------------------------------------------------------- the design

# (service, requests cpu, requests memory, limits cpu, limits memory, source)
RESOURCES = [
    ("command-service", "300m", "768Mi", "1500m", "1.5Gi", "3.3.1 Product-Change Service"),
    ("query-service", "500m", "1Gi", "2000m", "2Gi", "3.3.1 Bill-Inquiry Service"),
    ("kos-mock", "200m", "512Mi", "1000m", "1Gi", "6.1.1 kos_mock_service.resources"),
    ("projector", "200m", "256Mi", "1000m", "512Mi", "not in the design: values-prod.yaml"),
]

# (service, replicas, HPA min, HPA max, cpu %, memory %, source)
SCALING = [
    ("command-service", 2, 2, 8, 70, 80, "3.3.1 replicas 2; 3.3.2 product_change_service 2-8, cpu 70, memory 80"),
    ("query-service", 3, 3, 15, 70, 80, "3.3.1 replicas 3; 3.3.2 bill_inquiry_service 3-15, cpu 70, memory 80"),
    ("kos-mock", 3, 2, 6, 70, 80, "6.1.1 replicas 3, minReplicas 2, maxReplicas 6, cpu 70"),
    ("projector", 3, 3, 12, 70, 80, "one per zone; max = 12 partitions (consumer group)"),
]

# Custom HPA metrics (need a metrics adapter; rendered when metricsAdapter.enabled).
CUSTOM_METRICS = {
    "command-service": {
        "phonebill_outbox_pending": "5",  # 3.3.2 product_change_service: queue_length > 5
        "http_server_requests_per_second": "50",  # 3.3.2 auth_service: requests_per_second > 50
    },
    "query-service": {"http_server_active_requests": "30"},  # 3.3.2 bill_inquiry: active_connections > 30
    "kos-mock": {"phonebill_consumer_lag": "1000"},
    "projector": {"phonebill_consumer_lag": "1000"},
}

# (service, field, value, source)
PDB = [
    ("command-service", "minAvailable", 1, "3.2.1 Product-Change Service: 1"),
    ("query-service", "minAvailable", 2, "3.2.1 Bill-Inquiry Service: 2"),
    ("kos-mock", "maxUnavailable", 1, "consumer: one rebalance per eviction"),
    ("projector", "maxUnavailable", 1, "consumer: one rebalance per eviction"),
]

# Probe paths are the services' contract; timings are the design's only probe numbers (6.1.1).
PROBES = {
    "livenessProbe": {"path": "/health/live", "initialDelaySeconds": 30, "periodSeconds": 10},
    "readinessProbe": {"path": "/health/ready", "initialDelaySeconds": 5, "periodSeconds": 5},
}

METRICS_PORT = 9090
HTTP_PORT = 8080  # 4.3.1 ingress TCP:8080; 4.4 every service on 8080
CONSUMER_PARTITIONS = 12

# Network policy (4.3.1, adjusted: see infra/README.md): ingress on 8080 only;
# egress only to DNS, PostgreSQL 5432, Redis TLS 6380, Event Hubs Kafka 9093.
GATEWAY_SUBNET = "10.0.4.0/24"
EGRESS = {
    ("UDP", 53): "dns",
    ("TCP", 53): "dns",
    ("TCP", 5432): ["10.0.2.0/24"],  # Database Subnet
    ("TCP", 6380): ["10.0.3.0/24"],  # Cache Subnet
    ("TCP", 9093): ["10.0.5.0/24"],  # Private Endpoint Subnet (Event Hubs)
}
METRICS_NAMESPACES = {"kube-system", "monitoring"}

# ARCHITECTURE.md "One public host, routed by path alone".
ROUTES = [
    ("/api/v1/auth/", "Prefix", "command-service"),
    ("/api/v1/product-changes", "Exact", "command-service"),
    ("/api/v1/product-changes/validation", "Exact", "command-service"),
    ("/api/v1/bills", "Prefix", "query-service"),
    ("/api/v1/lines/", "Prefix", "query-service"),
    ("/api/v1/products/", "Prefix", "query-service"),
    ("/api/v1/product-changes/", "Prefix", "query-service"),
    ("/api/v1/analytics/", "Prefix", "projector"),
    # Everything else: the customers' web app (which answers 404 for any other /api/ path).
    ("/", "Prefix", "web"),
]

# Requests and who must answer them. Paths no API owns go to the web app, whose nginx
# answers 404 for any /api/ path (infra/docker/web/site.conf) and the app for the rest.
REQUESTS = [
    ("/api/v1/auth/login", "command-service"),
    ("/api/v1/auth/logout", "command-service"),
    ("/api/v1/product-changes", "command-service"),
    ("/api/v1/product-changes/validation", "command-service"),
    ("/api/v1/product-changes/REQ-20240301-0001", "query-service"),
    ("/api/v1/bills", "query-service"),
    ("/api/v1/bills/menu", "query-service"),
    ("/api/v1/bills/010-1234-5678/2024-03", "query-service"),
    ("/api/v1/lines/010-1234-5678/product-changes", "query-service"),
    ("/api/v1/lines/010-1234-5678", "query-service"),
    ("/api/v1/products/available", "query-service"),
    ("/api/v1/analytics/lines/010-1234-5678/state", "projector"),
    ("/api/v1/analyticsX", "web"),
    ("/api/v1/authx", "web"),
    ("/api/v1/product-changesX", "web"),
    ("/api/v1/kos/product-change", "web"),
    ("/metrics", "web"),
    ("/", "web"),
    ("/login", "web"),
    ("/lines/010-1234-5678/bills/2024-03", "web"),
    ("/assets/index-abc123.js", "web"),
]


# ---------------------------------------------------------------- helpers

def resolve_port(container: dict, port) -> int:
    if isinstance(port, int):
        return port
    return next(p["containerPort"] for p in container["ports"] if p["name"] == port)


# ---------------------------------------------------------------- resources, scaling

@pytest.mark.parametrize("svc, req_cpu, req_mem, lim_cpu, lim_mem, source", RESOURCES,
                         ids=[r[0] for r in RESOURCES])
def test_resources(prod_objects: Objects, svc, req_cpu, req_mem, lim_cpu, lim_mem, source):
    res = prod_objects.container(component(svc))["resources"]
    assert quantity(res["requests"]["cpu"]) == quantity(req_cpu), source
    assert quantity(res["requests"]["memory"]) == quantity(req_mem), source
    assert quantity(res["limits"]["cpu"]) == quantity(lim_cpu), source
    assert quantity(res["limits"]["memory"]) == quantity(lim_mem), source


@pytest.mark.parametrize("svc, replicas, hpa_min, hpa_max, cpu, mem, source", SCALING,
                         ids=[r[0] for r in SCALING])
def test_autoscaling(prod_objects: Objects, svc, replicas, hpa_min, hpa_max, cpu, mem, source):
    name = component(svc)
    hpa = prod_objects.get("HorizontalPodAutoscaler", name)["spec"]
    # Production releases through Argo Rollouts: the Rollout owns the pods.
    assert hpa["scaleTargetRef"] == {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "name": name}
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (hpa_min, hpa_max), source
    targets = {m["resource"]["name"]: m["resource"]["target"] for m in hpa["metrics"]}
    assert targets == {
        "cpu": {"type": "Utilization", "averageUtilization": cpu},
        "memory": {"type": "Utilization", "averageUtilization": mem},
    }, source
    # With an HPA the workload leaves replicas to it (a fixed count would be reset on
    # every sync); the Deployment under a Rollout never sets one.
    assert "replicas" not in prod_objects.get("Rollout", name)["spec"]
    assert "replicas" not in prod_objects.get("Deployment", name)["spec"]


@pytest.mark.parametrize("svc, replicas, hpa_min, hpa_max, cpu, mem, source", SCALING,
                         ids=[r[0] for r in SCALING])
def test_replicas_without_autoscaling(svc, replicas, hpa_min, hpa_max, cpu, mem, source):
    objs = Objects(render(prod_values({"services": {s: {"autoscaling": {"enabled": False}} for s in SERVICES}})))
    assert objs.get("Rollout", component(svc))["spec"]["replicas"] == replicas, source
    assert "replicas" not in objs.get("Deployment", component(svc))["spec"]
    plain = Objects(render(prod_values(
        {"release": {"rollouts": False}, "services": {s: {"autoscaling": {"enabled": False}} for s in SERVICES}}
    )))
    assert plain.get("Deployment", component(svc))["spec"]["replicas"] == replicas, source
    assert not objs.all("HorizontalPodAutoscaler")


def test_custom_metrics_when_an_adapter_exists():
    objs = Objects(render(prod_values({"metricsAdapter": {"enabled": True}})))
    for svc, expected in CUSTOM_METRICS.items():
        metrics = objs.get("HorizontalPodAutoscaler", component(svc))["spec"]["metrics"]
        pods = {m["pods"]["metric"]["name"]: m["pods"]["target"] for m in metrics if m["type"] == "Pods"}
        assert pods == {k: {"type": "AverageValue", "averageValue": v} for k, v in expected.items()}, svc


def test_custom_metrics_are_off_by_default(prod_objects: Objects):
    for hpa in prod_objects.all("HorizontalPodAutoscaler"):
        assert {m["type"] for m in hpa["spec"]["metrics"]} == {"Resource"}


@pytest.mark.parametrize("svc", ["projector", "kos-mock"])
def test_consumers_scale_by_partitions(prod_objects: Objects, svc):
    name = component(svc)
    hpa = prod_objects.get("HorizontalPodAutoscaler", name)
    assert hpa["metadata"]["annotations"]["phonebill.io/scales-by"] == "kafka-partitions"
    assert hpa["metadata"]["annotations"]["phonebill.io/partitions"] == str(CONSUMER_PARTITIONS)
    assert hpa["spec"]["maxReplicas"] <= CONSUMER_PARTITIONS
    # Scale down one member at a time: every membership change is a rebalance.
    assert hpa["spec"]["behavior"]["scaleDown"]["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 120}]
    pdb = prod_objects.get("PodDisruptionBudget", name)
    assert pdb["metadata"]["annotations"]["phonebill.io/scales-by"] == "kafka-partitions"


@pytest.mark.parametrize("svc", ["command-service", "query-service"])
def test_http_services_scale_by_load(prod_objects: Objects, svc):
    hpa = prod_objects.get("HorizontalPodAutoscaler", component(svc))
    assert hpa["metadata"]["annotations"]["phonebill.io/scales-by"] == "http-load"
    assert "behavior" not in hpa["spec"]


@pytest.mark.parametrize("svc, field, value, source", PDB, ids=[p[0] for p in PDB])
def test_disruption_budgets(prod_objects: Objects, svc, field, value, source):
    spec = prod_objects.get("PodDisruptionBudget", component(svc))["spec"]
    assert spec[field] == value, source
    assert {"minAvailable", "maxUnavailable"} & set(spec) == {field}
    assert spec["selector"]["matchLabels"] == {
        "app.kubernetes.io/name": svc, "app.kubernetes.io/instance": "phonebill"}


# ---------------------------------------------------------------- pods

@pytest.mark.parametrize("svc", SERVICES)
def test_probes(prod_objects: Objects, svc):
    c = prod_objects.container(component(svc))
    for probe, expected in PROBES.items():
        p = c[probe]
        assert p["httpGet"]["path"] == expected["path"]
        assert resolve_port(c, p["httpGet"]["port"]) == HTTP_PORT
        assert p["initialDelaySeconds"] == expected["initialDelaySeconds"]
        assert p["periodSeconds"] == expected["periodSeconds"]


@pytest.mark.parametrize("svc", SERVICES)
def test_placement(prod_objects: Objects, svc):
    """3.1.2 application pool taint, 3.2.1 three zones and anti-affinity."""
    pod = prod_objects.get("Deployment", component(svc))["spec"]["template"]["spec"]
    assert {"key": "application-workload", "operator": "Equal", "value": "true",
            "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["nodeSelector"] == {"workload": "application"}
    [spread] = pod["topologySpreadConstraints"]
    assert spread["topologyKey"] == "topology.kubernetes.io/zone"
    assert spread["maxSkew"] == 1 and spread["whenUnsatisfiable"] == "DoNotSchedule"
    assert spread["labelSelector"]["matchLabels"]["app.kubernetes.io/name"] == svc
    [term] = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert term["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert term["podAffinityTerm"]["labelSelector"]["matchLabels"]["app.kubernetes.io/name"] == svc


@pytest.mark.parametrize("svc", SERVICES)
def test_zero_downtime_rollout(prod_objects: Objects, svc):
    """6.1.1: maxSurge 1, maxUnavailable 0: the Deployment's own strategy (releases
    without Argo Rollouts) and the canary's; blue-green starts a whole new colour
    before the old one stops."""
    strategy = prod_objects.get("Deployment", component(svc))["spec"]["strategy"]
    assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    rollout = prod_objects.get("Rollout", component(svc))["spec"]["strategy"]
    if "canary" in rollout:
        assert (rollout["canary"]["maxSurge"], rollout["canary"]["maxUnavailable"]) == (1, 0)
    else:
        assert "maxUnavailable" not in rollout["blueGreen"]  # defaults to 0


@pytest.mark.parametrize("svc", SERVICES)
def test_pod_security(prod_objects: Objects, svc):
    pod = prod_objects.get("Deployment", component(svc))["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False


# ---------------------------------------------------------------- network policy

@pytest.mark.parametrize("svc", SERVICES)
def test_metrics_are_scraped_on_their_own_port(prod_objects: Objects, local_objects: Objects, svc):
    name = component(svc)
    pod = prod_objects.get("Deployment", name)["spec"]["template"]
    ports = {p["name"]: p["containerPort"] for p in pod["spec"]["containers"][0]["ports"]}
    assert ports == {"http": HTTP_PORT, "metrics": METRICS_PORT}
    # Annotation-based scraping (values.yaml; production uses the ServiceMonitor below).
    local_pod = local_objects.get("Deployment", name)["spec"]["template"]
    assert local_pod["metadata"]["annotations"]["prometheus.io/port"] == str(METRICS_PORT)
    service_ports = {p["name"]: p["port"] for p in prod_objects.get("Service", name)["spec"]["ports"]}
    assert service_ports == {"http": HTTP_PORT, "metrics": METRICS_PORT}
    [monitor] = [m for m in prod_objects.all("ServiceMonitor") if m["metadata"]["name"] == name]
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]


@pytest.mark.parametrize("svc", SERVICES)
def test_network_policy(prod_objects: Objects, svc):
    policy = prod_objects.get("NetworkPolicy", component(svc))["spec"]
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    assert policy["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == svc

    # Ingress: the HTTP port from the gateway subnet (public services only), the metrics
    # port from the scrapers' namespaces; nothing else, and neither from the other.
    def sources(rule):
        cidrs = {p["ipBlock"]["cidr"] for p in rule["from"] if "ipBlock" in p}
        namespaces = {p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                      for p in rule["from"] if "namespaceSelector" in p}
        return cidrs, namespaces

    by_port = {tuple(p["port"] for p in rule["ports"]): sources(rule) for rule in policy["ingress"]}
    public = svc in {"command-service", "query-service", "projector"}
    expected = {(METRICS_PORT,): (set(), METRICS_NAMESPACES)}
    if public:
        expected[(HTTP_PORT,)] = ({GATEWAY_SUBNET}, set())
    assert by_port == expected

    # Egress: exactly the expected ports, each to exactly its subnet.
    seen = {}
    for rule in policy["egress"]:
        assert rule.get("ports"), "an egress rule without ports allows every port"
        for port in rule["ports"]:
            key = (port["protocol"], port["port"])
            if "podSelector" in str(rule.get("to")):
                seen[key] = "dns"
                to = rule["to"][0]
                assert to["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "kube-system"}
                assert to["podSelector"]["matchLabels"] == {"k8s-app": "kube-dns"}
            else:
                assert rule.get("to"), f"egress on {key} to anywhere"
                seen[key] = sorted(t["ipBlock"]["cidr"] for t in rule["to"])
    assert seen == EGRESS


def test_the_namespace_denies_what_no_policy_allows(prod_objects: Objects):
    deny = prod_objects.get("NetworkPolicy", "phonebill-default-deny")
    assert deny["metadata"]["namespace"] == "phonebill-prod"
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    # Every pod the chart runs is selected by a policy of its own, which allows its flows.
    selected = {p["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/component")
                or p["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/name")
                for p in prod_objects.all("NetworkPolicy") if p["spec"]["podSelector"]}
    for kind in ("Deployment", "Job"):
        for workload in prod_objects.all(kind):
            labels = workload["spec"]["template"]["metadata"]["labels"]
            assert {labels.get("app.kubernetes.io/component"), labels.get("app.kubernetes.io/name")} & selected, (
                workload["metadata"]["name"])


# ---------------------------------------------------------------- ingress

def _ingress(objs: Objects) -> dict:
    [ing] = objs.all("Ingress")
    return ing


def test_ingress_routes_match_the_table(prod_objects: Objects):
    ing = _ingress(prod_objects)
    [rule] = ing["spec"]["rules"]
    assert rule["host"] == "phonebill.example.com"
    got = [(p["path"], p["pathType"], p["backend"]["service"]["name"]) for p in rule["http"]["paths"]]
    assert sorted(got) == sorted((p, t, component(s)) for p, t, s in ROUTES)
    for p in rule["http"]["paths"]:
        assert p["backend"]["service"]["port"] == {"name": "http"}
    # Every path belongs to exactly one service.
    assert len({(p, t) for p, t, _ in got}) == len(got)


def test_ingress_is_agic_with_tls(prod_objects: Objects):
    ing = _ingress(prod_objects)
    assert ing["spec"]["ingressClassName"] == "azure-application-gateway"
    ann = ing["metadata"]["annotations"]
    assert ann["appgw.ingress.kubernetes.io/ssl-redirect"] == "true"
    assert ann["appgw.ingress.kubernetes.io/appgw-ssl-certificate"] == "phonebill-tls"


def _matches(rule_path: str, path_type: str, request: str) -> bool:
    if path_type == "Exact":
        return request == rule_path
    # Prefix: element-wise, a trailing slash ignored (Ingress v1 semantics).
    rule_elems = [e for e in rule_path.split("/") if e]
    req_elems = [e for e in request.split("/") if e]
    return req_elems[: len(rule_elems)] == rule_elems


def route(paths: list[dict], request: str) -> str | None:
    """Ingress v1 matching: the longest matching path wins; on a tie Exact beats Prefix."""
    candidates = [p for p in paths if _matches(p["path"], p["pathType"], request)]
    if not candidates:
        return None
    best = max(candidates, key=lambda p: (len(p["path"].rstrip("/")), p["pathType"] == "Exact"))
    return best["backend"]["service"]["name"]


@pytest.mark.parametrize("request_path, owner", REQUESTS, ids=[r[0] for r in REQUESTS])
def test_ingress_routes_each_request_to_its_owner(prod_objects: Objects, request_path, owner):
    paths = _ingress(prod_objects)["spec"]["rules"][0]["http"]["paths"]
    assert route(paths, request_path) == (component(owner) if owner else None)


def test_local_ingress_has_the_same_routes(local_objects: Objects, prod_objects: Objects):
    def table(objs):
        return sorted((p["path"], p["pathType"], p["backend"]["service"]["name"])
                      for p in _ingress(objs)["spec"]["rules"][0]["http"]["paths"])
    assert table(local_objects) == table(prod_objects)


# ---------------------------------------------------------------- configuration and secrets

def test_production_configuration_shape(prod_objects: Objects):
    cm = prod_objects.get("ConfigMap", "phonebill-config")["data"]
    assert cm["PHONEBILL_ENV"] == "production"
    assert cm["PHONEBILL_HTTP_ADDR"] == f"0.0.0.0:{HTTP_PORT}"
    assert cm["PHONEBILL_METRICS_ADDR"] == f"0.0.0.0:{METRICS_PORT}"
    assert cm["PHONEBILL_KAFKA_BROKERS"].endswith(".servicebus.windows.net:9093")
    assert cm["PHONEBILL_KAFKA_SECURITY_PROTOCOL"] == "sasl_ssl"
    # Each service signs in to Event Hubs as its own identity, with tokens for the namespace.
    assert cm["PHONEBILL_KAFKA_SASL_MECHANISM"] == "OAUTHBEARER"
    assert cm["PHONEBILL_KAFKA_OAUTH_SCOPE"] == PROD_INPUTS["kafka"]["oauthScope"]
    assert "PHONEBILL_KAFKA_SASL_USERNAME" not in cm
    assert cm["PHONEBILL_TOPIC_PREFIX"] == ""
    # Topics are event hubs made by Terraform; the services' roles cannot create them.
    assert cm["PHONEBILL_KAFKA_CREATE_TOPICS"] == "false"
    assert cm["PHONEBILL_TOPIC_PARTITIONS"] == str(CONSUMER_PARTITIONS)
    assert cm["PHONEBILL_REDIS_CLUSTER"] == "true"
    # Public keys only: the token key's private half is a file in command-service alone.
    assert cm["PHONEBILL_JWT_VERIFY_KEYS"] == PROD_INPUTS["jwt"]["verifyKeys"]
    assert not [k for k in cm if "SIGNING_KEY" in k]
    # Behind the ingress: the client is the last X-Forwarded-For entry, not the peer.
    assert cm["PHONEBILL_TRUSTED_PROXY_HOPS"] == "1"
    # No secret in the ConfigMap.
    assert not {"PHONEBILL_DATABASE_URL", "PHONEBILL_REDIS_URL", "PHONEBILL_KAFKA_SASL_PASSWORD"} & set(cm)


def test_traces_are_off_until_a_collector_is_given_then_every_service_exports_at_the_sampling_ratio(
    prod_objects: Objects,
):
    # Given the production values: no OTLP endpoint, no OTEL_* settings.
    cm = prod_objects.get("ConfigMap", "phonebill-config")["data"]
    assert not [k for k in cm if k.startswith("OTEL_")]
    # When a collector is given: every service (they all read this ConfigMap) exports.
    values = prod_values({"traces": {"otlpEndpoint": "http://otel-collector.monitoring:4318"}})
    traced = Objects(render(values)).get("ConfigMap", "phonebill-config")["data"]
    assert traced["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://otel-collector.monitoring:4318"
    assert traced["OTEL_TRACES_SAMPLER"] == "parentbased_traceidratio"
    assert traced["OTEL_TRACES_SAMPLER_ARG"] == "0.01"
    assert "deployment.environment.name=production" in traced["OTEL_RESOURCE_ATTRIBUTES"]


# What each service is given (values.yaml secrets.grants); nothing else reaches its pod.
# No broker credential: in production the services sign in to Event Hubs as themselves.
GRANTS = {
    "command-service": {"command-database-url", "redis-url", "jwt-signing-key"},
    "query-service": {"query-database-url", "redis-url"},
    "projector": {"projector-database-url", "redis-url"},
    "kos-mock": {"kos-database-url", "redis-url", "kos-signing-key"},
}
# The migration Jobs': the administrator's URL and the login each makes.
MIGRATION_GRANTS = {
    "command-service": {"database-admin-url", "command-database-url"},
    "projector": {"database-admin-url", "projector-database-url", "query-role-password"},
    "kos-mock": {"database-admin-url", "kos-database-url"},
}
KEY_VAULT_NAMES = {
    "database-admin-url": "phonebill-database-url",
    "command-database-url": "phonebill-command-database-url",
    "projector-database-url": "phonebill-projector-database-url",
    "kos-database-url": "phonebill-kos-database-url",
    "query-database-url": "phonebill-query-database-url",
    "query-role-password": "phonebill-query-role-password",
    "redis-url": "phonebill-redis-url",
    "jwt-signing-key": "phonebill-jwt-signing-key",
    "kos-signing-key": "phonebill-kos-signing-key",
}
# Where each service's PHONEBILL_DATABASE_URL comes from: its own login.
DATABASE_URL_KEY = {svc: next(g for g in GRANTS[svc] if g.endswith("-database-url")) for svc in GRANTS}


@pytest.mark.parametrize("svc", SERVICES)
def test_secrets_come_from_key_vault_as_the_service_own_identity(prod_objects: Objects, svc):
    dep = prod_objects.get("Deployment", component(svc))
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    env = {e["name"]: e for e in c["env"]}
    for name, key in [("PHONEBILL_DATABASE_URL", DATABASE_URL_KEY[svc]), ("PHONEBILL_REDIS_URL", "redis-url")]:
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": f"phonebill-secrets-{svc}", "key": key}
        assert "value" not in env[name]
    assert "PHONEBILL_KAFKA_SASL_PASSWORD" not in env
    [vol] = [v for v in pod["volumes"] if v["name"] == "secrets"]
    assert vol["csi"]["driver"] == "secrets-store.csi.k8s.io"
    assert vol["csi"]["volumeAttributes"]["secretProviderClass"] == f"{component(svc)}-key-vault"
    assert {"name": "secrets", "mountPath": "/var/run/secrets/phonebill", "readOnly": True} in c["volumeMounts"]
    # Workload identity: labelled pod, its service account annotated with its own identity.
    assert dep["spec"]["template"]["metadata"]["labels"]["azure.workload.identity/use"] == "true"
    sa = prod_objects.get("ServiceAccount", pod["serviceAccountName"])
    assert sa["metadata"]["annotations"]["azure.workload.identity/client-id"] == (
        PROD_INPUTS["secrets"]["azureKeyVault"]["clientIds"][svc])


@pytest.mark.parametrize("svc", SERVICES)
def test_each_service_class_holds_its_grants_alone(prod_objects: Objects, svc):
    import yaml

    spc = prod_objects.get("SecretProviderClass", f"{component(svc)}-key-vault")
    params = spc["spec"]["parameters"]
    assert spc["spec"]["provider"] == "azure"
    assert params["usePodIdentity"] == "false"
    assert params["keyvaultName"] == "kv-phonebill-prod-x7k2"
    assert params["clientID"] == PROD_INPUTS["secrets"]["azureKeyVault"]["clientIds"][svc]
    objects = {yaml.safe_load(o)["objectAlias"]: yaml.safe_load(o)["objectName"]
               for o in yaml.safe_load(params["objects"])["array"]}
    assert objects == {alias: KEY_VAULT_NAMES[alias] for alias in GRANTS[svc]}
    [synced] = spc["spec"]["secretObjects"]
    assert synced["secretName"] == f"phonebill-secrets-{svc}"
    # The private keys stay files; the synced Secret holds what is read as variables.
    assert {d["key"] for d in synced["data"]} == {a for a in GRANTS[svc] if not a.endswith("-signing-key")}
    assert len(prod_objects.all("SecretProviderClass")) == len(SERVICES) + len(MIGRATION_GRANTS)


def test_each_private_key_reaches_its_signer_alone_and_the_public_keys_every_service(prod_objects: Objects):
    signer_of = {"jwt-signing-key": "command-service", "kos-signing-key": "kos-mock"}
    for svc in SERVICES:
        pod = prod_objects.get("Deployment", component(svc))["spec"]["template"]["spec"]
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        for key, signer in signer_of.items():
            variable = "PHONEBILL_" + key.replace("-", "_").upper()
            if svc == signer:
                assert env[variable + "_FILE"]["value"] == f"/var/run/secrets/phonebill/{key}"
            else:
                assert variable + "_FILE" not in env and variable not in env, (svc, key)
    cm = prod_objects.get("ConfigMap", "phonebill-config")["data"]
    assert cm["PHONEBILL_KOS_VERIFY_KEYS"] == PROD_INPUTS["kosSigning"]["verifyKeys"]
    assert cm["PHONEBILL_JWT_VERIFY_KEYS"] == PROD_INPUTS["jwt"]["verifyKeys"]


def env_of(objects: Objects, kind: str, name: str) -> dict:
    pod = objects.get(kind, name)["spec"]["template"]["spec"]
    return {e["name"]: e for e in pod["containers"][0]["env"]}


def test_each_service_connects_as_its_own_login_and_none_holds_the_administrators(prod_objects: Objects):
    keys = set()
    for svc in SERVICES:
        env = env_of(prod_objects, "Deployment", component(svc))
        key = env["PHONEBILL_DATABASE_URL"]["valueFrom"]["secretKeyRef"]["key"]
        assert key == DATABASE_URL_KEY[svc] != "database-admin-url", svc
        keys.add(key)
        assert "PHONEBILL_DATABASE_ADMIN_URL" not in env, svc
        assert "PHONEBILL_QUERY_ROLE_PASSWORD" not in env, svc
    assert len(keys) == len(SERVICES), "two services share a login"


@pytest.mark.parametrize("svc", sorted(MIGRATION_GRANTS))
def test_the_migration_job_alone_holds_the_administrators_url_as_an_identity_of_its_own(prod_objects: Objects, svc):
    import yaml

    [job] = [j for j in prod_objects.all("Job") if j["metadata"]["labels"]["app.kubernetes.io/component"] == svc]
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    secret = f"phonebill-secrets-{svc}-migrate"
    assert env["PHONEBILL_DATABASE_ADMIN_URL"]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": "database-admin-url"}
    # The login it makes is the one its service connects as.
    assert env["PHONEBILL_DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": DATABASE_URL_KEY[svc]}
    if svc == "projector":
        # It also makes query-service's read-only login, with its password.
        assert env["PHONEBILL_QUERY_ROLE_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": "query-role-password"}
        assert env["PHONEBILL_QUERY_ROLE_LOGIN"]["value"] == "true"
    # No other secret: no token or KOS key, no Redis or broker credential.
    assert {n for n in env if "valueFrom" in env[n] and "secretKeyRef" in env[n]["valueFrom"]} <= {
        "PHONEBILL_DATABASE_ADMIN_URL", "PHONEBILL_DATABASE_URL", "PHONEBILL_QUERY_ROLE_PASSWORD"}
    assert not any(n.endswith("_FILE") for n in env)
    spc = prod_objects.get("SecretProviderClass", f"{component(svc)}-migrate-key-vault")
    params = spc["spec"]["parameters"]
    assert params["clientID"] == PROD_INPUTS["secrets"]["azureKeyVault"]["clientIds"][f"{svc}-migrate"]
    aliases = {yaml.safe_load(o)["objectAlias"] for o in yaml.safe_load(params["objects"])["array"]}
    assert aliases == MIGRATION_GRANTS[svc]
    sa = prod_objects.get("ServiceAccount", f"{component(svc)}-migrate")
    assert sa["metadata"]["annotations"]["azure.workload.identity/client-id"] == params["clientID"]


def test_with_a_kubernetes_secret_a_pod_mounts_only_its_own_key_file(local_objects: Objects):
    for svc in SERVICES:
        pod = local_objects.get("Deployment", component(svc))["spec"]["template"]["spec"]
        volumes = [v for v in pod["volumes"] if v["name"] == "secrets"]
        keys = {"command-service": ["jwt-signing-key"], "kos-mock": ["kos-signing-key"]}.get(svc)
        if keys is None:
            assert not volumes, svc
            continue
        [vol] = volumes
        assert [i["key"] for i in vol["secret"]["items"]] == keys, svc


SECRET_LOOKING = re.compile(
    r"(postgres(ql)?://[^\s:@]+:[^\s@]+@|rediss?://:[^\s@]+@|SharedAccessKey=|AccountKey=|"
    r"-----BEGIN|(?<![-\w])password\s*[:=]\s*\S)", re.IGNORECASE)


@pytest.mark.parametrize("values_file", ["values.yaml", "values-prod.yaml"])
def test_no_secret_in_values_files(values_file):
    from conftest import CHART

    text = (CHART / values_file).read_text()
    assert not SECRET_LOOKING.search(text), SECRET_LOOKING.search(text)


def test_the_secret_pattern_catches_secrets():
    for leak in ["postgres://app:hunter2@db:5432/x", "rediss://:abc@h:6380",
                 "Endpoint=sb://x/;SharedAccessKeyName=a;SharedAccessKey=b", "password: hunter2"]:
        assert SECRET_LOOKING.search(leak), leak
