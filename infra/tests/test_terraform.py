"""infra/azure: formatted, parseable, carrying the design's numbers, and in step with
the Helm chart (subnets vs network policies, node pool vs tolerations, topics vs
consumer scaling, service accounts vs federated credentials, Key Vault names).

Offline: no provider is downloaded, so `terraform validate` is not run here (see
infra/README.md); `terraform fmt` needs no provider and is run when the binary exists.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from decimal import Decimal

import hcl2
import pytest

from conftest import AZURE, REPO, SERVICES, Objects, component, quantity


# ---------------------------------------------------------------- parsing

def _is_block(value) -> bool:
    # python-hcl2 wraps every attribute of a block body in a list; object literals are raw.
    return isinstance(value, dict) and all(
        isinstance(v, list) for k, v in value.items() if not k.startswith("__"))


def _body(body: dict) -> dict:
    """A block body with attributes unwrapped and nested blocks turned into dicts
    (or lists of dicts when the block repeats)."""
    out = {}
    for key, value in body.items():
        if key.startswith("__"):
            continue
        if value and all(_is_block(v) for v in value):
            out[key] = _body(value[0]) if len(value) == 1 else [_body(v) for v in value]
        else:
            out[key] = value[0] if len(value) == 1 else value
    return out


def load_tf():
    locals_, variables, resources, outputs, ephemerals = {}, {}, {}, {}, {}
    for path in sorted(AZURE.glob("*.tf")):
        with path.open() as f:
            doc = hcl2.load(f)
        for block in doc.get("locals", []):
            locals_.update(_body(block))
        for block in doc.get("variable", []):
            for name, body in block.items():
                variables[name] = _body(body).get("default")
        for kind, into in (("resource", resources), ("ephemeral", ephemerals)):
            for block in doc.get(kind, []):
                for rtype, by_name in block.items():
                    for name, body in by_name.items():
                        into.setdefault(rtype, {})[name] = _body(body)
        for block in doc.get("output", []):
            for name, body in block.items():
                outputs[name] = _body(body)
    return locals_, variables, resources, outputs, ephemerals


LOCALS, VARIABLES, RESOURCES, OUTPUTS, EPHEMERAL = load_tf()


def resolve(value):
    """Resolve "${local.a.b}" and "${var.x}" (its default) references."""
    if isinstance(value, str):
        m = re.fullmatch(r"\$\{(local|var)\.([\w.]+)\}", value)
        if m:
            scope = LOCALS if m.group(1) == "local" else VARIABLES
            cur = scope
            for part in m.group(2).split("."):
                cur = cur[part]
            return resolve(cur)
    if isinstance(value, list):
        return [resolve(v) for v in value]
    return value


def res(rtype: str, name: str) -> dict:
    return RESOURCES[rtype][name]


def blocks(body: dict, key: str) -> list[dict]:
    v = body.get(key, [])
    return v if isinstance(v, list) else [v]


# ---------------------------------------------------------------- hygiene

def test_terraform_fmt():
    exe = shutil.which("terraform")
    if not exe:
        pytest.skip("no terraform binary on PATH (optional; HCL is still parsed below)")
    result = subprocess.run([exe, "fmt", "-check", "-recursive", "-diff", str(AZURE)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_pinned_providers():
    text = (AZURE / "versions.tf").read_text()
    assert re.search(r'"hashicorp/azurerm"[^}]*version\s*=\s*"~> 4\.\d+"', text)
    assert 'required_version = ">= 1.11.0"' in text


# ---------------------------------------------------------------- the design's numbers

def test_network():
    assert res("azurerm_virtual_network", "main")["address_space"] == ["10.0.0.0/16"]
    cidrs = LOCALS["subnet_cidrs"]
    # Design 4.1.1 subnets.
    assert cidrs["application"] == "10.0.1.0/24"
    assert cidrs["database"] == "10.0.2.0/24"
    assert cidrs["cache"] == "10.0.3.0/24"
    assert cidrs["gateway"] == "10.0.4.0/24"
    assert res("azurerm_subnet", "gateway")["name"] == "ApplicationGatewaySubnet"
    assert res("azurerm_subnet", "application")["service_endpoints"] == ["Microsoft.ContainerRegistry"]
    delegation = res("azurerm_subnet", "database")["delegation"]
    assert delegation["service_delegation"]["name"] == "Microsoft.DBforPostgreSQL/flexibleServers"
    for name in ("application", "database", "cache", "gateway", "endpoints", "pods"):
        assert resolve(res("azurerm_subnet", name)["address_prefixes"]) == [cidrs[name]]


def test_aks():
    aks = res("azurerm_kubernetes_cluster", "main")
    assert resolve(aks["kubernetes_version"]) == "1.29"
    assert aks["sku_tier"] == "Standard"
    assert aks["private_cluster_enabled"] is True
    assert aks["workload_identity_enabled"] is True and aks["oidc_issuer_enabled"] is True
    assert aks["network_profile"]["network_plugin"] == "azure"
    assert aks["network_profile"]["network_policy"] == "azure"
    assert aks["key_vault_secrets_provider"]["secret_rotation_enabled"] is True
    assert "gateway_id" in aks["ingress_application_gateway"]
    assert aks["azure_active_directory_role_based_access_control"]["azure_rbac_enabled"] is True
    system = aks["default_node_pool"]
    assert (system["vm_size"], system["node_count"], system["min_count"], system["max_count"]) == (
        "Standard_D2s_v3", 3, 3, 5)  # design 3.1.2 system pool
    assert resolve(system["zones"]) == ["1", "2", "3"]
    app = res("azurerm_kubernetes_cluster_node_pool", "application")
    assert resolve(app["vm_size"]) == "Standard_D4s_v3"  # design 3.1.2 application pool
    assert (resolve(app["min_count"]), resolve(app["max_count"])) == (3, 10)
    assert resolve(app["node_count"]) == 3
    assert resolve(app["zones"]) == ["1", "2", "3"]
    assert resolve(app["node_taints"]) == ["application-workload=true:NoSchedule"]
    assert resolve(app["node_labels"]) == {"workload": "application"}


def test_app_gateway_and_waf():
    agw = res("azurerm_application_gateway", "main")
    assert agw["sku"]["tier"] == "WAF_v2"
    assert agw["autoscale_configuration"]["min_capacity"] == 2  # design 4.2.1 capacity 2
    assert resolve(agw["zones"]) == ["1", "2", "3"]
    private = [f for f in blocks(agw, "frontend_ip_configuration") if f["name"] == "private"][0]
    assert resolve(private["private_ip_address"]) == "10.0.4.10"
    waf = res("azurerm_web_application_firewall_policy", "main")
    assert waf["policy_settings"]["mode"] == "Prevention"
    sets = {(s["type"], s["version"]) for s in blocks(waf["managed_rules"], "managed_rule_set")}
    assert ("OWASP", "3.2") in sets
    rate = waf["custom_rules"]
    assert (rate["rule_type"], rate["rate_limit_threshold"], rate["rate_limit_duration"],
            rate["group_rate_limit_by"], rate["action"]) == ("RateLimitRule", 100, "OneMin", "ClientAddr", "Block")


def test_postgresql():
    pg = res("azurerm_postgresql_flexible_server", "main")
    assert pg["sku_name"] == "GP_Standard_D4s_v3"  # design 5.1.1
    assert pg["storage_mb"] == 256 * 1024
    assert pg["high_availability"]["mode"] == "ZoneRedundant"
    assert pg["backup_retention_days"] == 35
    assert pg["geo_redundant_backup_enabled"] is True
    assert pg["public_network_access_enabled"] is False
    assert "administrator_password" not in pg, "write-only password only (kept out of the state)"
    cfg = {r["name"]: r["value"] for r in RESOURCES["azurerm_postgresql_flexible_server_configuration"].values()}
    assert cfg["require_secure_transport"] == "on"
    assert cfg["ssl_min_protocol_version"] == "TLSv1.2"


def test_redis():
    r = res("azurerm_redis_cache", "main")
    assert (r["sku_name"], r["family"], r["capacity"]) == ("Premium", "P", 2)  # design 5.2.1 P2
    assert r["shard_count"] == 3
    # One replica per shard is Premium's default; the API refuses more with clustering.
    assert "replicas_per_primary" not in r and "replicas_per_master" not in r
    assert r["non_ssl_port_enabled"] is False and r["minimum_tls_version"] == "1.2"
    assert r["public_network_access_enabled"] is False
    assert resolve(r["zones"]) == ["1", "2", "3"]
    conf = r["redis_configuration"]
    assert conf["authentication_enabled"] is True
    assert conf["rdb_backup_enabled"] is True and conf["rdb_backup_frequency"] == 60
    st = res("azurerm_storage_account", "redis_backup")
    assert st["blob_properties"]["delete_retention_policy"]["days"] == 7  # design 5.3.1 rdb retention 7 days


def test_key_vault_and_monitoring():
    kv = res("azurerm_key_vault", "main")
    assert kv["sku_name"] == "premium" and kv["purge_protection_enabled"] is True
    assert kv["rbac_authorization_enabled"] is True
    assert kv["network_acls"]["default_action"] == "Deny"
    law = res("azurerm_log_analytics_workspace", "main")
    assert (law["retention_in_days"], law["daily_quota_gb"]) == (90, 5)  # design 8.1.1


def test_event_hubs():
    ns = res("azurerm_eventhub_namespace", "main")
    assert ns["sku"] == "Standard"  # Kafka endpoint, no transactions needed
    assert ns["public_network_access_enabled"] is False and ns["minimum_tls_version"] == "1.2"
    topics = LOCALS["topics"]
    assert set(topics) == {
        "phonebill.product-change", "kos.product-change-results", "kos.billing",
        "phonebill.dead-letter", "phonebill.bill-inquiries"}
    assert {t["partitions"] for t in topics.values()} == {12}
    groups = {g for t in topics.values() for g in t["consumer_groups"]}
    assert groups == {"kos", "projector", "command-service"}


# ---------------------------------------------------------------- who may use which event hub

TOPIC_ACCESS_FILE = REPO / "events" / "topic-access.json"
SENDER, RECEIVER = "Azure Event Hubs Data Sender", "Azure Event Hubs Data Receiver"


def topic_access() -> dict:
    return json.loads(TOPIC_ACCESS_FILE.read_text())["topics"]


def evaluated_topic_grants(tmp_path) -> dict:
    """local.topic_grants as Terraform computes it: topic_access.tf evaluated by
    `terraform console` (no provider needed), reading the table at the same relative
    path from a copy of the tree."""
    exe = shutil.which("terraform")
    if not exe:
        pytest.skip("no terraform binary on PATH (the expression's shape is still checked below)")
    module = tmp_path / "infra" / "azure"
    module.mkdir(parents=True)
    shutil.copy(AZURE / "topic_access.tf", module)
    (tmp_path / "events").mkdir()
    shutil.copy(TOPIC_ACCESS_FILE, tmp_path / "events")
    result = subprocess.run([exe, "console"], input="jsonencode(local.topic_grants)\n", cwd=module,
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1"})
    assert result.returncode == 0, result.stderr
    return json.loads(json.loads(result.stdout.strip().splitlines()[-1]))


def test_the_access_table_names_exactly_the_event_hubs_and_the_services():
    """events/topic-access.json is the one list of who may send and listen; Terraform
    refuses a plan where it and the event hubs disagree."""
    table = topic_access()
    assert set(table) == set(LOCALS["topics"])
    named = {s for access in table.values() for s in access["senders"] + access["listeners"]}
    assert named <= set(LOCALS["services"]), named - set(LOCALS["services"])
    hubs = res("azurerm_eventhub", "topics")
    conditions = [p["condition"] for p in blocks(hubs["lifecycle"], "precondition")]
    assert "${toset(keys(local.topic_access)) == toset(keys(local.topics))}" in conditions
    assert any("contains(local.services,grant.service)" in c.replace(" ", "") for c in conditions)
    text = (AZURE / "topic_access.tf").read_text()
    assert 'jsondecode(file("${path.module}/../../events/topic-access.json")).topics' in text
    # Locals alone: the test below evaluates the file by itself.
    assert not re.search(r"^(resource|data|module|provider)\b", text, re.MULTILINE)


def test_each_service_may_send_and_listen_exactly_where_the_table_says(tmp_path):
    """Data Sender on the event hubs a service publishes to, Data Receiver on those it
    consumes, each scoped to one event hub; nothing on any other hub, and nothing for the
    migration Jobs' identities."""
    grant = res("azurerm_role_assignment", "event_hubs")
    assert grant["for_each"] == "${local.topic_grants}"
    assert grant["scope"] == "${azurerm_eventhub.topics[each.value.topic].id}"
    assert grant["role_definition_name"] == "${each.value.role}"
    assert grant["principal_id"] == "${azurerm_user_assigned_identity.services[each.value.service].principal_id}"
    # No other role assignment reaches the namespace or an event hub.
    others = [name for name, r in RESOURCES["azurerm_role_assignment"].items()
              if name != "event_hubs" and "eventhub" in str(r["scope"])]
    assert not others, others

    granted: dict[tuple[str, str], set[str]] = {}
    for g in evaluated_topic_grants(tmp_path).values():
        assert g["topic"] in LOCALS["topics"], g
        granted.setdefault((g["service"], g["role"]), set()).add(g["topic"])
    table = topic_access()
    for identity in LOCALS["secret_grants"]:
        sends = {t for t, a in table.items() if identity in a["senders"]}
        listens = {t for t, a in table.items() if identity in a["listeners"]}
        assert granted.get((identity, SENDER), set()) == sends, identity
        assert granted.get((identity, RECEIVER), set()) == listens, identity
    assert {role for _, role in granted} == {SENDER, RECEIVER}
    assert not {svc for svc, _ in granted} - set(LOCALS["services"])
    # A few rows spelt out: who publishes what, and who may read the dead letters (nobody).
    assert granted[("query-service", SENDER)] == {"phonebill.bill-inquiries"}
    assert ("query-service", RECEIVER) not in granted
    assert granted[("kos-mock", SENDER)] == {"kos.product-change-results", "kos.billing", "phonebill.dead-letter"}
    assert not any("phonebill.dead-letter" in topics for (_, role), topics in granted.items() if role == RECEIVER)


