"""A bounded pool of long-lived worker processes that run `extract_file`.

Extraction parses hostile bytes with C libraries, so it never runs in the server
process: each worker is a spawned child (never forked from a process running
asyncio and threads) with an address-space limit and a lower priority, doing one
job at a time over a pipe. The pool bounds each job in time; a worker that runs
over is killed and replaced, and so is one that dies (out of memory, crashed).
Those jobs come back `failed` with the reason, and the next job gets a fresh
worker. Workers start on first use and leave with `close()` or with the parent.
As with any spawned process, the parent's main module must be safe to import
(the `if __name__ == "__main__":` idiom): the child imports it again.

The child is a blast wall, not a sandbox: it runs as the same user. Answers come
back as JSON rather than pickles all the same, so a child taken over by a file
cannot run code in the server by what it sends.

Errors that are the pool's, not the file's (`ExtractionUnavailable`), are raised
rather than returned, so the caller leaves the entry pending for a later attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import multiprocessing
import os
import resource
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from data_api.entries.extract import OUT_OF_MEMORY, Extracted, extract_file

#: Content types only a pool built with `test_hooks=True` understands.
TEST_SLEEP = "application/x-quarry-test-sleep"
TEST_ALLOCATE = "application/x-quarry-test-allocate"
TEST_CRASH = "application/x-quarry-test-crash"
_TEST_HOOKS = frozenset({TEST_SLEEP, TEST_ALLOCATE, TEST_CRASH})

#: Spawn, not fork: forking a process that runs an event loop and threads copies
#: their locks in whatever state they are in.
_CONTEXT = multiprocessing.get_context("spawn")
_READY = b"ready"
_STARTUP_TIMEOUT_SECONDS = 60.0
_JOIN_TIMEOUT_SECONDS = 5.0
_NICENESS = 5
_PARENT_CHECK_SECONDS = 1.0
_TEST_SLEEP_SECONDS = 3600.0
#: JSON of the longest allowed text: `\u0001`-style escapes cost 6 bytes a character.
_ANSWER_BYTES_PER_CHAR = 6
_ANSWER_OVERHEAD_BYTES = 64 * 1024


class ExtractionUnavailable(RuntimeError):
    """The pool could not run a job (closed, or a worker would not start)."""


class PoolClosed(ExtractionUnavailable):
    """`run` was called on, or interrupted by, a closed pool."""


class _Lost(enum.Enum):
    """How an exchange with a worker ended without an answer."""

    TIMED_OUT = "timed out"
    DIED = "died"


@dataclass(frozen=True)
class _WorkerSettings:
    """What a child needs to know; pickled once, when it is spawned."""

    memory_bytes: int
    max_chars: int
    test_hooks: bool


class ExtractionPool:
    """Runs extractions in at most `workers` child processes, one job each at a time."""

    def __init__(
        self,
        *,
        workers: int,
        timeout_seconds: float,
        memory_bytes: int,
        max_chars: int,
        test_hooks: bool = False,
    ) -> None:
        if workers < 1:
            raise ValueError("an extraction pool needs at least one worker")
        self._settings = _WorkerSettings(memory_bytes, max_chars, test_hooks)
        self._timeout_seconds = timeout_seconds
        self._max_answer_bytes = _ANSWER_BYTES_PER_CHAR * max_chars + _ANSWER_OVERHEAD_BYTES
        self._slots = asyncio.Semaphore(workers)
        self._idle: list[_Worker] = []
        self._live: set[_Worker] = set()
        # Twice the workers: a cancelled job's thread may still be winding down.
        self._threads = ThreadPoolExecutor(workers * 2, thread_name_prefix="quarry-extract")
        self._closed = False

    async def run(self, path: str, content_type: str) -> Extracted:
        """Extract one file. Raises ExtractionUnavailable (PoolClosed when closed)."""
        async with self._slots:
            worker = await self._take_worker()
            outcome = await self._exchange(worker, path, content_type)
            if isinstance(outcome, Extracted):
                if not self._closed:
                    self._idle.append(worker)
                return outcome
            if self._closed:
                raise PoolClosed("the extraction pool closed during the job")
            self._retire(worker)
            if outcome is _Lost.TIMED_OUT:
                reason = f"extraction timed out after {self._timeout_seconds:g}s"
                return Extracted("failed", None, None, reason)
            return Extracted("failed", None, None, "extraction process died")

    async def close(self) -> None:
        """Kill every worker; jobs in flight raise PoolClosed."""
        if self._closed:
            return
        self._closed = True
        workers = list(self._live)
        self._idle.clear()
        self._live.clear()
        for worker in workers:
            worker.kill()  # unblocks the threads waiting on their pipes
        await asyncio.to_thread(self._threads.shutdown, wait=True)
        await asyncio.to_thread(_dispose_all, workers)

    async def _take_worker(self) -> _Worker:
        self._check_open()
        while self._idle:
            worker = self._idle.pop()
            if worker.alive():
                return worker
            self._retire(worker)  # died between jobs
        loop = asyncio.get_running_loop()
        starting = loop.run_in_executor(self._threads, _Worker.start, self._settings)
        try:
            worker = await asyncio.shield(starting)
        except asyncio.CancelledError:
            starting.add_done_callback(_dispose_when_started)
            raise
        if self._closed:
            _dispose_in_background(worker)
            raise PoolClosed("the extraction pool is closed")
        self._live.add(worker)
        return worker

    async def _exchange(self, worker: _Worker, path: str, content_type: str) -> Extracted | _Lost:
        loop = asyncio.get_running_loop()
        exchanging = loop.run_in_executor(
            self._threads,
            worker.exchange,
            path,
            content_type,
            self._timeout_seconds,
            self._max_answer_bytes,
        )
        try:
            return await asyncio.shield(exchanging)
        except asyncio.CancelledError:
            # The worker is mid-job and its answer would go to the next caller: kill it,
            # and close its pipe only once the thread reading it has let go.
            worker.kill()
            self._live.discard(worker)
            exchanging.add_done_callback(lambda _: _dispose_in_background(worker))
            raise

    def _retire(self, worker: _Worker) -> None:
        worker.kill()
        self._live.discard(worker)
        _dispose_in_background(worker)

    def _check_open(self) -> None:
        if self._closed:
            raise PoolClosed("the extraction pool is closed")


class _Worker:
    """One child process and the parent's end of its pipe. Blocking methods run in threads."""

    def __init__(self, process: BaseProcess, connection: Connection) -> None:
        self.process = process
        self.connection = connection
        self._disposed = False
        self._dispose_lock = threading.Lock()

    @classmethod
    def start(cls, settings: _WorkerSettings) -> _Worker:
        """Spawn a child and wait until it has set its limits and is ready for jobs."""
        parent_end, child_end = _CONTEXT.Pipe(duplex=True)
        process = _CONTEXT.Process(
            target=_serve, args=(child_end, settings), name="quarry-extract", daemon=True
        )
        process.start()
        child_end.close()  # so the parent sees end-of-file when the child dies
        worker = cls(process, parent_end)
        if not worker._became_ready():
            worker.dispose()
            raise ExtractionUnavailable("an extraction worker process failed to start")
        return worker

    def _became_ready(self) -> bool:
        try:
            if not self.connection.poll(_STARTUP_TIMEOUT_SECONDS):
                return False
            return self.connection.recv_bytes(len(_READY)) == _READY
        except (EOFError, OSError):
            return False

    def alive(self) -> bool:
        return self.process.is_alive()

    def exchange(
        self, path: str, content_type: str, timeout_seconds: float, max_answer_bytes: int
    ) -> Extracted | _Lost:
        """Send one job and wait at most `timeout_seconds` for its answer."""
        try:
            self.connection.send_bytes(json.dumps([path, content_type]).encode())
            if not self.connection.poll(timeout_seconds):
                return _Lost.TIMED_OUT
            return _decode_answer(self.connection.recv_bytes(max_answer_bytes))
        except (EOFError, OSError, ValueError, TypeError, KeyError):
            # Closed pipe, an over-long or malformed answer: the worker is of no more use.
            return _Lost.DIED

    def kill(self) -> None:
        """SIGKILL the child without waiting for it."""
        with contextlib.suppress(OSError, ValueError):
            self.process.kill()

    def dispose(self) -> None:
        """Kill the child, reap it and close the pipe; safe to call more than once."""
        with self._dispose_lock:
            if self._disposed:
                return
            self._disposed = True
        self.kill()
        with contextlib.suppress(OSError, ValueError):
            self.process.join(_JOIN_TIMEOUT_SECONDS)
        self.connection.close()


