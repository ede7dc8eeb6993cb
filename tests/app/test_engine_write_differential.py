"""Differential test of the write door: seeded random update sequences over
edge-value documents, applied once through Quarry's database layer (the door)
and once through the raw driver (FerretDB's own evaluation, one client), must
leave the same stored documents — values, BSON types and field order — and give
the same answers.

Where Quarry departs from FerretDB on purpose, the departure follows MongoDB's
documented behaviour, is listed in docs/engine.md ("Intended deviations"), and
is modelled here independently of Quarry's code: the oracle's result is
corrected by MongoDB's rule, never skipped. The test fails if the table and the
deviations it knows differ, or if a listed deviation is never exercised.
"""

from __future__ import annotations

import random
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from bson import Int64, ObjectId
from bson.codec_options import CodecOptions
from bson.raw_bson import RawBSONDocument
from fastapi import FastAPI
from pymongo import MongoClient, ReturnDocument
from pymongo.errors import OperationFailure

from app.db import Collection
from app.wiring import state_of
from tests.fixtures.engine import REPO, TEST_BACKEND

pytestmark = pytest.mark.skipif(
    TEST_BACKEND != "postgresql", reason="the door and its oracle are the embedded engine's"
)

SEED = 2512
SEQUENCES = 30
STEPS = 20
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
FIELDS = ["a", "b", "c", "n", "s"]
#: What this test models; docs/engine.md's table must list exactly these.
KNOWN_DEVIATIONS = {"int32-inc-overflow", "unique-missing-key", "dotted-write-filter"}

VALUES: list[Any] = [
    0, 1, -1, INT32_MAX, INT32_MAX - 1, INT32_MIN, INT32_MIN + 1, 2**31, Int64(2**53),
    Int64(2**53 + 1), Int64(2**63 - 1), Int64(-(2**63)), 0.5, -0.0, 0.1 + 0.2, 1e300,
    2.0**53, None, True, False, "", "é", "ﬁ", "😀", "a\x01b", "Z", "a",
    datetime(1969, 7, 20, 20, 17, tzinfo=UTC), datetime(2001, 1, 1, tzinfo=UTC),
    {"x": 1, "y": "z"}, [1, 2, 2, "x"], [], {},
]  # fmt: skip
NUMBERS: list[Any] = [1, -1, 2, 7, INT32_MAX, INT32_MIN, Int64(1), Int64(-5), 0.5, -2.5]


