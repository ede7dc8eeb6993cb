"""`pip install ./client` works alone: in a clean virtualenv, with nothing of the
server, the client installs with httpx and pydantic only and talks to a server;
the `cli` extra adds the `quarry` command."""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

import pytest

CLIENT = Path(__file__).resolve().parents[2] / "client"
#: What `pip install ./client` may bring: httpx, pydantic and what they need.
ALLOWED = {
    "quarry-client", "httpx", "httpcore", "h11", "anyio", "idna", "certifi", "sniffio",
    "pydantic", "pydantic-core", "annotated-types", "typing-extensions",
    "typing-inspection", "exceptiongroup", "pip", "setuptools",
}  # fmt: skip


def run(*command: str, cwd: Path | None = None) -> str:
    done = subprocess.run(command, capture_output=True, text=True, cwd=cwd, timeout=600)
    assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def clean_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("client-venv")
    venv.create(root, with_pip=True, clear=True)
    python = root / "bin" / "python"
    run(str(python), "-m", "pip", "install", "--quiet", str(CLIENT))
    return root


def test_the_client_installs_alone_with_httpx_and_pydantic_only(clean_venv: Path) -> None:
    listing = run(str(clean_venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze")
    installed = {line.split("==")[0].lower().replace("_", "-") for line in listing.split()}
    assert "quarry-client" in installed
    assert installed <= ALLOWED, sorted(installed - ALLOWED)


def test_the_installed_client_talks_to_a_server(clean_venv: Path, quarry_url: str) -> None:
    script = (
        "import sys, quarry_client\n"
        "assert 'app' not in sys.modules and 'fastapi' not in sys.modules\n"
        f"with quarry_client.Quarry({quarry_url!r}) as q:\n"
        "    print(q.auth.health().status)\n"
    )
    assert run(str(clean_venv / "bin" / "python"), "-c", script, cwd=clean_venv).strip() == (
        "healthy"
    )


def test_the_cli_extra_installs_the_quarry_command(clean_venv: Path) -> None:
    python = str(clean_venv / "bin" / "python")
    run(python, "-m", "pip", "install", "--quiet", f"{CLIENT}[cli]")
    help_text = run(str(clean_venv / "bin" / "quarry"), "--help")
    assert "login" in help_text and "import" in help_text
    server_only = subprocess.run(
        [str(clean_venv / "bin" / "quarry"), "serve"], capture_output=True, text=True, timeout=60
    )
    assert server_only.returncode == 2
    assert "server" in server_only.stderr.lower()
