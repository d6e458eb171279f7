"""A Temporal worker: the activities that run the operations' stages, and the reconciler.

The activities share their transactions (``transactions.ActivityTransactions``): the stage
starts and the changes of many tasks on one worker commit together, as the local
executor's group commit does. The reconciler starts a workflow for every unfinished task
that lacks one: a task committed by an API replica that died before it could start the
workflow still runs.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import functools
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Collection
from datetime import timedelta
from typing import Any, NamedTuple, TypeVar

from temporalio import activity
from temporalio import client as temporal_client
from temporalio import exceptions as temporal_exceptions
from temporalio import worker as temporal_worker

from clustertasks import clock, errors, settings
from clustertasks.engine import runner
from clustertasks.engine.temporal import client, messages, steps, transactions, workflow
from clustertasks.observability import telemetry as observed
from clustertasks.operations import base as operations
from clustertasks.providers import base as providers
from clustertasks.storage import locks, store

log = logging.getLogger("clustertasks.engine")

TICK_SECONDS = 0.5
"""A running stage heartbeats and re-reads its task's requests (pause, cancel) this often,
besides at every checkpoint. The first tick comes after one period: a stage that ends
sooner costs no heartbeat call at all."""
HEARTBEAT_SECONDS = 1.0
"""A running stage tells Temporal it is alive at most this often, at a tick or a checkpoint
(the workflow's heartbeat timeout is 5 s): one call per tick and checkpoint would cost CPU
for nothing."""
EXECUTOR = "temporal"
"""The ``executor`` label of this executor's figures."""
RECONCILE_SECONDS = 5.0
RECONCILE_CONCURRENCY = 16
RECONCILE_TURN = "clustertasks.temporal.reconcile"
"""Workflow starts the reconciler has in flight at once (thousands after a Temporal restart)."""
RECHECK_SECONDS = 60.0
"""A task the reconciler saw with a workflow is asked about again only this long after:
every pass would otherwise ask Temporal to start every unfinished task once more (one
refused start per running task every ``RECONCILE_SECONDS``). A task that is new to this
worker is still started at its first pass, unless its workflow has planned it and it
changed within this time (another worker's reconciler or its API replica started that
workflow, and it runs); one whose workflow was terminated in Temporal gets a new one
within this time of its last change."""


class Reconciled(NamedTuple):
    """One pass of the reconciler: the tasks it asked Temporal to start a workflow for,
    and how many of those had none (the others' starts were refused)."""

    asked: int
    started: int


Committed = Callable[[Collection[str]], None]
_Outcome = TypeVar("_Outcome")


class Heartbeat:
    """Heartbeats of one activity, at most one per ``HEARTBEAT_SECONDS`` (its start counts
    as one: Temporal's heartbeat timeout runs from it)."""

    def __init__(self) -> None:
        self._last = time.monotonic()

    def __call__(self) -> None:
        now = time.monotonic()
        if now - self._last >= HEARTBEAT_SECONDS:
            self._last = now
            activity.heartbeat()


class Ticker:
    """Calls ``tick`` every ``TICK_SECONDS`` until cancelled: a timer on the loop, not a
    task of its own per activity (whose start, sleep and cancellation cost more). The
    callback runs in the context the ticker was made in: the activity's, which
    ``activity.heartbeat`` needs."""

    def __init__(self, loop: asyncio.AbstractEventLoop, tick: Callable[[], None]) -> None:
        self._loop = loop
        self._tick = tick
        self._timer = loop.call_later(TICK_SECONDS, self._fire)

    def _fire(self) -> None:
        self._timer = self._loop.call_later(TICK_SECONDS, self._fire)
        self._tick()

    def cancel(self) -> None:
        self._timer.cancel()


def _tick(task_steps: steps.TaskSteps, beat: Heartbeat) -> None:
    beat()
    task_steps.poked.set()  # a waiting stage looks at the store again


class StageActivities:
    def __init__(
        self,
        task_store: store.TaskStore,
        registry: operations.Registry,
        provider: providers.CloudPort,
        *,
        time: clock.Clock | None = None,
        tuning: runner.EngineTuning | None = None,
        on_commit: Committed | None = None,
        telemetry: observed.TaskTelemetry | None = None,
    ) -> None:
        self._store = task_store
        self._telemetry = telemetry or observed.Telemetry().tasks(EXECUTOR)
        self._registry = registry
        self._provider = provider
        self._clock = time or clock.SystemClock()
        self._tuning = tuning or runner.EngineTuning()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=16, thread_name_prefix="clustertasks-db"
        )
        # The activities' reads, stage starts and changes: one transaction per batch.
        self._transactions = transactions.ActivityTransactions(
            task_store, self._pool, on_commit=on_commit
        )
        self._rng = random.Random()  # retry jitter; seeding one per activity costs more

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    @property
    def all(self) -> list[Callable[..., Any]]:
        return [
            self.plan,
            self.plan_and_run,
            self.run_stage,
            self.fail_stage,
            self.request_cancel,
            self.cancel,
        ]

    @activity.defn(name=messages.PLAN)
    async def plan(self, task_id: str) -> messages.Plan:
        try:
            return await self._steps(task_id).plan()
        except errors.TaskNotFound:
            # Gone from the store (the emulator's reset or state import): nothing to run.
            return messages.Plan(messages.ENDED)

    @activity.defn(name=messages.PLAN_AND_RUN)
    async def plan_and_run(self, task_id: str) -> messages.Planned:
        """The plan, then its first stage (one attempt), in one activity."""

        async def planned(task_steps: steps.TaskSteps) -> messages.Planned:
            plan = await task_steps.plan()
            if plan.outcome != messages.RUN:
                return messages.Planned(plan, plan.outcome)
            first = plan.stages[0].name
            return messages.Planned(
                plan, await task_steps.run_stage(first, activity.info().attempt)
            )

        ended = messages.Planned(messages.Plan(messages.ENDED), messages.ENDED)
        return await self._in_stage(task_id, planned, ended)

    @activity.defn(name=messages.RUN_STAGE)
    async def run_stage(self, wire: Any) -> str:
        """``wire``: a :class:`messages.StageInput` as JSON (see ``planned_from_json``)."""
        stage = messages.StageInput.from_json(wire)

        async def run(task_steps: steps.TaskSteps) -> str:
            return await task_steps.run_stage(stage.stage, activity.info().attempt)

        return await self._in_stage(stage.task_id, run, messages.ENDED)

    async def _in_stage(
        self,
        task_id: str,
        body: Callable[[steps.TaskSteps], Awaitable[_Outcome]],
        gone: _Outcome,
    ) -> _Outcome:
        """``body`` as a stage's activity: heartbeats, ticks, and a retry handed to
        Temporal; ``gone`` when the task is no longer in the store."""
        beat = Heartbeat()
        task_steps = self._steps(task_id, beat)
        ticker = Ticker(asyncio.get_running_loop(), functools.partial(_tick, task_steps, beat))
        try:
            return await body(task_steps)
        except errors.TaskNotFound:
            return gone
        except steps.RetryStage as retry:
            raise temporal_exceptions.ApplicationError(
                str(retry),
                type=retry.failure.code,
                next_retry_delay=timedelta(seconds=max(retry.delay, 0.001)),
            ) from None
        finally:
            ticker.cancel()

    @activity.defn(name=messages.FAIL_STAGE)
    async def fail_stage(self, failure: messages.StageFailure) -> str:
        with contextlib.suppress(errors.TaskNotFound):
            await self._steps(failure.task_id).fail_stage(
                failure.stage, failure.code, failure.message
            )
        return messages.ENDED

    @activity.defn(name=messages.REQUEST_CANCEL)
    async def request_cancel(self, task_id: str) -> str:
        with contextlib.suppress(errors.TaskNotFound):
            await self._steps(task_id).request_cancel()
        return messages.ENDED

    @activity.defn(name=messages.CANCEL)
    async def cancel(self, task_id: str) -> str:
        with contextlib.suppress(errors.TaskNotFound):
            await self._steps(task_id).cancel()
        return messages.ENDED

    def _steps(self, task_id: str, beat: Heartbeat | None = None) -> steps.TaskSteps:
        return steps.TaskSteps(
            task_id,
            heartbeat=beat or Heartbeat(),
            rng=self._rng,
            activity_transactions=self._transactions,
            task_store=self._store,
            registry=self._registry,
            provider=self._provider,
            db=self._db,
            commit=self._transactions.commit,
            time=self._clock,
            tuning=self._tuning,
            telemetry=self._telemetry,
        )

    async def _db(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(fn, *args, **kwargs))


