"""`quarry backup PATH` and `quarry restore PATH [--force]`: the embedded engine's
data copied out while the server serves, and put back into a stopped data
directory (`app.engine.backup`). After a restore the keyword-search indexes,
which a backup does not hold, are rebuilt from the restored entries by
`quarry search reindex`; should that fail, the server rebuilds a tenant's index
at its first search.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from app.cli.support import load_settings
from app.engine import EngineError, back_up, restore


def register_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    backup = commands.add_parser(
        "backup",
        help="back up the embedded engine's data (the server may keep serving)",
        description="Write a consistent backup of QUARRY_DATA_DIR's embedded engine into "
        "PATH, a new (or empty) directory: a pg_dump of the engine's database, the secret "
        "key and the journal of writes in flight, and a manifest.json. Search indexes are "
        "not included: a restore rebuilds them.",
    )
    backup.add_argument("path", type=Path, help="a new or empty directory for the backup")
    backup.set_defaults(handler=backup_command)
    restoring = commands.add_parser(
        "restore",
        help="restore a backup into a data directory no server uses",
        description="Restore the backup in PATH into QUARRY_DATA_DIR, which no server or "
        "engine may be using, then rebuild the search indexes from the restored entries.",
    )
    restoring.add_argument("path", type=Path, help="a directory written by `quarry backup`")
    restoring.add_argument(
        "--force", action="store_true", help="replace the data the data directory holds now"
    )
    restoring.set_defaults(handler=restore_command)


def backup_command(args: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        manifest = back_up(settings, args.path, report=print)
    except (EngineError, OSError) as exc:
        print(f"quarry: backup failed: {exc}", file=sys.stderr)
        return 1
    print(f"backup: written to {args.path.absolute()} ({_summary(manifest)})")
    return 0


def restore_command(args: argparse.Namespace) -> int:
    settings = load_settings()
    try:
        manifest = restore(settings, args.path, force=args.force, report=print)
    except (EngineError, OSError) as exc:
        print(f"quarry: restore failed: {exc}", file=sys.stderr)
        return 1
    print(
        f"restore: {settings.data_dir.resolve()} now holds the backup of "
        f"{manifest.get('created_at')} ({_summary(manifest)})"
    )
    if not manifest["contents"]["secret_key"]:
        print(
            "restore: the backup holds no secret key (its server had QUARRY_SECRET_KEY set): "
            "set the same QUARRY_SECRET_KEY, or tokens issued before the backup stop working"
        )
    print("restore: rebuilding the search indexes from the restored entries")
    return _rebuild_search_indexes()


def _rebuild_search_indexes() -> int:
    """`quarry search reindex` (a feature's command, reached through the parser)."""
    from app.cli.commands import main as run_command

    try:
        run_command(["search", "reindex"])
    except Exception as exc:  # the data is restored whatever happens here
        print(
            f"quarry: the data is restored, but the search indexes could not be rebuilt now "
            f"({exc}): run `quarry search reindex`, or let the server rebuild each tenant's "
            "index at its first search",
            file=sys.stderr,
        )
    return 0


def _summary(manifest: dict[str, Any]) -> str:
    contents = manifest["contents"]
    size = sum(int(f["bytes"]) for f in manifest["files"].values())
    return (
        f"Quarry {manifest['quarry_version']}, FerretDB {manifest['engine']['ferretdb']}, "
        f"PostgreSQL {manifest['engine']['postgresql']}, {size:,} bytes, "
        f"{contents['journal_entries']} journal entries in flight"
    )