def test_event_hubs_takes_no_shared_key():
    """Local (SAS) authentication is off and no key exists to hand out: no authorization
    rule, no connection string in Key Vault, no identity granted one."""
    ns = res("azurerm_eventhub_namespace", "main")
    assert ns["local_authentication_enabled"] is False
    for rtype in ("azurerm_eventhub_namespace_authorization_rule", "azurerm_eventhub_authorization_rule"):
        assert rtype not in RESOURCES, rtype
    for name, secret in RESOURCES["azurerm_key_vault_secret"].items():
        assert "eventhub" not in (str(secret.get("value", "")) + secret["name"]).lower(), name
    granted = {s for names in LOCALS["secret_grants"].values() for s in names}
    assert not [s for s in granted if "eventhub" in s or "connection-string" in s], granted


# ---------------------------------------------------------------- in step with the chart

def test_network_policy_cidrs_are_the_subnets(prod_values_merged):
    cidrs = LOCALS["subnet_cidrs"]
    np = prod_values_merged["networkPolicy"]
    assert np["ingress"]["publicFromCidrs"] == [cidrs["gateway"]]
    assert np["egress"]["postgres"]["cidrs"] == [cidrs["database"]]
    assert np["egress"]["redis"]["cidrs"] == [cidrs["cache"]]
    assert np["egress"]["kafka"]["cidrs"] == [cidrs["endpoints"]]
    # Event Hubs sits behind its private endpoint in that subnet.
    pe = res("azurerm_private_endpoint", "eventhubs")
    assert pe["subnet_id"] == "${azurerm_subnet.endpoints.id}"
    assert res("azurerm_private_endpoint", "redis")["subnet_id"] == "${azurerm_subnet.cache.id}"


