"""The write door (`app.engine.door`): concurrent writes through Quarry's database
layer lose nothing and a conditional write is a real compare-and-set — raced here
through `app.db` handles and through HTTP. On the embedded engine FerretDB alone
lost most of these (its update reads, then writes back by `_id` without a lock);
on MongoDB the same calls are the driver's atomic operations and pass as well.

Also: an int32 `$inc` that overflows becomes a long (MongoDB's rule; FerretDB
wraps it around), on every write path that applies one."""

from __future__ import annotations

import ast
import asyncio
import inspect
import stat
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest
from annotated_types import Le
from bson import Int64, ObjectId
from fastapi import FastAPI
from pymongo import MongoClient, ReturnDocument
from pymongo.errors import AutoReconnect, DuplicateKeyError, NetworkTimeout, OperationFailure

from app.clock import utc_now
from app.db import Collection, Database, EngineAdapter, open_client
from app.engine import EmbeddedAdapter, EngineSql, choose_adapter, door, postgres, sql
from app.engine.door import WriteDoor, document_key
from app.engine.process import conninfo_beside, conninfo_path
from app.errors import ErrorCode
from app.settings import Settings
from app.wiring import state_of
from data_api.datasets.repository import Catalogue
from tests.fixtures.datasets import DATASETS, Register, create_dataset, dataset_row, tag_dataset
from tests.fixtures.engine import REPO, DatabaseServer, engine_sql
from tests.fixtures.envelopes import assert_envelope
from tests.fixtures.served import holding_writes

INT32_MAX = 2**31 - 1


def collection_of(app: FastAPI, name: str) -> Collection:
    database = state_of(app).database
    return database.db(f"door_{ObjectId()}")[name]


async def test_concurrent_increments_of_one_document_all_count(app: FastAPI) -> None:
    counters = collection_of(app, "counters")
    await counters.insert_one({"_id": "c", "n": 0})
    clients, each = 20, 25

    async def client() -> list[int]:
        counts = []
        for _ in range(each):
            result = await counters.update_one({"_id": "c"}, {"$inc": {"n": 1}})
            counts.append(result.modified_count)
        return counts

    answers = await asyncio.gather(*(client() for _ in range(clients)))
    assert all(count == 1 for counts in answers for count in counts)
    assert await counters.find_one({"_id": "c"}) == {"_id": "c", "n": clients * each}


async def test_one_winner_of_each_compare_and_set(app: FastAPI) -> None:
    """200 trials, 16 racers each, on "update only if `version` is still 0"."""
    items = collection_of(app, "items")
    trials, racers = 200, 16
    await items.insert_many([{"_id": t, "version": 0} for t in range(trials)])

    async def trial(t: int) -> int:
        async def racer(r: int) -> int:
            result = await items.update_one(
                {"_id": t, "version": 0}, {"$set": {"version": 1, "winner": r}}
            )
            return result.modified_count

        return sum(await asyncio.gather(*(racer(r) for r in range(racers))))

    winners: list[int] = []
    for start in range(0, trials, 20):  # 20 trials at a time
        winners += await asyncio.gather(*(trial(t) for t in range(start, start + 20)))
    assert winners == [1] * trials
    stored = await items.find({}).to_list(None)
    assert len(stored) == trials and all(d["version"] == 1 for d in stored)


async def test_compare_and_set_by_another_field_than_id_has_one_winner(app: FastAPI) -> None:
    """A single-document write by a filter without `_id` (a token, a claim)."""
    tokens = collection_of(app, "tokens")
    trials, racers = 30, 12
    await tokens.insert_many([{"token": f"t{t}", "used": False} for t in range(trials)])

    async def trial(t: int) -> list[Any]:
        async def racer(r: int) -> Any:
            return await tokens.find_one_and_update(
                {"token": f"t{t}", "used": False},
                {"$set": {"used": True, "by": r}},
                return_document=ReturnDocument.AFTER,
            )

        return [d for d in await asyncio.gather(*(racer(r) for r in range(racers))) if d]

    won = await asyncio.gather(*(trial(t) for t in range(trials)))
    assert [len(w) for w in won] == [1] * trials
    for t, (winner,) in enumerate(won):
        stored = await tokens.find_one({"token": f"t{t}"})
        assert stored is not None and stored["by"] == winner["by"] and stored["used"] is True


