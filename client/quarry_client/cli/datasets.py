"""`quarry datasets create|list|show|share|delete`."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from quarry_client import models as m
from quarry_client.cli.options import JsonOption, ProfileOption, YesOption
from quarry_client.cli.output import confirm_deletion, table, when
from quarry_client.cli.resolve import resolve_dataset
from quarry_client.cli.session import connect

datasets_app = typer.Typer(
    help="Create, list, show, share and delete datasets.", no_args_is_help=True
)

DatasetArgument = Annotated[
    str, typer.Argument(metavar="DATASET", help="The dataset's id (or its unique name).")
]


def _dataset_rows(datasets: list[m.DatasetOut]) -> list[tuple[object, ...]]:
    return [
        (
            d.id,
            d.name,
            d.user_permission,
            d.entry_count,
            d.row_count,
            when(d.updated_at),
            when(d.expires_at),
        )
        for d in datasets
    ]


DATASET_COLUMNS = ["id", "name", "permission", "entries", "rows", "updated", "expires"]


@datasets_app.command("create")
def create_dataset(
    name: Annotated[str, typer.Argument(help="The dataset's name (names need not be unique).")],
    description: Annotated[str, typer.Option("--description", help="What it holds.")] = "",
    public: Annotated[bool, typer.Option("--public", help="Readable by every user.")] = False,
    profile: ProfileOption = None,
    json_output: JsonOption = False,
) -> None:
    """Create a dataset."""
    with connect(json_output=json_output, profile=profile) as session:
        answer = session.client.datasets.create(name, description=description, is_public=public)
        created = answer.data
        expires = when(created.expires_at)
        session.output.result(
            created, f"Created dataset {created.name} (id {created.id}, expires {expires})."
        )


@datasets_app.command("list")
def list_datasets(
    search: Annotated[
        str | None, typer.Option("--search", help="Only names or descriptions containing this.")
    ] = None,
    owned: Annotated[bool, typer.Option("--owned", help="Only the datasets you own.")] = False,
    profile: ProfileOption = None,
    json_output: JsonOption = False,
) -> None:
    """List the datasets you can read, most recently changed first."""
    with connect(json_output=json_output, profile=profile) as session:
        found = list(session.client.datasets.iterate(search=search, owned_only=owned))
        human = table(None, DATASET_COLUMNS, _dataset_rows(found)) if found else "No datasets."
        session.output.result(found, human)


@datasets_app.command("show")
def show_dataset(
    dataset: DatasetArgument,
    profile: ProfileOption = None,
    json_output: JsonOption = False,
) -> None:
    """Show one dataset with its counts and your permission on it."""
    with connect(json_output=json_output, profile=profile) as session:
        found = session.client.datasets.get(resolve_dataset(session.client, dataset).id)
        details = table(found.name, ["field", "value"], _details(found))
        session.output.result(found, details)


def _details(dataset: m.DatasetOut) -> list[tuple[str, object]]:
    return [
        ("id", dataset.id),
        ("description", dataset.description),
        ("owner", dataset.owner_email or dataset.owner_id),
        ("your permission", dataset.user_permission),
        ("public", dataset.is_public),
        ("tags", ", ".join(dataset.tags)),
        ("entries", dataset.entry_count),
        ("rows", dataset.row_count),
        ("created", when(dataset.created_at)),
        ("updated", when(dataset.updated_at)),
        ("expires", when(dataset.expires_at)),
    ]


@datasets_app.command("share")
def share_dataset(
    dataset: DatasetArgument,
    email: Annotated[str, typer.Option("--email", help="The user to share with.")],
    permission: Annotated[
        Literal["read", "write", "admin"],
        typer.Option("--permission", help="What they may do (at most your own level)."),
    ] = "read",
    profile: ProfileOption = None,
    json_output: JsonOption = False,
) -> None:
    """Share a dataset with a user, by email."""
    with connect(json_output=json_output, profile=profile) as session:
        target = resolve_dataset(session.client, dataset)
        share = session.client.datasets.share(target.id, email=email, permission=permission)
        session.output.result(
            share, f"Shared {target.name} with {email} ({share.permission}; share id {share.id})."
        )


@datasets_app.command("delete")
def delete_dataset(
    dataset: DatasetArgument,
    yes: YesOption = False,
    profile: ProfileOption = None,
    json_output: JsonOption = False,
) -> None:
    """Delete a dataset with its entries and rows (asks you to type its name, unless --yes)."""
    with connect(json_output=json_output, profile=profile) as session:
        target = resolve_dataset(session.client, dataset)
        if not yes:
            confirm_deletion(session.output, "dataset", target.name)
        session.client.datasets.delete(target.id)
        session.output.result(
            {"id": target.id, "name": target.name, "deleted": True},
            f"Deleted dataset {target.name} ({target.id}).",
        )