def test_node_pool_matches_the_chart_placement(prod_values_merged):
    pool = LOCALS["application_pool"]
    key, rest = pool["taint"].split("=", 1)
    value, effect = rest.split(":")
    assert {"key": key, "operator": "Equal", "value": value, "effect": effect} in \
        prod_values_merged["scheduling"]["tolerations"]
    assert prod_values_merged["scheduling"]["nodeSelector"] == pool["labels"]


def test_partitions_match_the_chart(prod_values_merged):
    assert {t["partitions"] for t in LOCALS["topics"].values()} == {prod_values_merged["kafka"]["partitions"]}


def test_federated_service_accounts_are_the_charts(prod_objects: Objects):
    assert LOCALS["services"] == list(SERVICES)
    credential = res("azurerm_federated_identity_credential", "services")
    assert credential["subject"] == "system:serviceaccount:${var.kubernetes_namespace}:${local.chart_fullname}-${each.key}"
    # Each service account (the services' and the migration Jobs') is federated with an
    # identity of its own: one per reader of secrets.
    assert res("azurerm_user_assigned_identity", "services")["for_each"] == "${toset(keys(local.secret_grants))}"
    assert credential["for_each"] == "${toset(keys(local.secret_grants))}"
    assert credential["user_assigned_identity_id"] == "${azurerm_user_assigned_identity.services[each.key].id}"
    namespace = VARIABLES["kubernetes_namespace"]
    release = VARIABLES["helm_release_name"]
    for svc in SERVICES:
        sa = prod_objects.get("ServiceAccount", f"{release}-{svc}")
        assert sa["metadata"]["namespace"] == namespace
        dep = prod_objects.get("Deployment", component(svc))
        assert dep["spec"]["template"]["spec"]["serviceAccountName"] == sa["metadata"]["name"]
    accounts = {sa["metadata"]["name"] for sa in prod_objects.all("ServiceAccount")}
    assert accounts == {f"{release}-{identity}" for identity in LOCALS["secret_grants"]}