class TemporalWorker:
    """Polls the task queue for workflow and activity work; starts what is missing."""

    def __init__(
        self,
        temporal: temporal_client.Client,
        activities: StageActivities,
        task_store: store.TaskStore,
        *,
        task_queue: str,
        max_running_stages: int = 64,
        reconcile_seconds: float = RECONCILE_SECONDS,
        reconcile_turn: locks.TurnLock | None = None,
        recheck_seconds: float = RECHECK_SECONDS,
        time: clock.Clock | None = None,
    ) -> None:
        """``reconcile_turn``: shared by the workers on the database, so that one at a time
        reconciles (each would start the same workflows, all but one start refused).
        ``time``: the clock the tasks' writes are stamped with."""
        self._store = task_store
        self._turn = reconcile_turn
        self._recheck_seconds = recheck_seconds
        self._time = time or clock.SystemClock()
        self._seen: dict[str, float] = {}
        """Task id → when the reconciler last saw it with a workflow (monotonic)."""
        self._workflows = client.Workflows(temporal, task_queue)
        self._reconcile_seconds = reconcile_seconds
        self._worker = temporal_worker.Worker(
            temporal,
            task_queue=task_queue,
            workflows=[workflow.TaskWorkflow],
            activities=activities.all,
            max_concurrent_activities=max_running_stages,
            # Not sandboxed: the sandbox re-imports the workflow's modules for every
            # workflow run, which cost more CPU than all the task store's writes. The
            # workflow only sequences activities and waits for signals (no clock, no I/O,
            # no randomness), so it is deterministic without the sandbox's checks.
            workflow_runner=temporal_worker.UnsandboxedWorkflowRunner(),
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Work until ``stop`` is set, then finish the activities in hand and return."""
        async with self._worker:
            while not stop.is_set():
                try:
                    await self.reconcile()
                except Exception:
                    log.exception("starting the missing workflows failed; retrying")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self._reconcile_seconds)

    async def reconcile(self) -> Reconciled:
        """Start a workflow for each unfinished task without one (nothing when another
        worker is reconciling: its turn)."""
        turn = self._turn
        if turn is not None and not await asyncio.to_thread(turn.try_acquire):
            return Reconciled(0, 0)
        try:
            unfinished = await asyncio.to_thread(self._store.unfinished_tasks)
            slots = asyncio.Semaphore(RECONCILE_CONCURRENCY)
            now = time.monotonic()
            # Forget the tasks that ended; skip those seen with a workflow lately, by this
            # worker, or by any: a task its workflow has planned (its first event) and that
            # changed lately has a workflow that runs.
            seen = {t.task_id: self._seen[t.task_id] for t in unfinished if t.task_id in self._seen}
            self._seen = seen
            lately_us = self._time.now_us() - self._recheck_seconds * 1_000_000
            due = [
                task.task_id
                for task in unfinished
                if now - seen.get(task.task_id, -math.inf) >= self._recheck_seconds
                and not (task.event_count and task.updated_us > lately_us)
            ]

            async def start(task_id: str) -> bool:
                async with slots:
                    started = await self._workflows.ensure_started(task_id)
                self._seen[task_id] = time.monotonic()
                if started:
                    log.info("started the missing workflow of task %s", task_id)
                return started

            started = await asyncio.gather(*(start(task_id) for task_id in due))
            return Reconciled(len(due), sum(started))
        finally:
            if turn is not None:
                await asyncio.to_thread(turn.release)


async def work(
    config: settings.TemporalSettings,
    task_store: store.TaskStore,
    registry: operations.Registry,
    provider: providers.CloudPort,
    stop: asyncio.Event,
    *,
    max_running_stages: int = 64,
    on_commit: Committed | None = None,
    temporal: temporal_client.Client | None = None,
    telemetry: observed.TaskTelemetry | None = None,
    reconcile_turn: locks.TurnLock | None = None,
) -> None:
    """Run a worker on the configured task queue until ``stop`` is set."""
    if temporal is None:
        temporal = await client.connect(config)
    activities = StageActivities(
        task_store, registry, provider, on_commit=on_commit, telemetry=telemetry
    )
    try:
        await TemporalWorker(
            temporal,
            activities,
            task_store,
            task_queue=config.task_queue,
            max_running_stages=max_running_stages,
            reconcile_turn=reconcile_turn,
        ).run(stop)
    finally:
        activities.close()
