"""`python -m bench` (`make bench`): run every benchmark — request overhead,
auth, management and import, CRUD, and the 60 s mixed load — against one engine
(or `QUARRY_BENCH_MONGODB_URL`), print one table (figure, Quarry, raw driver,
ratio, goal) and write it with the raw figures to `bench/results/latest.json`."""

from __future__ import annotations

import asyncio
import platform
from datetime import UTC, datetime

from bench import auth, crud, health, load, management
from bench.harness import database_url, print_table, served_api, write_results


def main() -> None:
    rows, figures = [], {}
    with database_url() as mongodb_url, served_api(mongodb_url) as api:
        for benchmark in (health, auth):
            new_rows, new_figures = asyncio.run(benchmark.run(api, mongodb_url))
            rows += new_rows
            figures.update(new_figures)
        for suite in (management, crud, load):
            new_rows, new_figures = suite.run_all(mongodb_url)
            rows += new_rows
            figures.update(new_figures)
    print_table(rows)
    write_results(
        rows,
        {
            "when": datetime.now(UTC).isoformat(),
            "machine": f"{platform.machine()} {platform.python_version()}",
            "figures": figures,
        },
    )


if __name__ == "__main__":
    main()
