"""`quarry backup` taken while a server serves and writes go on, `quarry restore`
into a fresh data directory, and a server there answering with every document of
the snapshot, the account's login and tokens and its search hits — the write in
flight at the snapshot rolled back; and what each command refuses.

One server (embedded engine, its own data directory) serves the whole module;
the backup is taken once, restored once into a fresh directory that a second
server then serves."""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import shutil
import stat
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
from quarry_client import Quarry

from app.engine import EmbeddedEngine, EngineError
from app.engine.process import conninfo_path
from tests.fixtures.mailbox import Inbox
from tests.fixtures.quarry_server import QUARRY, logged_in, serve_quarry, server_environment

CONTROL_DB = "quarry_backup_test"
#: Both servers and every command share these (the restored server must find the
#: control database, and sign with the secret key the backup carries).
SHARED = {
    "QUARRY_CONTROL_DB": CONTROL_DB,
    "QUARRY_SECRET_KEY": "",  # kept in QUARRY_DATA_DIR/secret_key, which a backup holds
    "QUARRY_RATE_LIMIT_PER_MINUTE": "0",
    "QUARRY_MAINTENANCE_INTERVAL_SECONDS": "0.5",
}
START_SECONDS = 120.0
TEXT_DEADLINE = 30.0


@dataclass
class Source:
    """The serving data directory, what was written to it and the backup taken."""

    url: str
    data_dir: Path
    inbox: Inbox
    backup: Path
    backup_run: subprocess.CompletedProcess[str]
    email: str
    password: str
    access_token: str
    database_id: str
    before: list[dict[str, Any]]
    during: list[dict[str, Any]]
    in_flight: list[dict[str, Any]]
    entry_id: str
    word: str
    text: str
    held: list[IO[str]] = field(default_factory=list)


@dataclass
class Restored:
    url: str
    data_dir: Path
    run: subprocess.CompletedProcess[str]


def quarry_command(data_dir: Path, inbox: Inbox, *args: str) -> subprocess.CompletedProcess[str]:
    """`quarry ARGS…` on `data_dir` with the servers' settings."""
    environment = server_environment(
        database_url="", data_dir=data_dir, smtp_port=inbox.port, port=8000, **SHARED
    )
    return subprocess.run(
        [str(QUARRY), *args], env=environment, capture_output=True, text=True, timeout=300
    )


def documents(client: Quarry, database_id: str) -> list[dict[str, Any]]:
    return sorted(client.documents.iterate(database_id, "items"), key=lambda d: str(d["_id"]))