def key_vault_secret_names() -> set[str]:
    """Every secret Terraform writes, with a for_each over the service logins expanded."""
    names = set()
    for r in RESOURCES["azurerm_key_vault_secret"].values():
        if "${each.key}" in r["name"]:
            assert r["for_each"] == "${local.service_logins}"
            names |= {r["name"].replace("${each.key}", key) for key in LOCALS["service_logins"]}
        else:
            names.add(r["name"])
    return names


def test_key_vault_secret_names_match_the_chart(prod_values_merged):
    tf_names = key_vault_secret_names()
    chart_names = set(prod_values_merged["secrets"]["azureKeyVault"]["objects"].values())
    assert tf_names == chart_names


def test_each_identity_may_read_the_secrets_the_chart_grants_its_service_and_no_others(prod_values_merged):
    """Key Vault RBAC per secret: the role assignment's scope is one secret, for one
    service's identity, exactly as the chart's secrets.grants."""
    objects = prod_values_merged["secrets"]["azureKeyVault"]["objects"]
    chart = {svc: {objects[alias] for alias in grants}
             for svc, grants in prod_values_merged["secrets"]["grants"].items()}
    assert {svc: set(names) for svc, names in LOCALS["secret_grants"].items()} == chart
    grant = res("azurerm_role_assignment", "service_secrets")
    assert grant["scope"] == "${azurerm_key_vault.main.id}/secrets/${each.value.secret}"
    assert grant["role_definition_name"] == "Key Vault Secrets User"
    assert grant["principal_id"] == "${azurerm_user_assigned_identity.services[each.value.service].principal_id}"
    # No identity reads the whole vault (the gateway reads its certificate alone).
    gateway = res("azurerm_role_assignment", "app_gateway_key_vault")
    assert gateway["scope"].startswith("${azurerm_key_vault.main.id}/secrets/${split(")
    vault_wide = [r for r in RESOURCES["azurerm_role_assignment"].values()
                  if r["scope"] == "${azurerm_key_vault.main.id}" and "Secrets User" in r["role_definition_name"]]
    assert not vault_wide, vault_wide


