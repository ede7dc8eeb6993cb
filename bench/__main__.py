"""`python -m bench` (`make bench`): run every benchmark — request overhead, auth,
management and import, CRUD, and the 60 s mixed load — against one engine (a
fresh embedded engine on `QUARRY_BENCH_BACKEND`, default postgresql, or
`QUARRY_BENCH_MONGODB_URL`), then the engine section (bench/engine.py: the
PostgreSQL and SQLite backends side by side, on engines of its own), print one
table (figure, Quarry, raw driver, ratio, goal) and write it with the raw figures
to `bench/results/latest.json`. `python -m bench engine` (or any of the suite
names below) runs only the suites named; `rate_limit` measures what the per-user
rate limiter adds to a request; `datasets` lists readable datasets out of a
10,000-dataset catalogue and times the access check; `entries` times seed 000's
batch call, uploads beside raw GridFS, search indexing and query latency; `rows`
times timeseries rows: bulk inserts beside raw `insert_many` of the same buckets,
NDJSON loads (and the server's peak RSS), range reads out of 10,000 and 10,000,000
rows, CSV downloads, aggregates and SSE fan-out; `client` times the `quarry import`
command beside curl and the Python client's document iteration beside the raw
driver; `writes` times the write door beside FerretDB alone (bench/writes.py);
`reads` times the documents API's query shapes at 100,000 and 1,000,000
documents beside the read planner's SQL and the raw driver (bench/reads.py). One
benchmark user sends far more than the default limits allow, so every served API
runs with the limits out of reach
(`bench.rate_limit.LIMITS_OUT_OF_REACH`: paid for, never refusing) unless the
environment sets them."""

from __future__ import annotations

import asyncio
import os
import platform
import sys
from datetime import UTC, datetime
from typing import Any

from bench import (
    auth,
    client,
    crud,
    datasets,
    engine,
    entries,
    health,
    load,
    management,
    rate_limit,
    reads,
    rows,
    writes,
)
from bench.harness import Row, database_url, print_table, served_api, write_results

#: Suites that take the shared API and engine (`run(api, mongodb_url)`, async).
ON_API = {"health": health, "auth": auth}
#: Suites that take the shared engine and serve the API themselves.
ON_ENGINE = {
    "management": management,
    "crud": crud,
    "load": load,
    "rate_limit": rate_limit,
    "datasets": datasets,
    "entries": entries,
    "rows": rows,
    "client": client,
}
#: Suites that run on engines of their own.
OWN_ENGINE = {"writes": writes, "reads": reads}
SUITES = (*ON_API, *ON_ENGINE, "engine", *OWN_ENGINE)


def main(names: list[str]) -> None:
    unknown = [name for name in names if name not in SUITES]
    if unknown:
        raise SystemExit(f"usage: python -m bench [{' '.join(SUITES)}] (unknown: {unknown})")
    selected = [name for name in SUITES if not names or name in names]
    for name, value in rate_limit.LIMITS_OUT_OF_REACH.items():
        os.environ.setdefault(name, value)
    rows: list[Row] = []
    figures: dict[str, Any] = {}
    shared = [name for name in selected if name != "engine" and name not in OWN_ENGINE]
    if shared:
        with database_url() as mongodb_url, served_api(mongodb_url) as api:
            for name in shared:
                if name in ON_API:
                    new_rows, new_figures = asyncio.run(ON_API[name].run(api, mongodb_url))
                else:
                    new_rows, new_figures = ON_ENGINE[name].run_all(mongodb_url)
                rows += new_rows
                figures.update(new_figures)
    for name in (name for name in OWN_ENGINE if name in selected):
        new_rows, new_figures = OWN_ENGINE[name].run_all()
        rows += new_rows
        figures.update(new_figures)
    if "engine" in selected:
        new_rows, new_figures = engine.run_all()
        rows += new_rows
        figures.update(new_figures)
    print_table(rows)
    write_results(
        rows,
        {
            "when": datetime.now(UTC).isoformat(),
            "machine": f"{platform.machine()} {platform.python_version()}",
            "suites": selected,
            "figures": figures,
        },
    )


if __name__ == "__main__":
    main(sys.argv[1:])
