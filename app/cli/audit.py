"""`quarry audit verify`: walk the audit log's hash chain from its anchor; exit 0
with the number of records checked, 1 naming the first broken record."""

from __future__ import annotations

import argparse
import sys

from app.audit import AuditLog, ChainReport
from app.cli.support import load_settings, run_on_database
from app.db import Database


def register_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser("audit", help="check the tamper-evident audit log")
    parser.add_argument("action", choices=["verify"], help="verify: check the hash chain")
    parser.set_defaults(handler=audit_command)


def audit_command(args: argparse.Namespace) -> int:
    settings = load_settings()

    async def verify(database: Database) -> ChainReport:
        return await AuditLog(database=database, settings=settings).verify()

    report = run_on_database(settings, verify)
    if not report.ok:
        print(f"quarry: audit chain broken ({report.problem}): {report.message}", file=sys.stderr)
        return 1
    print(report.message)
    return 0
