"""Logical databases, collections, field schemas, import and export (`management.md`)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from pathlib import Path
from typing import IO, Any, Literal

from pydantic_core import to_json

from quarry_client import models as m
from quarry_client._async.documents import Filter, filter_param
from quarry_client._async.files import save_chunks
from quarry_client._async.transport import AsyncTransport
from quarry_client.errors import QuarryError
from quarry_client.retry import NO_RETRY, RetryPolicy
from quarry_client.routes import management as r

#: A collection: its name, field schemas and `strict` flag.
CollectionSpec = m.CollectionDefinition | Mapping[str, Any]
#: One field of a schema, e.g. `{"name": "email", "type": "string", "unique": True}`.
FieldSpec = m.FieldDefinition | Mapping[str, Any]
#: An index declared on its own, e.g. `{"keys": [{"field": "price", "type": "float",
#: "direction": -1}], "unique": False}` (`name` derived from the keys when left out).
IndexSpec = m.IndexDefinition | Mapping[str, Any]
#: Called with (bytes sent so far, total bytes) as the upload's chunks go out;
#: the total is None when it is not known in advance (a stream of documents).
Progress = Callable[[int, int | None], None]
OnError = Literal["abort", "skip"]
ExportFormat = Literal["json", "ndjson", "csv"]
PathLike = str | os.PathLike[str]

#: How much of a file goes out per read (httpx's multipart chunk size).
UPLOAD_CHUNK = 64 * 1024
NDJSON_TYPES = {".ndjson": "application/x-ndjson", ".jsonl": "application/x-ndjson"}


class AsyncDatabases:
    """Your logical databases: create and drop them, their collections and
    schemas, bulk import and export."""

    def __init__(self, transport: AsyncTransport) -> None:
        self._t = transport

    async def create(
        self, name: str, collections: Iterable[CollectionSpec] = ()
    ) -> m.CreateDatabaseAnswer:
        """Create a database with its first collections (`database.id` is its id)."""
        body = m.CreateDatabaseRequest(
            db_name=name, collections=[_collection(spec) for spec in collections]
        )
        answer: m.CreateDatabaseAnswer = await self._t.call(r.CREATE_DATABASE, body=body)
        return answer

    async def page(
        self, *, page: int = 1, page_size: int = 10, search: str | None = None
    ) -> m.DatabaseListAnswer:
        """One page of your databases, by name (`search`: a case-insensitive substring)."""
        params = {"page": page, "page_size": page_size, "search": search}
        answer: m.DatabaseListAnswer = await self._t.call(r.LIST_DATABASES, params=params)
        return answer

    async def iterate(
        self, *, search: str | None = None, page_size: int = 100
    ) -> AsyncIterator[m.DatabaseSummary]:
        """Every database (matching `search`), by name, page after page."""
        pages = self._t.every_page(r.LIST_DATABASES, params={"search": search}, page_size=page_size)
        async for summary in pages:
            yield summary

    async def find(self, name: str) -> m.DatabaseSummary | None:
        """The database called exactly `name`, or None."""
        async for summary in self.iterate(search=name):
            if summary.name == name:
                return summary
        return None

    async def get(self, database_id: str) -> m.DatabaseMetadata:
        """A database's metadata: names, collections with schemas and indexes."""
        answer: m.MetadataAnswer = await self._t.call(
            r.GET_METADATA, params={"database_id": database_id}
        )
        return answer.data

    async def list_collections(self, database_id: str) -> list[m.CollectionCount]:
        """A database's collections with their live document counts."""
        answer: m.CollectionListAnswer = await self._t.call(
            r.LIST_COLLECTIONS, params={"database_id": database_id}
        )
        return answer.collections

    async def create_collections(
        self, database_id: str, collections: Iterable[CollectionSpec]
    ) -> list[m.CollectionOut]:
        """Add collections (with their schemas and indexes) to a database."""
        body = m.CreateCollectionsRequest(
            database_id=database_id, collections=[_collection(spec) for spec in collections]
        )
        answer: m.CollectionsAnswer = await self._t.call(r.CREATE_COLLECTIONS, body=body)
        return answer.collections

    async def update_schema(
        self,
        database_id: str,
        collection: str,
        fields: Iterable[FieldSpec],
        *,
        strict: bool | None = None,
        indexes: Iterable[IndexSpec] | None = None,
    ) -> m.CollectionMetadata:
        """Replace a collection's field schema (documents are not rewritten) and,
        when `indexes` is given, its declared indexes (`[]`: none; None keeps them).
        The answer's indexes carry their state (`building`, `valid`, `off`)."""
        body = m.UpdateSchemaRequest(
            database_id=database_id,
            collection_name=collection,
            fields=[_field(spec) for spec in fields],
        )
        if strict is not None:
            body.strict = strict
        if indexes is not None:
            body.indexes = [_index(spec) for spec in indexes]
        answer: m.CollectionAnswer = await self._t.call(r.UPDATE_SCHEMA, body=body)
        return answer.collection

    async def violations(
        self, database_id: str, collection: str, field: str, *, page: int = 1, page_size: int = 50
    ) -> m.IndexViolationsAnswer:
        """One page of the documents whose indexed `field` holds another type than its
        indexes declare (`_id` and the type each holds), in `_id` order."""
        params = {
            "database_id": database_id,
            "collection_name": collection,
            "field": field,
            "page": page,
            "page_size": page_size,
        }
        answer: m.IndexViolationsAnswer = await self._t.call(r.INDEX_VIOLATIONS, params=params)
        return answer

    async def iter_violations(
        self, database_id: str, collection: str, field: str, *, page_size: int = 100
    ) -> AsyncIterator[m.IndexViolation]:
        """Every violation of `field`, page after page."""
        params = {"database_id": database_id, "collection_name": collection, "field": field}
        pages = self._t.every_page(r.INDEX_VIOLATIONS, params=params, page_size=page_size)
        async for violation in pages:
            yield violation

    async def convert_violations(
        self, database_id: str, collection: str, field: str, *, after: str | None = None
    ) -> m.ConversionAnswer:
        """Convert the violations of `field` that convert without loss (a string of an
        integer, a number of the other numeric type, an ISO-8601 string, a 24-hex
        string, "true"/"false"); at most `cap` per call: call again with
        `after=answer.next_after` while that is not None (the documents left in
        place are behind it)."""
        body = m.ConvertViolationsRequest(
            database_id=database_id, collection_name=collection, field=field, after=after
        )
        answer: m.ConversionAnswer = await self._t.call(r.CONVERT_INDEX_VIOLATIONS, body=body)
        return answer

    async def drop(self, database_id: str, *, confirmation: str) -> m.ManagementMessageAnswer:
        """Drop a database and everything in it; `confirmation` must be its exact
        name (else BadRequest `CONFIRMATION_MISMATCH` and nothing is dropped)."""
        body = m.DropDatabaseRequest(database_id=database_id, confirmation=confirmation)
        answer: m.ManagementMessageAnswer = await self._t.call(r.DROP_DATABASE, body=body)
        return answer

    async def drop_collections(self, database_id: str, names: Iterable[str]) -> list[str]:
        """Drop collections (all or none: an unknown name drops nothing); their names."""
        body = m.DropCollectionsRequest(database_id=database_id, collection_names=list(names))
        answer: m.DroppedCollectionsAnswer = await self._t.call(r.DROP_COLLECTIONS, body=body)
        return answer.dropped_collections

    async def import_file(
        self,
        database_id: str,
        collection: str | None,
        path: PathLike,
        *,
        on_error: OnError = "abort",
        progress: Progress | None = None,
    ) -> m.ImportAnswer:
        """Upload a JSON array, JSON object or JSON Lines file (Extended JSON allowed),
        streamed from disk; `collection` None means the file's name. With
        `on_error="abort"` one bad record imports nothing (ValidationError whose
        `details` name each record's `index`); with "skip" the answer lists them."""
        source = Path(path)
        with _open_for_reading(source) as handle:
            total = os.fstat(handle.fileno()).st_size
            content_type = NDJSON_TYPES.get(source.suffix.lower(), "application/json")

            def files() -> dict[str, Any]:
                reader = _ProgressReader(handle, total, progress)
                return {"json_file": (source.name, reader, content_type)}

            return await self._import(database_id, collection, on_error, files)

    async def import_documents(
        self,
        database_id: str,
        collection: str,
        documents: Iterable[Mapping[str, Any]],
        *,
        on_error: OnError = "abort",
        progress: Progress | None = None,
    ) -> m.ImportAnswer:
        """Import any iterable of documents, encoded to JSON Lines chunk by chunk as
        the upload goes (never all in memory). A list (or any re-iterable) is sent
        again from its start on a retry; an iterator or generator cannot be
        replayed, so its upload is not retried on 429/503 (the error is raised)."""
        replayable = iter(documents) is not documents
        used = False

        def files() -> dict[str, Any]:
            nonlocal used
            if used and not replayable:
                raise QuarryError("The documents' iterator cannot be sent a second time.")
            used = True
            reader = _NdjsonReader(documents, progress)
            return {"json_file": (f"{collection}.ndjson", reader, "application/x-ndjson")}

        return await self._import(
            database_id, collection, on_error, files, retry=None if replayable else NO_RETRY
        )

    async def _import(
        self,
        database_id: str,
        collection: str | None,
        on_error: OnError,
        files: Callable[[], dict[str, Any]],
        *,
        retry: RetryPolicy | None = None,
    ) -> m.ImportAnswer:
        form = {"database_id": database_id, "on_error": on_error}
        if collection is not None:
            form["collection_name"] = collection
        response = await self._t.request(
            r.IMPORT_DATA.method,
            r.IMPORT_DATA.path,
            data=form,
            files=files,
            retry=retry,
            http_timeout=self._t.transfer_timeout(),
        )
        return m.ImportAnswer.model_validate_json(response.content)

    async def iter_export(
        self,
        database_id: str,
        collection: str,
        *,
        format: ExportFormat = "json",
        filter: Filter | None = None,
    ) -> AsyncIterator[bytes]:
        """A collection (optionally filtered) as JSON, JSON Lines or CSV, in byte
        chunks as they arrive (relaxed Extended JSON for the JSON formats)."""
        params = {
            "database_id": database_id,
            "collection_name": collection,
            "format": format,
            "filters": filter_param(filter),
        }
        async with self._t.stream(
            r.EXPORT_DATA.method, r.EXPORT_DATA.path, params=params
        ) as response:
            async for chunk in response.aiter_bytes():
                yield chunk

    async def export(
        self,
        database_id: str,
        collection: str,
        *,
        to: PathLike | IO[bytes],
        format: ExportFormat = "json",
        filter: Filter | None = None,
    ) -> int:
        """Download a collection into a file (a path, or a binary file object left
        open), each chunk written as it arrives (`save_chunks`: a failed download
        leaves no half file); the number of bytes written."""
        chunks = self.iter_export(database_id, collection, format=format, filter=filter)
        return await save_chunks(chunks, to)

    async def list(
        self, *, search: str | None = None, page_size: int = 100
    ) -> list[m.DatabaseSummary]:
        """All your databases (matching `search`), by name, every page walked."""
        return [summary async for summary in self.iterate(search=search, page_size=page_size)]


