"""Shared fixtures: the chart rendered offline (helm-python-sdk wraps Helm's own Go
library, so no helm binary and no cluster), parsed into Kubernetes objects.

The production render layers values-prod.yaml and then PROD_INPUTS over the chart's
values.yaml, exactly as the runbook's deploy does with `-f values-prod.yaml -f
prod-inputs.yaml` (the second file is `terraform output -raw helm_values`).
"""

from __future__ import annotations

import copy
import os
import re
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

INFRA = Path(__file__).resolve().parent.parent
REPO = INFRA.parent
CHART = INFRA / "helm" / "phonebill"
DOCKER = INFRA / "docker"
AZURE = INFRA / "azure"

RELEASE = "phonebill"
PROD_NAMESPACE = "phonebill-prod"
SERVICES = ("command-service", "query-service", "projector", "kos-mock")

# The keys of infra/azure/outputs.tf `helm_values`, with made-up values.
PROD_INPUTS = {
    "image": {"registry": "acrphonebillprodx7k2.azurecr.io", "tag": "3f9c2ab"},
    "kafka": {
        "brokers": "evhns-phonebill-prod-x7k2.servicebus.windows.net:9093",
        "oauthScope": "https://evhns-phonebill-prod-x7k2.servicebus.windows.net/.default",
    },
    "secrets": {
        "azureKeyVault": {
            "name": "kv-phonebill-prod-x7k2",
            "tenantId": "00000000-0000-0000-0000-000000000001",
            "clientIds": {
                "command-service": "00000000-0000-0000-0000-000000000011",
                "query-service": "00000000-0000-0000-0000-000000000012",
                "projector": "00000000-0000-0000-0000-000000000013",
                "kos-mock": "00000000-0000-0000-0000-000000000014",
                "command-service-migrate": "00000000-0000-0000-0000-000000000021",
                "projector-migrate": "00000000-0000-0000-0000-000000000023",
                "kos-mock-migrate": "00000000-0000-0000-0000-000000000024",
            },
        }
    },
    "ingress": {"host": "phonebill.example.com"},
    "jwt": {"verifyKeys": "jwt1:MCowBQYDK2VwAyEAt2z5bwnr5t4vLuOhEEyxPdbt59kjnA6phJxfuWv4L9E="},
    "kosSigning": {"verifyKeys": "kos1:MCowBQYDK2VwAyEAt2z5bwnr5t4vLuOhEEyxPdbt59kjnA6phJxfuWv4L9E="},
}


def merge_values(base: dict, override: dict) -> dict:
    """Helm's rule for several -f files: maps merge key by key, anything else is
    replaced, and a null value means the key is absent."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_values(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return _drop_nulls(out)


def _drop_nulls(value):
    if isinstance(value, dict):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    return value


def load_yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text()) or {}


def prod_values(*extra: dict) -> dict:
    values = merge_values(load_yaml(CHART / "values-prod.yaml"), PROD_INPUTS)
    for e in extra:
        values = merge_values(values, e)
    return values


_chart = None


def chart():
    global _chart
    if _chart is None:
        import helm_python

        _chart = helm_python.Chart.load(str(CHART))
    return _chart


def render(values: dict, namespace: str = PROD_NAMESPACE) -> list[dict]:
    """Render the chart and return every Kubernetes object it produces."""
    manifests = chart().render(values=values, name=RELEASE, namespace=namespace)
    docs = []
    for template, text in sorted(manifests.items()):
        if not template.endswith((".yaml", ".yml")):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("metadata", {}).setdefault("annotations", {})
                docs.append(doc)
    return docs


class Objects:
    """Rendered objects, looked up by kind and name."""

    def __init__(self, docs: list[dict]):
        self.docs = docs

    def kinds(self) -> set[str]:
        return {d["kind"] for d in self.docs}

    def all(self, kind: str) -> list[dict]:
        return [d for d in self.docs if d["kind"] == kind]

    def get(self, kind: str, name: str) -> dict:
        found = [d for d in self.all(kind) if d["metadata"]["name"] == name]
        assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
        return found[0]

    def maybe(self, kind: str, name: str) -> dict | None:
        found = [d for d in self.all(kind) if d["metadata"]["name"] == name]
        return found[0] if found else None

    def container(self, deployment: str) -> dict:
        spec = self.get("Deployment", deployment)["spec"]["template"]["spec"]
        assert len(spec["containers"]) == 1
        return spec["containers"][0]


_UNITS = {"": 1, "m": Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(q) -> Decimal:
    """A Kubernetes quantity ("1500m", "1.5Gi") as a number."""
    m = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(q))
    assert m, f"not a quantity: {q!r}"
    return Decimal(m.group(1)) * _UNITS[m.group(2)]


def component(service: str) -> str:
    return f"{RELEASE}-{service}"


@pytest.fixture(scope="session")
def local_objects() -> Objects:
    return Objects(render({}, namespace="phonebill"))


@pytest.fixture(scope="session")
def prod_objects() -> Objects:
    return Objects(render(prod_values()))


@pytest.fixture(scope="session")
def prod_values_merged() -> dict:
    """values.yaml + values-prod.yaml + inputs, as the release will see them."""
    return chart().merge_values(prod_values())


# The CRDs of Argo Rollouts and Argo CD, from the projects' own Go modules (run.sh
# downloads them into the tools cache and exports where they are).
ARGO_CRDS = {
    "PHONEBILL_ARGO_ROLLOUTS_DIR": ("rollout-crd.yaml", "analysis-template-crd.yaml"),
    "PHONEBILL_ARGO_CD_DIR": ("application-crd.yaml", "appproject-crd.yaml"),
}


def _strict(schema):
    """A CRD's structural schema prunes unknown fields; here they are errors, as
    kubernetes-validate's strict mode makes them for built-in kinds."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


_argo = None


def argo_crd_schemas() -> dict[str, tuple[str, dict]]:
    """kind -> (apiVersion, JSON schema of the whole object), for Argo's kinds."""
    global _argo
    if _argo is None:
        _argo = {}
        for env, files in ARGO_CRDS.items():
            root = os.environ.get(env)
            assert root, f"{env} is not set: run the tests through infra/tests/run.sh"
            for name in files:
                crd = load_yaml(Path(root) / "manifests" / "crds" / name)
                group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
                [version] = [v for v in crd["spec"]["versions"] if v.get("served") and v.get("storage")]
                schema = _strict(version["schema"]["openAPIV3Schema"])
                schema["properties"]["metadata"] = {"type": "object", "required": ["name"]}
                _argo[kind] = (f"{group}/{version['name']}", schema)
    return _argo
