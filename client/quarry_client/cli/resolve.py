"""Databases and datasets named on the command line by id or by name.

A 24-hex argument is tried as an id first (a name may also be 24 hex digits, so
a miss falls back to the name); anything else is looked up by exact name."""

from __future__ import annotations

import re
from dataclasses import dataclass

from quarry_client import NotFound, Quarry, ValidationError
from quarry_client.cli.output import CliError

OBJECT_ID = re.compile(r"^[0-9a-fA-F]{24}$")


@dataclass(frozen=True)
class Named:
    id: str
    name: str


def resolve_database(client: Quarry, name_or_id: str) -> Named:
    """The database with this id, or else this exact name; `CliError` when none."""
    if OBJECT_ID.match(name_or_id):
        try:
            metadata = client.databases.get(name_or_id)
            return Named(metadata.id, metadata.displayName)
        except (NotFound, ValidationError):
            pass
    summary = client.databases.find(name_or_id)
    if summary is None:
        raise CliError(
            f"No database {name_or_id!r} (neither an id nor a name of yours); "
            "`quarry db list` shows them.",
            error_code="DATABASE_NOT_FOUND",
        )
    return Named(summary.id, summary.name)


def resolve_dataset(client: Quarry, name_or_id: str) -> Named:
    """The dataset with this id, or else the one readable dataset with this exact
    name (names are not unique: several is an error listing their ids)."""
    if OBJECT_ID.match(name_or_id):
        try:
            dataset = client.datasets.get(name_or_id)
            return Named(dataset.id, dataset.name)
        except (NotFound, ValidationError):
            pass
    matches = [
        Named(dataset.id, dataset.name)
        for dataset in client.datasets.iterate(search=name_or_id)
        if dataset.name == name_or_id
    ]
    if not matches:
        raise CliError(
            f"No dataset {name_or_id!r} that you can read (neither an id nor a name); "
            "`quarry datasets list` shows them.",
            error_code="DATASET_NOT_FOUND",
        )
    if len(matches) > 1:
        ids = ", ".join(match.id for match in matches)
        raise CliError(
            f"{len(matches)} datasets are named {name_or_id!r} ({ids}); give the id.",
            error_code="AMBIGUOUS_NAME",
        )
    return matches[0]
