"""How the services authenticate to the broker (kafka.auth).

Production (`entra`): each service signs in to Event Hubs as its own workload identity
(OAUTHBEARER, tokens for the namespace's scope), so the event hubs' role assignments
(infra/azure/topic_access.tf) decide what it may send and read; no broker password exists
anywhere. `password` (SASL with the kafka-sasl-password secret) is the same as before for
an Apache Kafka or a SAS-keyed broker; `none` for plaintext. The migration Jobs never use
Kafka and get no broker credential either way. With `entra` the services' pods, and only
they, may reach Entra ID's token endpoint on 443.
"""

from __future__ import annotations

import pytest
import yaml

from conftest import CHART, PROD_INPUTS, RELEASE, SERVICES, Objects, component, load_yaml, prod_values, render

MIGRATING = ("command-service", "projector", "kos-mock")
ENTRA_ID_CIDRS = ["20.20.32.0/19", "20.190.128.0/18", "20.231.128.0/19", "40.126.0.0/18"]

# A broker reached with a password (Event Hubs' $ConnectionString, or Apache Kafka's users).
PASSWORD = {"kafka": {"securityProtocol": "sasl_ssl", "auth": "password",
                      "brokers": "evhns-phonebill-prod-x7k2.servicebus.windows.net:9093"}}


def config(objects: Objects) -> dict:
    return objects.get("ConfigMap", "phonebill-config")["data"]


def pod_spec(workload: dict) -> dict:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]


def env(workload: dict) -> dict:
    return {e["name"]: e for e in pod_spec(workload)["spec"]["containers"][0].get("env", [])}


def migration_jobs(objects: Objects) -> dict[str, dict]:
    return {j["metadata"]["labels"]["app.kubernetes.io/component"]: j for j in objects.all("Job")}


