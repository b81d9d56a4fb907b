"""The CI workflow (.github/workflows/ci.yaml), offline: actionlint (with shellcheck
over its scripts) and checkov's GitHub Actions rules find nothing, and table tests hold
the delivery chain the design names: every image built, scanned by Trivy with high and
critical findings failing, an SBOM, attestations, a push by digest with OIDC only, and
the digests promoted into the GitOps folder by a pull request.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
import subprocess

import pytest
import yaml

from conftest import DOCKER, REPO, load_yaml
from test_checkov import assert_clean, checkov, failures

WORKFLOWS = REPO / ".github" / "workflows"
CI = WORKFLOWS / "ci.yaml"
IMAGES = ["command-service", "query-service", "projector", "kos-mock", "web"]


def workflow() -> dict:
    # PyYAML reads the key `on` as True (YAML 1.1); name it back.
    doc = load_yaml(CI)
    doc["on"] = doc.pop(True)
    return doc


def steps(job: str) -> list[dict]:
    return workflow()["jobs"][job]["steps"]


def step_using(job: str, action: str) -> list[dict]:
    return [s for s in steps(job) if s.get("uses", "").split("@")[0] == action]


def actionlint(*paths) -> subprocess.CompletedProcess:
    exe = shutil.which("actionlint")
    assert exe, "actionlint is built by infra/tests/run.sh"
    assert shutil.which("shellcheck"), "shellcheck comes from infra/tests/requirements.txt"
    return subprocess.run([exe, "-no-color", *map(str, paths)], capture_output=True, text=True, cwd=REPO, timeout=120)


def test_actionlint_finds_nothing():
    result = actionlint(*sorted(WORKFLOWS.glob("*.y*ml")))
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_does_fail_on_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(CI.read_text().replace("runs-on: ubuntu-24.04", "runs_on: ubuntu-24.04", 1)
                      .replace('"$REMOTE_IMAGE:$GITHUB_SHA")', "$REMOTE_IMAGE:$GITHUB_SHA)", 1))
    result = actionlint(broken)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "runs_on" in result.stdout and "shellcheck" in result.stdout, result.stdout


def _checkov_workflow(tmp_path, text: str) -> dict:
    # checkov's bundled workflow schema predates the `attestations` permission and it
    # silently skips a file its schema rejects; it reads a copy without that one key.
    folder = tmp_path / ".github" / "workflows"
    folder.mkdir(parents=True)
    (folder / "ci.yaml").write_text(re.sub(r"^\s*attestations: write\n", "", text, flags=re.MULTILINE))
    return checkov(tmp_path, "github_actions")


def test_checkov_finds_nothing(tmp_path):
    report = _checkov_workflow(tmp_path, CI.read_text())
    assert_clean(report, min_resources=0)
    assert report["summary"]["passed"] >= 50, report["summary"]


def test_checkov_does_fail_on_a_workflow_with_write_all(tmp_path):
    text = CI.read_text().replace("permissions:\n  contents: read\n", "permissions: write-all\n", 1)
    ids = {f.split()[0] for f in failures(_checkov_workflow(tmp_path, text))}
    assert "CKV2_GHA_1" in ids, ids


def test_every_action_is_pinned_to_a_commit():
    for job, spec in workflow()["jobs"].items():
        for step in spec["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), (job, step["uses"])
    # ...with the release named beside it.
    for line in CI.read_text().splitlines():
        if "uses:" in line:
            assert re.search(r"@[0-9a-f]{40} # v\d+\.\d+\.\d+$", line), line


def test_the_tests_are_what_ci_runs_here():
    [run] = [s["run"] for s in steps("test") if "run" in s]
    assert run.endswith("bash .ci/run"), run
    assert workflow()["jobs"]["test"]["timeout-minutes"] == 90
    assert set(workflow()["on"]) >= {"push", "pull_request"}


def test_every_image_is_built_from_its_dockerfile():
    job = workflow()["jobs"]["images"]
    assert job["needs"] == ["test", "advisories"]
    assert job["strategy"]["matrix"]["image"] == IMAGES
    assert sorted(p.name.removesuffix(".Dockerfile") for p in DOCKER.glob("*.Dockerfile")) == sorted(IMAGES)
    [build] = step_using("images", "docker/build-push-action")
    assert build["with"]["file"] == "infra/docker/${{ matrix.image }}.Dockerfile"
    assert build["with"]["load"] is True and "push" not in build["with"]


def test_trivy_fails_on_high_and_critical_with_the_reviewed_ignore_file():
    scan, sbom = step_using("images", "aquasecurity/trivy-action")
    assert scan["with"]["severity"] == "HIGH,CRITICAL"
    assert scan["with"]["exit-code"] == "1"
    assert "vuln" in scan["with"]["scanners"].split(",")
    assert scan["with"]["trivyignores"] == ".trivyignore.yaml"
    assert (REPO / ".trivyignore.yaml").is_file()
    assert "ignore-unfixed" not in scan["with"]  # unfixed findings are reviewed too
    assert sbom["with"]["format"] == "cyclonedx"
    # The scan comes before anything leaves the runner.
    order = [s.get("name") or s.get("uses") for s in steps("images")]
    assert order.index(scan["name"]) < order.index("Push the scanned image and keep its digest")


def test_the_trivy_ignore_file_is_reviewed():
    ignores = load_yaml(REPO / ".trivyignore.yaml")
    assert set(ignores) <= {"vulnerabilities", "misconfigurations", "secrets", "licenses"}
    today = dt.date.today()
    for kind, entries in ignores.items():
        for entry in entries or []:
            assert entry.get("id") and entry.get("statement"), (kind, entry)
            expiry = entry.get("expired_at")
            assert isinstance(expiry, dt.date), (kind, entry, "needs expired_at")
            assert today < expiry <= today + dt.timedelta(days=90), (kind, entry)


def test_publishing_uses_oidc_and_no_stored_secret():
    text = CI.read_text()
    assert "secrets." not in text, "the workflow reads no stored secret (OIDC and GITHUB_TOKEN only)"
    assert workflow()["permissions"] == {"contents": "read"}
    job = workflow()["jobs"]["images"]
    assert job["permissions"] == {"contents": "read", "id-token": "write", "attestations": "write"}
    [login] = step_using("images", "azure/login")
    assert set(login["with"]) == {"client-id", "tenant-id", "subscription-id"}
    assert all(v.startswith("${{ vars.") for v in login["with"].values())
    # Every step that talks to Azure or the registry runs on main's pushes only.
    publishing = [s for s in steps("images") if s.get("if")]
    assert {s.get("uses", "").split("@")[0] or s["name"] for s in publishing} == {
        "azure/login", "Push the scanned image and keep its digest", "actions/attest-build-provenance",
        "actions/attest-sbom", "actions/upload-artifact",
    }
    assert all(s["if"] == "env.PUBLISH == 'true'" for s in publishing)
    assert workflow()["env"]["PUBLISH"] == "${{ github.event_name == 'push' && github.ref == 'refs/heads/main' }}"


def test_the_pushed_image_is_the_scanned_one_and_is_attested_by_digest():
    [push] = [s for s in steps("images") if s.get("id") == "push"]
    assert 'docker tag "$LOCAL_IMAGE"' in push["run"] and "docker push" in push["run"]
    assert "RepoDigests" in push["run"]
    for action in ("actions/attest-build-provenance", "actions/attest-sbom"):
        [attest] = step_using("images", action)
        assert attest["with"]["subject-digest"] == "${{ steps.push.outputs.digest }}"
        assert attest["with"]["push-to-registry"] is True


def test_the_digests_are_promoted_by_pull_request_into_the_gitops_folder():
    job = workflow()["jobs"]["promote"]
    assert job["needs"] == "images"
    assert job["if"] == "github.event_name == 'push' && github.ref == 'refs/heads/main'"
    assert job["permissions"] == {"contents": "write", "pull-requests": "write"}
    [write] = [s["run"] for s in job["steps"] if "run" in s]
    assert write.startswith("python3 infra/gitops/set_images.py ")
    assert write.endswith(" infra/gitops/prod/images.yaml")
    [pr] = step_using("promote", "peter-evans/create-pull-request")
    assert pr["with"]["add-paths"] == "infra/gitops/prod/images.yaml"


def test_no_script_interpolates_an_expression():
    """Expressions go through env:, never into a shell script (script injection)."""
    for job, spec in workflow()["jobs"].items():
        for step in spec["steps"]:
            assert "${{" not in step.get("run", ""), (job, step.get("name"))


def test_a_dependency_with_a_known_vulnerability_stops_delivery():
    job = workflow()["jobs"]["advisories"]
    commands = "\n".join(s.get("run", "") for s in job["steps"])
    assert "cargo deny --log-level error check advisories" in commands
    assert "--manifest-path bench/journeys/Cargo.toml --config deny.toml check advisories" in commands
    npm = [s for s in job["steps"] if "npm audit" in s.get("run", "")]
    assert npm and npm[0]["working-directory"] == "web" and "--omit=dev" in npm[0]["run"]
    assert "advisories" in workflow()["jobs"]["images"]["needs"]
