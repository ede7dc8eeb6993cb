"""What every benchmark needs: an engine, a served API, a closed-loop load driver,
and the results table (printed and written to `bench/results/latest.json`)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from bson import ObjectId

from app.engine import (
    EmbeddedEngine,
    backend_dir,
    build_engine,
    default_binary,
    free_port,
    register,
)
from app.settings import Settings

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "bench" / "results" / "latest.json"
#: The embedded engine's backend for the suites that run on one engine.
BACKEND = os.environ.get("QUARRY_BENCH_BACKEND", "postgresql")


class HttpConnection:
    """A minimal keep-alive HTTP/1.1 client for load runs.

    httpx's async pool tops out near 150 requests/s at 32 connections on these
    machines, far below the server, so it would measure itself; this one does a
    few thousand per second from one core.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, base_url: str) -> HttpConnection:
        host, port = base_url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        return cls(reader, writer)

    async def request(
        self, method: str, path: str, *, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        lines = [f"{method} {path} HTTP/1.1", "Host: bench", f"Content-Length: {len(body)}"]
        lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


@dataclass
class LoadResult:
    requests: int
    seconds: float
    throughput: float
    p50_ms: float
    p99_ms: float


@dataclass
class Row:
    figure: str
    quarry: str
    raw: str
    ratio: str
    goal: str


@dataclass
class CappedLoad:
    """A closed-loop run that was allowed `cap` seconds in all: `stopped` operations
    were still running then and were cancelled. A percentile that falls on one of
    them is only a lower bound (`*_stopped`): that operation had run so long."""

    requests: int
    stopped: int
    seconds: float
    throughput: float
    p50_ms: float
    p99_ms: float
    p50_stopped: bool
    p99_stopped: bool


async def closed_loop(
    operation: Callable[[], Awaitable[object]], *, concurrency: int, seconds: float
) -> LoadResult:
    """`concurrency` workers each run `operation` back to back for `seconds`."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            await operation()
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return LoadResult(
        requests=len(latencies),
        seconds=elapsed,
        throughput=len(latencies) / elapsed,
        p50_ms=statistics.median(latencies) * 1000,
        p99_ms=latencies[int(len(latencies) * 0.99) - 1] * 1000,
    )


async def capped_loop(
    operation: Callable[[], Awaitable[object]], *, concurrency: int, seconds: float, cap: float
) -> CappedLoad:
    """`closed_loop`, except that everything stops `cap` seconds after the start:
    the operations still running then are cancelled (which closes their
    connections) and counted as `stopped`, with the time they had run so far."""
    latencies: list[float] = []
    running: dict[int, float] = {}
    started = time.perf_counter()
    deadline = started + seconds

    async def worker(number: int) -> None:
        while time.perf_counter() < deadline:
            running[number] = time.perf_counter()
            await operation()
            latencies.append(time.perf_counter() - running.pop(number))

    tasks = [asyncio.create_task(worker(number)) for number in range(concurrency)]
    done, pending = await asyncio.wait(tasks, timeout=max(cap, seconds))
    stopped_at = time.perf_counter()
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for task in done:
        task.result()  # an operation's failure is the benchmark's failure
    elapsed = stopped_at - started
    completed = sorted(latencies)
    # Cut-off operations sort after every completed one: they took longer than
    # the time they had run, which is all that is known about them.
    ranked = completed + sorted(stopped_at - since for since in running.values())

    def percentile(fraction: float) -> tuple[float, bool]:
        if not ranked:
            return float("nan"), False
        index = max(0, math.ceil(len(ranked) * fraction) - 1)  # nearest rank
        return ranked[index] * 1000, index >= len(completed)

    (p50, p50_stopped), (p99, p99_stopped) = percentile(0.5), percentile(0.99)
    return CappedLoad(
        requests=len(completed),
        stopped=len(running),
        seconds=elapsed,
        throughput=len(completed) / elapsed,
        p50_ms=p50,
        p99_ms=p99,
        p50_stopped=p50_stopped,
        p99_stopped=p99_stopped,
    )


@contextlib.contextmanager
def embedded_engine(backend: str) -> Iterator[EmbeddedEngine]:
    """A fresh embedded engine on `backend` (postgresql or sqlite) in a temporary
    directory, stopped and removed afterwards. It is registered there like one
    from `quarry engine start`, so a server given `engine_env(engine)` uses it the
    way a server on its own data directory would (PostgreSQL counts included)."""
    with tempfile.TemporaryDirectory(prefix="quarry-bench-") as tmp:
        engine = EmbeddedEngine.start(
            binary=build_engine(default_binary()),
            data_dir=backend_dir(Path(tmp), backend),
            backend=backend,
        )
        register_engine(engine)
        try:
            yield engine
        finally:
            engine.stop()


def register_engine(engine: EmbeddedEngine) -> None:
    """Record (again, after a restart) `engine` in its data directory."""
    register(Settings(data_dir=engine.data_dir.parent), engine)


def engine_env(engine: EmbeddedEngine) -> dict[str, str]:
    """Environment for `served_api` to serve on `engine` as its own data directory's."""
    return {
        "QUARRY_MONGODB_URL": "",
        "QUARRY_DATA_DIR": str(engine.data_dir.parent),
        "QUARRY_EMBEDDED_BACKEND": engine.backend,
    }


@contextlib.contextmanager
def database_url() -> Iterator[str]:
    """`QUARRY_BENCH_MONGODB_URL` when set, else a fresh embedded engine on
    `QUARRY_BENCH_BACKEND` (default postgresql)."""
    external = os.environ.get("QUARRY_BENCH_MONGODB_URL")
    if external:
        yield external
        return
    with embedded_engine(BACKEND) as engine:
        yield engine.url


def control_db(api: str) -> str:
    """The control database of the API served at `api` by `served_api`."""
    return f"quarry_bench_{api.rsplit(':', 1)[1]}"


@contextlib.contextmanager
def served_api(
    mongodb_url: str,
    *,
    workers: int = 1,
    pids: list[int] | None = None,
    extra_env: dict[str, str] | None = None,
    log: Path | None = None,
) -> Iterator[str]:
    """Run `quarry serve` on a free port against `mongodb_url`; yield its base URL
    (the server's pid is appended to `pids` when given; its output goes to `log`
    when given, else nowhere)."""
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="quarry-bench-api-") as tmp:
        env = {
            **os.environ,
            "QUARRY_MONGODB_URL": mongodb_url,
            "QUARRY_PORT": str(port),
            "QUARRY_WORKERS": str(workers),
            "QUARRY_DATA_DIR": tmp,
            "QUARRY_LOG_LEVEL": "WARNING",
            "QUARRY_CONTROL_DB": control_db(f"http://127.0.0.1:{port}"),
            "QUARRY_REQUIRE_EMAIL_VERIFICATION": "false",
            "QUARRY_SMTP_HOST": "",
            **(extra_env or {}),
        }
        output = log.open("ab") if log is not None else None
        server = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "serve"],
            cwd=REPO,
            env=env,
            stdout=output or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if output else subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        if pids is not None:
            pids.append(server.pid)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                        break
                time.sleep(0.1)
            else:
                raise RuntimeError("the API did not become healthy within 30 s")
            yield base
        finally:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                # uvicorn waits for requests in flight, which a stuck one never ends.
                server.kill()
                server.wait(timeout=20)
            if output is not None:
                output.close()


