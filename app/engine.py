"""The embedded database engine: FerretDB 1.24 (SQLite backend) as a child process.

When `QUARRY_MONGODB_URL` is unset, Quarry builds (first time only) and runs
FerretDB from its Go module: `app/embedded_engine/` is a tiny Go `main` over the
embeddable `github.com/FerretDB/FerretDB/ferretdb` package (a plain `go install`
of FerretDB's own command panics because its version file is generated). The
binary goes to `<repo>/.quarry/bin/ferretdb` (or `QUARRY_FERRETDB_BIN`) with a
stamp of the sources it was built from, so it is rebuilt only when they change.

A started engine listens on a free loopback port, keeps its files under
`QUARRY_DATA_DIR/db/` and is ready once it answers `ping`. It never outlives its
owner: the owner holds the write end of the engine's stdin pipe, and the engine
exits when that pipe closes — on a clean stop, on Ctrl-C and also when the owner
is killed outright. `quarry engine start` is the exception on purpose: it starts a
detached engine recorded in `QUARRY_DATA_DIR/engine.json`, which a server on the
same data directory then uses instead of starting its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from pymongo import MongoClient
from pymongo.errors import PyMongoError

from app.settings import PROJECT_ROOT, Settings

logger = logging.getLogger("quarry.engine")

ENGINE_SOURCE_DIR = Path(__file__).resolve().parent / "embedded_engine"
ENGINE_NAME = "ferretdb-sqlite"
GO_MISSING_MESSAGE = (
    "The embedded database engine needs the Go toolchain (1.22 or newer) to build once: "
    "install it from https://go.dev/dl/ (or your package manager) and make sure `go` is on "
    "PATH, or set QUARRY_MONGODB_URL to a MongoDB server instead."
)
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 10.0


class EngineError(RuntimeError):
    """The embedded engine could not be built, started or reached; the message says why."""


# ---------------------------------------------------------------------------- build


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


# ---------------------------------------------------------------------------- run


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ping(url: str, timeout_ms: int = 500) -> bool:
    client: MongoClient[dict[str, object]] = MongoClient(
        url, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms, directConnection=True
    )
    try:
        client.admin.command("ping")
        return True
    except PyMongoError:
        return False
    finally:
        client.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie (exited, not yet reaped) counts as gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


@dataclass
class EmbeddedEngine:
    """One running engine process; `owned` says whether stopping it is ours to do."""

    port: int
    data_dir: Path
    pid: int
    owned: bool
    binary: Path | None = None
    process: subprocess.Popen[bytes] | None = None
    _stdin: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    @classmethod
    def start(
        cls,
        *,
        binary: Path,
        data_dir: Path,
        port: int = 0,
        detached: bool = False,
        timeout: float = START_TIMEOUT_SECONDS,
    ) -> EmbeddedEngine:
        """Start the engine and wait until it answers ping; raise EngineError if it cannot."""
        data_dir.mkdir(parents=True, exist_ok=True)
        lock = _lock_data_dir(data_dir)
        port = port or free_port()
        log_path = data_dir.parent / "engine.log"
        args = [
            str(binary),
            f"-listen=127.0.0.1:{port}",
            f"-data-dir={data_dir}",
            "-log-level=warn",
        ]
        if not detached:
            args.append("-watch-stdin")
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(  # noqa: S603 (fixed argument list)
                args,
                stdin=subprocess.DEVNULL if detached else subprocess.PIPE,
                stdout=log_file,
                stderr=log_file,
                # Ctrl-C in the terminal reaches the server, which then stops the
                # engine in order, rather than both at once.
                start_new_session=True,
                # The engine inherits the data-directory lock and holds it for as
                # long as it runs, whoever started it.
                pass_fds=(lock.fileno(),),
            )
        lock.close()
        engine = cls(
            port=port,
            data_dir=data_dir,
            pid=process.pid,
            owned=True,
            binary=binary,
            process=process,
            _stdin=process.stdin,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise EngineError(
                    f"The embedded engine exited at start (code {process.returncode}); "
                    f"see {log_path}:\n{_tail(log_path)}"
                )
            if ping(engine.url, timeout_ms=300):
                logger.info("embedded engine ready on 127.0.0.1:%d (pid %d)", port, process.pid)
                return engine
            time.sleep(0.05)
        engine.stop()
        raise EngineError(f"The embedded engine did not answer ping within {timeout:.0f}s.")

    def restart(self) -> None:
        """Start a dead owned engine again on the same port and data directory."""
        assert self.owned and self.binary is not None
        fresh = EmbeddedEngine.start(binary=self.binary, data_dir=self.data_dir, port=self.port)
        self.pid, self.process, self._stdin = fresh.pid, fresh.process, fresh._stdin

    def running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return pid_alive(self.pid)

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Stop the engine: close its stdin, then SIGTERM, then SIGKILL if it lingers."""
        if self._stdin is not None:
            with contextlib.suppress(OSError):
                self._stdin.close()
            self._stdin = None
        if self.process is not None:
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout)
            return
        if pid_alive(self.pid):
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while pid_alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid_alive(self.pid):
                os.kill(self.pid, signal.SIGKILL)


def _lock_data_dir(data_dir: Path) -> IO[str]:
    """Lock the data directory so that two engines never share its SQLite files."""
    lock = open(data_dir.parent / "engine.lock", "w")  # noqa: SIM115 (handed to the child)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise EngineError(
            f"Another engine is already using {data_dir}: stop the other Quarry server, or "
            "run `quarry engine start` once so that servers on this data directory share it."
        ) from None
    return lock


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# ---------------------------------------------------------------------------- registry


def _registry_path(settings: Settings) -> Path:
    return settings.data_dir.resolve() / "engine.json"


def read_registered(settings: Settings) -> EmbeddedEngine | None:
    """The detached engine recorded for this data directory, if it is alive and answers."""
    path = _registry_path(settings)
    try:
        entry = json.loads(path.read_text())
        engine = EmbeddedEngine(
            port=int(entry["port"]),
            data_dir=Path(entry["data_dir"]),
            pid=int(entry["pid"]),
            owned=False,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not pid_alive(engine.pid) or not ping(engine.url):
        path.unlink(missing_ok=True)
        return None
    return engine


def register(settings: Settings, engine: EmbeddedEngine) -> None:
    path = _registry_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        json.dumps({"pid": engine.pid, "port": engine.port, "data_dir": str(engine.data_dir)})
    )


def unregister(settings: Settings) -> None:
    _registry_path(settings).unlink(missing_ok=True)


def start_for_server(settings: Settings) -> EmbeddedEngine:
    """Use the detached engine of this data directory, or start one owned by the caller."""
    registered = read_registered(settings)
    if registered is not None:
        logger.info("using the engine started by `quarry engine start` (pid %d)", registered.pid)
        return registered
    binary = build_engine(settings.engine_binary)
    return EmbeddedEngine.start(
        binary=binary, data_dir=settings.engine_data_dir, port=settings.engine_port
    )