def _decode_answer(payload: bytes) -> Extracted:
    answer = json.loads(payload.decode("utf-8", "surrogatepass"))
    status, text, pages, reason = (answer[key] for key in ("status", "text", "pages", "reason"))
    if status not in ("done", "unsupported", "failed"):
        raise ValueError(f"unknown extraction status {status!r}")
    if not all(isinstance(value, str | None) for value in (text, reason)):
        raise TypeError("text and reason must be strings")
    if not isinstance(pages, int | None):
        raise TypeError("pages must be an integer")
    return Extracted(status, text, pages, reason)


def _dispose_all(workers: list[_Worker]) -> None:
    for worker in workers:
        worker.dispose()


def _dispose_in_background(worker: _Worker) -> None:
    # Reaping a killed child takes a moment; the event loop must not wait for it.
    threading.Thread(target=worker.dispose, name="quarry-extract-reap", daemon=True).start()


def _dispose_when_started(starting: asyncio.Future[_Worker]) -> None:
    if not starting.cancelled() and starting.exception() is None:
        _dispose_in_background(starting.result())


# --- the child process -------------------------------------------------------------------


def _serve(connection: Connection, settings: _WorkerSettings) -> None:
    """The child's main loop: one job in, one JSON answer out, until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _exit_with_parent(os.getppid())
    _limit_resources(settings.memory_bytes)
    connection.send_bytes(_READY)
    while True:
        try:
            path, content_type = json.loads(connection.recv_bytes())
        except (EOFError, OSError):
            return  # the parent closed its end, or is gone
        extracted = _handle(path, content_type, settings)
        answer = json.dumps(asdict(extracted), ensure_ascii=False)
        connection.send_bytes(answer.encode("utf-8", "surrogatepass"))


def _exit_with_parent(parent_pid: int) -> None:
    """Exit when the parent dies, even in the middle of a job that hangs."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(_PARENT_CHECK_SECONDS)
        os._exit(1)

    # Started before the memory limit, so its stack is never refused.
    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _limit_resources(memory_bytes: int) -> None:
    if memory_bytes > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    with contextlib.suppress(OSError):
        os.nice(_NICENESS)


def _handle(path: str, content_type: str, settings: _WorkerSettings) -> Extracted:
    if settings.test_hooks and content_type in _TEST_HOOKS:
        return _run_test_hook(content_type, settings)
    return extract_file(path, content_type, settings.max_chars)


def _run_test_hook(content_type: str, settings: _WorkerSettings) -> Extracted:
    """Misbehave on purpose, the way a hostile file would make a parser misbehave."""
    if content_type == TEST_CRASH:
        os.kill(os.getpid(), signal.SIGKILL)
    if content_type == TEST_SLEEP:
        time.sleep(_TEST_SLEEP_SECONDS)
    try:
        hoard: Any = bytearray(2 * max(settings.memory_bytes, 1 << 30))
    except MemoryError:
        return Extracted("failed", None, None, OUT_OF_MEMORY)
    return Extracted("done", str(len(hoard)), None, None)
