"""Rows for tests (`spec/rows.md`): a module-wide app with an owner, calls of the
rows endpoints through real HTTP, and readers of what the rows storage holds
(the directory and the buckets, with the driver), so tests assert on stored
state. `reference_rows` is the brute-force model a test compares reads with.
"""

from __future__ import annotations

import contextlib
from array import array
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import orjson
from bson import ObjectId
from fastapi import FastAPI

from data_api.datasets.repository import ROW_BUCKETS, ROW_DIRS, tenant_db_name
from tests.accounts import Account, register_account
from tests.conftest import DatabaseServer
from tests.datasets import create_dataset, user_id_of
from tests.entries import Sync, module_app, module_settings
from tests.mailbox import Inbox

ROWS = "/api/v1/rows"
COLUMNS = "/api/v1/columns"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

Headers = Mapping[str, str]


def ms_of(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(milliseconds=1)


def iso_ms(ms: int) -> str:
    """How Quarry writes a timestamp: UTC, `Z`, milliseconds only when non-zero."""
    moment = EPOCH + timedelta(milliseconds=ms)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms % 1000:03d}Z" if ms % 1000 else f"{text}Z"


def series(start_ms: int, count: int, step_ms: int = 1000, **values: Any) -> list[dict[str, Any]]:
    """`count` rows `step_ms` apart from `start_ms`, values `{"i": n, **values}`."""
    return [
        {"timestamp": start_ms + n * step_ms, "values": {"i": n, **values}} for n in range(count)
    ]


def ndjson(rows: Iterable[Mapping[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(row) + b"\n" for row in rows)


@dataclass
class RowsOwner:
    """An owner with the module's app: `dataset(...)` makes a fresh dataset."""

    app: FastAPI
    http: httpx.AsyncClient
    account: Account
    owner_id: ObjectId
    sync: Sync
    control_db: str
    inbox: Inbox

    @property
    def headers(self) -> dict[str, str]:
        return self.account.bearer

    async def dataset(self, name: str = "series", headers: Headers | None = None) -> str:
        found = await create_dataset(self.http, headers or self.headers, name=name)
        return str(found["id"])

    async def bulk(
        self,
        dataset: str,
        rows: list[Any],
        *,
        on_conflict: str | None = None,
        headers: Headers | None = None,
    ) -> httpx.Response:
        body: dict[str, Any] = {"dataset": dataset, "rows": rows}
        if on_conflict is not None:
            body["on_conflict"] = on_conflict
        return await self.http.post(
            f"{ROWS}/bulk_insert",
            content=orjson.dumps(body),
            headers={**(headers or self.headers), "content-type": "application/json"},
        )

    async def load(
        self,
        dataset: str,
        body: bytes,
        *,
        on_conflict: str = "error",
        headers: Headers | None = None,
    ) -> httpx.Response:
        return await self.http.post(
            f"{ROWS}/bulk_insert",
            params={"dataset": dataset, "on_conflict": on_conflict},
            content=body,
            headers={**(headers or self.headers), "content-type": "application/x-ndjson"},
        )

    async def read(self, dataset: str, headers: Headers | None = None, **params: Any) -> Any:
        response = await self.http.get(
            ROWS, params={"dataset": dataset, **params}, headers=headers or self.headers
        )
        assert response.status_code == 200, response.text
        return response.json()

    async def read_all(self, dataset: str, **params: Any) -> list[dict[str, Any]]:
        """Every row by cursor paging (`limit` 10,000)."""
        rows: list[dict[str, Any]] = []
        after = None
        while True:
            extra = {"after": after} if after else {}
            page = await self.read(dataset, limit=10_000, **params, **extra)
            rows += page["data"]
            after = page["pagination"]["next_cursor"]
            if after is None:
                return rows

    # ------------------------------------------------------------ stored state

    def tenant(self) -> Any:
        return self.sync[tenant_db_name(self.owner_id)]

    def directory(self, dataset: str) -> dict[str, Any] | None:
        return self.tenant()[ROW_DIRS].find_one({"_id": ObjectId(dataset)})

    def buckets(self, dataset: str) -> list[dict[str, Any]]:
        return list(self.tenant()[ROW_BUCKETS].find({"dataset_id": ObjectId(dataset)}))

    def stored_rows(self, dataset: str) -> list[tuple[int, dict[str, Any]]]:
        """Every row the directory names, read from its buckets with the driver."""
        directory = self.directory(dataset)
        if directory is None:
            return []
        packed = array("q")
        packed.frombytes(bytes(directory["b"]))
        seqs = list(packed[2::4])
        by_id = {b["_id"]: b for b in self.buckets(dataset)}
        rows: list[tuple[int, dict[str, Any]]] = []
        for seq in seqs:
            bucket = by_id[f"{dataset}:{seq}"]
            times = array("q")
            times.frombytes(bytes(bucket["t"]))
            lines = bytes(bucket["v"]).split(b"\n") if bucket["n"] else []
            rows += [(t, orjson.loads(line)) for t, line in zip(times, lines, strict=True)]
        return rows


def reference_rows(
    rows: Iterable[tuple[int, dict[str, Any]]],
    start: int | None = None,
    end: int | None = None,
    descending: bool = False,
) -> list[dict[str, Any]]:
    """What `GET /rows` must answer, computed by brute force."""
    kept = sorted(
        (t, v) for t, v in rows if (start is None or t >= start) and (end is None or t < end)
    )
    if descending:
        kept.reverse()
    return [{"timestamp": iso_ms(t), "values": v} for t, v in kept]


@contextlib.asynccontextmanager
async def rows_owner(
    server: DatabaseServer, inbox: Inbox, sync: Sync, data_dir: Path, **overrides: Any
) -> AsyncIterator[RowsOwner]:
    """A module's app (its own settings) and a registered owner whose tenant database exists."""
    settings = module_settings(server, inbox, data_dir, **overrides)
    async with module_app(server, sync, settings) as (app, http):
        account = await register_account(http, inbox)
        owner_id = await user_id_of(http, account)
        owner = RowsOwner(app, http, account, owner_id, sync, settings.control_db, inbox)
        # The owner's tenant database exists before the first test (see module_app).
        seed = await owner.dataset("seed")
        response = await owner.bulk(seed, [{"timestamp": 0, "values": {}}])
        assert response.status_code == 200, response.text
        yield owner
