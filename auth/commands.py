"""`quarry users promote|demote EMAIL`: grant or take back the platform admin role
(`QUARRY_ADMIN_EMAILS` grants it at login too)."""

from __future__ import annotations

import argparse
import sys

from app.cli import load_settings, run_on_database
from app.db import Database
from auth import repository as repo


def register_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    users = commands.add_parser("users", help="manage platform administrators")
    users.add_argument("action", choices=["promote", "demote"], help="make admin / take it back")
    users.add_argument("email", help="the account's email")
    users.set_defaults(handler=users_command)


def users_command(args: argparse.Namespace) -> int:
    email = args.email.strip().lower()
    role = "admin" if args.action == "promote" else "user"

    async def set_role(database: Database) -> bool:
        return await repo.set_role(db=database.control, email=email, role=role)

    if not run_on_database(load_settings(), set_role):
        print(f"quarry: no account with the email {email}", file=sys.stderr)
        return 1
    print(f"{email} is now {'a platform admin' if role == 'admin' else 'a regular user'}")
    return 0