async def test_parallel_sets_of_different_fields_are_all_kept(app: FastAPI) -> None:
    documents = collection_of(app, "documents")
    await documents.insert_one({"_id": 1})
    await asyncio.gather(
        *(documents.update_one({"_id": 1}, {"$set": {f"f{i}": i}}) for i in range(20))
    )
    stored = await documents.find_one({"_id": 1})
    assert stored is not None and {k: v for k, v in stored.items() if k != "_id"} == {
        f"f{i}": i for i in range(20)
    }


async def test_update_many_and_single_updates_on_the_same_documents_all_count(
    app: FastAPI,
) -> None:
    counters = collection_of(app, "counters")
    await counters.insert_many([{"_id": i, "group": "g", "n": 0} for i in range(10)])

    async def singles() -> None:
        for _ in range(5):
            await asyncio.gather(
                *(counters.update_one({"_id": i}, {"$inc": {"n": 1}}) for i in range(10))
            )

    async def manies() -> None:
        for _ in range(5):
            result = await counters.update_many({"group": "g"}, {"$inc": {"n": 100}})
            assert result.matched_count == 10

    await asyncio.gather(singles(), manies())
    stored = await counters.find({}).to_list(None)
    assert sorted(d["n"] for d in stored) == [505] * 10


async def test_a_conditional_delete_never_removes_a_document_that_stopped_matching(
    app: FastAPI,
) -> None:
    items = collection_of(app, "items")
    trials = 40
    await items.insert_many([{"_id": t, "version": 0} for t in range(trials)])

    async def trial(t: int) -> tuple[int, int]:
        deleted, updated = await asyncio.gather(
            items.delete_one({"_id": t, "version": 0}),
            items.update_one({"_id": t, "version": 0}, {"$set": {"version": 1}}),
        )
        return deleted.deleted_count, updated.modified_count

    outcomes = await asyncio.gather(*(trial(t) for t in range(trials)))
    assert all(sorted(outcome) == [0, 1] for outcome in outcomes), outcomes
    for t, (deleted, _) in enumerate(outcomes):
        stored = await items.find_one({"_id": t})
        assert (stored is None) == bool(deleted)
        if stored is not None:
            assert stored["version"] == 1


async def test_a_lapsed_lease_gets_exactly_one_new_holder(app: FastAPI) -> None:
    """`Catalogue.take_lease`: delete-if-still-lapsed, then insert. A delete that
    read the lapsed lease before a rival replaced it must not remove the rival's."""
    catalogue = Catalogue(state_of(app).database)
    now = utc_now()
    prefix = f"door-{ObjectId()}"
    for trial in range(60):
        name = f"{prefix}-{trial}"
        await catalogue.take_lease(name=name, holder="old", now=now, until=now)
        later = now + timedelta(seconds=1)
        results = await asyncio.gather(
            *(
                catalogue.take_lease(
                    name=name, holder=f"h{r}", now=later, until=later + timedelta(minutes=1)
                )
                for r in range(16)
            )
        )
        assert results.count(True) == 1, (trial, results)
    await catalogue.control["leases"].delete_many({"_id": {"$regex": f"^{prefix}"}})


