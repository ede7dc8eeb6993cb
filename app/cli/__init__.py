"""The server's command line: `quarry serve|engine|audit` and the commands the
features contribute (`users`, `search`).

- `serve`, `engine`, `audit`: the core's commands, one module each.
- `commands`: the parser (the features' commands come through their
  `Feature.commands` hook) and `main`.
- `support`: what a command needs — `load_settings`, and `run_on_database` to
  run a coroutine on the database of the settings through the app's own
  database layer (the embedded engine started for the command when none runs).

`app.console` is the `quarry` executable: it runs these commands and hands the
client's (`login`, `db`, `import`, ...) to the `client/` package without
importing anything of the server, which is why it stays outside this package.
"""

from app.cli.commands import build_parser, main
from app.cli.support import load_settings, run_on_database

__all__ = ["build_parser", "load_settings", "main", "run_on_database"]
