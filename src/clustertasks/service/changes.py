"""Who waits for which task, and what wakes them.

Long-polls and event streams wait here on asyncio events: a waiting request holds neither
a thread nor a database connection. Two things wake them:

- ``notify(task_ids)``, called right after a commit in this process (the executor's group
  commit; the control service's submit, pause, resume and cancel);
- a poller that re-reads the versions of every followed task in one query every
  ``poll_seconds``, for commits made by other processes on the same database (an API-only
  replica next to an executor, several replicas on PostgreSQL).

Waiters are counted per task and forgotten with their last waiter; with nobody waiting,
notifications cost a dictionary lookup and the poller sleeps without touching the database.

What is followed is a task's stamp: its version in the state's generation. An emulator
reset or import starts a new generation, where the same task id can name another task
whose versions start again: a stamp of a later generation is newer whatever its version.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, TypeVar

from clustertasks import errors, settings
from clustertasks.domain import live, records
from clustertasks.storage import store

log = logging.getLogger("clustertasks.service")

T = TypeVar("T")


NOTHING = store.Stamp(version=-1, generation=0)
"""Before the first read: older than every stamp."""


def newer(stamp: store.Stamp, than: store.Stamp) -> bool:
    """``stamp`` names a later content of the task than ``than``: a later generation of the
    state, or a later version in the same one."""
    return (stamp.generation, stamp.version) > (than.generation, than.version)


class _Topic:
    """One followed task: its newest known stamp and the waiters' wake-up call."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.stamp = NOTHING
        self.watchers = 0
        # Set, then replaced, whenever the stamp advances: every waiter wakes once.
        self.changed = asyncio.Event()
        # The newest document read, shared by every stream on this task, and the read
        # under way (one at a time, however many streams want it).
        self.view: store.StampedView | None = None
        self.reading: asyncio.Task[store.StampedView] | None = None
        # The task is not in the store (an emulator reset or import removed it).
        self.gone = False

    def advance(self, stamp: store.Stamp) -> None:
        """The task exists with ``stamp``."""
        self.gone = False
        if newer(stamp, self.stamp):
            self.stamp = stamp
            self.wake()

    def wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()


