"""The engine's implementation of ``operations.base.StageContext``."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Protocol, TypeVar, overload

from clustertasks import clock, errors
from clustertasks.domain import records, rollout, states
from clustertasks.engine import signals
from clustertasks.providers import base as providers
from clustertasks.storage import changes

R = TypeVar("R")
Db = Callable[..., Awaitable[Any]]
"""Runs a blocking store call in a worker thread."""


class Commit(Protocol):
    """Commits one change to the task store (the executor groups the changes of many tasks
    into one transaction) and returns what ``TaskStore.apply`` would have."""

    @overload
    async def __call__(self, change: changes.UpdateTask | changes.UpdateStage) -> int: ...
    @overload
    async def __call__(self, change: changes.AppendEvent) -> records.Event: ...
    @overload
    async def __call__(self, change: changes.SetResult) -> None: ...
    @overload
    async def __call__(self, change: changes.ReadTask) -> records.Task: ...
    @overload
    async def __call__(self, change: changes.ReadView) -> records.TaskView: ...


SETTLES = "settles"
"""The stage output that records the states the task leaves its cluster and pools in."""


DELETED = "deleted"
"""A pool settled so is deleted with the task's end; nothing settled after undoes it."""
TASK_START = "TaskStart"
"""The reason of the event that announces a task's start."""


class RunState:
    """What the runner knows of its task, kept in step with what it writes."""

    def __init__(self, view: records.TaskView) -> None:
        self.task = view.task
        self.stages = {stage.name: stage for stage in view.stages}
        self.order = [stage.name for stage in view.stages]
        self.results: dict[str, states.ResultStatus] = {r.data: r.status for r in view.results}
        self.reported = {(e.reason, e.message) for e in view.events}
        self.compensation_settles: dict[str, Any] = {}
        """What the compensation settles (it has no stage row: it runs again, and records
        it again, whenever the task's end is written again)."""

    def start_unannounced(self) -> bool:
        """Whether the task's start is still to be announced: no stage has started and no
        ``TaskStart`` event is stored (a run killed between writing that event and
        starting the first stage leaves the event and no started stage)."""
        return not any(s.start_us for s in self.stages.values()) and not any(
            reason == TASK_START for reason, _ in self.reported
        )

    def settles(self) -> tuple[str | None, dict[str, str]]:
        """The cluster state and the pool states the task leaves: what its stages (in
        order) and its compensation recorded, the latest for each resource."""
        cluster: str | None = None
        pools: dict[str, str] = {}
        recorded = [self.stages[name].outputs.get(SETTLES) for name in self.order]
        for found in [*recorded, self.compensation_settles]:
            if not isinstance(found, Mapping):
                continue
            if found.get("cluster") and cluster != DELETED:
                cluster = str(found["cluster"])
            for pool_id, state in dict(found.get("nodepools", {})).items():
                if pools.get(str(pool_id)) != DELETED:
                    pools[str(pool_id)] = str(state)
        return cluster, pools


