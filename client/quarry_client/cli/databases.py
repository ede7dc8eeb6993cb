"""`quarry db create|list|collections|drop|schema`: logical databases and their
collections' field schemas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

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
            '{"fields": [...], "strict": bool} (the shape --json prints).',
        ),
    ] = None,
    profile: ProfileOption = None,
    json_output: JsonOption = False,
) -> None:
    """Print a collection's field schema, or replace it from a JSON file (--set)."""
    with connect(json_output=json_output, profile=profile) as session:
        target = resolve_database(session.client, database)
        if set_from is not None:
            fields, strict = _read_schema_file(set_from)
            session.client.databases.update_schema(target.id, collection, fields, strict=strict)
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
        "indexes": found.indexes,
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
    human = table(title, ["field", "type", "flags", "default", "enum"], rows)
    output.result(document, human if rows else f"{title}: no fields declared.")


def _flags(field: dict[str, Any]) -> str:
    flags = [flag for flag in ("required", "unique", "index") if field.get(flag)]
    if field.get("items"):
        flags.append(f"items: {field['items']}")
    return ", ".join(flags)


def _read_schema_file(path: Path) -> tuple[list[dict[str, Any]], bool | None]:
    """The fields (and `strict`, when given) of a schema file."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise CliError(
            f"Cannot read {path}: {exc.strerror or exc}.", error_code="FILE_ERROR"
        ) from exc
    except ValueError as exc:
        raise CliError(f"{path} is not valid JSON: {exc}.") from exc
    if isinstance(document, list):
        return document, None
    if isinstance(document, dict) and isinstance(document.get("fields"), list):
        strict = document.get("strict")
        return document["fields"], strict if isinstance(strict, bool) else None
    raise CliError(f'{path}: expected a list of fields or {{"fields": [...], "strict": ...}}.')
