"""The `quarry` Typer application: its commands, and how a run ends.

Exit codes: 0 done; 1 the server refused, or the input was bad (a missing file,
no credentials); 2 a usage error (an unknown option, a missing argument); 130
interrupted. Errors are printed by `output.print_error`, as JSON with `--json`."""

from __future__ import annotations

from typing import Annotated

import typer

from quarry_client.cli import accounts, databases, datasets, entries, rows, transfer
from quarry_client.cli.output import GLOBAL_JSON, CliError, print_error
from quarry_client.cli.session import GLOBAL_PROFILE
from quarry_client.errors import QuarryError

HELP = (
    "Quarry from the command line: log in, manage API keys, databases, imports, "
    "exports, datasets, entries and rows.\n\n"
    "Server commands (with the server package installed): serve, engine, users, audit, search."
)

app = typer.Typer(
    name="quarry",
    help=HELP,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


@app.callback()
def root(
    profile: Annotated[
        str | None,
        typer.Option(
            "--profile",
            help="The profile every command uses (default: QUARRY_PROFILE, or 'default').",
            show_default=False,
        ),
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Every command's output as JSON (see each --json).")
    ] = False,
) -> None:
    """Quarry from the command line."""
    GLOBAL_PROFILE.set(profile)
    GLOBAL_JSON.set(json_output)


app.command("login")(accounts.login)
app.command("logout")(accounts.logout)
app.command("profiles")(accounts.profiles)
app.command("whoami")(accounts.whoami)
app.add_typer(accounts.keys_app, name="keys")
app.add_typer(databases.db_app, name="db")
app.command("import")(transfer.import_file)
app.command("export")(transfer.export_collection)
app.add_typer(datasets.datasets_app, name="datasets")
app.add_typer(entries.entries_app, name="entries")
app.add_typer(rows.rows_app, name="rows")


def _usage_error_class() -> type[Exception]:
    """Click's `ClickException`, as the installed Typer uses it (recent Typer
    versions carry their own copy of Click)."""
    try:
        from typer._click.exceptions import ClickException
    except ImportError:
        from click.exceptions import ClickException
    return ClickException


def _wants_json(args: list[str]) -> bool:
    return "--json" in (args[: args.index("--")] if "--" in args else args)


def run(args: list[str]) -> int:
    """Run one command line; its exit code (errors are printed, never raised)."""
    command = typer.main.get_command(app)
    json_mode = _wants_json(args)
    usage_error = _usage_error_class()
    try:
        result = command.main(args=args, prog_name="quarry", standalone_mode=False)
    except QuarryError as error:
        print_error(error, json_mode=json_mode)
        return 1
    except CliError as error:
        print_error(error, json_mode=json_mode)
        return error.exit_code
    except typer.Abort:
        print_error(CliError("Interrupted.", error_code="INTERRUPTED"), json_mode=json_mode)
        return 130
    except usage_error as error:
        if json_mode:
            print_error(error, json_mode=True)
        else:
            error.show()  # type: ignore[attr-defined]
        return int(error.exit_code)  # type: ignore[attr-defined]
    except BrokenPipeError:
        # `quarry export … | head`: the reader left; nothing more to say.
        _silence_stdout()
        return 141
    except OSError as error:
        # A file that cannot be read or written (named in the message).
        print_error(CliError(str(error), error_code="FILE_ERROR"), json_mode=json_mode)
        return 1
    except ValueError as error:
        # Input the client refused before sending it (a CSV without `timestamp`,
        # a schema field of an unknown type...).
        print_error(CliError(str(error)), json_mode=json_mode)
        return 1
    return result if isinstance(result, int) else 0


def _silence_stdout() -> None:
    import os
    import sys

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