async def test_int32_increment_overflow_becomes_a_long(
    app: FastAPI, sync_client: MongoClient[dict[str, Any]]
) -> None:
    numbers = collection_of(app, "numbers")
    await numbers.insert_many(
        [
            {"_id": "top", "n": INT32_MAX},
            {"_id": "bottom", "n": -(2**31)},
            {"_id": "small", "n": 5},
            {"_id": "nested", "a": {"n": INT32_MAX - 1}},
        ]
    )
    await numbers.update_one({"_id": "top"}, {"$inc": {"n": 1}})
    await numbers.update_one({"_id": "bottom"}, {"$inc": {"n": -1}})
    await numbers.update_one({"_id": "small"}, {"$inc": {"n": 1}})
    after = await numbers.find_one_and_update(
        {"_id": "nested"}, {"$inc": {"a.n": 5}}, return_document=ReturnDocument.AFTER
    )
    assert after == {"_id": "nested", "a": {"n": INT32_MAX + 4}}
    raw = sync_client[numbers.database_name]["numbers"]
    stored = {d["_id"]: d for d in raw.find({})}
    assert stored["top"]["n"] == INT32_MAX + 1 and type(stored["top"]["n"]) is Int64
    assert stored["bottom"]["n"] == -(2**31) - 1 and type(stored["bottom"]["n"]) is Int64
    assert stored["small"]["n"] == 6 and type(stored["small"]["n"]) is int  # still an int32
    assert type(stored["nested"]["a"]["n"]) is Int64


async def test_int32_overflow_in_update_many_and_upserts(
    app: FastAPI, sync_client: MongoClient[dict[str, Any]]
) -> None:
    numbers = collection_of(app, "numbers")
    await numbers.insert_many([{"_id": i, "g": 1, "n": INT32_MAX - i} for i in range(4)])
    result = await numbers.update_many({"g": 1}, {"$inc": {"n": 2}})
    assert (result.matched_count, result.modified_count) == (4, 4)
    await numbers.update_one({"_id": "u"}, {"$inc": {"n": INT32_MAX}}, upsert=True)
    await numbers.update_one({"_id": "u"}, {"$inc": {"n": 1}}, upsert=True)
    # An upsert that inserts starts from the filter's equalities.
    await numbers.update_one({"_id": "s", "n": INT32_MAX}, {"$inc": {"n": 1}}, upsert=True)
    raw = sync_client[numbers.database_name]["numbers"]
    stored = {d["_id"]: d["n"] for d in raw.find({})}
    assert stored == {0: INT32_MAX + 2, 1: INT32_MAX + 1, 2: INT32_MAX, 3: INT32_MAX - 1,
                      "u": INT32_MAX + 1, "s": INT32_MAX + 1}  # fmt: skip
    assert [type(stored[i]) for i in range(4)] == [Int64, Int64, int, int]
    assert type(stored["u"]) is Int64 and type(stored["s"]) is Int64


