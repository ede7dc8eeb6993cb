"""`quarry search reindex [--tenant ID]`: rebuild keyword-search indexes from the
text stored in MongoDB (all tenants, or one). Safe beside a running server: each
index is built aside and swapped in whole."""

from __future__ import annotations

import argparse
import sys

from bson import ObjectId

from app.cli import load_settings, run_on_database
from app.db import Database
from data_api.datasets.repository import TENANT_PREFIX, Catalogue
from data_api.entries.repository import EntryStore
from data_api.search.index import SearchIndexes
from data_api.search.indexer import rebuild_tenant


def register_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    search = commands.add_parser("search", help="maintain the keyword-search indexes")
    search.add_argument("action", choices=["reindex"], help="reindex: rebuild from MongoDB")
    search.add_argument("--tenant", help="only this tenant (its owner's user id)")
    search.set_defaults(handler=search_command)


def search_command(args: argparse.Namespace) -> int:
    if args.tenant and not ObjectId.is_valid(args.tenant):
        print(f"quarry: not a tenant (user) id: {args.tenant}", file=sys.stderr)
        return 2
    settings = load_settings()
    indexes = SearchIndexes(settings.search_dir)

    async def reindex(database: Database) -> None:
        catalogue = Catalogue(database)
        if args.tenant:
            tenants = [ObjectId(args.tenant)]
        else:
            tenants = [
                ObjectId(name.removeprefix(TENANT_PREFIX))
                for name in await database.list_database_names()
                if name.startswith(TENANT_PREFIX)
                and ObjectId.is_valid(name.removeprefix(TENANT_PREFIX))
            ]
        store = EntryStore(catalogue)
        for tenant in tenants:
            count = await rebuild_tenant(
                catalogue=catalogue, store=store, indexes=indexes, tenant=tenant
            )
            print(f"tenant {tenant}: {count} entries indexed")

    run_on_database(settings, reindex)
    return 0
