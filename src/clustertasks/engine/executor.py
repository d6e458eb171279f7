"""The local executor: runs tasks as asyncio tasks in the server process.

It must be the only executor on its database, so it holds the executor lock (a file lock
for SQLite, an advisory lock for PostgreSQL) for as long as it runs. On start it picks up
every unfinished task, so tasks interrupted by a crash continue from their last commit.

:meth:`LocalExecutor.halted` stops every runner and launches none while the store is changed
under the executor (the emulator's reset and import); afterwards it looks at the store
again, exactly as after a restart.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import threading
from collections.abc import AsyncIterator
from typing import Any, overload

from clustertasks import clock
from clustertasks.domain import records, states
from clustertasks.engine import batches, runner
from clustertasks.observability import telemetry as observed
from clustertasks.operations import base as operations
from clustertasks.providers import base as providers
from clustertasks.storage import changes, locks, store

log = logging.getLogger("clustertasks.engine")

# A safety net only: submissions and requests wake the executor at once.
RESCAN_SECONDS = 2.0

Committed = batches.Committed
"""Told the ids of the tasks a commit changed, on the event loop, after the commit."""


class LocalExecutor:
    def __init__(
        self,
        task_store: store.TaskStore,
        registry: operations.Registry,
        provider: providers.CloudPort,
        *,
        lock: locks.ExecutorLock,
        time: clock.Clock | None = None,
        max_running_tasks: int = 64,
        tuning: runner.EngineTuning | None = None,
        on_commit: Committed | None = None,
        telemetry: observed.TaskTelemetry | None = None,
    ) -> None:
        self._store = task_store
        self._registry = registry
        self._provider = provider
        self._clock = time or clock.SystemClock()
        self._limit = asyncio.Semaphore(max_running_tasks)
        self._tuning = tuning or runner.EngineTuning()
        self._telemetry = telemetry or observed.Telemetry().tasks()
        # Runners holding one of the ``max_running_tasks`` slots (the rest wait for one).
        self._active = 0
        # Store calls block; they run here so the event loop never waits on the database.
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=16, thread_name_prefix="clustertasks-db"
        )
        self._commits = GroupCommit(task_store, self._pool, on_commit=on_commit)
        self._executor_lock = lock
        self._lock: locks.ExecutorLock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._scheduler: asyncio.Task[None] | None = None
        self._running: dict[str, asyncio.Task[None]] = {}
        self._runners: dict[str, runner.TaskRunner] = {}
        self._stopping = False
        self._holds = 0
        # Bumped when a halt begins and ends: a scan that read the store across either
        # launches nothing from what it read.
        self._halts = 0
        # Store calls handed to a worker thread and not finished yet: a cancelled runner's
        # call still completes in its thread, and ``halted`` waits for it.
        self._calls: set[concurrent.futures.Future[Any]] = set()
        self._calls_guard = threading.Lock()

    def claim(self) -> None:
        """Take the executor lock, or raise ``errors.ExecutorLocked`` at once."""
        if self._lock is None:
            self._executor_lock.acquire()
            self._lock = self._executor_lock

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

    def load(self) -> tuple[int, int]:
        """(running, waiting): tasks a runner works on now, and picked-up ones that wait
        for a free slot (the backlog). Read from any thread: two plain ints."""
        active = self._active
        return active, max(0, len(self._running) - active)

    @property
    def running_task_ids(self) -> tuple[str, ...]:
        """The tasks that have a runner at this moment."""
        return tuple(self._running)

    @contextlib.asynccontextmanager
    async def halted(self) -> AsyncIterator[None]:
        """Stop every runner where it stands and launch none until the block ends.

        On entry the runners are cancelled and waited for, and so is every store call they
        had started (in a worker thread or in a group commit): inside the block nothing of
        this executor writes to the store. Cancelling a runner is not cancelling its task:
        the task stays unfinished in the store, and the next scan after the block (which
        follows at once) resumes it if it is still there. Blocks may nest or overlap.
        Must run on the executor's event loop.

        Not waited for: a call to the cloud provider that a runner had already handed to a
        worker thread of its own (the simulated cloud's). It finishes by itself as one short
        transaction, and its writes need the rows it was working on: after a reset they find
        none (foreign keys, conditional updates) and change nothing.
        """
        self._holds += 1
        self._halts += 1
        try:
            handles = list(self._running.values())
            for handle in handles:
                handle.cancel()
            if handles:
                await asyncio.wait(handles)
            await self._commits.settle()
            await self._calls_settled()
            yield
        finally:
            self._holds -= 1
            self._halts += 1
            if self._holds == 0:
                self._wake.set()

    async def _calls_settled(self) -> None:
        with self._calls_guard:
            pending = [call for call in self._calls if not call.done()]
        if pending:
            # asyncio.wait: a call that failed or was cancelled before it started is settled
            # too, and nothing is raised here.
            await asyncio.wait([asyncio.wrap_future(call) for call in pending])

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
        halts = self._halts
        for task in await self._db(self._store.unfinished_tasks):
            if self._holds or self._halts != halts:
                return  # halted meanwhile: what was read may be gone; the next scan will see
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
            commit=self._commits.commit,
            time=self._clock,
            tuning=self._tuning,
            telemetry=self._telemetry,
        )
        self._runners[task_id] = task_runner
        handle = asyncio.create_task(self._run(task_runner), name=f"task {task_id}")
        self._running[task_id] = handle

    async def _run(self, task_runner: runner.TaskRunner) -> None:
        task_id = task_runner.task_id
        try:
            async with self._limit:
                self._active += 1
                try:
                    await task_runner.run()
                finally:
                    self._active -= 1
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("task %s stopped unexpectedly; it will be resumed", task_id)
        finally:
            self._running.pop(task_id, None)
            self._runners.pop(task_id, None)
            if not self._stopping and not task_runner.ended:
                # It may have stopped because of a new request (resume, cancel): look again.
                # (A task that ended needs no look: every unfinished task has a runner
                # already, waiting for a slot, and a submission wakes the executor itself.
                # With thousands queued, a scan after every task read them all each time.)
                self._wake.set()

    async def _db(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run a blocking store call in a worker thread (the changes go to ``_commits``)."""
        call = self._pool.submit(functools.partial(fn, *args, **kwargs))
        with self._calls_guard:
            self._calls.add(call)
        call.add_done_callback(self._forget_call)
        return await asyncio.wrap_future(call)

    def _forget_call(self, call: concurrent.futures.Future[Any]) -> None:
        with self._calls_guard:
            self._calls.discard(call)


class GroupCommit:
    """Commits the changes of many running tasks together, one transaction per batch.

    A runner's change waits until the transaction holding it has committed, exactly as a
    change of its own would (durable before reported). Changes that arrive while a batch
    commits form the next batch, so under load each commit carries many transitions and
    when idle a change commits at once, alone.
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
        self._batches: batches.Batches[changes.Change, changes.Applied] = batches.Batches(
            self._apply,
            pool,
            written=changes.written_tasks,
            on_commit=on_commit,
            max_batch=max_batch,
            name="clustertasks-commits",
        )

    async def settle(self) -> None:
        """Wait until every write handed in so far is committed (or has failed)."""
        await self._batches.settle()

    @overload
    async def commit(self, change: changes.UpdateTask | changes.UpdateStage) -> int: ...
    @overload
    async def commit(self, change: changes.AppendEvent) -> records.Event: ...
    @overload
    async def commit(self, change: changes.SetResult) -> None: ...
    @overload
    async def commit(self, change: changes.ReadTask) -> records.Task: ...
    @overload
    async def commit(self, change: changes.ReadView) -> records.TaskView: ...
    async def commit(self, change: changes.Change) -> changes.Applied:
        """Apply ``change`` in the next batch; returns once that batch has committed."""
        return await self._batches.submit(change)

    def _apply(self, batch: list[changes.Change]) -> list[changes.Applied | Exception]:
        return [
            outcome.value if outcome.error is None else outcome.error
            for outcome in self._store.apply_batch(batch)
        ]