def test_each_service_login_is_its_own_role_with_a_password_of_its_own_never_stored():
    url = RESOURCES["azurerm_key_vault_secret"]["service_database_url"]
    assert LOCALS["service_logins"] == {
        "command": "phonebill_command", "projector": "phonebill_projector", "kos": "phonebill_kos"}
    assert url["value_wo"].startswith('${format("postgres://%s:%s@%s:5432/%s?sslmode=require",each.value,')
    assert "ephemeral.random_password.service_login[each.key].result" in url["value_wo"]
    assert url["value_wo_version"] == "${var.service_login_password_version}"
    assert "value" not in url
    # The administrator's URL reaches the migration Jobs alone.
    holders = {identity for identity, names in LOCALS["secret_grants"].items() if "phonebill-database-url" in names}
    assert holders == {"command-service-migrate", "projector-migrate", "kos-mock-migrate"}


def test_query_service_login_is_the_read_only_role_with_the_password_the_projector_sets():
    url = RESOURCES["azurerm_key_vault_secret"]["query_database_url"]
    password = RESOURCES["azurerm_key_vault_secret"]["query_role_password"]
    assert url["value_wo"].startswith('${format("postgres://phonebill_query:%s@%s:5432/%s?sslmode=require"')
    assert "ephemeral.random_password.query_role.result" in url["value_wo"]
    assert password["value_wo"] == "${ephemeral.random_password.query_role.result}"
    for secret in (url, password):
        assert secret["value_wo_version"] == "${var.query_role_password_version}"


