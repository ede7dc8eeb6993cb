"""`quarry db create|list|collections|drop|schema|violations`: logical databases,
their collections' field schemas and declared indexes, and the documents that hold
an index off."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group

from quarry_client import Quarry
from quarry_client.cli.options import JsonOption, ProfileOption, YesOption
from quarry_client.cli.output import CliError, Output, confirm_deletion, table, when
from quarry_client.cli.resolve import resolve_database
from quarry_client.cli.session import connect

db_app = typer.Typer(
    help="Create, list and drop databases; show or set a collection's schema.",
    no_args_is_help=True,
)

DatabaseArgument = Annotated[
    str, typer.Argument(metavar="NAME_OR_ID", help="The database's name or id.")
]


@db_app.command("create")
def create_database(
    name: Annotated[str, typer.Argument(help="The new database's name.")],
    collections: Annotated[
        list[str] | None,
        typer.Option("--collection", "-c", help="A collection to create with it (repeatable)."),
    ] = None,
    profile: ProfileOption = None,
    json_output: JsonOption = False,
) -> None:
    """Create a database (and, with --collection, its first collections)."""
    with connect(json_output=json_output, profile=profile) as session:
        answer = session.client.databases.create(
            name, [{"name": collection} for collection in collections or []]
        )
        names = [collection.name for collection in answer.collections]
        extra = f" with collections {', '.join(names)}" if names else ""
        session.output.result(
            answer,
            f"Created database {answer.database.name} (id {answer.database.id}){extra}.",
        )


@db_app.command("list")
def list_databases(
    search: Annotated[
        str | None, typer.Option("--search", help="Only names containing this (any case).")
    ] = None,
    profile: ProfileOption = None,
    json_output: JsonOption = False,
) -> None:
    """List your databases, by name."""
    with connect(json_output=json_output, profile=profile) as session:
        found = session.client.databases.list(search=search)
        rows = [(d.id, d.name, d.num_collections, when(d.created_at)) for d in found]
        human = table(None, ["id", "name", "collections", "created"], rows) if found else None
        session.output.result(found, human or "No databases.")


@db_app.command("collections")
def list_collections(
    database: DatabaseArgument,
    profile: ProfileOption = None,
    json_output: JsonOption = False,
) -> None:
    """List a database's collections with their document counts."""
    with connect(json_output=json_output, profile=profile) as session:
        target = resolve_database(session.client, database)
        found = session.client.databases.list_collections(target.id)
        rows = [(c.name, f"{c.num_documents:,}") for c in found]
        human = table(target.name, ["collection", "documents"], rows) if found else None
        session.output.result(found, human or f"Database {target.name} has no collections.")


@db_app.command("drop")
def drop_database(
    database: DatabaseArgument,
    yes: YesOption = False,
    profile: ProfileOption = None,
    json_output: JsonOption = False,
) -> None:
    """Drop a database and everything in it (asks you to type its name, unless --yes)."""
    with connect(json_output=json_output, profile=profile) as session:
        target = resolve_database(session.client, database)
        if not yes:
            confirm_deletion(session.output, "database", target.name)
        answer = session.client.databases.drop(target.id, confirmation=target.name)
        session.output.result(
            {"id": target.id, "name": target.name, "dropped": True, "message": answer.message},
            answer.message,
        )


@db_app.command("schema")
def collection_schema(
    database: DatabaseArgument,
    collection: Annotated[str, typer.Argument(help="The collection.")],
    set_from: Annotated[
        Path | None,
        typer.Option(
            "--set",
            metavar="FILE.json",
            help="Replace the schema with this file: a list of fields, or "
            '{"fields": [...], "indexes": [...], "strict": bool} (the shape --json '
            "prints; declared indexes are kept when the file has no indexes).",
        ),
    ] = None,
    profile: ProfileOption = None,
    json_output: JsonOption = False,
) -> None:
    """Print a collection's field schema and indexes (with their state), or replace
    them from a JSON file (--set)."""
    with connect(json_output=json_output, profile=profile) as session:
        target = resolve_database(session.client, database)
        if set_from is not None:
            fields, strict, indexes = _read_schema_file(set_from)
            session.client.databases.update_schema(
                target.id, collection, fields, strict=strict, indexes=indexes
            )
            session.output.note(f"Updated the schema of {target.name}.{collection}.")
        _print_schema(session.output, session.client, target.id, target.name, collection)


