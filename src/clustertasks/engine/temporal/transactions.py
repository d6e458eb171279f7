"""The task store as a worker's activities use it: one transaction for what many read,
start and write at once.

Each activity begins by reading its task from the store, and a stage's activity then marks
the stage running; a stage's runner then commits its changes (the stage's end, its events,
the task's end). Under load a worker has dozens of activities beginning and ending at once:
their beginnings and their changes share one transaction per batch
(``TaskStore.begin_stages_and_apply``), each caller waiting until it has committed, as a
transaction of its own would. What arrives while a batch is in the database waits for the
next one, which under load also waits ``GATHER_SECONDS`` for more; when idle an item goes
alone, at once.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any, cast

from clustertasks import errors
from clustertasks.domain import records
from clustertasks.engine import batches, context
from clustertasks.storage import changes, store

Item = store.StageStart | changes.Change

GATHER_SECONDS = 0.01
"""Under load, how long a batch waits for more activities' items to join it. Measured with
300 five-stage tasks on one worker (as bench/engine.py's Temporal run): 10.5 items a batch
instead of 4.1, 2 ms less of the worker's CPU and 0.8 ms less of PostgreSQL's per task;
idle, an item goes at once."""


class ActivityTransactions:
    def __init__(
        self,
        task_store: store.TaskStore,
        pool: concurrent.futures.Executor,
        *,
        max_batch: int = 256,
        gather_seconds: float = GATHER_SECONDS,
        on_commit: batches.Committed | None = None,
    ) -> None:
        self._store = task_store
        self._batches: batches.Batches[Item, Any] = batches.Batches(
            self._run,
            pool,
            written=written_tasks,
            on_commit=on_commit,
            max_batch=max_batch,
            gather_seconds=gather_seconds,
            name="clustertasks-activities",
        )
        self.commit = cast(context.Commit, self._commit)
        """Apply a change in the next batch; returns once that batch has committed."""

    async def read(self, task_id: str) -> records.TaskView:
        """The task as committed; ``errors.TaskNotFound`` if there is none."""
        view: records.TaskView = await self._batches.submit(store.StageStart(task_id, None, 0))
        return view

    async def begin(self, task_id: str, stage: str, now_us: int) -> records.TaskView:
        """Start ``stage`` unless a request or the task's state forbids it (see
        ``TaskStore.begin_stages``); the task as committed afterwards."""
        view: records.TaskView = await self._batches.submit(
            store.StageStart(task_id, stage, now_us)
        )
        return view

    async def _commit(self, change: changes.Change) -> changes.Applied:
        applied: changes.Applied = await self._batches.submit(change)
        return applied

    def _run(self, items: list[Item]) -> list[Any]:
        starts = [item for item in items if isinstance(item, store.StageStart)]
        batch = [item for item in items if not isinstance(item, store.StageStart)]
        views, outcomes = self._store.begin_stages_and_apply(starts, batch)
        applied = iter(outcomes)
        done: list[Any] = []
        for item in items:
            if isinstance(item, store.StageStart):
                view = views.get(item.task_id)
                done.append(view if view is not None else errors.TaskNotFound(item.task_id))
            else:
                outcome = next(applied)
                done.append(outcome.value if outcome.error is None else outcome.error)
        return done


def written_tasks(items: list[Item]) -> set[str]:
    """The ids of the tasks a batch wrote to: the stages it started and the changes'."""
    started = {
        item.task_id
        for item in items
        if isinstance(item, store.StageStart) and item.stage is not None
    }
    return started | changes.written_tasks(
        item for item in items if not isinstance(item, store.StageStart)
    )