def deviations_listed() -> set[str]:
    text = (REPO / "docs" / "engine.md").read_text(encoding="utf-8")
    section = text.split("## Intended deviations", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z0-9-]+)` \|", section, flags=re.MULTILINE))


def test_the_deviation_table_lists_what_the_tests_model() -> None:
    assert deviations_listed() == KNOWN_DEVIATIONS


def random_document(rng: random.Random, _id: int) -> dict[str, Any]:
    fields = rng.sample(FIELDS, rng.randint(0, len(FIELDS)))
    return {"_id": _id, "g": rng.randint(0, 2), **{f: rng.choice(VALUES) for f in fields}}


def random_update(rng: random.Random) -> dict[str, Any]:
    field = rng.choice(FIELDS)
    operator = rng.choice(
        ["$set", "$inc", "$inc", "$inc", "$mul", "$unset", "$min", "$max", "$rename",
         "$push", "$addToSet", "$pull", "$pop"]
    )  # fmt: skip
    if operator in ("$inc", "$mul"):
        return {operator: {field: rng.choice(NUMBERS)}}
    if operator == "$unset":
        return {"$unset": {field: ""}}
    if operator == "$rename":
        return {"$rename": {field: rng.choice([f for f in FIELDS if f != field])}}
    if operator == "$pop":
        return {"$pop": {field: rng.choice([1, -1])}}
    update = {operator: {field: rng.choice(VALUES)}}
    if rng.random() < 0.3:
        update.setdefault("$set", {})["touched"] = rng.randint(0, 9)
    return update


def overflowed_fields(before: dict[str, Any] | None, update: Any) -> dict[str, Int64]:
    """MongoDB's rule, modelled on its own: an int32 `$inc` by an int32 whose sum
    leaves the int32 range gives a long (FerretDB 1.24 wraps it around)."""
    if before is None or not isinstance(update, dict):
        return {}
    fixed = {}
    for field, increment in (update.get("$inc") or {}).items():
        value = before.get(field)
        if type(value) is int and type(increment) is int and INT32_MIN <= increment <= INT32_MAX:
            total = value + increment
            if not INT32_MIN <= total <= INT32_MAX:
                fixed[field] = Int64(total)
    return fixed


class Twin:
    """One collection through Quarry (`door`), its twin through the raw driver."""

    def __init__(self, door: Collection, raw: Any, plain: Any) -> None:
        self.door, self.raw, self.plain = door, raw, plain
        self.exercised: set[str] = set()

    def affected(self, filter: dict[str, Any]) -> list[dict[str, Any]]:
        return list(self.plain.find(filter))

    def correct(self, before: list[dict[str, Any]], update: Any) -> dict[Any, dict[str, Int64]]:
        """Apply MongoDB's rule to the oracle's documents after FerretDB wrapped."""
        fixes = {}
        for document in before:
            fixed = overflowed_fields(document, update)
            if fixed:
                self.exercised.add("int32-inc-overflow")
                self.raw.update_one({"_id": document["_id"]}, {"$set": fixed})
                fixes[document["_id"]] = fixed
        return fixes

    async def step(self, rng: random.Random, ids: list[int]) -> None:
        kind = rng.choice(
            ["update_one"] * 5 + ["update_many", "replace_one", "find_one_and_update",
                                  "upsert", "delete_one"]
        )  # fmt: skip
        target = rng.choice(ids)
        by_group = rng.random() < 0.2
        filter: dict[str, Any] = {"g": rng.randint(0, 2)} if by_group else {"_id": target}
        update = random_update(rng)
        door_answer: Any
        raw_answer: Any
        if kind == "update_many":
            filter = {"g": rng.randint(0, 2)}
            before = self.affected(filter)
            door_answer = await self.run(self.door.update_many(filter, update))
            raw_answer = self.sync(lambda: self.raw.update_many(filter, update))
            if not isinstance(raw_answer, Exception):
                self.correct(before, update)
        elif kind in ("update_one", "upsert"):
            upsert = kind == "upsert"
            if upsert:
                filter = {"_id": rng.choice([target, max(ids) + 1 + rng.randint(0, 3)])}
            before = self.affected(filter)[:1]
            door_answer = await self.run(self.door.update_one(filter, update, upsert=upsert))
            raw_answer = self.sync(lambda: self.raw.update_one(filter, update, upsert=upsert))
            if not isinstance(raw_answer, Exception) and raw_answer.matched_count:
                self.correct(before, update)  # the first match is the one updated
        elif kind == "replace_one":
            replacement = {k: v for k, v in random_document(rng, 0).items() if k != "_id"}
            door_answer = await self.run(self.door.replace_one(filter, replacement))
            raw_answer = self.sync(lambda: self.raw.replace_one(filter, replacement))
        elif kind == "find_one_and_update":
            after = rng.random() < 0.5
            returned = ReturnDocument.AFTER if after else ReturnDocument.BEFORE
            filter = {"_id": target}
            before = self.affected(filter)
            door_answer = await self.run(
                self.door.find_one_and_update(filter, update, return_document=returned)
            )
            raw_answer = self.sync(
                lambda: self.plain.find_one_and_update(filter, update, return_document=returned)
            )
            if not isinstance(raw_answer, Exception):
                fixes = self.correct(before, update)
                if after and raw_answer is not None and raw_answer["_id"] in fixes:
                    raw_answer.update(fixes[raw_answer["_id"]])
        else:
            door_answer = await self.run(self.door.delete_one(filter))
            raw_answer = self.sync(lambda: self.raw.delete_one(filter))
        assert summary(door_answer) == summary(raw_answer), (kind, filter, update)
        self.assert_same_storage()

    async def run(self, call: Any) -> Any:
        try:
            return await call
        except OperationFailure as exc:
            return exc

    def sync(self, call: Any) -> Any:
        try:
            return call()
        except OperationFailure as exc:
            return exc

    def assert_same_storage(self) -> None:
        door = self.raw.database[self.door.name]
        stored = [bytes(d.raw) for d in door.find({}, sort=[("_id", 1)])]
        oracle = [bytes(d.raw) for d in self.raw.find({}, sort=[("_id", 1)])]
        assert stored == oracle


def summary(answer: Any) -> Any:
    if isinstance(answer, OperationFailure):
        return ("error", answer.code)
    if answer is None or isinstance(answer, dict):
        return answer
    if hasattr(answer, "deleted_count"):
        return ("deleted", answer.deleted_count)
    return ("updated", answer.matched_count, answer.modified_count, answer.upserted_id)


async def test_random_update_sequences_store_what_ferretdb_plus_mongodb_rules_store(
    app: FastAPI, sync_client: MongoClient[dict[str, Any]]
) -> None:
    database = state_of(app).database
    name = f"diff_{ObjectId()}"
    raw_options = CodecOptions(document_class=RawBSONDocument, tz_aware=True)
    exercised: set[str] = set()
    for sequence in range(SEQUENCES):
        rng = random.Random(SEED * 1000 + sequence)
        door = database.db(name)[f"door{sequence}"]
        raw_db = sync_client.get_database(name, codec_options=raw_options)
        plain = sync_client[name][f"raw{sequence}"]
        twin = Twin(door, raw_db[f"raw{sequence}"], plain)
        documents = [random_document(rng, i) for i in range(6)]
        await door.insert_many(documents)
        plain.insert_many(documents)
        for _ in range(STEPS):
            await twin.step(rng, [d["_id"] for d in documents])
        exercised |= twin.exercised
    assert "int32-inc-overflow" in exercised


async def test_a_dotted_filter_in_a_write_steps_through_arrays_as_find_does(
    app: FastAPI, sync_client: MongoClient[dict[str, Any]]
) -> None:
    """`dotted-write-filter`: FerretDB's update/delete push `{"items.sku": …}` to SQL
    as a path that cannot step through arrays and miss documents its own find
    returns; MongoDB's write matches what its find matches."""
    items = state_of(app).database.db(f"diff_{ObjectId()}")["orders"]
    await items.insert_many([{"_id": 1, "items": [{"sku": "a"}, {"sku": "b"}]}])
    raw = sync_client[items.database_name]["orders"]
    assert raw.count_documents({"items.sku": "b"}) == 1  # FerretDB's find matches
    assert raw.update_one({"items.sku": "b"}, {"$set": {"raw": 1}}).matched_count == 0
    result = await items.update_one({"items.sku": "b"}, {"$set": {"seen": True}})
    assert result.matched_count == 1
    assert (await items.delete_one({"items.sku": "a"})).deleted_count == 1