def _collection(spec: CollectionSpec) -> m.CollectionDefinition:
    if isinstance(spec, m.CollectionDefinition):
        return spec
    return m.CollectionDefinition.model_validate(dict(spec))


def _index(spec: IndexSpec) -> m.IndexDefinition:
    if isinstance(spec, m.IndexDefinition):
        return spec
    return m.IndexDefinition.model_validate(dict(spec))


def _field(spec: FieldSpec) -> m.FieldDefinition:
    if isinstance(spec, m.FieldDefinition):
        return spec
    return m.FieldDefinition.model_validate(dict(spec))


def _open_for_reading(path: Path) -> IO[bytes]:
    return path.open("rb")


class _ProgressReader:
    """The upload's file as httpx's multipart encoder reads it (a chunk at a time,
    from the start on each attempt), reporting each chunk as it goes out."""

    def __init__(self, handle: IO[bytes], total: int, progress: Progress | None) -> None:
        self._handle = handle
        self._total = total
        self._progress = progress
        self._handle.seek(0)

    def read(self, size: int = UPLOAD_CHUNK) -> bytes:
        chunk = self._handle.read(size)
        if chunk and self._progress is not None:
            self._progress(self._handle.tell(), self._total)
        return chunk

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._handle.seek(offset, whence)

    def tell(self) -> int:
        return self._handle.tell()


class _NdjsonReader:
    """Documents encoded to JSON Lines only as the upload asks for the next chunk."""

    def __init__(self, documents: Iterable[Mapping[str, Any]], progress: Progress | None) -> None:
        self._documents = iter(documents)
        self._progress = progress
        self._buffer = bytearray()
        self._sent = 0
        self._exhausted = False

    def read(self, size: int = UPLOAD_CHUNK) -> bytes:
        while not self._exhausted and len(self._buffer) < size:
            self._fill()
        chunk = bytes(self._buffer[:size])
        del self._buffer[:size]
        if chunk:
            self._sent += len(chunk)
            if self._progress is not None:
                self._progress(self._sent, None)
        return chunk

    def _fill(self) -> None:
        for document in self._documents:
            self._buffer += to_json(document) + b"\n"
            return
        self._exhausted = True