def print_table(rows: list[Row]) -> None:
    headers = ("figure", "Quarry", "raw driver", "ratio", "goal")
    table = [headers, *((r.figure, r.quarry, r.raw, r.ratio, r.goal) for r in rows)]
    widths = [max(len(str(line[i])) for line in table) for i in range(len(headers))]
    for index, line in enumerate(table):
        print("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths, strict=True)))
        if index == 0:
            print("  ".join("-" * width for width in widths))


def write_results(rows: list[Row], extra: dict[str, object]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps({"rows": [asdict(r) for r in rows], **extra}, indent=2, default=str) + "\n"
    )


BENCH_PASSWORD = "benchmark-password-123"


async def bench_user(http: httpx.AsyncClient) -> tuple[ObjectId, dict[str, str]]:
    """A new account on the served API (email verification is off there): its id
    and bearer header."""
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    await http.post(
        "/core/register",
        json={"email": email, "firstName": "B", "lastName": "D", "password": BENCH_PASSWORD},
    )
    login = await http.post("/core/login", json={"email": email, "password": BENCH_PASSWORD})
    bearer = {"Authorization": f"Bearer {login.json()['access']}"}
    me = await http.get("/core/me", headers=bearer)
    return ObjectId(me.json()["data"]["id"]), bearer
