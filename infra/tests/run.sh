#!/usr/bin/env bash
# Validate infra/ offline: Helm chart (rendered with values.yaml and values-prod.yaml,
# checked against the Kubernetes 1.29 schemas and the production design's numbers),
# Dockerfiles, Terraform, alerts and dashboard.
#
#   bash infra/tests/run.sh            # everything
#   bash infra/tests/run.sh -k ingress # extra arguments go to pytest
#
# The tools come from PyPI only, into a virtualenv outside the repository:
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

# The venv's tools (hadolint, checkov) first on PATH; terraform, if installed, is
# used for `terraform fmt` only.
export PATH="$venv/bin:$PATH"
export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in the work tree
cd "$here"
exec "$venv/bin/python" -m pytest -p no:cacheprovider "$@" .
