"""Building the embedded engine: FerretDB 1.24's embeddable Go package wrapped in
a small `main` (`app/engine/go/`; a plain `go install` of FerretDB's own command
panics because its version file is generated), built with the machine's Go
toolchain into `<repo>/.quarry/bin/ferretdb` (or `QUARRY_FERRETDB_BIN`) beside a
stamp of the sources it was built from, so it is rebuilt only when they change.
Two servers or test sessions starting at once build it once (a file lock).
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
import shutil
import subprocess
import time
from pathlib import Path

from app.settings import PROJECT_ROOT

logger = logging.getLogger("quarry.engine")

ENGINE_SOURCE_DIR = Path(__file__).resolve().parent / "go"
GO_MISSING_MESSAGE = (
    "The embedded database engine needs the Go toolchain (1.24 or newer) to build once: "
    "install it from https://go.dev/dl/ (or your package manager) and make sure `go` is on "
    "PATH, or set QUARRY_MONGODB_URL to a MongoDB server instead."
)


class EngineError(RuntimeError):
    """The embedded engine could not be built, started or reached; the message says why."""


def _source_fingerprint() -> str:
    digest = hashlib.sha256()
    for name in sorted(p.name for p in ENGINE_SOURCE_DIR.iterdir() if p.is_file()):
        if name.endswith((".go", ".mod", ".sum")):
            digest.update(name.encode())
            digest.update((ENGINE_SOURCE_DIR / name).read_bytes())
    return digest.hexdigest()


def _stamp_path(binary: Path) -> Path:
    return binary.with_name(binary.name + ".stamp")


def engine_is_built(binary: Path) -> bool:
    if not (binary.is_file() and os.access(binary, os.X_OK)):
        return False
    stamp = _stamp_path(binary)
    if not stamp.exists():
        # A binary put in place by hand (QUARRY_FERRETDB_BIN) is taken as it is.
        return binary != default_binary()
    return stamp.read_text().strip() == _source_fingerprint()


def default_binary() -> Path:
    return PROJECT_ROOT / ".quarry" / "bin" / "ferretdb"


def build_engine(binary: Path, *, force: bool = False) -> Path:
    """Build the engine into `binary` unless an up-to-date build is there.

    Raises EngineError when Go is missing or the build fails (with Go's output).
    """
    if not force and engine_is_built(binary):
        return binary
    go = shutil.which("go")
    if go is None:
        raise EngineError(GO_MISSING_MESSAGE)
    binary.parent.mkdir(parents=True, exist_ok=True)
    lock_path = binary.with_name(binary.name + ".lock")
    with open(lock_path, "w") as lock:
        # Two servers or test sessions starting at once build only once.
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not force and engine_is_built(binary):
            return binary
        logger.info("building the embedded FerretDB engine (first run only, about a minute)")
        partial = binary.with_name(binary.name + ".partial")
        env = {**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"}
        started = time.monotonic()
        result = subprocess.run(  # noqa: S603 (fixed argument list)
            [go, "build", "-trimpath", "-o", str(partial), "."],
            cwd=ENGINE_SOURCE_DIR,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            partial.unlink(missing_ok=True)
            raise EngineError(
                "Building the embedded FerretDB engine failed "
                f"(go build exited {result.returncode}):\n{result.stderr.strip()}"
            )
        partial.replace(binary)
        _stamp_path(binary).write_text(_source_fingerprint() + "\n")
        logger.info("embedded engine built in %.0fs: %s", time.monotonic() - started, binary)
    return binary
