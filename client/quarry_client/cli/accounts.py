"""`quarry login`, `logout`, `profiles`, `whoami`, and `quarry keys …`.

A login stores the server's URL and the token pair in a profile (see
`profiles.py`); the password is prompted without echo, or read from
`QUARRY_PASSWORD` / one line of stdin (`--password-stdin`), and is never kept."""

from __future__ import annotations

import os
import re
import sys
from typing import Annotated

import typer

from quarry_client import Quarry
from quarry_client.cli.options import JsonOption, ProfileOption
from quarry_client.cli.output import CliError, Output, table, when
from quarry_client.cli.profiles import (
    Profile,
    ProfileError,
    check_name,
    delete_profile,
    list_profiles,
    load_profile,
    profile_path,
    save_profile,
)
from quarry_client.cli.session import chosen_profile_name, connect

OBJECT_ID = re.compile(r"^[0-9a-fA-F]{24}$")

keys_app = typer.Typer(
    help="Create, list and revoke API keys (needs a login).", no_args_is_help=True
)


def _password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = os.environ.get("QUARRY_PASSWORD") or typer.prompt(
            "Password", hide_input=True, err=True
        )
    if not password:
        raise CliError("The password is empty.")
    return password


def _server_url(url: str) -> str:
    url = url.strip().rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise CliError(f"The URL must start with http:// or https:// (got {url!r}).")
    return url


def _profile_name(option: str | None) -> str:
    try:
        return check_name(chosen_profile_name(option))
    except ProfileError as exc:
        raise CliError(str(exc), error_code="BAD_PROFILE") from exc


def login(
    url: Annotated[
        str,
        typer.Option(
            "--url", envvar="QUARRY_URL", help="The server, e.g. https://quarry.example.com"
        ),
    ],
    email: Annotated[
        str | None,
        typer.Option("--email", help="Your account's email (prompted when not given)."),
    ] = None,
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from the first line of stdin."),
    ] = False,
    profile: ProfileOption = None,
    json_output: JsonOption = False,
) -> None:
    """Log in and save the session in a profile (password prompted, or QUARRY_PASSWORD)."""
    output = Output(json_output)
    name = _profile_name(profile)
    url = _server_url(url)
    email = email or typer.prompt("Email", err=True)
    password = _password(password_stdin)
    with Quarry(url) as client:
        pair = client.auth.login(email, password)
    stored = Profile(name=name, url=url, email=email, access=pair.access, refresh=pair.refresh)
    path = save_profile(stored)
    output.result(
        {**stored.public(), "path": str(path)},
        f"Logged in to {url} as {email} (profile '{name}', saved in {path}).",
    )


def logout(profile: ProfileOption = None, json_output: JsonOption = False) -> None:
    """Revoke the profile's session on the server and delete the profile."""
    output = Output(json_output)
    name = _profile_name(profile)
    stored = load_profile(name)
    if stored is None:
        raise CliError(
            f"No profile named {name!r}; nothing to log out.", error_code="NOT_LOGGED_IN"
        )
    revoked = True
    client = Quarry(stored.url, access_token=stored.access, refresh_token=stored.refresh)
    try:
        client.auth.logout()
    except Exception as exc:
        revoked = False
        output.warn(
            f"The server did not revoke the session ({exc}); the profile is removed anyway."
        )
    finally:
        client.close()
    delete_profile(name)
    output.result(
        {"profile": name, "url": stored.url, "revoked": revoked, "removed": True},
        f"Logged out of {stored.url} (profile '{name}' removed).",
    )


def profiles(json_output: JsonOption = False) -> None:
    """List the saved profiles (never their tokens)."""
    output = Output(json_output)
    active = chosen_profile_name(None)
    found = [
        {**p.public(), "path": str(profile_path(p.name)), "active": p.name == active}
        for p in list_profiles()
    ]
    if not found and not output.json_mode:
        output.note("No profiles yet. Log in with `quarry login --url URL --email EMAIL`.")
        return
    rows = [
        ("*" if p["active"] else "", p["name"], p["url"], p["email"], when(p["saved_at"]))
        for p in found
    ]
    output.result(found, table(None, ["", "profile", "url", "email", "saved"], rows))


def whoami(profile: ProfileOption = None, json_output: JsonOption = False) -> None:
    """Show the account the current credentials belong to."""
    with connect(json_output=json_output, profile=profile) as session:
        user = session.client.auth.me()
        where = session.profile.name if session.profile else "QUARRY_API_KEY"
        session.output.result(
            user,
            f"{user.email} on {session.client.base_url} (credentials: {where})",
        )


# ---------------------------------------------------------------------- API keys


@keys_app.command("create")
def create_key(
    name: Annotated[str, typer.Argument(help="A name to recognise the key by.")],
    expires_in_days: Annotated[
        int | None,
        typer.Option("--expires-in-days", min=1, help="Days until the key stops working."),
    ] = None,
    profile: ProfileOption = None,
    json_output: JsonOption = False,
) -> None:
    """Create an API key; the key itself is printed this once only."""
    with connect(json_output=json_output, profile=profile) as session:
        created = session.client.api_keys.create(name, expires_in_days=expires_in_days)
        if not session.output.json_mode:
            expiry = f", expires {when(created.expires_at)}" if created.expires_at else ""
            session.output.note(
                f"Created API key '{created.name}' (id {created.id}{expiry}). "
                "Store it now: it will not be shown again."
            )
        session.output.result(created, created.key)


@keys_app.command("list")
def list_keys(profile: ProfileOption = None, json_output: JsonOption = False) -> None:
    """List your API keys (their prefixes, never the keys)."""
    with connect(json_output=json_output, profile=profile) as session:
        keys = session.client.api_keys.list()
        rows = [
            (k.id, k.name, k.prefix, when(k.created_at), when(k.expires_at), when(k.last_used_at))
            for k in keys
        ]
        columns = ["id", "name", "prefix", "created", "expires", "last used"]
        session.output.result(keys, table(None, columns, rows) if keys else "No API keys.")


@keys_app.command("revoke")
def revoke_key(
    key: Annotated[
        str, typer.Argument(metavar="KEY_ID", help="The key's id (or its unique name).")
    ],
    profile: ProfileOption = None,
    json_output: JsonOption = False,
) -> None:
    """Revoke an API key; it stops working at once."""
    with connect(json_output=json_output, profile=profile) as session:
        key_id = key
        if not OBJECT_ID.match(key):
            matches = [k.id for k in session.client.api_keys.list() if k.name == key]
            if len(matches) != 1:
                problem = "No API key" if not matches else f"{len(matches)} API keys"
                raise CliError(
                    f"{problem} named {key!r}; give the key's id.", error_code="KEY_NOT_FOUND"
                )
            key_id = matches[0]
        session.client.api_keys.revoke(key_id)
        session.output.result({"id": key_id, "revoked": True}, f"Revoked API key {key_id}.")
