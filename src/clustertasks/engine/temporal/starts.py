"""The reads (and stage starts) that begin the activities of many tasks, grouped.

Each activity begins by reading its task from the store, and a stage's activity then marks
the stage running. Under load a worker begins dozens of activities at once: like the group
commit of their writes, their beginnings share one transaction per batch
(``TaskStore.begin_stages``). A beginning that arrives while a batch is in the database
waits for the next one; when idle it goes alone, at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Collection

from clustertasks import errors
from clustertasks.domain import records
from clustertasks.storage import store

log = logging.getLogger("clustertasks.engine")

Committed = Callable[[Collection[str]], None]


class StageStarts:
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
        self._pending: list[tuple[store.StageStart, asyncio.Future[records.TaskView]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def read(self, task_id: str) -> records.TaskView:
        """The task as committed; ``errors.TaskNotFound`` if there is none."""
        return await self._begin(store.StageStart(task_id, None, 0))

    async def begin(self, task_id: str, stage: str, now_us: int) -> records.TaskView:
        """Start ``stage`` unless a request or the task's state forbids it (see
        ``TaskStore.begin_stages``); the task as committed afterwards."""
        return await self._begin(store.StageStart(task_id, stage, now_us))

    async def _begin(self, start: store.StageStart) -> records.TaskView:
        done: asyncio.Future[records.TaskView] = asyncio.get_running_loop().create_future()
        self._pending.append((start, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="clustertasks-starts")
        return await done

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            starts = [start for start, _ in batch]
            try:
                views = await loop.run_in_executor(self._pool, self._store.begin_stages, starts)
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
            self._committed(starts)
            for start, done in batch:
                if done.done():  # its activity was cancelled meanwhile
                    continue
                view = views.get(start.task_id)
                if view is None:
                    done.set_exception(errors.TaskNotFound(start.task_id))
                else:
                    done.set_result(view)

    def _committed(self, starts: list[store.StageStart]) -> None:
        touched = {start.task_id for start in starts if start.stage is not None}
        if self._on_commit is None or not touched:
            return
        try:
            self._on_commit(touched)
        except Exception:
            log.exception("telling waiters about a commit failed")
