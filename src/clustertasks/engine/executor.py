"""The local executor: runs tasks as asyncio tasks in the server process.

It must be the only executor on its database, so it holds the executor lock (a file lock
for SQLite, an advisory lock for PostgreSQL) for as long as it runs. On start it picks up
every unfinished task, so tasks interrupted by a crash continue from their last commit.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
from collections.abc import Callable, Collection
from typing import Any

from clustertasks import clock
from clustertasks.domain import records, states
from clustertasks.engine import runner
from clustertasks.operations import base as operations
from clustertasks.providers import base as providers
from clustertasks.storage import locks, store

log = logging.getLogger("clustertasks.engine")

# A safety net only: submissions and requests wake the executor at once.
RESCAN_SECONDS = 2.0

Committed = Callable[[Collection[str]], None]
"""Told the ids of the tasks a commit changed, on the event loop, after the commit."""


class LocalExecutor:
    def __init__(
        self,
        task_store: store.TaskStore,
        registry: operations.Registry,
        provider: providers.CloudProvider,
        *,
        time: clock.Clock | None = None,
        max_running_tasks: int = 64,
        tuning: runner.EngineTuning | None = None,
        on_commit: Committed | None = None,
    ) -> None:
        self._store = task_store
        self._registry = registry
        self._provider = provider
        self._clock = time or clock.SystemClock()
        self._limit = asyncio.Semaphore(max_running_tasks)
        self._tuning = tuning or runner.EngineTuning()
        # Store calls block; they run here so the event loop never waits on the database.
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=16, thread_name_prefix="clustertasks-db"
        )
        self._commits = GroupCommit(task_store, self._pool, on_commit=on_commit)
        self._lock: locks.ExecutorLock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._scheduler: asyncio.Task[None] | None = None
        self._running: dict[str, asyncio.Task[None]] = {}
        self._runners: dict[str, runner.TaskRunner] = {}
        self._stopping = False

    def claim(self) -> None:
        """Take the executor lock, or raise ``errors.ExecutorLocked`` at once."""
        if self._lock is None:
            lock = self._store.executor_lock()
            lock.acquire()
            self._lock = lock

    async def start(self) -> None:
        """Claim the database (unless done already) and start running its tasks."""
        if self._lock is None:
            await self._db(self.claim)
        self._loop = asyncio.get_running_loop()
        self._scheduler = asyncio.create_task(self._schedule(), name="clustertasks-scheduler")

    async def stop(self) -> None:
        """Stop running tasks where they stand; they continue when an executor starts again."""
        self._stopping = True
        tasks = list(self._running.values())
        if self._scheduler is not None:
            tasks.append(self._scheduler)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        self._pool.shutdown(wait=True)

    def wake(self, task_id: str | None = None) -> None:
        """Look at the store again now (and poke ``task_id`` if it is running). Thread-safe."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # loop closing during shutdown
            loop.call_soon_threadsafe(self._on_wake, task_id)

    def _on_wake(self, task_id: str | None) -> None:
        self._wake.set()
        if task_id is not None and task_id in self._runners:
            self._runners[task_id].poked.set()

    async def idle(self) -> None:
        """Wait until no task is running (for tests and graceful drains)."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    async def _schedule(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                await self._scan()
            except Exception:
                log.exception("scanning for tasks failed; retrying")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), RESCAN_SECONDS)

    async def _scan(self) -> None:
        for task in await self._db(self._store.unfinished_tasks):
            if task.task_id in self._running:
                continue
            runnable = task.state is states.TaskState.RUNNING or (
                task.requested_action == records.CANCEL
            )
            if runnable:
                self._launch(task.task_id)

    def _launch(self, task_id: str) -> None:
        task_runner = runner.TaskRunner(
            task_id,
            task_store=self._store,
            registry=self._registry,
            provider=self._provider,
            db=self._db,
            time=self._clock,
            tuning=self._tuning,
        )
        self._runners[task_id] = task_runner
        handle = asyncio.create_task(self._run(task_runner), name=f"task {task_id}")
        self._running[task_id] = handle

    async def _run(self, task_runner: runner.TaskRunner) -> None:
        task_id = task_runner.task_id
        try:
            async with self._limit:
                await task_runner.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("task %s stopped unexpectedly; it will be resumed", task_id)
        finally:
            self._running.pop(task_id, None)
            self._runners.pop(task_id, None)
            if not self._stopping:
                # It may have stopped because of a new request (resume, cancel): look again.
                self._wake.set()

    async def _db(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        name = getattr(fn, "__name__", "")
        if name in store.BATCHABLE_CALLS and getattr(fn, "__self__", None) is self._store:
            return await self._commits.write(fn, args, kwargs)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))


class GroupCommit:
    """Commits the writes of many running tasks together, one transaction per batch.

    A runner's write waits until the transaction holding it has committed, exactly as a
    write of its own would (durable before reported). Writes that arrive while a batch
    commits form the next batch, so under load each commit carries many transitions and
    when idle a write commits at once, alone.
    """

    def __init__(
        self,
        task_store: store.TaskStore,
        pool: concurrent.futures.Executor,
        *,
        max_batch: int = 256,
        on_commit: Committed | None = None,
    ) -> None:
        self._store = task_store
        self._pool = pool
        self._max_batch = max_batch
        self._on_commit = on_commit
        self._pending: list[tuple[store.BatchedWrite, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def write(self, fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[Any] = loop.create_future()
        self._pending.append(((fn, args, kwargs), done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="clustertasks-commits")
        return await done

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            calls = [call for call, _ in batch]
            try:
                outcomes = await loop.run_in_executor(self._pool, self._store.write_batch, calls)
            except BaseException as exc:
                for _, done in batch:
                    if not done.done():
                        if isinstance(exc, Exception):
                            done.set_exception(exc)
                        else:
                            done.cancel()
                if not isinstance(exc, Exception):
                    raise
                continue
            self._committed(calls)
            for (_, done), outcome in zip(batch, outcomes, strict=True):
                if done.done():  # its runner was cancelled meanwhile; the write stands
                    continue
                if outcome.error is not None:
                    done.set_exception(outcome.error)
                else:
                    done.set_result(outcome.value)

    def _committed(self, calls: list[store.BatchedWrite]) -> None:
        if self._on_commit is None:
            return
        touched = {
            _task_of(args)
            for method, args, _kwargs in calls
            if getattr(method, "__name__", "") != "get_task" and args
        }
        if not touched:
            return
        try:
            self._on_commit(touched)
        except Exception:
            log.exception("telling waiters about a commit failed")


def _task_of(args: tuple[Any, ...]) -> str:
    """The task a batchable write changes: its first argument, a task id or the task."""
    first = args[0]
    return first.task_id if isinstance(first, records.Task) else str(first)