def selects(selector: dict, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against pod labels."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for e in selector.get("matchExpressions", []):
        value, op = labels.get(e["key"]), e["operator"]
        if op == "In" and value not in e["values"]:
            return False
        if op == "NotIn" and value in e["values"]:
            return False
        if op == "Exists" and value is None:
            return False
        if op == "DoesNotExist" and value is not None:
            return False
    return True


def egress_ports(policy: dict) -> set[int]:
    return {p["port"] for rule in policy["spec"].get("egress", []) for p in rule.get("ports", [])}


# ---------------------------------------------------------------- production: entra

def test_production_signs_in_to_event_hubs_as_each_services_own_identity(prod_objects: Objects):
    cm = config(prod_objects)
    assert cm["PHONEBILL_KAFKA_SECURITY_PROTOCOL"] == "sasl_ssl"
    assert cm["PHONEBILL_KAFKA_SASL_MECHANISM"] == "OAUTHBEARER"
    assert cm["PHONEBILL_KAFKA_OAUTH_SCOPE"] == PROD_INPUTS["kafka"]["oauthScope"]
    # The tokens are for the namespace the brokers name.
    assert cm["PHONEBILL_KAFKA_OAUTH_SCOPE"] == (
        "https://" + cm["PHONEBILL_KAFKA_BROKERS"].rsplit(":", 1)[0] + "/.default")
    assert "PHONEBILL_KAFKA_SASL_USERNAME" not in cm and "PHONEBILL_KAFKA_SASL_PASSWORD" not in cm
    client_ids = PROD_INPUTS["secrets"]["azureKeyVault"]["clientIds"]
    for svc in SERVICES:
        dep = prod_objects.get("Deployment", component(svc))
        # The workload identity webhook injects AZURE_CLIENT_ID, AZURE_TENANT_ID,
        # AZURE_AUTHORITY_HOST and AZURE_FEDERATED_TOKEN_FILE into pods so labelled,
        # for the client id on their service account: the service's own identity.
        assert pod_spec(dep)["metadata"]["labels"]["azure.workload.identity/use"] == "true"
        sa = prod_objects.get("ServiceAccount", pod_spec(dep)["spec"]["serviceAccountName"])
        assert sa["metadata"]["annotations"]["azure.workload.identity/client-id"] == client_ids[svc]
        assert not [n for n in env(dep) if n.startswith("PHONEBILL_KAFKA_SASL")], svc


def test_production_has_no_broker_password_anywhere(prod_objects: Objects):
    """Not in a pod's environment, a Key Vault class, a synced Secret or a grant."""
    text = yaml.safe_dump_all(prod_objects.docs)
    assert "kafka-sasl-password" not in text
    assert "SASL_PASSWORD" not in text
    assert "$ConnectionString" not in text
    for spc in prod_objects.all("SecretProviderClass"):
        aliases = {yaml.safe_load(o)["objectAlias"]
                   for o in yaml.safe_load(spc["spec"]["parameters"]["objects"])["array"]}
        assert "kafka-sasl-password" not in aliases, spc["metadata"]["name"]
        assert not [d for d in spc["spec"]["secretObjects"][0]["data"] if "kafka" in d["key"]]


def test_the_migration_jobs_get_no_broker_credential_either_way(prod_objects: Objects):
    for objects in (prod_objects, Objects(render(PASSWORD, namespace="phonebill"))):
        jobs = migration_jobs(objects)
        assert set(jobs) == set(MIGRATING)
        for svc, job in jobs.items():
            assert not [n for n in env(job) if "KAFKA" in n], svc
            assert pod_spec(job)["metadata"]["labels"]["app.kubernetes.io/name"] == f"{svc}-migrate"


# ---------------------------------------------------------------- entra's requirements

@pytest.mark.parametrize("override, message", [
    ({"secrets": {"provider": "kubernetes"}}, "kafka.auth entra needs secrets.provider azure-key-vault"),
    ({"kafka": {"oauthScope": ""}}, "kafka.oauthScope is required with kafka.auth entra"),
    ({"kafka": {"securityProtocol": "sasl_plaintext"}}, "kafka.auth entra .* needs kafka.securityProtocol sasl_ssl"),
], ids=["without-key-vault", "without-a-scope", "without-tls"])
def test_entra_without_what_it_needs_fails_clearly(override, message):
    import helm_python

    with pytest.raises(helm_python.HelmRenderError, match=message):
        render(prod_values(override))


def test_entra_on_a_local_cluster_without_workload_identity_fails_clearly():
    import helm_python

    with pytest.raises(helm_python.HelmRenderError, match="needs secrets.provider azure-key-vault"):
        render({"kafka": {"securityProtocol": "sasl_ssl", "auth": "entra",
                          "oauthScope": "https://x.servicebus.windows.net/.default"}}, namespace="phonebill")


@pytest.mark.parametrize("kafka, message", [
    ({"securityProtocol": "sasl_ssl", "auth": "none"}, "set kafka.auth to password or entra"),
    ({"securityProtocol": "plaintext", "auth": "password"}, "kafka.auth password needs kafka.securityProtocol"),
])
def test_auth_and_security_protocol_must_agree(kafka, message):
    import helm_python

    with pytest.raises(helm_python.HelmRenderError, match=message):
        render({"kafka": kafka}, namespace="phonebill")


@pytest.mark.parametrize("override", [
    {"kafka": {"auth": "connectionString"}},
    {"kafka": {"oauthScope": "https://evhns-phonebill-prod-x7k2.servicebus.windows.net"}},
    {"secrets": {"grants": {"query-service": ["query-database-url", "redis-url", "kafka-sasl-password"]}}},
], ids=["unknown-mode", "scope-without-default", "password-granted-by-hand"])
def test_the_values_schema_rejects(override):
    """The broker's password is never listed in secrets.grants: the chart adds it, to the
    services alone, with kafka.auth password."""
    import helm_python

    with pytest.raises(helm_python.HelmValuesError):
        render(prod_values(override))


# ---------------------------------------------------------------- password: as before

def test_password_auth_gives_each_service_the_broker_password_and_the_jobs_none():
    objects = Objects(render(PASSWORD, namespace="phonebill"))
    cm = config(objects)
    assert cm["PHONEBILL_KAFKA_SECURITY_PROTOCOL"] == "sasl_ssl"
    assert cm["PHONEBILL_KAFKA_SASL_MECHANISM"] == "PLAIN"
    assert cm["PHONEBILL_KAFKA_SASL_USERNAME"] == "$ConnectionString"
    assert "PHONEBILL_KAFKA_OAUTH_SCOPE" not in cm
    for svc in SERVICES:
        password = env(objects.get("Deployment", component(svc)))["PHONEBILL_KAFKA_SASL_PASSWORD"]
        assert password["valueFrom"]["secretKeyRef"] == {"name": "phonebill-secrets", "key": "kafka-sasl-password"}
    # The replay Job reads the broker as the projector does.
    replay = Objects(render({**PASSWORD, "replay": {"enabled": True}}, namespace="phonebill")).get(
        "CronJob", component("projector") + "-replay")
    assert "PHONEBILL_KAFKA_SASL_PASSWORD" in env(replay)
    # Plaintext Kafka: no SASL at all.
    local = config(Objects(render({}, namespace="phonebill")))
    assert local["PHONEBILL_KAFKA_SECURITY_PROTOCOL"] == "plaintext"
    assert not [k for k in local if k.startswith(("PHONEBILL_KAFKA_SASL", "PHONEBILL_KAFKA_OAUTH"))]


def test_password_auth_with_key_vault_names_its_secret_and_reaches_the_services_alone():
    import helm_python

    values = prod_values({"kafka": {"auth": "password", "saslMechanism": "PLAIN", "saslUsername": "$ConnectionString"}})
    with pytest.raises(helm_python.HelmRenderError, match="secrets.azureKeyVault.objects.kafka-sasl-password"):
        render(values)
    values = prod_values(values, {"secrets": {"azureKeyVault": {"objects": {
        "kafka-sasl-password": "phonebill-eventhubs-connection-string"}}}})
    objects = Objects(render(values))
    for identity in list(SERVICES) + [f"{s}-migrate" for s in MIGRATING]:
        spc = objects.get("SecretProviderClass", f"{component(identity)}-key-vault")
        names = {yaml.safe_load(o)["objectName"] for o in yaml.safe_load(spc["spec"]["parameters"]["objects"])["array"]}
        assert ("phonebill-eventhubs-connection-string" in names) == (identity in SERVICES), identity
    assert "PHONEBILL_KAFKA_OAUTH_SCOPE" not in config(objects)


# ---------------------------------------------------------------- the way to Entra ID

def test_with_entra_the_services_alone_may_reach_entra_id_on_443(prod_objects: Objects):
    assert load_yaml(CHART / "values-prod.yaml")["networkPolicy"]["egress"]["entraId"] == {
        "port": 443, "cidrs": ENTRA_ID_CIDRS}
    jobs = migration_jobs(prod_objects)
    replay = prod_objects.get("CronJob", component("projector") + "-replay")
    for svc in SERVICES:
        policy = prod_objects.get("NetworkPolicy", f"{component(svc)}-entra-id")["spec"]
        assert policy["policyTypes"] == ["Egress"]
        assert policy["egress"] == [{"to": [{"ipBlock": {"cidr": c}} for c in ENTRA_ID_CIDRS],
                                     "ports": [{"protocol": "TCP", "port": 443}]}]
        selector = policy["podSelector"]
        assert selector["matchLabels"]["app.kubernetes.io/instance"] == RELEASE
        assert selects(selector, pod_spec(prod_objects.get("Deployment", component(svc)))["metadata"]["labels"])
        if svc in jobs:
            assert not selects(selector, pod_spec(jobs[svc])["metadata"]["labels"]), f"{svc}'s migration Job"
        assert selects(selector, pod_spec(replay)["metadata"]["labels"]) == (svc == "projector")
    # No other pod: not the web app, and no other policy opens 443.
    web = pod_spec(prod_objects.get("Deployment", component("web")))["metadata"]["labels"]
    for policy in prod_objects.all("NetworkPolicy"):
        if 443 in egress_ports(policy):
            assert policy["metadata"]["name"].endswith("-entra-id"), policy["metadata"]["name"]
            assert not selects(policy["spec"]["podSelector"], web)


def test_without_entra_no_pod_may_reach_443():
    values = prod_values({"kafka": {"auth": "password"}, "secrets": {"azureKeyVault": {"objects": {
        "kafka-sasl-password": "phonebill-eventhubs-connection-string"}}}})
    policies = Objects(render(values)).all("NetworkPolicy")
    assert policies
    assert not [p["metadata"]["name"] for p in policies if p["metadata"]["name"].endswith("-entra-id")]
    assert not [p["metadata"]["name"] for p in policies if 443 in egress_ports(p)]
