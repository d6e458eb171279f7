"""Starting a task's workflow and telling it that its row changed.

Workflow id = task id: a start of a task whose workflow is open is refused by Temporal, so
an API replica, a worker's reconciler and a retried submission can all try to start it and
only one workflow at a time ever runs it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import AsyncIterator

from temporalio import client as temporal_client
from temporalio import common
from temporalio import exceptions as temporal_exceptions
from temporalio.service import RPCError, RPCStatusCode

from clustertasks import clock, errors, settings
from clustertasks.domain import records
from clustertasks.engine.temporal import messages
from clustertasks.storage import store

log = logging.getLogger("clustertasks.engine")


CONNECT_WAIT_SECONDS = 30.0
"""How long a process waits for Temporal at start (a server starting beside it, a restart)."""
HALT_SECONDS = 30.0
"""How long the emulator's reset waits for the tasks it cancelled to end."""
HALT_POLL_SECONDS = 0.1
HALT_CONCURRENCY = 16
"""Workflows the emulator's reset waits on at once for them to close."""


async def connect(
    config: settings.TemporalSettings, *, wait: float = CONNECT_WAIT_SECONDS
) -> temporal_client.Client:
    """A client of the configured Temporal; ``errors.ConfigurationError`` if it stays
    unreachable (or unhealthy) for ``wait`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        try:
            return await temporal_client.Client.connect(config.address, namespace=config.namespace)
        except RuntimeError as exc:  # the SDK's connection failure
            if loop.time() >= deadline:
                raise errors.ConfigurationError(
                    f"cannot reach Temporal at {config.address}: {exc}"
                ) from exc
        await asyncio.sleep(0.2)


class Workflows:
    """Starts, pokes and cancels task workflows."""

    def __init__(self, temporal: temporal_client.Client, task_queue: str) -> None:
        self._client = temporal
        self._queue = task_queue

    async def ensure_started(self, task_id: str) -> bool:
        """Start the task's workflow unless it has one; True if this call started it."""
        try:
            await self._client.start_workflow(
                messages.WORKFLOW,
                args=[task_id, messages.VERSION],
                id=task_id,
                task_queue=self._queue,
                # A closed workflow may be followed by a new one: a workflow completes once
                # its task has ended, so the task is unfinished again only when an emulator
                # import brought it back, and then it needs one. (A start that comes too
                # late for a task that has just ended gets a workflow that plans, finds
                # the task ended and completes.)
                id_reuse_policy=common.WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            )
        except temporal_exceptions.WorkflowAlreadyStartedError:
            return False
        return True

    async def closed(self, task_id: str, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the task's workflow to close, however it
        ends; False if it is still open then."""
        handle = self._client.get_workflow_handle(task_id)
        try:
            await asyncio.wait_for(handle.result(), max(timeout, 0.0))
        except TimeoutError:
            return False
        except (temporal_client.WorkflowFailureError, RPCError):
            return True  # cancelled, failed or terminated: closed all the same
        return True

    async def poke(self, task_id: str) -> None:
        with contextlib.suppress(RPCError):  # ended meanwhile: nothing to tell
            await self._client.get_workflow_handle(task_id).signal(messages.POKE)

    async def cancel(self, task_id: str) -> None:
        try:
            await self._client.get_workflow_handle(task_id).cancel()
        except RPCError as exc:
            if exc.status is not RPCStatusCode.NOT_FOUND:
                raise


class Notifier:
    """The task service's ``notify`` on an API replica: after a commit, make the task's
    workflow act on it (start it, poke it, or cancel it).

    Thread-safe and never blocking the caller: a failure is logged, and the workers'
    reconciler starts any workflow missing. Tells nothing before :meth:`start`.
    """

    def __init__(
        self,
        task_store: store.TaskStore,
        config: settings.TemporalSettings,
        *,
        time: clock.Clock | None = None,
    ) -> None:
        self._store = task_store
        self._config = config
        self._clock = time or clock.SystemClock()
        self._workflows: Workflows | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: set[concurrent.futures.Future[None]] = set()

    async def start(self) -> temporal_client.Client:
        """Connect to Temporal and tell from this event loop on; returns the client."""
        temporal = await connect(self._config)
        self._workflows = Workflows(temporal, self._config.task_queue)
        self._loop = asyncio.get_running_loop()
        return temporal

    def notify(self, task_id: str) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # loop closing during shutdown
            future = asyncio.run_coroutine_threadsafe(self._act(task_id), loop)
            self._pending.add(future)
            future.add_done_callback(self._pending.discard)

    async def settle(self) -> None:
        """Wait for every notification handed in so far (shutdown, tests)."""
        if self._pending:
            await asyncio.wait([asyncio.wrap_future(f) for f in list(self._pending)])

    @contextlib.asynccontextmanager
    async def halted(self, wait: float = HALT_SECONDS) -> AsyncIterator[None]:
        """The emulator's reset and state import on the Temporal executor: no stage may
        run while the state is replaced, and the stages run in workers this replica cannot
        stop. So every unfinished task is cancelled first (as ``CancelTask`` does: at its
        next checkpoint, with its compensation) and the block runs once all have ended.
        ``errors.TaskConflict`` (409, naming the task) when one has not ended within
        ``wait`` seconds (a stage between checkpoints, or no worker running): nothing was
        replaced then, and the reset may be asked again. Once the block has run, the
        unfinished tasks of the new state (an import brings some back) get their
        workflows at once."""
        unfinished = await asyncio.to_thread(self._store.unfinished_tasks)
        now = self._clock.now_us()
        for task in unfinished:
            if task.requested_action != records.CANCEL:
                with contextlib.suppress(errors.IllegalTransition, errors.TaskNotFound):
                    await asyncio.to_thread(
                        self._store.request_action, task.task_id, records.CANCEL, now
                    )
            self.notify(task.task_id)
        wanted = {task.task_id for task in unfinished}
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while wanted:
            still = await asyncio.to_thread(self._store.unfinished_tasks)
            wanted &= {task.task_id for task in still}
            if not wanted:
                break
            if loop.time() >= deadline:
                raise errors.TaskConflict(
                    f"the task {min(wanted)} is still running on a Temporal worker "
                    f"{wait:g}s after it was asked to cancel; ask again once it has stopped"
                )
            await asyncio.sleep(HALT_POLL_SECONDS)
        # Their workflows complete just after the tasks end: a task the block brings back
        # can have a new one only once the old one has closed.
        workflows = self._workflows
        if workflows is not None:
            slots = asyncio.Semaphore(HALT_CONCURRENCY)

            async def closed(task_id: str) -> bool:
                async with slots:
                    return await workflows.closed(task_id, deadline - loop.time())

            await asyncio.gather(*(closed(task.task_id) for task in unfinished))
        yield
        for task in await asyncio.to_thread(self._store.unfinished_tasks):
            self.notify(task.task_id)

    async def _act(self, task_id: str) -> None:
        workflows = self._workflows
        if workflows is None:
            return
        try:
            task = await asyncio.to_thread(self._store.get_task, task_id)
            if task.state.terminal:
                return
            if not await workflows.ensure_started(task_id):
                if task.requested_action == records.CANCEL:
                    await workflows.cancel(task_id)
                else:
                    await workflows.poke(task_id)
        except Exception:
            log.exception("telling the workflow of task %s failed; a worker will", task_id)
