"""The GitOps definitions (infra/gitops/): the Argo CD project and the production
Application are valid for Argo CD's own CRDs, point at this chart with values files
that exist, sync on purpose (prune, self-heal, no empty syncs), and the project allows
exactly what the chart renders. The production render is made from the Application's
own values files, as Argo CD makes it; the image digests CI promotes end up in it.
"""

from __future__ import annotations

import subprocess
import sys

import jsonschema
import pytest
import yaml

from conftest import CHART, INFRA, PROD_NAMESPACE, RELEASE, REPO, Objects, argo_crd_schemas, load_yaml, merge_values, render
from test_chart_schema import ALL_FEATURES, _validate

GITOPS = INFRA / "gitops"
APPLICATION = GITOPS / "prod" / "application.yaml"
PROJECT = GITOPS / "project.yaml"
SET_IMAGES = GITOPS / "set_images.py"
IMAGES = ("command-service", "query-service", "projector", "kos-mock", "web")


def app() -> dict:
    return load_yaml(APPLICATION)


def project() -> dict:
    return load_yaml(PROJECT)


def application_values(*extra_files) -> dict:
    """values.yaml is the chart's; the Application's valueFiles are layered in order."""
    source = app()["spec"]["source"]
    values: dict = {}
    for f in source["helm"]["valueFiles"]:
        values = merge_values(values, load_yaml((REPO / source["path"] / f).resolve()))
    for f in extra_files:
        values = merge_values(values, load_yaml(f))
    return values


@pytest.mark.parametrize("path", [APPLICATION, PROJECT], ids=lambda p: p.name)
def test_valid_for_argo_cds_crds(path):
    doc = load_yaml(path)
    api_version, schema = argo_crd_schemas()[doc["kind"]]
    assert doc["apiVersion"] == api_version
    jsonschema.validate(doc, schema)


def test_the_crd_check_is_strict():
    doc = app()
    doc["spec"]["syncPolicy"]["automated"]["selfheal"] = True
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, argo_crd_schemas()["Application"][1])


def test_the_application_deploys_this_chart_to_production():
    spec = app()["spec"]
    source = spec["source"]
    assert (REPO / source["path"]).resolve() == CHART
    assert source["targetRevision"] == "main"
    assert source["helm"]["releaseName"] == RELEASE
    files = source["helm"]["valueFiles"]
    assert files[0] == "values-prod.yaml"
    assert [(REPO / source["path"] / f).resolve() for f in files[1:]] == [
        GITOPS / "prod" / "inputs.yaml", GITOPS / "prod" / "images.yaml"]
    assert all((REPO / source["path"] / f).resolve().is_file() for f in files)
    assert spec["destination"] == {"server": "https://kubernetes.default.svc", "namespace": PROD_NAMESPACE}
    assert spec["project"] == project()["metadata"]["name"]
    assert source["repoURL"] in project()["spec"]["sourceRepos"]
    assert spec["destination"] in project()["spec"]["destinations"]


def test_the_sync_policy_is_chosen_on_purpose():
    policy = app()["spec"]["syncPolicy"]
    assert policy["automated"] == {"prune": True, "selfHeal": True, "allowEmpty": False}
    assert {"PruneLast=true", "CreateNamespace=true"} <= set(policy["syncOptions"])
    assert policy["retry"]["limit"] >= 1
    # Deleting the Application must not delete production.
    assert "finalizers" not in app()["metadata"]


def test_the_project_allows_exactly_what_the_chart_renders():
    def group_kind(doc):
        api = doc["apiVersion"]
        return (api.split("/")[0] if "/" in api else "", doc["kind"])

    rendered = {group_kind(d) for d in render(merge_values(application_values(), ALL_FEATURES))}
    allowed = {(r["group"], r["kind"]) for r in project()["spec"]["namespaceResourceWhitelist"]}
    assert allowed == rendered
    assert project()["spec"]["clusterResourceWhitelist"] == [{"group": "", "kind": "Namespace"}]


def test_the_applications_render_is_valid_and_released_by_rollouts():
    docs = render(application_values())
    for doc in docs:
        _validate(doc)
    objs = Objects(docs)
    assert len(objs.all("Rollout")) == 4 and len(objs.all("Job")) == 3
    assert all(d["metadata"]["namespace"] == PROD_NAMESPACE for d in docs)


def set_images(tmp_path, digests: dict[str, str], tag="3f9c2ab") -> subprocess.CompletedProcess:
    folder = tmp_path / "digests"
    folder.mkdir(exist_ok=True)
    for image, digest in digests.items():
        (folder / f"{image}.digest").write_text(digest + "\n")
    target = tmp_path / "images.yaml"
    target.write_text((GITOPS / "prod" / "images.yaml").read_text())
    return subprocess.run([sys.executable, str(SET_IMAGES), "--tag", tag, "--digests", str(folder), str(target)],
                          capture_output=True, text=True)


def test_promoted_digests_are_what_production_runs(tmp_path):
    digests = {image: "sha256:" + f"{n:x}" * 64 for n, image in enumerate(IMAGES, start=1)}
    result = set_images(tmp_path, digests)
    assert result.returncode == 0, result.stderr
    written = yaml.safe_load((tmp_path / "images.yaml").read_text())
    # Same shape as the committed file, so the chart reads it the same way.
    assert written.keys() == load_yaml(GITOPS / "prod" / "images.yaml").keys()
    objs = Objects(render(application_values(tmp_path / "images.yaml")))
    registry = load_yaml(GITOPS / "prod" / "inputs.yaml")["image"]["registry"]
    for image in IMAGES:
        name = f"{RELEASE}-{image}"
        containers = objs.get("Deployment", name)["spec"]["template"]["spec"]["containers"]
        assert containers[0]["image"] == f"{registry}/phonebill/{image}@{digests[image]}"


@pytest.mark.parametrize("case, digests, message", [
    ("one missing", {i: "sha256:" + "a" * 64 for i in IMAGES[:-1]}, "no digest for web"),
    ("not a digest", {**{i: "sha256:" + "a" * 64 for i in IMAGES}, "projector": "latest"}, "not a sha256 digest"),
    ("unknown image", {**{i: "sha256:" + "a" * 64 for i in IMAGES}, "billing": "sha256:" + "a" * 64},
     "unknown images billing"),
])
def test_set_images_refuses_an_incomplete_release(tmp_path, case, digests, message):
    before = (GITOPS / "prod" / "images.yaml").read_text()
    result = set_images(tmp_path, digests)
    assert result.returncode != 0 and message in result.stderr, result.stderr
    assert (tmp_path / "images.yaml").read_text() == before  # nothing written


def test_set_images_refuses_a_tag_that_is_not_a_commit(tmp_path):
    result = set_images(tmp_path, {i: "sha256:" + "a" * 64 for i in IMAGES}, tag="latest")
    assert result.returncode != 0 and "--tag must be a commit id" in result.stderr