def test_the_token_signing_key_is_ed25519_as_the_services_read_it():
    """service_kit::auth takes `kid:<base64 DER>`: PKCS#8 for the private key (Key Vault,
    command-service), SubjectPublicKeyInfo for the public ones (the chart's jwt.verifyKeys,
    with the retired keys still listed during a rotation)."""
    key = RESOURCES["tls_private_key"]["jwt_signing"]
    assert key["algorithm"] == "ED25519"
    secret = RESOURCES["azurerm_key_vault_secret"]["jwt_signing_key"]
    assert secret["value"] == "${local.jwt_signing_key}"
    text = (AZURE / "keyvault.tf").read_text()
    assert re.search(r'jwt_signing_key = format\("k%d:%s", var\.jwt_signing_key_version,\s*'
                     r'replace\(replace\(tls_private_key\.jwt_signing\.private_key_pem', text)
    assert re.search(r'jwt_verify_keys = join\(",", concat\(\[format\("k%d:%s", var\.jwt_signing_key_version,\s*'
                     r'replace\(replace\(tls_private_key\.jwt_signing\.public_key_pem.*var\.jwt_previous_verify_keys', text)


def test_the_kos_signing_key_is_ed25519_as_the_services_read_it():
    """service_kit::signed takes `kid:<base64 DER>`: PKCS#8 for the private key (Key
    Vault, kos-mock), SubjectPublicKeyInfo for the public one (the chart's verifyKeys)."""
    key = RESOURCES["tls_private_key"]["kos_signing"]
    assert key["algorithm"] == "ED25519"
    secret = RESOURCES["azurerm_key_vault_secret"]["kos_signing_key"]
    assert secret["value"] == "${local.kos_signing_key}"
    text = (AZURE / "keyvault.tf").read_text()
    for half, pem in (("kos_signing_key", "private_key_pem"), ("kos_verify_key", "public_key_pem")):
        assert re.search(rf'{half} = format\("kos%d:%s", var\.kos_signing_key_version,\s*'
                         rf'replace\(replace\(tls_private_key\.kos_signing\.{pem}', text), half