class RunContext:
    """One stage's window on its task. Every report is committed before it returns."""

    def __init__(
        self,
        *,
        state: RunState,
        stage: str,
        provider: providers.CloudPort,
        commit: Commit,
        time: clock.Clock,
        poked: asyncio.Event,
    ) -> None:
        self._state = state
        self._commit = commit
        self._clock = time
        self._poked = poked
        self.task_id = state.task.task_id
        self.cluster_id = state.task.cluster_id
        self.stage = stage
        self.parameters: Mapping[str, Any] = state.task.parameters
        self.provider = provider
        self._settling = providers.settles_with_task(provider)

    def key(self, *item: object) -> str:
        return "/".join([self.task_id, self.stage, *(str(part) for part in item)])

    async def emit(
        self,
        reason: str,
        message: str,
        *,
        level: states.EventLevel = states.EventLevel.NORMAL,
        action: str = "progress",
        once: bool = False,
    ) -> None:
        if once and (reason, message) in self._state.reported:
            return
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
        self._state.reported.add((reason, message))

    async def set_result(
        self,
        data: str,
        status: states.ResultStatus,
        *,
        reason: str | None = None,
        message: str = "",
        level: states.EventLevel = states.EventLevel.NORMAL,
    ) -> None:
        current = self._state.results.get(data)
        if current == status:
            return
        note = None
        if reason is not None and (reason, message) not in self._state.reported:
            note = records.EventNote(reason=reason, message=message, level=level)
        await self._commit(
            changes.SetResult(self.task_id, data, status, self._clock.now_us(), event=note)
        )
        self._state.results[data] = status
        if note is not None:
            self._state.reported.add((note.reason, note.message))

    async def progress(self, **counters: Any) -> None:
        stage = self._state.stages.get(self.stage)
        if stage is None:  # compensation has no stage row of its own
            return
        merged = {**stage.outputs, **counters}
        if merged == dict(stage.outputs):
            return
        updated = dataclasses.replace(stage, outputs=merged)
        await self._commit(changes.UpdateStage(self.task_id, updated, self._clock.now_us()))
        self._state.stages[self.stage] = updated

    def outputs(self, stage: str | None = None) -> Mapping[str, Any]:
        found = self._state.stages.get(stage or self.stage)
        return found.outputs if found is not None else {}

    def results(self) -> Mapping[str, states.ResultStatus]:
        return dict(self._state.results)

    async def settle_nodepool(
        self, nodepool_id: str, *, state: str, desired_size: int | None = None
    ) -> None:
        if self._settling is None:
            await self.provider.update_nodepool(
                self.cluster_id, nodepool_id, state=state, desired_size=desired_size
            )
            return
        self._settling.settling(self.cluster_id, nodepool_states={nodepool_id: state})  # checks
        if desired_size is not None:
            await self.provider.update_nodepool(
                self.cluster_id, nodepool_id, desired_size=desired_size
            )
        await self._record_settle({"nodepools": {nodepool_id: state}})

    async def delete_nodepool(self, nodepool_id: str) -> None:
        if self._settling is None:
            await self.provider.delete_nodepool(self.key(), self.cluster_id, nodepool_id)
            return
        await self._settling.deleting_nodepool(self.key(), self.cluster_id, nodepool_id)
        await self._record_settle({"nodepools": {nodepool_id: DELETED}})

    async def settle_cluster(self, *, state: str) -> None:
        if state == DELETED:
            raise errors.InvalidParameter("state", "a cluster is deleted by delete_cluster")
        if self._settling is None:
            await self.provider.update_cluster(self.cluster_id, state=state)
            return
        self._settling.settling(self.cluster_id, cluster_state=state)  # checks the state
        await self._record_settle({"cluster": state})

    async def delete_cluster(self) -> None:
        if self._settling is None:
            await self.provider.delete_cluster(self.key(), self.cluster_id)
            return
        await self._settling.deleting_cluster(self.key(), self.cluster_id)
        await self._record_settle({"cluster": DELETED})

    async def _record_settle(self, settled: Mapping[str, Any]) -> None:
        stage = self._state.stages.get(self.stage)
        found: Any = (
            stage.outputs.get(SETTLES) if stage is not None else self._state.compensation_settles
        )
        current = dict(found) if isinstance(found, Mapping) else {}
        merged = {
            **current,
            **settled,
            "nodepools": {**current.get("nodepools", {}), **settled.get("nodepools", {})},
        }
        if not merged["nodepools"]:
            del merged["nodepools"]
        if stage is None:  # the compensation
            self._state.compensation_settles = merged
            return
        await self.progress(**{SETTLES: merged})

    async def checkpoint(self, *, batch: int | None = None, batches: int | None = None) -> None:
        task = await self._commit(changes.ReadTask(self.task_id))
        if task.requested_action == records.CANCEL:
            raise signals.CancelRequested()
        if task.requested_action == records.PAUSE:
            raise signals.PauseRequested(f"task {self.task_id} paused on request")
        if batch is None or batches is None or batch >= batches:
            return
        policy = rollout.pause_policy(self.parameters)
        already = int(self.outputs().get("paused_after_batch", 0))
        due = (policy == "FirstBatch" and batch == 1) or policy == "EveryBatch"
        if due and already < batch:
            await self.progress(paused_after_batch=batch)
            raise signals.PauseRequested(
                f"task {self.task_id} paused after batch {batch} of {batches} "
                f"(pause_policy {policy})"
            )

    async def wait(self, seconds: float) -> None:
        waiting = asyncio.ensure_future(self.provider.wait(seconds))
        try:
            while True:
                # As in sleep(): cleared before the checkpoint reads the store. A wait that
                # needs no time is over by the time the checkpoint has read it.
                self._poked.clear()
                await self.checkpoint()
                if waiting.done():
                    waiting.result()
                    return
                poked = asyncio.ensure_future(self._poked.wait())
                try:
                    await asyncio.wait({waiting, poked}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    poked.cancel()
        finally:
            if not waiting.done():
                waiting.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await waiting

    async def sleep(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(seconds, 0.0)
        while True:
            # Clear before the checkpoint reads the store: a request committed earlier is
            # seen by the checkpoint, one committed later pokes the wait below awake.
            self._poked.clear()
            await self.checkpoint()
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poked.wait(), remaining)
