#!/usr/bin/env bash
# Validate infra/ offline: Helm chart (rendered with values.yaml and values-prod.yaml,
# checked against the Kubernetes 1.29 schemas and the production design's numbers),
# Dockerfiles, Terraform, alerts (their rules run by promtool against synthetic series)
# and dashboard, the release analysis, the GitOps
# definitions, the CI workflow and the load test's verdict (bench/journeys_report.py).
#
#   bash infra/tests/run.sh            # everything
#   bash infra/tests/run.sh -k ingress # extra arguments go to pytest
#
# The Python tools come from PyPI, into a virtualenv outside the repository:
#   ${PHONEBILL_CACHE:-$HOME/.cache/phonebill}/venv-infra
# They are installed (pinned, infra/tests/requirements.txt) only when that file has
# changed since the last install. Nothing is downloaded at test time.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${PHONEBILL_CACHE:-$HOME/.cache/phonebill}"
venv="$cache/venv-infra"
requirements="$here/requirements.txt"
stamp="$venv/.requirements.sha256"
python="${PYTHON:-python3}"

want="$(sha256sum "$requirements" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ]; then
  echo "infra tests: creating $venv"
  mkdir -p "$cache"
  if ! "$python" -m venv "$venv"; then
    echo "infra tests: '$python -m venv' failed; on Debian/Ubuntu: apt-get install python3-venv" >&2
    rm -rf "$venv"
    exit 1
  fi
fi
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "infra tests: installing $requirements (pinned) into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements"
  echo "$want" > "$stamp"
fi

# From the Go module proxy, into the tools cache, once: the CRDs of Argo CD and Argo
# Rollouts (the GitOps and release objects are checked against them; they ship in the
# projects' Go modules) and actionlint (the CI workflow's linter, built from source).
tools="$cache/tools"
command -v go >/dev/null || { echo "infra tests: need Go (Argo's CRDs and actionlint come from the Go module proxy)" >&2; exit 1; }
export GOMODCACHE="$tools/gomod" GOFLAGS=-modcacherw GOTOOLCHAIN=local
module_dir() { go mod download -json "$1" | "$python" -c 'import json, sys; print(json.load(sys.stdin)["Dir"])'; }
PHONEBILL_ARGO_ROLLOUTS_DIR="$(module_dir github.com/argoproj/argo-rollouts@v1.9.0)"
PHONEBILL_ARGO_CD_DIR="$(module_dir github.com/argoproj/argo-cd/v3@v3.2.12)"
export PHONEBILL_ARGO_ROLLOUTS_DIR PHONEBILL_ARGO_CD_DIR
actionlint_bin="$tools/actionlint-1.7.12"
if [ ! -x "$actionlint_bin/actionlint" ]; then
  echo "infra tests: building actionlint 1.7.12 into $actionlint_bin"
  GOBIN="$actionlint_bin" go install github.com/rhysd/actionlint/cmd/actionlint@v1.7.12
fi

# The venv's tools (hadolint, checkov, shellcheck) and actionlint first on PATH;
# terraform, if installed, is used for `terraform fmt` only.
export PATH="$venv/bin:$actionlint_bin:$PATH"
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in the work tree
cd "$here"
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$@" .