def test_helm_values_output_has_every_installation_input():
    expr = OUTPUTS["helm_values"]["value"]
    for key in ("registry", "brokers", "oauthScope", "azureKeyVault", "tenantId", "clientIds", "host", "jwt",
                "verifyKeys"):
        assert re.search(rf"'{key}'|\b{key}\b", expr), key
    assert ":9093" in expr
    # The tokens are for the namespace the brokers name.
    namespace = "${azurerm_eventhub_namespace.main.name}.servicebus.windows.net"
    assert f"https://{namespace}/.default" in expr and f"{namespace}:9093" in expr


# ---------------------------------------------------------------- capacity

# Allocatable on a Standard_D4s_v3 node after AKS reservations (approximate).
NODE_ALLOCATABLE = {"cpu": Decimal("3.8"), "memory": Decimal(12 * 2**30)}


def test_the_application_pool_holds_the_autoscaled_maximum(prod_objects: Objects):
    """Every HPA at its maximum must fit on the application pool at its maximum,
    and every HPA at its minimum on the pool's minimum."""
    pool = LOCALS["application_pool"]
    for bound, nodes in (("maxReplicas", pool["max_count"]), ("minReplicas", pool["min_count"])):
        need = {"cpu": Decimal(0), "memory": Decimal(0)}
        for hpa in prod_objects.all("HorizontalPodAutoscaler"):
            req = prod_objects.container(hpa["spec"]["scaleTargetRef"]["name"])["resources"]["requests"]
            for k in need:
                need[k] += hpa["spec"][bound] * quantity(req[k])
        for k in need:
            assert need[k] <= nodes * NODE_ALLOCATABLE[k], (bound, k, need[k])


def test_ci_pushes_with_a_federated_identity_that_may_only_push():
    """The workflow logs in with OIDC: GitHub's token for main is exchanged for the CI
    identity, which holds AcrPush on the registry and no other role."""
    cred = res("azurerm_federated_identity_credential", "ci_main")
    assert cred["issuer"] == "https://token.actions.githubusercontent.com"
    assert cred["subject"] == "repo:${var.github_repository}:ref:refs/heads/main"
    assert cred["user_assigned_identity_id"] == "${azurerm_user_assigned_identity.ci.id}"
    roles = [r for r in RESOURCES["azurerm_role_assignment"].values()
             if "azurerm_user_assigned_identity.ci." in str(r["principal_id"])]
    assert [(r["role_definition_name"], r["scope"]) for r in roles] == [
        ("AcrPush", "${azurerm_container_registry.main.id}")]


def test_the_ci_variables_output_is_what_the_workflow_reads():
    workflow = (REPO / ".github" / "workflows" / "ci.yaml").read_text()
    read = set(re.findall(r"\$\{\{ vars\.([A-Z_]+) \}\}", workflow))
    text = (AZURE / "outputs.tf").read_text()
    block = text.split('output "ci_variables"', 1)[1].split("\n}\n", 1)[0]
    written = set(re.findall(r"^\s+([A-Z_]+)\s+=", block, re.MULTILINE))
    assert read == written