class ChangeHub:
    def __init__(
        self, task_store: store.TaskStore, config: settings.LiveSettings | None = None
    ) -> None:
        self._store = task_store
        self.config = config or settings.LiveSettings()
        self._topics: dict[str, _Topic] = {}
        self._watchers = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._kick = asyncio.Event()
        self._dirty: set[str] = set()
        self._refresher: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    def watching(self, task_id: str | None = None) -> int:
        """Waits open now on ``task_id``, or on any task."""
        if task_id is None:
            return self._watchers
        topic = self._topics.get(task_id)
        return topic.watchers if topic is not None else 0

    def notify(self, task_ids: Iterable[str]) -> None:
        """These tasks changed (committed): wake their waiters. Safe from any thread."""
        loop = self._loop
        if loop is None or loop.is_closed() or not self._topics:
            return
        changed = tuple(task_ids)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._mark(changed)
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing
            loop.call_soon_threadsafe(self._mark, changed)

    def close(self) -> None:
        """End every wait now, and every later one at once: the server is stopping.

        Call it on the event loop the waits run on.
        """
        self._closed = True
        for topic in self._topics.values():
            topic.wake()
        if self._refresher is not None:
            self._refresher.cancel()
            self._refresher = None

    def check_room(self) -> None:
        """``errors.Busy`` when the server already follows ``max_watchers`` at once."""
        if self._watchers >= self.config.max_watchers:
            raise errors.Busy()

    @contextlib.asynccontextmanager
    async def watch(self, task_id: str) -> AsyncIterator[Watch]:
        """Follow ``task_id`` for as long as the block runs (``errors.Busy`` when the
        server already follows ``max_watchers`` at once)."""
        self._bind()
        self.check_room()
        topic = self._topics.get(task_id)
        if topic is None:
            topic = self._topics[task_id] = _Topic(task_id)
            # Read its version at once: a commit made before the topic existed woke nobody.
            self._mark((task_id,))
        topic.watchers += 1
        self._watchers += 1
        self._start_refresher()
        try:
            yield Watch(self, topic)
        finally:
            # Nothing awaited here: this runs on cancellation too (a client went away).
            topic.watchers -= 1
            self._watchers -= 1
            if topic.watchers == 0 and self._topics.get(task_id) is topic:
                del self._topics[task_id]

    # -- plumbing --------------------------------------------------------------------------

    def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        if self._topics:
            raise RuntimeError("the change hub is in use on another event loop")
        # A new loop (an in-process test client makes one per session): start afresh.
        self._loop = loop
        self._kick = asyncio.Event()
        self._dirty.clear()
        self._refresher = None

    def _mark(self, task_ids: Iterable[str]) -> None:
        followed = [task_id for task_id in task_ids if task_id in self._topics]
        if followed:
            self._dirty.update(followed)
            self._kick.set()

    def _start_refresher(self) -> None:
        if self._closed or (self._refresher is not None and not self._refresher.done()):
            return
        self._refresher = asyncio.get_running_loop().create_task(
            self._refresh(), name="clustertasks-changes"
        )

    async def _refresh(self) -> None:
        """Read the versions of notified tasks at once, and of every followed one on a
        schedule; one query for all of them, one at a time."""
        loop = asyncio.get_running_loop()
        poll = self.config.poll_seconds
        next_poll = loop.time() + poll
        while not self._closed:
            if not self._topics:
                await self._rest(None)  # nobody waits: no database work at all
                next_poll = loop.time() + poll
                continue
            if not self._dirty:
                remaining = next_poll - loop.time()
                if remaining > 0:
                    await self._rest(remaining)
                    continue
            if loop.time() >= next_poll:
                wanted = set(self._topics)
                next_poll = loop.time() + poll
            else:
                wanted = self._dirty & self._topics.keys()
            self._dirty.clear()
            if not wanted:
                continue
            try:
                stamps = await self.in_thread(self._store.task_stamps, wanted)
            except errors.ClustertasksError as exc:
                log.warning("could not read the versions of followed tasks: %s", exc)
                next_poll = loop.time() + poll
                continue
            except Exception:
                log.exception("reading the versions of followed tasks failed unexpectedly")
                next_poll = loop.time() + poll
                continue
            for task_id, stamp in stamps.items():
                topic = self._topics.get(task_id)
                if topic is not None:
                    topic.advance(stamp)
            for task_id in wanted - stamps.keys():
                topic = self._topics.get(task_id)
                if topic is not None and not topic.gone:
                    topic.gone = True
                    topic.wake()

    async def _rest(self, timeout: float | None) -> None:
        self._kick.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._kick.wait(), timeout)

    async def read_stamp(self, task_id: str) -> store.Stamp:
        return await self.in_thread(self._store.task_stamp, task_id)

    async def read_view(self, topic: _Topic) -> store.StampedView:
        """The task now; only the events newer than the last read come from the database
        (all of them when the state changed generation since)."""
        cached = topic.view
        if cached is not None and cached.generation != topic.stamp.generation:
            cached = None
        seen = live.last_seq(cached.view) if cached is not None else 0
        fresh = await self.in_thread(
            functools.partial(self._store.describe_task_stamped, topic.task_id, events_after=seen)
        )
        if cached is not None and fresh.generation != cached.generation:
            cached = None  # reset or imported meanwhile: the events read follow others
            fresh = await self.in_thread(self._store.describe_task_stamped, topic.task_id)
        found = fresh.view
        events = found.events if cached is None else (*cached.view.events, *found.events)
        view = store.StampedView(
            records.TaskView(found.task, found.stages, tuple(events), found.results),
            fresh.generation,
        )
        if topic.view is None or not newer(topic.view.stamp, view.stamp):
            topic.view = view
        topic.advance(view.stamp)
        return view

    @staticmethod
    async def in_thread(fn: Callable[..., T], *args: Any) -> T:
        """Run a blocking store call off the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, fn, *args)


class Watch:
    """One waiter's hold on a followed task."""

    def __init__(self, hub: ChangeHub, topic: _Topic) -> None:
        self._hub = hub
        self._topic = topic

    @property
    def stamp(self) -> store.Stamp:
        """The newest stamp of the task this hub knows of."""
        return self._topic.stamp

    async def refresh(self) -> store.Stamp:
        """Read the task's stamp now (``errors.TaskNotFound`` when there is no task)."""
        stamp = await self._hub.read_stamp(self._topic.task_id)
        self._topic.advance(stamp)
        return stamp

    def seen(self, view: store.StampedView) -> None:
        """A document read elsewhere: share it with the other streams on this task."""
        topic = self._topic
        if topic.view is None or newer(view.stamp, topic.view.stamp):
            topic.view = view
        topic.advance(view.stamp)

    async def view(self) -> store.StampedView:
        """The task at the newest stamp known, read once for every stream that asks."""
        topic = self._topic
        if topic.view is not None and not newer(topic.stamp, topic.view.stamp):
            return topic.view
        if topic.reading is None or topic.reading.done():
            reading = asyncio.get_running_loop().create_task(self._hub.read_view(topic))
            # Retrieved here so a failure nobody awaits any more is not logged as lost.
            reading.add_done_callback(_retrieve)
            topic.reading = reading
        # Shielded: one stream going away must not cancel the read the others wait for.
        return await asyncio.shield(topic.reading)

    async def beyond(self, stamp: store.Stamp, timeout: float) -> store.Stamp | None:
        """Wait until the task's stamp is newer than ``stamp``; the stamp then, or None when
        ``timeout`` seconds pass first or the hub closes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        topic = self._topic
        while not newer(topic.stamp, stamp):
            if topic.gone:
                raise errors.TaskNotFound(topic.task_id)
            remaining = deadline - loop.time()
            if self._hub.closed or remaining <= 0:
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(topic.changed.wait(), remaining)
        return topic.stamp


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()
