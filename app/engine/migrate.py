"""`quarry engine migrate`: copy a data directory's SQLite data into PostgreSQL.

Quarry's embedded engine ran on FerretDB's SQLite backend (`QUARRY_DATA_DIR/db/`)
before it moved to PostgreSQL (`QUARRY_DATA_DIR/pg/`). A server on PostgreSQL
refuses to start beside SQLite data that has not been migrated; this command
moves it over:

1. It takes the data directory's engine lock (so no server runs on it), starts
   the SQLite engine and a new PostgreSQL engine on a scratch cluster
   `pg.migrating/`.
2. For every database and collection (GridFS `fs.files`/`fs.chunks` included:
   they are collections), it creates the collection, its indexes (key, name,
   unique) and copies the documents as raw BSON in batches, so every value keeps
   its exact type.
3. It restarts the PostgreSQL engine (what was copied must survive a restart)
   and verifies, per collection, the document count and a content hash: SHA-256
   over the sorted SHA-256 digests of every document's BSON, on both sides, and
   the index names and keys.
4. Only then is `pg.migrating/` renamed to `pg/`. A failure leaves `pg/` absent
   and the SQLite data untouched, so the command can simply be run again. The
   SQLite files are kept; remove `db/` yourself once satisfied.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from bson.raw_bson import RawBSONDocument
from pymongo import MongoClient
from pymongo.errors import OperationFailure

from app.db import UNKEEPABLE_DATABASE_PREFIXES
from app.engine.build import EngineError, build_engine
from app.engine.postgres import has_cluster
from app.engine.process import (
    EmbeddedEngine,
    backend_dir,
    open_engine_lock,
    read_registered,
    sqlite_data_present,
)
from app.settings import Settings

BATCH_DOCUMENTS = 1_000
SYSTEM_DATABASES = {"admin", "local", "config"}
RawClient = MongoClient[RawBSONDocument]


@dataclass(frozen=True)
class CollectionCheck:
    database: str
    collection: str
    count: int
    digest: str
    indexes: tuple[tuple[str, str, bool], ...]


class MigrationFailed(EngineError):
    """The copy or its verification failed; the message says where."""


def migrate_sqlite_to_postgresql(settings: Settings, *, report: Callable[[str], Any]) -> int:
    """Run the migration for `settings.data_dir`; 0 on success, 1 with a message otherwise."""
    data_dir = settings.data_dir.resolve()
    target = backend_dir(data_dir, "postgresql")
    if not sqlite_data_present(data_dir):
        report(f"migrate: no SQLite data in {backend_dir(data_dir, 'sqlite')}; nothing to do")
        return 0
    if has_cluster(target):
        report(
            f"migrate: {target} already holds PostgreSQL data; move it away first "
            "(the migration never writes into an existing cluster)"
        )
        return 1
    if read_registered(settings) is not None:
        report("migrate: an engine started by `quarry engine start` is running; stop it first")
        return 1
    try:
        with _exclusive(data_dir):
            checks = _migrate(settings, data_dir, target, report)
    except EngineError as exc:
        report(f"migrate: failed, nothing changed in {target}: {exc}")
        return 1
    documents = sum(c.count for c in checks)
    report(
        f"migrate: done: {len(checks)} collections, {documents} documents copied and verified "
        f"into {target}; the SQLite files in {backend_dir(data_dir, 'sqlite')} were left as "
        "they were (remove them when you no longer need them)"
    )
    return 0


@contextmanager
def _exclusive(data_dir: Path) -> Iterator[IO[str]]:
    data_dir.mkdir(parents=True, exist_ok=True)
    with open_engine_lock(data_dir) as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EngineError(
                f"a Quarry server or engine is running on {data_dir}: stop it first"
            ) from None
        yield lock


def _migrate(
    settings: Settings, data_dir: Path, target: Path, report: Callable[[str], Any]
) -> list[CollectionCheck]:
    binary = build_engine(settings.engine_binary)
    scratch = target.with_name(target.name + ".migrating")
    shutil.rmtree(scratch, ignore_errors=True)
    source = EmbeddedEngine.start(
        binary=binary,
        data_dir=backend_dir(data_dir, "sqlite"),
        backend="sqlite",
        lock_held=True,
    )
    try:
        with _raw_client(source.url) as src:
            names = _databases(src)
        _refuse_unkeepable_names(names)
        destination = EmbeddedEngine.start(
            binary=binary,
            data_dir=scratch,
            backend="postgresql",
            postgres_bin=settings.postgres_bin,
            lock_held=True,
        )
        try:
            with _raw_client(source.url) as src, _raw_client(destination.url) as dst:
                for name in names:
                    for collection in sorted(src[name].list_collection_names()):
                        count = _copy_collection(src, dst, name, collection)
                        report(f"migrate: copied {name}.{collection} ({count} documents)")
            # What was copied must be there after a restart, as the server will see it.
            destination.stop()
            destination.restart()
            with _raw_client(source.url) as src, _raw_client(destination.url) as dst:
                checks = _verify(src, dst, names)
        finally:
            destination.stop()
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    finally:
        source.stop()
    scratch.rename(target)
    return checks


@contextmanager
def _raw_client(url: str) -> Iterator[RawClient]:
    client: RawClient = MongoClient(
        url, document_class=RawBSONDocument, serverSelectionTimeoutMS=10_000
    )
    try:
        yield client
    finally:
        client.close()


def _databases(client: RawClient) -> list[str]:
    return sorted(set(client.list_database_names()) - SYSTEM_DATABASES)


def _refuse_unkeepable_names(names: list[str]) -> None:
    hidden = [
        name
        for name in names
        if name.startswith(UNKEEPABLE_DATABASE_PREFIXES) and name not in ("pg", "_")
    ]
    if hidden:
        raise MigrationFailed(
            "FerretDB on PostgreSQL cannot keep databases whose names start with 'pg' or '_' "
            f"({', '.join(hidden)}); keep this data directory on QUARRY_EMBEDDED_BACKEND=sqlite "
            "or export those databases and import them under other names"
        )


def _index_specs(client: RawClient, database: str, collection: str) -> list[dict[str, Any]]:
    specs = []
    for index in client[database][collection].list_indexes():
        decoded = {k: index[k] for k in index}
        if decoded["name"] == "_id_":
            continue
        specs.append(decoded)
    return specs


def _copy_collection(src: RawClient, dst: RawClient, database: str, collection: str) -> int:
    dst[database].create_collection(collection)
    target = dst[database][collection]
    copied = 0
    batch: list[RawBSONDocument] = []
    for document in src[database][collection].find({}, batch_size=BATCH_DOCUMENTS):
        batch.append(document)
        if len(batch) >= BATCH_DOCUMENTS:
            target.insert_many(batch, ordered=True)
            copied += len(batch)
            batch = []
    if batch:
        target.insert_many(batch, ordered=True)
        copied += len(batch)
    # After the copy: on PostgreSQL a unique index admits one document without its
    # key (MongoDB's rule, app/engine/shadow_indexes.sql), which SQLite's did not, so
    # data that breaks it is named here instead of failing half-way through a batch.
    for spec in _index_specs(src, database, collection):
        keys = list(dict(spec["key"]).items())
        options = {k: spec[k] for k in ("unique", "sparse") if k in spec}
        try:
            target.create_index(keys, name=spec["name"], **options)
        except OperationFailure as exc:
            raise MigrationFailed(
                f"{database}.{collection}: the unique index {spec['name']} cannot be built on "
                "PostgreSQL, where at most one document may lack (or hold null for) a unique "
                f"key: give those documents distinct values in the SQLite data first ({exc})"
            ) from None
    return copied


def _check(client: RawClient, database: str, collection: str) -> CollectionCheck:
    digests = sorted(
        hashlib.sha256(document.raw).digest()
        for document in client[database][collection].find({}, batch_size=BATCH_DOCUMENTS)
    )
    indexes = tuple(
        sorted(
            (spec["name"], repr(list(dict(spec["key"]).items())), bool(spec.get("unique")))
            for spec in _index_specs(client, database, collection)
        )
    )
    return CollectionCheck(
        database=database,
        collection=collection,
        count=len(digests),
        digest=hashlib.sha256(b"".join(digests)).hexdigest(),
        indexes=indexes,
    )


def _verify(src: RawClient, dst: RawClient, names: list[str]) -> list[CollectionCheck]:
    if _databases(dst) != names:
        raise MigrationFailed(
            f"databases differ after the copy: SQLite {names}, PostgreSQL {_databases(dst)}"
        )
    checks = []
    for name in names:
        collections = sorted(src[name].list_collection_names())
        if sorted(dst[name].list_collection_names()) != collections:
            raise MigrationFailed(f"the collections of {name} differ after the copy")
        for collection in collections:
            before, after = _check(src, name, collection), _check(dst, name, collection)
            if before != after:
                raise MigrationFailed(
                    f"{name}.{collection} differs after the copy: {before.count} documents "
                    f"(hash {before.digest[:12]}) in SQLite, {after.count} "
                    f"(hash {after.digest[:12]}) in PostgreSQL"
                    + ("" if before.indexes == after.indexes else "; indexes differ")
                )
            checks.append(after)
    return checks
