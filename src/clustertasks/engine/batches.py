"""Many callers' items, handed to one blocking store call together.

The group commit of the runners' writes (``executor.GroupCommit``) and the grouped stage
starts of the Temporal activities (``temporal.starts.StageStarts``) work the same way: an
item waits until the call holding it has returned (committed), exactly as a call of its
own would; items that arrive while a call runs form the next batch, so under load each
call carries many items and when idle an item goes alone, at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections.abc import Callable, Collection, Sequence
from typing import Generic, TypeVar

log = logging.getLogger("clustertasks.engine")

Committed = Callable[[Collection[str]], None]
"""Told the ids of the tasks a batch wrote, once it committed (wakes their waiters)."""

In = TypeVar("In")
Out = TypeVar("Out")


class Batches(Generic[In, Out]):
    """``run`` takes a batch and gives each item's outcome, in order: its value, or the
    exception that item alone failed with. An exception raised by ``run`` itself fails the
    whole batch. ``written`` names the tasks a batch wrote, for ``on_commit``."""

    def __init__(
        self,
        run: Callable[[list[In]], Sequence[Out | Exception]],
        pool: concurrent.futures.Executor,
        *,
        written: Callable[[list[In]], Collection[str]],
        on_commit: Committed | None = None,
        max_batch: int = 256,
        gather_seconds: float = 0.0,
        name: str,
    ) -> None:
        """``gather_seconds``: under load (the last batch held more than one item, or more
        than one waits), how long a batch waits for others to join before it goes; idle,
        an item goes at once. Fewer, larger batches for that much more latency under load,
        as PostgreSQL's ``commit_delay`` trades."""
        self._run = run
        self._pool = pool
        self._written = written
        self._on_commit = on_commit
        self._max_batch = max_batch
        self._name = name
        self._gather_seconds = gather_seconds
        self._last_size = 0
        self._pending: list[tuple[In, asyncio.Future[Out]]] = []
        self._flusher: asyncio.Task[None] | None = None

    async def submit(self, item: In) -> Out:
        """Run ``item`` in the next batch; returns its outcome once that batch returned."""
        done: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._pending.append((item, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name=self._name)
        return await done

    async def settle(self) -> None:
        """Wait until every item handed in so far is done (or has failed)."""
        while self._flusher is not None and not self._flusher.done():
            # asyncio.wait, not gather: a cancelled waiter must not cancel the flusher.
            await asyncio.wait([self._flusher])

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            if self._gather_seconds and (len(self._pending) > 1 or self._last_size > 1):
                try:
                    await asyncio.sleep(self._gather_seconds)
                except asyncio.CancelledError:
                    for _, waiting in self._pending:
                        waiting.cancel()
                    self._pending.clear()
                    raise
            batch = self._pending[: self._max_batch]
            del self._pending[: self._max_batch]
            items = [item for item, _ in batch]
            self._last_size = len(items)
            try:
                outcomes = await loop.run_in_executor(self._pool, self._run, items)
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
            self._committed(items)
            for (_, done), outcome in zip(batch, outcomes, strict=True):
                if done.done():  # its caller was cancelled meanwhile; the write stands
                    continue
                if isinstance(outcome, Exception):
                    done.set_exception(outcome)
                else:
                    done.set_result(outcome)

    def _committed(self, items: list[In]) -> None:
        if self._on_commit is None:
            return
        touched = self._written(items)
        if not touched:
            return
        try:
            self._on_commit(touched)
        except Exception:
            log.exception("telling waiters about a commit failed")