def hold_journal_entry(data_dir: Path, *, meta: dict[str, Any] | None) -> IO[str]:
    """A journal entry of a write in flight (its lock held, as the writing request
    holds it); committed when `meta` is given (`management.journal`)."""
    entry = data_dir / "import-journal" / uuid.uuid4().hex
    entry.mkdir(parents=True)
    lock = (entry / "lock").open("w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    if meta is not None:
        (entry / "meta.json").write_text(json.dumps(meta))
    return lock


class Writer(threading.Thread):
    """Inserts one document at a time until stopped; what was acknowledged, in order."""

    def __init__(self, client: Quarry, database_id: str) -> None:
        super().__init__(daemon=True)
        self.client, self.database_id = client, database_id
        self.acknowledged: list[dict[str, Any]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        sequence = 0
        while not self.stopping.is_set():
            document = {"phase": "during", "seq": sequence}
            answer = self.client.documents.insert(self.database_id, "items", document)
            self.acknowledged.append({"_id": answer.inserted_ids[0], **document})
            sequence += 1
            time.sleep(0.01)

    def wait_for(self, count: int) -> None:
        deadline = time.monotonic() + 30
        while len(self.acknowledged) < count:
            assert self.is_alive() and time.monotonic() < deadline, "the writer stopped writing"
            time.sleep(0.01)


def wait_for_search(client: Quarry, word: str) -> list[Any]:
    deadline = time.monotonic() + TEXT_DEADLINE
    while not (hits := client.search.search(word).data):
        assert time.monotonic() < deadline, f"{word!r} never became searchable"
        time.sleep(0.2)
    return list(hits)


@pytest.fixture(scope="module")
def root() -> Iterator[Path]:
    # Not under pytest's basetemp, whose root a later session makes 0700: the
    # cluster's own account (when run as root) must pass through it.
    path = Path(tempfile.mkdtemp(prefix="quarry-test-backup-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def source(root: Path, smtp_server: Inbox, engine_binary: Path) -> Iterator[Source]:
    """A served data directory with an account, documents, a searchable entry and
    a write in flight, backed up while another writer keeps inserting."""
    data_dir = root / "source"
    with (
        serve_quarry(
            database_url="",
            data_dir=data_dir,
            smtp_port=smtp_server.port,
            start_seconds=START_SECONDS,
            **SHARED,
        ) as url,
        logged_in(url, smtp_server) as client,
    ):
        email, password = client.account_email, client.account_password
        access = client.auth.login(email, password).access
        database_id = client.databases.create("kept", [{"name": "items"}]).database.id
        before = [{"phase": "before", "seq": n, "tags": ["a", str(n)]} for n in range(20)]
        ids = client.documents.insert(database_id, "items", before).inserted_ids
        before = [{"_id": i, **d} for i, d in zip(ids, before, strict=True)]

        word = f"aardvark{uuid.uuid4().hex[:6]}"
        text = f"The quarterly {word} forecast."
        dataset_id = client.datasets.create("files").data.id
        [entry] = client.entries.upload(dataset_id, ("forecast.txt", io.BytesIO(text.encode())))
        wait_for_search(client, word)

        # A write in flight: stored, journalled, not answered (its lock held).
        batch = [{"phase": "in flight", "seq": n} for n in range(3)]
        in_flight_ids = client.documents.insert(database_id, "items", batch).inserted_ids
        in_flight = [{"_id": i, **d} for i, d in zip(in_flight_ids, batch, strict=True)]
        db_name = client.databases.get(database_id).dbName
        held = [
            hold_journal_entry(
                data_dir,
                meta={
                    "db_name": db_name,
                    "collection": "items",
                    "ranges": [[min(in_flight_ids), max(in_flight_ids)]],
                },
            ),
            hold_journal_entry(data_dir, meta=None),  # not committed: nothing written yet
        ]

        with Quarry(url, access_token=access) as writing:
            writer = Writer(writing, database_id)
            writer.start()
            try:
                writer.wait_for(1)
                backup_run = quarry_command(data_dir, smtp_server, "backup", str(root / "backup"))
                writer.wait_for(len(writer.acknowledged) + 1)  # writes went on after it
            finally:
                writer.stopping.set()
                writer.join(timeout=30)
        assert backup_run.returncode == 0, backup_run.stdout + backup_run.stderr
        yield Source(
            url=url,
            data_dir=data_dir,
            inbox=smtp_server,
            backup=root / "backup",
            backup_run=backup_run,
            email=email,
            password=password,
            access_token=access,
            database_id=database_id,
            before=before,
            during=writer.acknowledged,
            in_flight=in_flight,
            entry_id=entry.id,
            word=word,
            text=text,
            held=held,
        )
        for lock in held:
            lock.close()


@pytest.fixture(scope="module")
def restored(root: Path, source: Source) -> Iterator[Restored]:
    """The backup restored into a fresh data directory, served."""
    data_dir = root / "restored"
    run = quarry_command(data_dir, source.inbox, "restore", str(source.backup))
    assert run.returncode == 0, run.stdout + run.stderr
    with serve_quarry(
        database_url="",
        data_dir=data_dir,
        smtp_port=source.inbox.port,
        start_seconds=START_SECONDS,
        **SHARED,
    ) as url:
        yield Restored(url=url, data_dir=data_dir, run=run)


def test_a_restored_backup_taken_while_serving_holds_the_snapshot_of_every_document(
    source: Source, restored: Restored
) -> None:
    with Quarry(source.url) as client:  # stored before the backup, so in it
        client.auth.login(source.email, source.password)
        in_flight = [d for d in documents(client, source.database_id) if d["phase"] == "in flight"]
        assert in_flight == sorted(source.in_flight, key=lambda d: str(d["_id"]))
    with Quarry(restored.url) as client:
        client.auth.login(source.email, source.password)
        deadline = time.monotonic() + 15
        # The write in flight at the snapshot is rolled back by the maintenance task.
        stored = documents(client, source.database_id)
        while any(d["phase"] == "in flight" for d in stored):
            assert time.monotonic() < deadline, "the write in flight was never rolled back"
            time.sleep(0.2)
            stored = documents(client, source.database_id)
        # The unfiltered count (the table's row counter, restored with the same
        # snapshot and kept by the restored triggers through the rollback).
        assert client.documents.count(source.database_id, "items") == len(stored)
    kept = [d for d in stored if d["phase"] == "during"]
    assert [d for d in stored if d["phase"] == "before"] == sorted(
        source.before, key=lambda d: str(d["_id"])
    )
    # A snapshot: the writes acknowledged before a moment, none after it.
    assert sorted(d["seq"] for d in kept) == list(range(len(kept)))
    assert kept == sorted(source.during[: len(kept)], key=lambda d: str(d["_id"]))
    assert 1 <= len(kept) < len(source.during)
    assert not (restored.data_dir / "import-journal").exists() or not any(
        (restored.data_dir / "import-journal").iterdir()
    )


def test_a_restored_backup_keeps_the_login_the_tokens_and_the_search_hits(
    source: Source, restored: Restored
) -> None:
    # The restore rebuilt the tenant's search index from the restored entries.
    assert "1 entries indexed" in restored.run.stdout
    with Quarry(restored.url, access_token=source.access_token) as client:
        assert client.auth.me().email == source.email  # signed with the restored key
    with Quarry(restored.url) as client:
        client.auth.login(source.email, source.password)
        [hit] = wait_for_search(client, source.word)
        assert hit.entry.id == source.entry_id
        assert client.entries.text(source.entry_id) == source.text


def test_a_backup_is_private_and_lists_what_it_holds(source: Source) -> None:
    manifest = json.loads((source.backup / "manifest.json").read_text())
    assert manifest["kind"] == "quarry-backup" and manifest["engine"]["ferretdb"] == "v1.24.2"
    assert manifest["engine"]["postgresql"].startswith("18")
    assert manifest["contents"]["secret_key"] is True
    assert manifest["contents"]["journal_entries"] == 1  # the committed one in flight
    files = {p.relative_to(source.backup).as_posix() for p in source.backup.rglob("*")}
    assert "postgres/ferretdb.dump" in files and "files/secret_key" in files
    assert not any(name.startswith(("search", "files/search")) for name in files)
    assert set(manifest["files"]) == {
        name for name in files if (source.backup / name).is_file() and name != "manifest.json"
    }
    for path in [source.backup, *source.backup.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), f"{path}: {oct(mode)}"
    assert source.password not in source.backup_run.stdout + source.backup_run.stderr


def test_backup_refuses_a_path_that_exists(source: Source, root: Path) -> None:
    before = (source.backup / "manifest.json").read_bytes()
    done = quarry_command(source.data_dir, source.inbox, "backup", str(source.backup))
    assert done.returncode == 1
    assert "already exists" in done.stderr and "Traceback" not in done.stderr
    assert (source.backup / "manifest.json").read_bytes() == before
    assert not list(root.glob(".backup.partial-*"))


def test_restore_refuses_a_data_directory_a_server_uses(source: Source) -> None:
    done = quarry_command(source.data_dir, source.inbox, "restore", "--force", str(source.backup))
    assert done.returncode == 1
    assert "stop it first" in done.stderr and "Traceback" not in done.stderr
    with Quarry(source.url) as client:  # still serving its own data
        client.auth.login(source.email, source.password)
        assert len(documents(client, source.database_id)) > len(source.before)


@dataclass
class Forced:
    data_dir: Path
    refused: subprocess.CompletedProcess[str]
    forced: subprocess.CompletedProcess[str]
    key_before_force: str


@pytest.fixture(scope="module")
def forced(root: Path, source: Source) -> Forced:
    """A data directory holding data of its own: restored into without, then with --force."""
    data_dir = root / "occupied"
    data_dir.mkdir()
    (data_dir / "secret_key").write_text("an older key " * 4)
    (data_dir / "search").mkdir()  # derived: never counts as data, always replaced
    refused = quarry_command(data_dir, source.inbox, "restore", str(source.backup))
    key_before_force = (data_dir / "secret_key").read_text()
    pg_before_force = (data_dir / "pg").exists()
    forced = quarry_command(data_dir, source.inbox, "restore", "--force", str(source.backup))
    assert not pg_before_force
    return Forced(data_dir, refused, forced, key_before_force)


def test_restore_replaces_existing_data_only_with_force(source: Source, forced: Forced) -> None:
    assert forced.refused.returncode == 1
    assert "--force" in forced.refused.stderr and "secret_key" in forced.refused.stderr
    assert forced.key_before_force == "an older key " * 4

    assert forced.forced.returncode == 0, forced.forced.stdout + forced.forced.stderr
    backup_key = (source.backup / "files" / "secret_key").read_bytes()
    assert (forced.data_dir / "secret_key").read_bytes() == backup_key
    assert (forced.data_dir / "pg" / "data" / "PG_VERSION").is_file()
    assert not (forced.data_dir / "pg.restoring").exists()


def test_backup_of_a_data_directory_no_server_uses_runs_an_engine_for_itself(
    root: Path, source: Source, forced: Forced
) -> None:
    done = quarry_command(forced.data_dir, source.inbox, "backup", str(root / "stopped-backup"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "starting one for the backup" in done.stdout
    manifest = json.loads((root / "stopped-backup" / "manifest.json").read_text())
    assert manifest["contents"]["secret_key"] is True
    # Stopped after it: nothing holds the data directory.
    assert not (forced.data_dir / "pg" / "data" / "postmaster.pid").exists()
    with (forced.data_dir / "engine.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_restore_refuses_a_damaged_backup(source: Source, root: Path) -> None:
    damaged = root / "damaged"
    shutil.copytree(source.backup, damaged)
    with (damaged / "postgres" / "ferretdb.dump").open("ab") as dump:
        dump.write(b"x")
    done = quarry_command(root / "never", source.inbox, "restore", str(damaged))
    assert done.returncode == 1
    assert "damaged" in done.stderr
    assert not (root / "never" / "pg").exists()
    with contextlib.suppress(FileNotFoundError):
        assert not any((root / "never").iterdir())


def test_an_interrupted_restore_is_not_served_as_an_empty_database(
    tmp_path: Path, engine_binary: Path
) -> None:
    """Killed between the restore's two renames: `pg/` is gone, `pg.replaced` holds
    the data. A start must refuse (and say what to do), not make a new empty `pg/`."""
    data = tmp_path / "data"
    (data / "pg.replaced").mkdir(parents=True)
    with pytest.raises(EngineError, match="interrupted"):
        EmbeddedEngine.start(binary=engine_binary, data_dir=data / "pg")
    assert not (data / "pg").exists()


def test_a_stopped_engine_leaves_no_conninfo_beside_its_socket(
    tmp_path: Path, engine_binary: Path
) -> None:
    engine = EmbeddedEngine.start(binary=engine_binary, data_dir=tmp_path / "data" / "pg")
    published = conninfo_path(engine.socket)
    try:
        assert published.is_file()
    finally:
        engine.stop()
    assert not published.exists()
