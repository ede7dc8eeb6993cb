"""The server's command line (`quarry serve|engine|users|audit|search`).

`app.console` is the `quarry` executable: it runs these commands and hands the
client's (`login`, `db`, `import`, ...) to the `client/` package without
importing anything of the server, which is why it stays outside this package.
"""

from app.cli.commands import build_parser, control_database, main

__all__ = ["build_parser", "control_database", "main"]
