"""The workflow of one task: plan, run the remaining stages one activity each, stop.

Deterministic: it only sequences activities and waits for signals. Every decision that needs
the task (which stages remain, pause and cancel requests, failures) is taken by an activity
reading the task store, so a workflow replayed on another worker takes the same path.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import timedelta
from typing import Any

from temporalio import exceptions, workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from clustertasks.engine.temporal import messages

HEARTBEAT = timedelta(seconds=5)
"""A worker killed mid-stage is noticed this late; the stage then runs on another worker."""
GRACE = timedelta(seconds=60)
"""Temporal's own deadline for a stage, beyond the stage's: the stage enforces its timeout
itself (from its start time in the store); this one fires only if no worker runs it at all."""
PAUSED_RECHECK = timedelta(minutes=5)
"""A paused task looks at the store again this often even without a poke (a resume whose
replica died before it could poke)."""
FIRST_STAGE_DEADLINE = timedelta(days=30)
"""Temporal's deadline for an attempt of the plan-and-first-stage activity: longer than any
stage's own timeout, which the stage enforces itself; Temporal notices a dead worker by the
heartbeat."""
BOOKKEEPING = timedelta(seconds=60)
BOOKKEEPING_RETRY = RetryPolicy(
    initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=5)
)


@workflow.defn(name=messages.WORKFLOW)
class TaskWorkflow:
    def __init__(self) -> None:
        self._poked = False
        self._running: workflow.ActivityHandle[Any] | None = None

    @workflow.signal(name=messages.POKE)
    def poke(self) -> None:
        """The task's row changed (resume, pause, cancel): look at it again."""
        self._poked = True

    @workflow.run
    async def run(self, task_id: str, version: int = 0) -> str:
        """``version``: ``messages.VERSION`` of the code that started the workflow (0 when
        it gave none); the path the workflow takes, fixed at its start."""
        try:
            return await self._advance(task_id, version)
        except asyncio.CancelledError:
            # Temporal cancellation is a cancel request. It goes to the store, where a
            # running stage sees it at its next checkpoint and cancels the task itself, as
            # on one machine; once no stage runs, the cancel step finishes whatever is left
            # (a paused task, a task between stages) and runs the compensation.
            await workflow.execute_activity(
                messages.REQUEST_CANCEL,
                task_id,
                start_to_close_timeout=BOOKKEEPING,
                retry_policy=BOOKKEEPING_RETRY,
                result_type=str,
            )
            running = self._running
            if running is not None and not running.done():
                with contextlib.suppress(exceptions.ActivityError):
                    await running
            await workflow.execute_activity(
                messages.CANCEL,
                task_id,
                start_to_close_timeout=BOOKKEEPING,
                retry_policy=BOOKKEEPING_RETRY,
                result_type=str,
            )
            return messages.ENDED

    async def _advance(self, task_id: str, version: int) -> str:
        # The first plan runs in the first stage's activity. A workflow of version 0 asks
        # its history: those begun before that change (no patch marker) plan in a local
        # activity, as they did.
        folded = version >= 1 or workflow.patched(messages.PLAN_IN_FIRST_STAGE)
        while True:
            self._poked = False
            first: str | None = None  # the outcome of plan.stages[0] when it ran already
            if folded:
                folded = False
                planned = await self._plan_and_run(task_id)
                if planned is None:
                    continue  # the activity failed: plan on its own
                plan, first = planned.plan, planned.outcome
            else:
                # A local activity: a short store transaction in the worker that runs this
                # workflow, recorded as a marker, with no round trip through the task queue.
                plan = await workflow.execute_local_activity(
                    messages.PLAN,
                    task_id,
                    start_to_close_timeout=BOOKKEEPING,
                    retry_policy=BOOKKEEPING_RETRY,
                    result_type=messages.Plan,
                )
            if plan.outcome == messages.ENDED:
                return messages.ENDED
            if plan.outcome == messages.PAUSED:
                await self._paused()
                if workflow.info().is_continue_as_new_suggested():
                    # Paused for long: a fresh history; the task store holds what matters.
                    workflow.continue_as_new(args=[task_id, version])
                continue
            stages = plan.stages
            if first is not None:
                if first == messages.ENDED:
                    return messages.ENDED
                if first == messages.PAUSED:
                    await self._paused()
                    continue
                stages = stages[1:]
            for stage in stages:
                outcome = await self._stage(task_id, stage)
                if outcome == messages.ENDED:
                    return messages.ENDED
                if outcome == messages.PAUSED:
                    await self._paused()
                    break

    async def _plan_and_run(self, task_id: str) -> messages.Planned | None:
        """The plan and its first stage in one activity; None if the activity failed.

        The first stage's policy is not known before the plan: Temporal retries the
        activity (a worker that died) on the bookkeeping policy; the stage's own retries
        come with their delay from the activity, and its deadline counts from its start in
        the store, as for every stage.
        """
        self._running = workflow.start_activity(
            messages.PLAN_AND_RUN,
            task_id,
            start_to_close_timeout=FIRST_STAGE_DEADLINE,
            heartbeat_timeout=HEARTBEAT,
            retry_policy=BOOKKEEPING_RETRY,
            # Decoded as plain JSON, then built by messages (see planned_from_json).
        )
        try:
            # Shielded, as a stage is: see _stage.
            planned = await asyncio.shield(self._running)
        except exceptions.ActivityError:
            return None
        return messages.planned_from_json(planned)

    async def _paused(self) -> None:
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: self._poked, timeout=PAUSED_RECHECK)

    async def _stage(self, task_id: str, stage: messages.StagePlan) -> str:
        self._running = workflow.start_activity(
            messages.RUN_STAGE,
            messages.StageInput(task_id, stage.name, stage.max_attempts),
            schedule_to_close_timeout=timedelta(seconds=stage.timeout) + GRACE,
            heartbeat_timeout=HEARTBEAT,
            # The activity decides when its own failures are final (the stage's
            # max_attempts, by exception class); Temporal retries what it lets through,
            # and a worker that died, with the stage's backoff.
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=max(stage.initial_delay, 0.001)),
                backoff_coefficient=max(stage.factor, 1.0),
                maximum_interval=timedelta(
                    seconds=max(stage.max_delay, stage.initial_delay, 0.001)
                ),
                maximum_attempts=0,
            ),
            result_type=str,
        )
        try:
            # Shielded: cancelling the workflow does not cancel the stage under way; the
            # stage stops at its next checkpoint on the request the store then holds.
            outcome: str = await asyncio.shield(self._running)
        except exceptions.ActivityError as exc:
            if isinstance(exc.cause, exceptions.TimeoutError):
                code, message = (
                    "StageTimeout",
                    f"stage {stage.name} did not finish within {stage.timeout:g}s",
                )
            else:
                code, message = "InternalError", str(exc.cause or exc)
            await workflow.execute_activity(
                messages.FAIL_STAGE,
                messages.StageFailure(task_id, stage.name, code, message),
                start_to_close_timeout=BOOKKEEPING,
                retry_policy=BOOKKEEPING_RETRY,
                result_type=str,
            )
            return messages.ENDED
        return outcome