async def test_removing_the_public_tag_never_loses_to_a_concurrent_patch(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    """The tag comes off (204) while a PATCH of the description races it: the PATCH
    must not write back the dataset it read with the tag still on."""
    owner = await register()
    public_id = await state_of(app).database.control["tags"].find_one({"name": "public"})
    assert public_id is not None
    dataset = await create_dataset(client, owner.bearer, name="raced")
    for trial in range(20):
        await tag_dataset(client, owner.bearer, dataset["id"], "public")
        untag, patch = await asyncio.gather(
            client.delete(
                f"{DATASETS}/{dataset['id']}/tags/{public_id['_id']}", headers=owner.bearer
            ),
            client.patch(
                f"{DATASETS}/{dataset['id']}",
                json={"description": f"v{trial}"},
                headers=owner.bearer,
            ),
        )
        assert (untag.status_code, patch.status_code) == (204, 200), (untag.text, patch.text)
        stored = await dataset_row(app, dataset["id"])
        assert stored["tags"] == [] and stored["description"] == f"v{trial}", trial


def test_every_write_of_the_embedded_adapter_goes_through_the_door() -> None:
    """`EmbeddedAdapter` defines each update, replace, find-and-modify and delete
    itself (none is inherited unlocked from `MongoAdapter`), and each one reaches
    the door."""
    writes = ["update_one", "update_many", "replace_one", "find_one_and_update",
              "delete_one", "delete_many"]  # fmt: skip
    assert set(writes) < set(EngineAdapter.__abstractmethods__)
    for name in writes:
        method = getattr(EmbeddedAdapter, name)
        assert method.__qualname__ == f"EmbeddedAdapter.{name}", name
        source = inspect.getsource(method)
        assert "self._one(" in source or "door.collection(" in source, name


def test_nothing_outside_the_engine_layer_writes_to_the_engine_by_another_route() -> None:
    """Only `app/db` and `app/engine` hold the driver's client, make one, or hold
    PostgreSQL connections; elsewhere the adapter is asked only for its
    capabilities. So every other module writes through `app.db`'s handles, whose
    writes the adapter sends through the door. (Aggregations cannot write: the
    pipeline compiler refuses `$out` and `$merge`.)"""
    offenders = []
    for root in ("app", "auth", "data_api", "management"):
        for path in sorted((REPO / root).rglob("*.py")):
            relative = path.relative_to(REPO).as_posix()
            if relative.startswith(("app/db/", "app/engine/")):
                continue
            offenders += route_offences(relative, ast.parse(path.read_text(encoding="utf-8")))
    assert offenders == []


def route_offences(relative: str, tree: ast.AST) -> list[str]:
    found = []
    capability_reads = {
        id(node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr == "capabilities"
        and isinstance(node.value, ast.Await)
    }
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            names += [alias.name for alias in node.names]
            if any(n.split(".")[0] in {"psycopg", "psycopg2", "asyncpg"} for n in names):
                found.append(f"{relative}:{node.lineno} imports a PostgreSQL driver")
        starlette_client = isinstance(node, ast.Attribute) and (
            isinstance(node.value, ast.Name) and node.value.id == "request"
        )
        if isinstance(node, ast.Attribute) and node.attr == "client" and not starlette_client:
            found.append(f"{relative}:{node.lineno} uses a driver's client")
        if isinstance(node, ast.Call):
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name in {"open_client", "AsyncMongoClient", "MongoClient"}:
                found.append(f"{relative}:{node.lineno} makes a driver client")
        if (
            isinstance(node, ast.Await)
            and isinstance(node.value, ast.Call)
            and getattr(node.value.func, "attr", None) == "adapter"
            and id(node) not in capability_reads
        ):
            found.append(f"{relative}:{node.lineno} uses the engine adapter directly")
    return found


def test_the_route_check_finds_what_it_forbids() -> None:
    probe = ast.parse(
        "import psycopg\n"
        "async def f(database, request):\n"
        "    request.client\n"
        "    database.client['x']['y'].update_one({}, {})\n"
        "    self.state.database.client\n"
        "    open_client('mongodb://x', s)\n"
        "    (await database.adapter()).collection(ns).delete_many({})\n"
        "    (await database.adapter()).capabilities\n"
    )
    assert sorted(o.split(" ", 1)[0] for o in route_offences("probe.py", probe)) == [
        "probe.py:1", "probe.py:4", "probe.py:5", "probe.py:6", "probe.py:7",
    ]  # fmt: skip


async def test_a_unique_index_admits_one_document_without_its_key(app: FastAPI) -> None:
    """MongoDB counts a missing key as null in a unique index (FerretDB 1.24 let any
    number of documents lack it): the second document without `email`, or with
    `email: null`, is a duplicate; compound keys count each missing part as null."""
    people = collection_of(app, "people")
    await people.create_index("email", unique=True, name="email_unique")
    await people.create_index([("a", 1), ("b", 1)], unique=True, name="a_b_unique")
    await people.insert_one({"_id": 1, "a": 1})
    for duplicate in ({"_id": 2}, {"_id": 3, "email": None}):
        with pytest.raises(DuplicateKeyError):
            await people.insert_one(duplicate)
    with pytest.raises(DuplicateKeyError):
        await people.insert_one({"_id": 4, "email": "x", "a": 1, "b": None})
    await people.insert_one({"_id": 5, "email": "y"})
    await people.insert_one({"_id": 6, "email": "z", "a": 1, "b": 2})
    assert [d["_id"] for d in await people.find({}).sort("_id").to_list(None)] == [1, 5, 6]


async def test_a_unique_index_over_documents_lacking_its_key_is_refused(app: FastAPI) -> None:
    people = collection_of(app, "people")
    await people.insert_many([{"_id": 1}, {"_id": 2}])
    with pytest.raises(OperationFailure):
        await people.create_index("email", unique=True, name="email_unique")
    await people.insert_one({"_id": 3})  # no unique index was left behind
    assert await people.count_documents({}) == 3


async def test_the_door_reconnects_after_the_engine_restarts(
    app: FastAPI, database_server: DatabaseServer
) -> None:
    """The door's pooled PostgreSQL connections die with a killed engine: the first
    writes after it is back open new ones instead of failing."""
    if not database_server.stoppable:
        pytest.skip("needs the embedded engine to restart it")
    counters = collection_of(app, "counters")
    await counters.insert_one({"_id": "c", "n": 0})
    await asyncio.gather(*(counters.update_one({"_id": "c"}, {"$inc": {"n": 1}}) for _ in range(8)))
    await asyncio.to_thread(database_server.kill)  # SIGKILL: no goodbye to any client
    await asyncio.to_thread(database_server.start)
    await wait_until_reachable(counters)
    results = await asyncio.gather(
        *(counters.update_one({"_id": "c"}, {"$inc": {"n": 1}}) for _ in range(8))
    )
    assert [r.modified_count for r in results] == [1] * 8
    assert await counters.find_one({"_id": "c"}) == {"_id": "c", "n": 16}


async def wait_until_reachable(collection: Collection) -> None:
    """Until the driver reads again (its own pool reconnects by itself)."""
    for _ in range(100):
        try:
            await collection.find_one({})
            return
        except AutoReconnect:
            await asyncio.sleep(0.1)
    raise AssertionError("the engine did not come back")


async def test_a_write_the_door_cannot_lock_fails_as_an_engine_outage(
    app: FastAPI, client: httpx.AsyncClient, register: Register
) -> None:
    """Without the engine's PostgreSQL the door writes nothing and fails the way the
    driver fails when the engine is away (`AutoReconnect`), so every caller's outage
    handling applies: a client gets 503 `DATABASE_UNAVAILABLE`."""
    database = state_of(app).database
    if await database.engine_name() != "ferretdb-postgresql":
        pytest.skip("the door is the embedded engine's")
    counters = collection_of(app, "counters")
    await counters.insert_one({"_id": "c", "n": 0})
    owner = await register()
    dataset = await create_dataset(client, owner.bearer, name="unlockable")
    stored_before = await dataset_row(app, dataset["id"])
    working = database.engine_reads
    database.engine_reads = EngineSql("host=/nonexistent-quarry-socket-dir dbname=x user=x")
    try:
        with pytest.raises(AutoReconnect):
            await counters.update_one({"_id": "c"}, {"$inc": {"n": 1}})
        patched = await client.patch(
            f"{DATASETS}/{dataset['id']}", json={"description": "x"}, headers=owner.bearer
        )
        assert_envelope(patched, 503, ErrorCode.DATABASE_UNAVAILABLE)
    finally:
        await database.engine_reads.close()
        database.engine_reads = working
    assert await counters.find_one({"_id": "c"}) == {"_id": "c", "n": 0}
    assert await dataset_row(app, dataset["id"]) == stored_before


async def test_a_server_given_only_the_engines_url_finds_its_postgresql(
    database_server: DatabaseServer, make_settings: Any
) -> None:
    """The engine leaves its reader conninfo beside its socket (0600, in the 0700
    socket directory). A `Database` made without the engine's SQL finds it there
    at its first write (also one that started while the engine was down), and
    while there is none to find it refuses to write rather than write without
    the door."""
    if database_server.engine is None:
        pytest.skip("the embedded engine's")
    published = conninfo_path(database_server.engine.socket)
    assert stat.S_IMODE(published.stat().st_mode) == 0o600
    assert conninfo_beside(database_server.url) == database_server.engine.postgres_conninfo()
    assert conninfo_beside("mongodb://127.0.0.1:27017/") is None
    settings = make_settings()
    database = Database(
        client=open_client(database_server.url, settings),
        control_db_name=settings.control_db,
        choose_adapter=choose_adapter,
    )
    hidden = published.with_name(published.name + ".hidden")
    try:
        items = database.db(f"door_{ObjectId()}")["items"]
        await items.insert_one({"_id": 1, "n": 0})  # inserts need no lock
        published.rename(hidden)
        try:
            with pytest.raises(AutoReconnect, match="not known to this server"):
                await items.update_one({"_id": 1}, {"$inc": {"n": 1}})
        finally:
            hidden.rename(published)
        assert await items.find_one({"_id": 1}) == {"_id": 1, "n": 0}
        assert (await items.update_one({"_id": 1}, {"$inc": {"n": 1}})).modified_count == 1
        assert database.engine_reads is not None
        await database.drop_database(items.database_name)
    finally:
        await database.close()


async def test_a_write_held_off_by_a_lock_fails_within_the_lock_timeout_as_such(
    database_server: DatabaseServer,
) -> None:
    """Another session holds the document's lock: the door gives up after its lock
    timeout and says so (not as a cancelled statement, retried for twice as long)."""
    if database_server.engine is None:
        pytest.skip("the embedded engine's")
    conninfo = database_server.engine.postgres_conninfo()
    assert conninfo is not None
    door = WriteDoor(conninfo, lock_timeout_ms=300)
    high, low = document_key("db", "c", 7)
    holder = await psycopg.AsyncConnection.connect(conninfo)
    ran = []
    try:
        await holder.execute("SELECT pg_advisory_xact_lock(%s, %s)", (high, low))

        async def write() -> None:
            ran.append(True)

        with pytest.raises(AutoReconnect, match="stayed locked"):
            await door.document("db", "c", 7, write)
        assert ran == []
    finally:
        await holder.close()
        await door.close()


def test_lock_keys_are_one_for_numerically_equal_ids() -> None:
    assert (
        document_key("d", "c", 5) == document_key("d", "c", Int64(5)) == document_key("d", "c", 5.0)
    )
    assert document_key("d", "c", {"a": Int64(5), "b": [1.0]}) == document_key(
        "d", "c", {"a": 5, "b": [Int64(1)]}
    )
    assert document_key("d", "c", 5) != document_key("d", "c", "5")
    assert document_key("d", "c", True) != document_key("d", "c", 1)


async def test_int32_overflow_of_an_array_element_becomes_a_long(
    app: FastAPI, sync_client: MongoClient[dict[str, Any]]
) -> None:
    numbers = collection_of(app, "numbers")
    await numbers.insert_one({"_id": 1, "arr": [0, INT32_MAX]})
    await numbers.update_one({"_id": 1}, {"$inc": {"arr.1": 1}})
    stored = sync_client[numbers.database_name]["numbers"].find_one({"_id": 1})
    assert stored == {"_id": 1, "arr": [0, INT32_MAX + 1]}
    assert type(stored["arr"][1]) is Int64


async def test_a_write_whose_answer_never_came_keeps_its_lock_until_ferretdb_is_done(
    database_server: DatabaseServer, make_settings: Any
) -> None:
    """A socket timeout ends the client's wait, not FerretDB's write: the next writer
    must not read the document before that write is in it. Here FerretDB's
    write-back is held by a SHARE lock on its table past a 300 ms socket timeout."""
    if database_server.engine is None:
        pytest.skip("the embedded engine's")
    settings = make_settings(mongodb_socket_timeout_ms=300)
    database = Database(
        client=open_client(database_server.url, settings),
        control_db_name=settings.control_db,
        choose_adapter=choose_adapter,
        engine_reads=engine_sql(database_server),
    )
    superuser = database_server.engine.superuser_conninfo()
    assert superuser is not None
    counters = database.db(f"door_{ObjectId()}")["counters"]
    try:
        await counters.insert_one({"_id": "c", "n": 0})
        with holding_writes(superuser, counters.database_name, "counters"):
            first = asyncio.create_task(counters.update_one({"_id": "c"}, {"$inc": {"n": 1}}))
            await asyncio.sleep(0.1)
            second = asyncio.create_task(counters.update_one({"_id": "c"}, {"$inc": {"n": 1}}))
            # Past the first's socket timeout: its answer is lost, its write is not
            # done, and the second writer still waits for the first's lock.
            await asyncio.sleep(1.0)
            assert not first.done() and not second.done()
        with pytest.raises(NetworkTimeout):
            await first  # reported once FerretDB finished it
        assert (await second).modified_count == 1
        assert await counters.find_one({"_id": "c"}) == {"_id": "c", "n": 2}
        await database.drop_database(counters.database_name)
    finally:
        await database.close()


async def test_a_write_cancelled_at_shutdown_keeps_its_lock_until_ferretdb_is_done(
    database_server: DatabaseServer, make_settings: Any
) -> None:
    """The door's task cancelled (the event loop shutting down) while FerretDB is still
    writing: the lock waits for that write as after a lost answer."""
    if database_server.engine is None:
        pytest.skip("the embedded engine's")
    settings = make_settings()
    reads = engine_sql(database_server)
    database = Database(
        client=open_client(database_server.url, settings),
        control_db_name=settings.control_db,
        choose_adapter=choose_adapter,
        engine_reads=reads,
    )
    superuser = database_server.engine.superuser_conninfo()
    assert superuser is not None and reads is not None
    counters = database.db(f"door_{ObjectId()}")["counters"]
    try:
        await counters.insert_one({"_id": "c", "n": 0})
        with holding_writes(superuser, counters.database_name, "counters"):
            first = asyncio.create_task(counters.update_one({"_id": "c"}, {"$inc": {"n": 1}}))
            await asyncio.sleep(0.3)  # FerretDB holds its write-back (the SHARE lock)
            (door_task,) = reads.door._running
            door_task.cancel()
            second = asyncio.create_task(counters.update_one({"_id": "c"}, {"$inc": {"n": 1}}))
            await asyncio.sleep(0.5)
            assert not second.done()  # the cancelled write still holds the document
        with pytest.raises(asyncio.CancelledError):
            await first
        assert (await second).modified_count == 1
        assert await counters.find_one({"_id": "c"}) == {"_id": "c", "n": 2}
        await database.drop_database(counters.database_name)
    finally:
        await database.close()


async def test_the_engine_has_room_for_every_connection_the_most_workers_hold(
    database_server: DatabaseServer,
) -> None:
    """Each worker's reads, door and builder, times the most workers a server may
    run, beside FerretDB's pool: PostgreSQL never refuses one of them."""
    if database_server.engine is None:
        pytest.skip("the embedded engine's")
    (most,) = [m.le for m in Settings.model_fields["workers"].metadata if isinstance(m, Le)]
    assert most == postgres.MOST_WORKERS
    per_worker = sql.POOL_SIZE + door.POOL_SIZE + 1  # + the typed-index builder
    assert per_worker <= postgres.WORKER_CONNECTIONS
    superuser = database_server.engine.superuser_conninfo()
    assert superuser is not None
    async with await psycopg.AsyncConnection.connect(superuser, autocommit=True) as connection:
        cursor = await connection.execute("SHOW max_connections")
        row = await cursor.fetchone()
    assert row is not None
    assert int(row[0]) >= postgres.POOL_MAX_CONNECTIONS + most * per_worker
