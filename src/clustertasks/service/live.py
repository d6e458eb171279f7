"""Following a task without polling it: stamps, long-polls and event streams."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from clustertasks import errors
from clustertasks.domain import ids, live, records
from clustertasks.service import changes
from clustertasks.storage import store

log = logging.getLogger("clustertasks.service")

MAX_WAIT_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Stream:
    """A stream checked and ready to start: the task as first read (with the generation of
    the state it was read in), and where the client resumes (None: a new stream, opened
    with a snapshot)."""

    first: store.StampedView
    resume: live.Position | None

    @property
    def view(self) -> records.TaskView:
        return self.first.view


class LiveTasks:
    def __init__(self, task_store: store.TaskStore, hub: changes.ChangeHub) -> None:
        self._store = task_store
        self._hub = hub

    async def wait_while(
        self, task_id: str, unchanged: Callable[[store.Stamp], bool], timeout: float
    ) -> store.Stamp:
        """Wait while ``unchanged(stamp)`` holds and the state stays in the generation the
        wait starts in (a reset or an import is a change), at most ``timeout`` seconds
        (less when the server stops); the task's stamp then."""
        _check_id(task_id)
        if not 0 <= timeout <= MAX_WAIT_SECONDS:
            raise errors.InvalidParameter("wait", f"must be 0 to {MAX_WAIT_SECONDS:g} seconds")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with self._hub.watch(task_id) as watch:
            stamp = await watch.refresh()
            generation = stamp.generation
            while stamp.generation == generation and unchanged(stamp):
                newer = await watch.beyond(stamp, deadline - loop.time())
                if newer is None:
                    break
                stamp = newer
        return stamp

    async def open_stream(
        self, task_id: str, resume: live.Position | None, *, resume_field: str = "Last-Event-ID"
    ) -> Stream:
        """Check a stream can start, before the response does: ``errors.TaskNotFound``, or
        ``errors.InvalidParameter`` naming ``resume_field`` for a position this task's
        stream cannot have sent."""
        _check_id(task_id)
        self._hub.check_room()
        first = await self._hub.in_thread(self._store.describe_task_stamped, task_id)
        if resume is not None:
            try:
                live.check_resumable(first.view, resume)
            except ValueError as exc:
                raise errors.InvalidParameter(resume_field, str(exc)) from None
        return Stream(first, resume)

    async def follow(self, stream: Stream, tz: str) -> AsyncGenerator[live.Message | None, None]:
        """The stream's messages as the task changes, until it ends (``end``) or the server
        stops; None when nothing changed for a heartbeat interval (keep the line alive)."""
        heartbeat = self._hub.config.heartbeat_seconds
        current = stream.first
        view = current.view
        async with contextlib.AsyncExitStack() as stack:
            try:
                watch = await stack.enter_async_context(self._hub.watch(view.task.task_id))
            except errors.Busy:
                # Full since open_stream looked: end at once; the client reconnects later.
                log.warning("stream of task %s ended at once: too many waits", view.task.task_id)
                return
            watch.seen(current)
            if stream.resume is None:
                batch = live.opening(view, tz)
                position = live.Position.of(view, live.last_seq(view))
            else:
                batch = live.resumed(view, stream.resume, tz)
                position = batch[-1].position if batch else stream.resume
            for message in batch:
                yield message
            while not view.task.state.terminal:
                try:
                    newer = await watch.beyond(current.stamp, heartbeat)
                except errors.TaskNotFound:
                    return  # deleted meanwhile (emulator reset): a new stream says 404
                if newer is None:
                    if self._hub.closed:
                        return  # the client resumes elsewhere with its last id
                    yield None
                    continue
                if newer.generation != current.generation:
                    # An emulator reset or import: the id may name another task now, whose
                    # history does not follow this one's. A new stream starts from it.
                    return
                try:
                    latest = await watch.view()
                except errors.TaskNotFound:
                    return
                except errors.StorageUnavailable as exc:
                    log.warning("stream of task %s: %s", view.task.task_id, exc)
                    await asyncio.sleep(self._hub.config.poll_seconds)
                    continue
                if latest.generation != current.generation:
                    return
                batch = live.changes(view, latest.view, position, tz)
                batch += live.closing(latest.view, live.last_seq(latest.view, position.seq), tz)
                for message in batch:
                    yield message
                    position = message.position
                current, view = latest, latest.view


def _check_id(task_id: str) -> None:
    if not ids.is_lookup_id(task_id):
        raise errors.TaskNotFound(task_id)
