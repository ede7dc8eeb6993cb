"""Document CRUD, count, aggregate, bulk, and cursor iteration over every page (`crud.md`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic_core import to_json

from quarry_client import models as m
from quarry_client._async.transport import AsyncTransport
from quarry_client.routes import documents as r

#: A MongoDB-syntax filter (operator allow-list in crud.md); dates may be `datetime`s.
Filter = Mapping[str, Any]
#: `{"signup_date": -1}`, `[("signup_date", -1)]`, or the server's text form "-signup_date".
Sort = Mapping[str, int] | Sequence[tuple[str, int]] | str
#: `{"email": 1}` / `{"notes": 0}`, `["email", "plan"]`, or the text form "email,plan".
Projection = Mapping[str, int | bool] | Sequence[str] | str
Document = dict[str, Any]
BulkOperation = m.BulkInsert | m.BulkUpdate | m.BulkDelete | Mapping[str, Any]


def query_json(value: Any) -> str:
    """A value as the JSON text the server reads from a query parameter
    (`datetime`s as ISO 8601, like in JSON bodies)."""
    return to_json(value).decode()


def sort_param(sort: Sort | None) -> str | None:
    """The `sort` query parameter: a JSON object of field: 1 | -1, in order."""
    if sort is None or isinstance(sort, str):
        return sort
    pairs = sort.items() if isinstance(sort, Mapping) else sort
    return query_json(dict(pairs))


def projection_param(projection: Projection | None) -> str | None:
    """The `fields` query parameter: a JSON projection or a comma list of names."""
    if projection is None or isinstance(projection, str):
        return projection
    if isinstance(projection, Mapping):
        return query_json(dict(projection))
    return ",".join(projection)


def filter_param(filter: Filter | None) -> str | None:
    """The `filters` query parameter (JSON), or None for every document."""
    return None if filter is None else query_json(filter)


class AsyncDocuments:
    """Documents of one collection of one of your databases, addressed by
    `database_id` and `collection` in every call."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def insert(
        self,
        database_id: str,
        collection: str,
        documents: Mapping[str, Any] | Sequence[Mapping[str, Any]],
    ) -> m.InsertAnswer:
        """Insert one document or a list of up to 10,000, all or nothing."""
        data: Any = (
            dict(documents) if isinstance(documents, Mapping) else [dict(d) for d in documents]
        )
        body = m.InsertRequest(database_id=database_id, collection_name=collection, data=data)
        answer: m.InsertAnswer = await self._t.call(r.INSERT, body=body)
        return answer

    async def insert_many(
        self,
        database_id: str,
        collection: str,
        documents: Iterable[Mapping[str, Any]],
        *,
        batch_size: int = 1000,
    ) -> m.InsertAnswer:
        """Insert any number of documents, `batch_size` per request (each batch all
        or nothing; batches already sent stay if a later one fails)."""
        ids: list[Any] = []
        batch: list[Mapping[str, Any]] = []
        for document in documents:
            batch.append(document)
            if len(batch) >= batch_size:
                ids += (await self.insert(database_id, collection, batch)).inserted_ids
                batch = []
        if batch:
            ids += (await self.insert(database_id, collection, batch)).inserted_ids
        return m.InsertAnswer(inserted_ids=ids, inserted_count=len(ids))

    async def find(
        self,
        database_id: str,
        collection: str,
        filter: Filter | None = None,
        *,
        sort: Sort | None = None,
        projection: Projection | None = None,
        page: int | None = None,
        page_size: int = 20,
        after: str | None = None,
        count: bool = False,
    ) -> m.FindAnswer:
        """One page: by number (`page`, with `total_items`) or after a cursor
        (`after` = the previous page's `pagination.next_cursor`)."""
        params = {
            "database_id": database_id,
            "collection_name": collection,
            "filters": filter_param(filter),
            "sort": sort_param(sort),
            "fields": projection_param(projection),
            "page": page,
            "page_size": page_size,
            "after": after,
            "count": count or None,
        }
        answer: m.FindAnswer = await self._t.call(r.FIND, params=params)
        return answer

    async def iterate(
        self,
        database_id: str,
        collection: str,
        filter: Filter | None = None,
        *,
        sort: Sort | None = None,
        projection: Projection | None = None,
        page_size: int = 1000,
    ) -> AsyncIterator[Document]:
        """Every matching document, page after page by cursor (a deep page costs
        what the first one does)."""
        after: str | None = None
        while True:
            answer = await self.find(
                database_id,
                collection,
                filter,
                sort=sort,
                projection=projection,
                page_size=page_size,
                after=after,
            )
            for document in answer.data:
                yield document
            after = answer.pagination.next_cursor
            if after is None:
                return

    async def get(
        self,
        database_id: str,
        collection: str,
        document_id: str,
        *,
        projection: Projection | None = None,
    ) -> Document:
        """One document by its `_id` (NotFound `DOCUMENT_NOT_FOUND` if none)."""
        params = {
            "database_id": database_id,
            "collection_name": collection,
            "fields": projection_param(projection),
        }
        answer: m.DocumentAnswer = await self._t.call(
            r.GET, path={"document_id": document_id}, params=params
        )
        return answer.data

    async def update(
        self,
        database_id: str,
        collection: str,
        filter: Filter | None,
        update: Mapping[str, Any],
        *,
        upsert: bool = False,
        multi: bool = True,
        all_documents: bool = False,
        verb: Literal["PATCH", "PUT"] = "PATCH",
    ) -> m.UpdateAnswer:
        """Update the matching documents: `update` is a plain object (`$set` of its
        fields) or update operators; the server treats PATCH and PUT alike."""
        body = m.UpdateRequest(
            database_id=database_id,
            collection_name=collection,
            filters=None if filter is None else dict(filter),
            update_data=dict(update),
            upsert=upsert,
            multi=multi,
            all=all_documents,
        )
        answer: m.UpdateAnswer = await self._t.call(
            r.REPLACE if verb == "PUT" else r.UPDATE, body=body
        )
        return answer

    async def delete(
        self,
        database_id: str,
        collection: str,
        filter: Filter | None,
        *,
        multi: bool = True,
        all_documents: bool = False,
    ) -> int:
        """Delete the matching documents; how many went. An empty filter needs
        `all_documents=True`."""
        body = m.DeleteRequest(
            database_id=database_id,
            collection_name=collection,
            filters=None if filter is None else dict(filter),
            multi=multi,
            all=all_documents,
        )
        answer: m.DeleteAnswer = await self._t.call(r.DELETE, body=body)
        return answer.deleted_count

    async def count(self, database_id: str, collection: str, filter: Filter | None = None) -> int:
        """How many documents match (all of them without a filter)."""
        body = m.CountRequest(
            database_id=database_id,
            collection_name=collection,
            filters=None if filter is None else dict(filter),
        )
        answer: m.CountAnswer = await self._t.call(r.COUNT, body=body)
        return answer.count

    async def aggregate(
        self, database_id: str, collection: str, pipeline: Sequence[Mapping[str, Any]]
    ) -> list[Any]:
        """Run an aggregation pipeline (stage allow-list); its result documents."""
        body = m.AggregateRequest(
            database_id=database_id,
            collection_name=collection,
            pipeline=[dict(stage) for stage in pipeline],
        )
        answer: m.DocumentsAggregateAnswer = await self._t.call(r.AGGREGATE, body=body)
        return answer.data

    async def bulk(
        self, database_id: str, collection: str, operations: Sequence[BulkOperation]
    ) -> m.BulkAnswer:
        """Run inserts, updates and deletes in order, all or nothing, e.g.
        `[{"insert": {...}}, {"update": {"filters": ..., "update_data": ...}}]`."""
        body = m.BulkRequest.model_validate(
            {
                "database_id": database_id,
                "collection_name": collection,
                "operations": [
                    op if isinstance(op, m.BulkInsert | m.BulkUpdate | m.BulkDelete) else dict(op)
                    for op in operations
                ],
            }
        )
        answer: m.BulkAnswer = await self._t.call(r.BULK, body=body)
        return answer
