"""docker-compose.yml and the Dockerfile (no Docker engine here: parse and check them)."""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def load_compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def test_compose_has_replica_set_init_api_and_mailpit() -> None:
    services = load_compose()["services"]
    assert set(services) == {"mongo", "mongo-init", "api", "mailpit"}
    assert services["mongo"]["image"].startswith("mongo:8")
    assert "--replSet" in services["mongo"]["command"]
    assert "rs.initiate" in " ".join(services["mongo-init"]["command"])
    assert services["mongo-init"]["depends_on"]["mongo"]["condition"] == "service_healthy"
    api = services["api"]
    assert api["depends_on"]["mongo-init"]["condition"] == "service_completed_successfully"
    assert "replicaSet=rs0" in api["environment"]["QUARRY_MONGODB_URL"]
    assert api["environment"]["QUARRY_SMTP_HOST"] == "mailpit"


def test_compose_ports_and_healthchecks() -> None:
    services = load_compose()["services"]
    assert "8000:8000" in services["api"]["ports"]
    assert any(p.endswith(":8025") for p in services["mailpit"]["ports"])
    for name in ("mongo", "mongo-init", "api", "mailpit"):
        assert services[name]["healthcheck"]["test"], name
    assert "/health" in " ".join(services["api"]["healthcheck"]["test"])


def test_dockerfile_runs_two_workers_as_non_root() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "\nUSER quarry\n" in dockerfile
    assert '"--workers", "2"' in dockerfile
    assert "app.main:create_app" in dockerfile


def _compose_command() -> list[str] | None:
    if shutil.which("docker") is not None:
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    # The standalone Compose v2 binary (`go install github.com/docker/compose/v2/cmd`).
    if shutil.which("docker-compose") is not None:
        probe = subprocess.run(["docker-compose", "version"], capture_output=True, text=True)
        if probe.stdout.startswith("Docker Compose version"):
            return ["docker-compose"]
    return None


def test_docker_compose_config_accepts_the_file() -> None:
    command = _compose_command()
    if command is None:
        pytest.skip("the docker compose plugin is not installed on this machine")
    result = subprocess.run(
        [*command, "config", "--quiet"], cwd=REPO, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_every_file_the_server_reads_from_its_package_is_package_data() -> None:
    """An installed (not editable) Quarry carries the engine's Go sources, its SQL
    and the mail templates: every non-Python file of `app/` that git tracks is
    matched by `[tool.setuptools.package-data]` (moving one breaks the wheel)."""
    globs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["app"]
    tracked = subprocess.run(
        ["git", "ls-files", "app"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    data = [name.removeprefix("app/") for name in tracked if not name.endswith(".py")]
    assert data, "app/ has data files"
    unshipped = [name for name in data if not any(fnmatch.fnmatch(name, glob) for glob in globs)]
    assert unshipped == []
