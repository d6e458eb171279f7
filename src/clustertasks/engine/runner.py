"""Running one task from wherever it stands to its next stop.

A stop is success, failure, cancellation or a pause. The runner re-reads the task from
the store, skips finished stages, re-runs an interrupted one (stages are idempotent) and
commits every change before going on, so a crash at any instant loses nothing: the next
runner resumes from the last commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from clustertasks import clock, errors
from clustertasks.domain import records, states
from clustertasks.engine import context, signals
from clustertasks.observability import telemetry as observed
from clustertasks.operations import base as operations
from clustertasks.providers import base as providers
from clustertasks.storage import changes, store

log = logging.getLogger("clustertasks.engine")

Db = Callable[..., Awaitable[Any]]
COMPENSATION = "Compensate"


@dataclasses.dataclass(frozen=True, slots=True)
class EngineTuning:
    retry_delay_scale: float = 1.0
    """Multiplies every retry backoff (tests use 0 to retry at once)."""


class Retry(NamedTuple):
    """A failed attempt of a stage, and the seconds until the next one."""

    failure: errors.ClustertasksError
    delay: float


class TaskRunner:
    def __init__(
        self,
        task_id: str,
        *,
        task_store: store.TaskStore,
        registry: operations.Registry,
        provider: providers.CloudPort,
        db: Db,
        commit: context.Commit,
        time: clock.Clock,
        tuning: EngineTuning,
        telemetry: observed.TaskTelemetry,
        rng: random.Random | None = None,
    ) -> None:
        self.task_id = task_id
        self._store = task_store
        self._registry = registry
        self._provider = provider
        self._db = db
        self._commit = commit
        self._clock = time
        self._tuning = tuning
        self._telemetry = telemetry
        self._rng = rng or random.Random()
        self._settling = providers.settles_with_task(provider)
        self.poked = asyncio.Event()
        self.ended = False
        """True once the run has seen the task in a final state: no request can move it on."""

    async def run(self) -> None:
        view = await self._commit(changes.ReadView(self.task_id))
        state = context.RunState(view)
        task = state.task
        if task.state.terminal:
            self.ended = True
            return
        with self._telemetry.task_run(self.task_id, task.task_type, task.trace_parent):
            await self._run(state)
            if state.task.state.terminal:
                self.ended = True
                self._telemetry.finished(task.task_type, state.task.state.value)

    async def _run(self, state: context.RunState) -> None:
        task = state.task
        operation = self._registry.get(task.task_type)
        if operation is None:
            await self._fail(
                state, None, errors.ClustertasksError(f"no operation for {task.task_type}")
            )
            return
        if task.requested_action == records.CANCEL:
            await self._cancel(state, operation)
            return
        if task.state is states.TaskState.PAUSED:
            return
        stage_states = [s.state for s in state.stages.values()]
        if states.StageState.FAIL in stage_states:
            # A crash interrupted the failure path: finish it.
            await self._finish_failure(state, operation)
            return
        if states.StageState.CANCELED in stage_states:
            await self._cancel(state, operation)
            return
        if task.requested_action == records.PAUSE:
            await self._pause(state, f"task {self.task_id} paused on request")
            return
        await self._reconcile_stages(state, operation)
        await self._run_stages(state, operation)

    async def _reconcile_stages(
        self, state: context.RunState, operation: operations.Operation
    ) -> None:
        """Bring a task stored by another version of its operation in line with this one.

        Stages the operation has gained are planned after the stored ones; stages it no
        longer has are skipped if they never started (one that did is left as it stands).
        The task then runs this version's stages, in this version's order.
        """
        wanted = {spec.name for spec in operation.stages}
        missing = [spec.name for spec in operation.stages if spec.name not in state.stages]
        dropped = [
            stage
            for stage in state.stages.values()
            if stage.name not in wanted and stage.state is states.StageState.PENDING
        ]
        if not missing and not dropped:
            return
        now = self._clock.now_us()
        for stage in await self._db(self._store.add_stages, self.task_id, missing, now):
            state.stages[stage.name] = stage
            state.order.append(stage.name)
        for stage in dropped:
            await self._save_stage(
                state, stage.with_state(self.task_id, states.StageState.SKIPPED, now)
            )
        changes = [f"added {', '.join(missing)}"] if missing else []
        changes += [f"skipped {', '.join(s.name for s in dropped)}"] if dropped else []
        await self._event(
            state,
            "progress",
            "TaskStagesUpdated",
            f"task {self.task_id} continues with this version's {operation.task_type} stages: "
            + "; ".join(changes),
        )

    async def _announce_start(self, state: context.RunState) -> None:
        """The task's ``TaskStart`` event, unless it is stored already or a stage began."""
        if state.start_unannounced():
            await self._event(
                state,
                "start",
                context.TASK_START,
                f"{state.task.task_type} task {self.task_id} started",
            )

    async def _run_stages(self, state: context.RunState, operation: operations.Operation) -> None:
        await self._announce_start(state)
        for spec in operation.stages:
            stage = state.stages[spec.name]
            if stage.state in (states.StageState.SUCCESS, states.StageState.SKIPPED):
                continue
            # A stage boundary is a checkpoint too: a pause or cancel asked for during the
            # previous stage takes effect before the next one starts.
            try:
                await self._context(state, spec.name).checkpoint()
            except signals.PauseRequested as pause:
                await self._pause(state, pause.reason)
                return
            except signals.CancelRequested:
                await self._cancel(state, operation)
                return
            now = self._clock.now_us()
            # Both writes go out together, so the executor's group commit puts them in one
            # transaction: one wait per stage start instead of two. Each is idempotent, and a
            # crash between them is handled like before (the stage is re-run).
            starting: list[Awaitable[Any]] = []
            if stage.state is states.StageState.PENDING:
                stage = stage.with_state(self.task_id, states.StageState.RUNNING, now)
                starting.append(self._save_stage(state, stage))
            if state.task.current_stage != spec.name:
                state.task = state.task.with_current_stage(spec.name, now)
                starting.append(self._commit(changes.UpdateTask(state.task)))
            await asyncio.gather(*starting)
            try:
                await self._attempts(state, spec)
            except signals.PauseRequested as pause:
                await self._pause(state, pause.reason)
                return
            except signals.CancelRequested:
                await self._cancel(state, operation)
                return
            except errors.ClustertasksError as exc:
                await self._fail(state, spec.name, exc)
                await self._finish_failure(state, operation)
                return
            stage = state.stages[spec.name]
            done = stage.with_state(self.task_id, states.StageState.SUCCESS, self._clock.now_us())
            await self._save_stage(state, done)
        await self._succeed(state)

    async def _attempts(self, state: context.RunState, spec: operations.Stage) -> None:
        """Run the stage until it succeeds, or raise the error that fails the task."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + spec.timeout
        attempt = 0
        while True:
            attempt += 1
            ctx = self._context(state, spec.name)
            retry = await self._attempt(state, spec, ctx, attempt, deadline - loop.time())
            if retry is None:
                return
            await ctx.sleep(retry.delay)

    async def _attempt(
        self,
        state: context.RunState,
        spec: operations.Stage,
        ctx: operations.StageContext,
        attempt: int,
        remaining: float,
    ) -> Retry | None:
        """One attempt of the stage with ``remaining`` seconds of its deadline left: None when
        it succeeded, the retry (recorded as a ``StageRetry`` event) when another attempt is
        due; raises the error that fails the task. Both executors run attempts through it."""
        task_type = state.task.task_type
        with self._telemetry.stage_attempt(self.task_id, task_type, spec.name, attempt) as outcome:
            try:
                if remaining <= 0:
                    raise TimeoutError
                # asyncio.timeout, not wait_for: the stage runs in this task (no task of
                # its own, which cost more than a no-op stage), seeing the call's context.
                with self._calling(state, spec.name):
                    async with asyncio.timeout(remaining):
                        await spec.run(ctx)
                return None
            except signals.Interrupt:
                outcome("interrupted")
                raise
            except TimeoutError:
                outcome("timeout")
                self._telemetry.timed_out(task_type, spec.name)
                raise errors.StageTimeout(spec.name, spec.timeout) from None
            except errors.TemporaryError as exc:
                failure: errors.ClustertasksError = exc
                delay = exc.delay
            except errors.StorageUnavailable as exc:
                # A locked or unreachable database is a blip, not the operation failing.
                failure = exc
                delay = None
            except errors.ClustertasksError:
                outcome("fail")
                raise  # permanent: our errors carry their code
            except Exception as exc:
                failure = errors.ClustertasksError(f"{type(exc).__name__}: {exc}")
                delay = None
                log.warning(
                    "task %s stage %s attempt %d failed",
                    self.task_id,
                    spec.name,
                    attempt,
                    exc_info=exc,
                )
            if attempt >= spec.retry.max_attempts:
                outcome("fail")
                raise failure
            outcome("retry")
            self._telemetry.retried(task_type, spec.name, failure.code)
        wait = self._backoff(spec.retry, attempt) if delay is None else delay
        await self._event(
            state,
            "retry",
            "StageRetry",
            f"stage {spec.name} attempt {attempt} of {spec.retry.max_attempts} failed "
            f"({failure.code}: {failure.message}); retrying in {wait:.1f}s",
            level=states.EventLevel.WARNING,
        )
        return Retry(failure, wait * self._tuning.retry_delay_scale)

    def _backoff(self, policy: operations.RetryPolicy, attempt: int) -> float:
        ceiling = min(policy.max_delay, policy.initial_delay * policy.factor ** (attempt - 1))
        return self._rng.uniform(0, ceiling)

    def _calling(
        self, state: context.RunState, stage: str
    ) -> contextlib.AbstractContextManager[None]:
        """The provider sees which task and stage it works for (waits, fault rules)."""
        call = providers.TaskCall(self.task_id, state.task.task_type, stage)
        return providers.calling_as(call)

    def _context(self, state: context.RunState, stage: str) -> context.RunContext:
        return context.RunContext(
            state=state,
            stage=stage,
            provider=self._provider,
            commit=self._commit,
            time=self._clock,
            poked=self.poked,
        )

    # -- stops -----------------------------------------------------------------------------

    async def _succeed(self, state: context.RunState) -> None:
        now = self._clock.now_us()
        state.task = state.task.with_state(states.TaskState.SUCCESS, now)
        # In this order, and in one group commit: the event, then the final state.
        await asyncio.gather(
            self._event(state, "finish", "TaskSucceed", f"task {self.task_id} succeeded"),
            self._commit(self._ending(state)),
        )

    def _ending(
        self, state: context.RunState, *, acted_on: str | None = None
    ) -> changes.UpdateTask:
        """The write of the task's final state, with the states its stages and compensation
        settled its cluster and pools in: one transaction, so no client reads a pool
        ``active`` while the task that made it so still runs (and sees its next request
        refused as a conflict)."""
        cluster_state, nodepool_states = state.settles()
        also = None
        if self._settling is not None and (cluster_state or nodepool_states):
            also = self._settling.settling(
                state.task.cluster_id, cluster_state=cluster_state, nodepool_states=nodepool_states
            )
        return changes.UpdateTask(state.task, acted_on=acted_on, also=also)

    async def _pause(self, state: context.RunState, reason: str) -> None:
        now = self._clock.now_us()
        state.task = dataclasses.replace(
            state.task.with_state(states.TaskState.PAUSED, now), requested_action=None
        )
        await self._event(state, "pause", "TaskPaused", reason)
        await self._commit(changes.UpdateTask(state.task, acted_on=records.PAUSE))

    async def _fail(
        self, state: context.RunState, stage_name: str | None, exc: errors.ClustertasksError
    ) -> None:
        """Record the failure: the stage fails, later stages are skipped, the error is set."""
        now = self._clock.now_us()
        for name in state.order:
            stage = state.stages[name]
            if name == stage_name and stage.state is states.StageState.RUNNING:
                await self._save_stage(
                    state, stage.with_state(self.task_id, states.StageState.FAIL, now, exc.message)
                )
            elif stage.state is states.StageState.PENDING:
                await self._save_stage(
                    state, stage.with_state(self.task_id, states.StageState.SKIPPED, now)
                )
        state.task = state.task.with_error(records.TaskError(exc.code, exc.message), now)
        await self._commit(changes.UpdateTask(state.task))
        await self._event(
            state,
            "fail",
            "TaskFailed",
            f"{exc.code}: {exc.message}",
            level=states.EventLevel.WARNING,
        )

    async def _finish_failure(
        self, state: context.RunState, operation: operations.Operation
    ) -> None:
        await self._compensate(state, operation)
        state.task = state.task.with_state(states.TaskState.FAIL, self._clock.now_us())
        await self._commit(self._ending(state))

    async def _cancel(self, state: context.RunState, operation: operations.Operation) -> None:
        now = self._clock.now_us()
        for name in state.order:
            stage = state.stages[name]
            if stage.state in (states.StageState.PENDING, states.StageState.RUNNING):
                await self._save_stage(
                    state,
                    stage.with_state(self.task_id, states.StageState.CANCELED, now, "canceled"),
                )
        await self._compensate(state, operation)
        now = self._clock.now_us()
        state.task = dataclasses.replace(
            state.task.with_state(states.TaskState.CANCELED, now), requested_action=None
        )
        await self._event(state, "cancel", "TaskCanceled", f"task {self.task_id} canceled")
        await self._commit(self._ending(state, acted_on=records.CANCEL))

    async def _compensate(self, state: context.RunState, operation: operations.Operation) -> None:
        if operation.compensate is None:
            return
        state.compensation_settles = {}
        ctx = self._context(state, COMPENSATION)
        try:
            with self._calling(state, COMPENSATION):
                await operation.compensate(ctx)
        except signals.Interrupt:
            pass  # already stopping: a second pause/cancel changes nothing
        except Exception as exc:
            log.warning("task %s compensation failed", self.task_id, exc_info=exc)
            await self._event(
                state,
                "compensate",
                "CompensationFailed",
                f"cleanup after task {self.task_id} failed: {type(exc).__name__}: {exc}",
                level=states.EventLevel.WARNING,
            )

    # -- writes ----------------------------------------------------------------------------

    async def _save_stage(self, state: context.RunState, stage: records.Stage) -> None:
        await self._commit(changes.UpdateStage(self.task_id, stage, self._clock.now_us()))
        state.stages[stage.name] = stage

    async def _event(
        self,
        state: context.RunState,
        action: str,
        reason: str,
        message: str,
        *,
        level: states.EventLevel = states.EventLevel.NORMAL,
    ) -> None:
        await self._commit(
            changes.AppendEvent(
                self.task_id,
                action=action,
                level=level,
                reason=reason,
                message=message,
                now_us=self._clock.now_us(),
            )
        )
