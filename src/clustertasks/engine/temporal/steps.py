"""The task runner cut into the steps a workflow sequences: plan, one stage, fail, cancel.

Each step re-reads its task from the store and commits every change before it returns, like
:class:`runner.TaskRunner` (whose writes it reuses), so a step re-run on another worker after
a crash resumes from the last commit. The stages are the operations' own, unchanged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from clustertasks import errors
from clustertasks.domain import records, states
from clustertasks.engine import context, runner, signals
from clustertasks.engine.temporal import messages, transactions
from clustertasks.operations import base as operations
from clustertasks.storage import changes

log = logging.getLogger("clustertasks.engine")


class RetryStage(Exception):
    """The attempt failed and another is due after ``delay`` seconds (Temporal retries it)."""

    def __init__(self, failure: errors.ClustertasksError, delay: float) -> None:
        self.failure = failure
        self.delay = delay
        super().__init__(f"{failure.code}: {failure.message}")


class StageAbandoned(errors.ClustertasksError):
    """Temporal stopped retrying a stage; ``code`` says why (``StageTimeout``, …)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


Checkpointed = Callable[[], None]


class HeartbeatContext(context.RunContext):
    """A stage context that also tells Temporal the stage is alive at every checkpoint."""

    def __init__(self, *, heartbeat: Checkpointed, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._heartbeat = heartbeat

    async def checkpoint(self, *, batch: int | None = None, batches: int | None = None) -> None:
        self._heartbeat()
        await super().checkpoint(batch=batch, batches=batches)


class TaskSteps(runner.TaskRunner):
    def __init__(
        self,
        task_id: str,
        *,
        heartbeat: Checkpointed,
        activity_transactions: transactions.ActivityTransactions,
        **kwargs: Any,
    ) -> None:
        super().__init__(task_id, **kwargs)
        self._heartbeat = heartbeat
        self._transactions = activity_transactions

    def _context(self, state: context.RunState, stage: str) -> context.RunContext:
        return HeartbeatContext(
            heartbeat=self._heartbeat,
            state=state,
            stage=stage,
            provider=self._provider,
            commit=self._commit,
            time=self._clock,
            poked=self.poked,
        )

    async def _load(
        self, starting: str | None = None
    ) -> tuple[context.RunState, operations.Operation | None]:
        """The task from the store; ``starting``: start that stage in the same transaction
        unless a request or the task's state stops it (the stage boundary's checkpoint)."""
        if starting is None:
            view = await self._transactions.read(self.task_id)
        else:
            view = await self._transactions.begin(self.task_id, starting, self._clock.now_us())
        state = context.RunState(view)
        return state, self._registry.get(state.task.task_type)

    async def plan(self) -> messages.Plan:
        """Settle whatever the store asks for first; then the stages left to run."""
        state, operation = await self._load()
        task = state.task
        if task.state.terminal:
            return messages.Plan(messages.ENDED)
        if operation is None:
            await self._fail(
                state, None, errors.ClustertasksError(f"no operation for {task.task_type}")
            )
            return messages.Plan(messages.ENDED)
        if task.requested_action == records.CANCEL:
            await self._cancel(state, operation)
            return messages.Plan(messages.ENDED)
        if task.state is states.TaskState.PAUSED:
            return messages.Plan(messages.PAUSED)
        stage_states = [s.state for s in state.stages.values()]
        if states.StageState.FAIL in stage_states:
            await self._finish_failure(state, operation)
            return messages.Plan(messages.ENDED)
        if states.StageState.CANCELED in stage_states:
            await self._cancel(state, operation)
            return messages.Plan(messages.ENDED)
        if task.requested_action == records.PAUSE:
            await self._pause(state, f"task {self.task_id} paused on request")
            return messages.Plan(messages.PAUSED)
        await self._reconcile_stages(state, operation)
        await self._announce_start(state)
        remaining = [
            messages.StagePlan(
                name=spec.name,
                timeout=spec.timeout,
                max_attempts=spec.retry.max_attempts,
                initial_delay=spec.retry.initial_delay * self._tuning.retry_delay_scale,
                factor=spec.retry.factor,
                max_delay=spec.retry.max_delay * self._tuning.retry_delay_scale,
            )
            for spec in operation.stages
            if state.stages[spec.name].state
            not in (states.StageState.SUCCESS, states.StageState.SKIPPED)
        ]
        if not remaining:
            await self._succeed(state)
            return messages.Plan(messages.ENDED)
        return messages.Plan(messages.RUN, remaining)

    async def run_stage(self, name: str, attempt: int) -> str:
        """One attempt at one stage; raises :class:`RetryStage` when another is due."""
        state, operation = await self._load(starting=name)
        if operation is None or state.task.state is not states.TaskState.RUNNING:
            return (
                messages.PAUSED if state.task.state is states.TaskState.PAUSED else messages.ENDED
            )
        spec = next((s for s in operation.stages if s.name == name), None)
        stage = state.stages.get(name)
        if spec is None or stage is None:
            return messages.NEXT  # planned by another version; the next plan sorts it out
        if stage.state in (states.StageState.SUCCESS, states.StageState.SKIPPED):
            return messages.NEXT
        # The stage boundary is a checkpoint: the task was read just now, requests included.
        if state.task.requested_action == records.CANCEL:
            await self._cancel(state, operation)
            return messages.ENDED
        if state.task.requested_action == records.PAUSE:
            await self._pause(state, f"task {self.task_id} paused on request")
            return messages.PAUSED
        if stage.state is not states.StageState.PENDING and stage.state is not (
            states.StageState.RUNNING
        ):
            return messages.NEXT  # failed or canceled meanwhile: the next plan finishes it
        # Started by the load already, unless another version of the operation planned it.
        now = self._clock.now_us()
        starting: list[Awaitable[Any]] = []
        if stage.state is states.StageState.PENDING:
            stage = stage.with_state(self.task_id, states.StageState.RUNNING, now)
            starting.append(self._save_stage(state, stage))
        if state.task.current_stage != name:
            state.task = state.task.with_current_stage(name, now)
            starting.append(self._commit(changes.UpdateTask(state.task)))
        await asyncio.gather(*starting)
        try:
            await self._attempt_on_stored_deadline(state, spec, attempt)
        except signals.PauseRequested as pause:
            await self._pause(state, pause.reason)
            return messages.PAUSED
        except signals.CancelRequested:
            await self._cancel(state, operation)
            return messages.ENDED
        except errors.ClustertasksError as exc:
            await self._fail(state, name, exc)
            await self._finish_failure(state, operation)
            return messages.ENDED
        done = state.stages[name].with_state(
            self.task_id, states.StageState.SUCCESS, self._clock.now_us()
        )
        if name == operation.stages[-1].name:
            # The last stage's end, the event and the task's success: one group commit.
            state.task = state.task.with_state(states.TaskState.SUCCESS, self._clock.now_us())
            await asyncio.gather(
                self._save_stage(state, done),
                self._event(state, "finish", "TaskSucceed", f"task {self.task_id} succeeded"),
                self._commit(self._ending(state)),
            )
            return messages.ENDED
        await self._save_stage(state, done)
        return messages.NEXT

    async def _attempt_on_stored_deadline(
        self, state: context.RunState, spec: operations.Stage, attempt: int
    ) -> None:
        # The stage's deadline counts from its start in the store, across attempts and workers.
        started = state.stages[spec.name].start_us or self._clock.now_us()
        remaining = spec.timeout - (self._clock.now_us() - started) / 1_000_000
        ctx = self._context(state, spec.name)
        retry = await self._attempt(state, spec, ctx, attempt, remaining)
        if retry is not None:
            raise RetryStage(retry.failure, retry.delay)

    async def fail_stage(self, name: str, code: str, message: str) -> None:
        """Temporal gave up on the stage (its deadline passed with no worker to run it)."""
        state, operation = await self._load()
        if state.task.state.terminal or operation is None:
            return
        failure = StageAbandoned(code, message)
        if state.stages.get(name) is not None and state.stages[name].state in (
            states.StageState.PENDING,
            states.StageState.RUNNING,
        ):
            if state.stages[name].state is states.StageState.PENDING:
                now = self._clock.now_us()
                await self._save_stage(
                    state,
                    state.stages[name].with_state(self.task_id, states.StageState.RUNNING, now),
                )
            await self._fail(state, name, failure)
        await self._finish_failure(state, operation)

    async def request_cancel(self) -> None:
        """Temporal cancelled the workflow: record a cancel request, as CancelTask does."""
        task = await self._db(self._store.get_task, self.task_id)
        if task.state.terminal or task.requested_action == records.CANCEL:
            return
        with contextlib.suppress(errors.IllegalTransition):  # ended meanwhile
            await self._db(
                self._store.request_action, self.task_id, records.CANCEL, self._clock.now_us()
            )

    async def cancel(self) -> None:
        """Temporal cancelled the workflow: cancel the task, running its compensation."""
        state, operation = await self._load()
        if state.task.state.terminal:
            return
        if state.task.requested_action != records.CANCEL:
            task = await self._db(
                self._store.request_action, self.task_id, records.CANCEL, self._clock.now_us()
            )
            state.task = task
        if operation is None:
            return
        await self._cancel(state, operation)