def _print_schema(
    output: Output, client: Quarry, database_id: str, name: str, collection: str
) -> None:
    metadata = client.databases.get(database_id)
    found = next((c for c in metadata.collections if c.name == collection), None)
    if found is None:
        raise CliError(
            f"Database {name} has no collection {collection!r}.", error_code="COLLECTION_NOT_FOUND"
        )
    document = {
        "database": name,
        "database_id": database_id,
        "collection": collection,
        "strict": found.strict,
        "fields": found.fields,
        # Declared indexes as a --set file declares them; every index's state apart.
        "indexes": [
            {
                "name": i.name,
                "keys": [
                    {"field": k.field, "type": k.type, "direction": k.direction} for k in i.keys
                ],
                "unique": i.unique,
            }
            for i in found.indexes
            if i.declared
        ],
        "index_states": [
            {"name": i.name, "state": i.state, "reason": i.reason} for i in found.indexes
        ],
    }
    rows = [
        (
            f.get("name"),
            f.get("type"),
            _flags(f),
            json.dumps(f["default"]) if f.get("default") is not None else "",
            json.dumps(f["enum"]) if f.get("enum") else "",
        )
        for f in found.fields
    ]
    title = f"{name}.{collection} (strict: {str(found.strict).lower()})"
    human: Any = (
        table(title, ["field", "type", "flags", "default", "enum"], rows)
        if rows
        else f"{title}: no fields declared."
    )
    if found.indexes:
        index_rows = [
            (
                i.name,
                ", ".join(f"{k.field} {k.type} {k.direction}" for k in i.keys),
                "unique" if i.unique else "",
                i.state,
                i.reason or "",
            )
            for i in found.indexes
        ]
        human = Group(human, table(None, ["index", "keys", "", "state", "reason"], index_rows))
    output.result(document, human)


def _flags(field: dict[str, Any]) -> str:
    flags = [flag for flag in ("required", "unique", "index") if field.get(flag)]
    if field.get("items"):
        flags.append(f"items: {field['items']}")
    return ", ".join(flags)


def _read_schema_file(
    path: Path,
) -> tuple[list[dict[str, Any]], bool | None, list[dict[str, Any]] | None]:
    """The fields (and `strict` and the declared indexes, when given) of a schema file."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(
            f"Cannot read {path}: {exc.strerror or exc}.", error_code="FILE_ERROR"
        ) from exc
    except ValueError as exc:
        raise CliError(f"{path} is not valid JSON: {exc}.") from exc
    if isinstance(document, list):
        return document, None, None
    if isinstance(document, dict) and isinstance(document.get("fields"), list):
        strict = document.get("strict")
        indexes = document.get("indexes")
        return (
            document["fields"],
            strict if isinstance(strict, bool) else None,
            indexes if isinstance(indexes, list) else None,
        )
    raise CliError(f'{path}: expected a list of fields or {{"fields": [...], "strict": ...}}.')


def convert_all(databases: Any, database_id: str, collection: str, field: str) -> dict[str, int]:
    """Convert call after call, following the resume token (`next_after`) to the end,
    whatever one call converted (a call racing another conversion may find every
    document changed and convert none); the counts summed. A server that answers
    no token: until nothing remains or nothing converted."""
    totals = {"converted": 0, "unconvertible": 0, "changed": 0, "conflicts": 0, "remaining": 0}
    after: str | None = None
    while True:
        answer = databases.convert_violations(database_id, collection, field, after=after)
        for name in ("converted", "unconvertible", "changed", "conflicts"):
            totals[name] += getattr(answer, name, 0) or 0
        totals["remaining"] = answer.remaining
        if "next_after" not in answer.model_fields_set:
            if answer.remaining == 0 or answer.converted == 0:
                return totals
            continue
        after = answer.next_after
        if after is None:
            return totals


@db_app.command("violations")
def index_violations(
    database: DatabaseArgument,
    collection: Annotated[str, typer.Argument(help="The collection.")],
    field: Annotated[str, typer.Argument(help="A key field of one of its indexes.")],
    convert: Annotated[
        bool,
        typer.Option(
            "--convert",
            help="Convert what converts without loss, call after call until nothing is left.",
        ),
    ] = False,
    profile: ProfileOption = None,
    json_output: JsonOption = False,
) -> None:
    """List the documents whose indexed field holds another type than declared (or,
    with --convert, convert them)."""
    with connect(json_output=json_output, profile=profile) as session:
        target = resolve_database(session.client, database)
        databases = session.client.databases
        if convert:
            totals = convert_all(databases, target.id, collection, field)
            session.output.result(
                totals,
                f"Converted {totals['converted']:,} documents of {target.name}.{collection} "
                f"({field}); {totals['unconvertible']:,} do not convert, "
                f"{totals['conflicts']:,} collide in a unique index, "
                f"{totals['remaining']:,} remain.",
            )
            return
        found = list(databases.iter_violations(target.id, collection, field))
        rows = [(str(v.id), v.type) for v in found]
        human = table(f"{target.name}.{collection} {field}", ["_id", "holds"], rows)
        session.output.result(
            [{"_id": v.id, "type": v.type} for v in found],
            human if found else f"No document holds another type in {field}.",
        )
