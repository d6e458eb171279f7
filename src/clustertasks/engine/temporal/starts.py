"""The reads (and stage starts) that begin the activities of many tasks, grouped.

Each activity begins by reading its task from the store, and a stage's activity then marks
the stage running. Under load a worker begins dozens of activities at once: like the group
commit of their writes, their beginnings share one transaction per batch
(``TaskStore.begin_stages``). A beginning that arrives while a batch is in the database
waits for the next one; when idle it goes alone, at once.
"""

from __future__ import annotations

import concurrent.futures

from clustertasks import errors
from clustertasks.domain import records
from clustertasks.engine import batches
from clustertasks.storage import store


class StageStarts:
    def __init__(
        self,
        task_store: store.TaskStore,
        pool: concurrent.futures.Executor,
        *,
        max_batch: int = 256,
        on_commit: batches.Committed | None = None,
    ) -> None:
        self._store = task_store
        self._batches: batches.Batches[store.StageStart, records.TaskView] = batches.Batches(
            self._begin_stages,
            pool,
            written=_started,
            on_commit=on_commit,
            max_batch=max_batch,
            name="clustertasks-starts",
        )

    async def read(self, task_id: str) -> records.TaskView:
        """The task as committed; ``errors.TaskNotFound`` if there is none."""
        return await self._batches.submit(store.StageStart(task_id, None, 0))

    async def begin(self, task_id: str, stage: str, now_us: int) -> records.TaskView:
        """Start ``stage`` unless a request or the task's state forbids it (see
        ``TaskStore.begin_stages``); the task as committed afterwards."""
        return await self._batches.submit(store.StageStart(task_id, stage, now_us))

    def _begin_stages(self, starts: list[store.StageStart]) -> list[records.TaskView | Exception]:
        views = self._store.begin_stages(starts)
        return [
            view
            if (view := views.get(start.task_id)) is not None
            else errors.TaskNotFound(start.task_id)
            for start in starts
        ]


def _started(starts: list[store.StageStart]) -> set[str]:
    return {start.task_id for start in starts if start.stage is not None}
