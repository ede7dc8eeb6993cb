"""The embedded engine: FerretDB 1.24 on PostgreSQL 18 (or SQLite), run by Quarry
when `QUARRY_MONGODB_URL` is unset.

- `build`: the Go wrapper in `go/` built once into `.quarry/bin/ferretdb`.
- `process`: the engine process and its PostgreSQL, started, watched, stopped,
  and registered for servers sharing a data directory (`quarry engine start`).
- `postgres`: the PostgreSQL cluster under it (binaries, initdb, settings, the
  unprivileged account when run as root); `shadow_indexes.sql`, run at every
  start, keeps a GIN index beside every FerretDB index.
- `sql` + `sjson`: reads straight from FerretDB's tables (exact counts, one-
  statement pages and lookups) for what FerretDB would answer by decoding the
  whole collection.
- `planner` + `planned_reads` + `typed_indexes`: finds and counts over `_id` and
  the schema's indexed scalar fields compiled into one SQL statement, read
  through btree indexes of typed keys built from the schema in the background,
  answered only while a type guard holds (everything else: FerretDB).
- `migrate`: `quarry engine migrate`, SQLite data copied into PostgreSQL.
- `backup`: `quarry backup` / `quarry restore`, a consistent copy of a data
  directory taken while serving (pg_dump) and put back into a stopped one.
- `adapter`: `app.db`'s engine interface as FerretDB needs it; `lifecycle`: the
  app's database, with the engine when this app runs it.

Only the composition root (`app.main`), the CLI and tests import this package;
services never test which engine runs (they ask `app.db` for capabilities).
"""

from app.engine.adapter import EmbeddedAdapter, choose_adapter
from app.engine.backup import BackupError, back_up, read_manifest, restore
from app.engine.build import (
    GO_MISSING_MESSAGE,
    EngineError,
    build_engine,
    default_binary,
    engine_is_built,
)
from app.engine.lifecycle import run_database
from app.engine.migrate import migrate_sqlite_to_postgresql
from app.engine.process import (
    EmbeddedEngine,
    backend_dir,
    free_port,
    pid_alive,
    read_registered,
    refuse_unmigrated,
    register,
    sqlite_data_present,
    start_engine,
    start_for_server,
    unregister,
)
from app.engine.sql import EngineSql

__all__ = [
    "GO_MISSING_MESSAGE",
    "BackupError",
    "EmbeddedAdapter",
    "EmbeddedEngine",
    "EngineError",
    "EngineSql",
    "back_up",
    "backend_dir",
    "build_engine",
    "choose_adapter",
    "default_binary",
    "engine_is_built",
    "free_port",
    "migrate_sqlite_to_postgresql",
    "pid_alive",
    "read_manifest",
    "read_registered",
    "refuse_unmigrated",
    "register",
    "restore",
    "run_database",
    "sqlite_data_present",
    "start_engine",
    "start_for_server",
    "unregister",
]
