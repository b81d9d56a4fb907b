"""checkov (PyPI, offline) over the Terraform, the Dockerfiles and the rendered
production manifests. Every finding is either fixed or skipped next to the code it
concerns, with its reason: `#checkov:skip=` in the .tf and Dockerfiles, the
`checkov.io/skip1` annotation in the chart. Nothing is skipped globally here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import AZURE, DOCKER, prod_values, render

TIME_LIMIT = 180  # seconds per run; it takes a few seconds on 2 cores


def checkov(target: Path, framework: str) -> dict:
    exe = shutil.which("checkov", path=str(Path(sys.executable).parent)) or shutil.which("checkov")
    assert exe, "checkov is installed by infra/tests/requirements.txt"
    env = dict(os.environ, ANSI_COLORS_DISABLED="1", LOG_LEVEL="ERROR")
    env.pop("BC_API_KEY", None)  # never talk to the Prisma Cloud platform
    try:
        result = subprocess.run(
            [exe, "--directory", str(target), "--framework", framework, "--output", "json",
             "--quiet", "--compact", "--skip-download", "--download-external-modules", "false"],
            capture_output=True, text=True, timeout=TIME_LIMIT, env=env,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"checkov took longer than {TIME_LIMIT}s on this machine")
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    if not reports or not reports[0]:
        pytest.fail(f"checkov found nothing to check in {target}: {result.stderr[-2000:]}")
    return reports[0]


def failures(report: dict) -> list[str]:
    return [f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
            for c in report["results"]["failed_checks"]]


def assert_clean(report: dict, min_resources: int):
    summary = report["summary"]
    assert summary["parsing_errors"] == 0, summary
    assert summary["resource_count"] >= min_resources, summary
    assert summary["passed"] > 0
    assert not failures(report), "\n".join(failures(report))


def test_terraform():
    assert_clean(checkov(AZURE, "terraform"), min_resources=50)


def test_dockerfiles():
    assert_clean(checkov(DOCKER, "dockerfile"), min_resources=4)


def test_production_manifests(tmp_path):
    docs = render(prod_values({"services": {
        # The runbook deploys by digest (CKV_K8S_43).
        name: {"imageDigest": "sha256:" + "0" * 64}
        for name in ("command-service", "query-service", "projector", "kos-mock")},
        "web": {"imageDigest": "sha256:" + "1" * 64}}))
    (tmp_path / "phonebill.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    assert_clean(checkov(tmp_path, "kubernetes"), min_resources=len(docs))


def test_checkov_does_fail_on_a_bad_dockerfile(tmp_path):
    (tmp_path / "Dockerfile").write_text("FROM debian:latest\nRUN apt-get update\nCMD [\"sh\"]\n")
    report = checkov(tmp_path, "dockerfile")
    ids = {c["check_id"] for c in report["results"]["failed_checks"]}
    assert "CKV_DOCKER_3" in ids, ids  # no non-root user
