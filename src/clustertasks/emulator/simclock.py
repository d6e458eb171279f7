"""The simulated cloud's clock: what time it is in the simulation, and waiting on it.

Three modes (``domain.emulator.CLOCK_MODES``):

- ``realtime``: simulated time runs ``speed`` times as fast as the wall clock, and a wait of
  ``s`` simulated seconds takes ``s / speed`` real ones. At speed 0 a wait takes no time at
  all (and does not even touch the event loop), while the clock runs with the wall clock.
- ``manual``: simulated time moves only when :meth:`SimClock.advance` moves it; every wait
  whose deadline an advance passes completes.
- ``per_poll``: simulated time stands still; :meth:`SimClock.poll` of a task (each
  DescribeTaskInfo of it) completes every wait that task has pending at that moment — one
  step. A poll that finds none of the task's waits pending (the task is between two) is
  kept for it: its next wait completes at once. So a client that reads again as soon as
  the task changed (a long-poll, ``clustertasks task watch``) moves it one step per read.

A wait knows its task from ``providers.base.CURRENT_CALL``. Waits made for no task (the
emulator arranging its world, e.g. free instances booting) wait in realtime mode only;
in the other modes they complete at once, as nobody could advance or poll them.

The mode, the speed and an anchor (the simulated time shown at a wall-clock instant) are
written to the database on every change, so a restarted server continues from them. The
waits themselves belong to this process: the clock is advanced or polled through the
server that runs the tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
import threading
from collections.abc import Callable

from clustertasks import clock, errors
from clustertasks.domain import emulator
from clustertasks.emulator import clock_store as sim_clock
from clustertasks.providers import base

US = 1_000_000
MAX_CREDITS = 10_000
"""per_poll: tasks remembered as polled between two of their waits, at most."""


@dataclasses.dataclass(eq=False)
class _Waiter:
    task_id: str | None
    deadline_us: int
    loop: asyncio.AbstractEventLoop
    wake: asyncio.Event
    released: bool = False


class SimClock:
    """Implements ``clustertasks.clock.Clock`` too: the world's timestamps are simulated
    time, strictly increasing so that records made one after another keep their order
    even while a manual clock stands still."""

    def __init__(
        self,
        state: emulator.ClockState,
        *,
        store: sim_clock.ClockStore | None = None,
        wall: clock.Clock | None = None,
    ) -> None:
        self._state = state
        self._store = store
        self._wall = wall or clock.SystemClock()
        self._lock = threading.Lock()
        # Changes are written in the order they were made.
        self._saving = threading.Lock()
        self._last_stamp = 0
        self._waiters: set[_Waiter] = set()
        # per_poll: tasks polled while none of their waits was pending. The next wait of
        # such a task completes at once, so a poll is never lost to a task between two
        # waits (a client that long-polls polls right after each change).
        self._credits: set[str] = set()

    @classmethod
    def realtime(cls, speed: float, *, wall: clock.Clock | None = None) -> SimClock:
        """A realtime clock kept in memory only."""
        now = (wall or clock.SystemClock()).now_us()
        return cls(emulator.ClockState(emulator.REALTIME, speed, now, now), wall=wall)

    @classmethod
    def open(
        cls,
        store: sim_clock.ClockStore,
        *,
        speed: float,
        mode: str | None = None,
        wall: clock.Clock | None = None,
    ) -> SimClock:
        """The clock the database remembers, or a realtime one starting now.

        ``speed`` is the server's (``--sim-speed``); ``mode`` replaces the stored mode when
        given (``--sim-clock``). Simulated time goes on from the stored anchor either way.
        """
        time = wall or clock.SystemClock()
        now = time.now_us()
        stored = store.load()
        if stored is None:
            state = emulator.ClockState(mode or emulator.REALTIME, speed, now, now)
        else:
            state = emulator.ClockState(mode or stored.mode, speed, stored.at(now), now)
        store.save(state)
        return cls(state, store=store, wall=time)

    # -- reading ---------------------------------------------------------------------------

    @property
    def mode(self) -> str:
        return self._state.mode

    @property
    def speed(self) -> float:
        return self._state.speed

    def simulated_us(self) -> int:
        """Simulated time now, as the clock shows it."""
        return self._state.at(self._wall.now_us())

    def now_us(self) -> int:
        """A timestamp for the world's records: simulated time, never the same twice."""
        with self._lock:
            stamp = max(self._state.at(self._wall.now_us()), self._last_stamp + 1)
            self._last_stamp = stamp
            return stamp

    def view(self) -> emulator.ClockView:
        with self._lock:
            state = self._state
            waiting = sum(1 for w in self._waiters if not w.released)
        return emulator.ClockView(state.mode, state.speed, state.at(self._wall.now_us()), waiting)

    # -- changing ----------------------------------------------------------------------------

    def set_mode(self, mode: str, speed: float | None = None) -> emulator.ClockView:
        """Switch mode (and speed); simulated time goes on from where it is now."""
        if mode not in emulator.CLOCK_MODES:
            raise errors.InvalidParameter(
                "mode", f"must be one of {', '.join(emulator.CLOCK_MODES)}"
            )
        if speed is not None and (not math.isfinite(speed) or speed < 0):
            raise errors.InvalidParameter("speed", f"must be a number >= 0, got {speed}")

        def change(state: emulator.ClockState, now: int) -> emulator.ClockState:
            return emulator.ClockState(
                mode, state.speed if speed is None else speed, state.at(now), now
            )

        self._change(change)
        return self.view()

    def advance(self, seconds: float) -> emulator.ClockView:
        """Move a manual clock forward; raises ``errors.ClockNotManual`` otherwise."""
        if not math.isfinite(seconds) or seconds < 0:
            raise errors.InvalidParameter("seconds", f"must be a number >= 0, got {seconds}")

        def change(state: emulator.ClockState, now: int) -> emulator.ClockState:
            if state.mode != emulator.MANUAL:
                raise errors.ClockNotManual(
                    f"the simulated clock is in {state.mode} mode; only a manual clock is "
                    'advanced (POST /_emulator/clock {"mode": "manual"} first)'
                )
            return dataclasses.replace(
                state, sim_us=state.sim_us + round(seconds * US), real_us=now
            )

        self._change(change)
        return self.view()

    def poll(self, task_id: str) -> bool:
        """A client read ``task_id``: in ``per_poll`` mode its pending waits complete.
        True in ``per_poll`` mode (the task moves on polls only)."""
        with self._lock:
            if self._state.mode != emulator.PER_POLL:
                return False
            woken = [w for w in self._waiters if w.task_id == task_id and not w.released]
            for waiter in woken:
                waiter.released = True
            if not woken:
                if len(self._credits) >= MAX_CREDITS:
                    self._credits.clear()  # tasks long finished; bounded memory
                self._credits.add(task_id)
        _wake(woken)
        return True

    def reload(self) -> None:
        """Take the stored state again (after the database was reset or replaced)."""
        if self._store is None:
            return
        with self._saving:
            stored = self._store.load()
            with self._lock:
                if stored is None:
                    now = self._wall.now_us()
                    stored = emulator.ClockState(
                        self._state.mode, self._state.speed, self._state.at(now), now
                    )
                self._state = stored
                woken = list(self._waiters)
            self._store.save(stored)
        _wake(woken)

    def _change(self, change: Callable[[emulator.ClockState, int], emulator.ClockState]) -> None:
        with self._saving:
            with self._lock:
                state = change(self._state, self._wall.now_us())
                self._state = state
                self._credits.clear()
                woken = list(self._waiters)
            if self._store is not None:
                self._store.save(state)
        _wake(woken)

    # -- waiting -----------------------------------------------------------------------------

    def instant(self, seconds: float) -> bool:
        """True when :meth:`wait` would return at once for the calling task (speed 0, or
        nothing to wait): a caller may then do the work on both sides of the wait in one go."""
        if seconds <= 0:
            return True
        state = self._state
        if state.mode == emulator.REALTIME and state.speed == 0:
            return True
        return base.current_call() is None and state.mode != emulator.REALTIME

    async def wait(self, seconds: float) -> None:
        """Wait ``seconds`` of simulated time for the calling task (see the module doc)."""
        if self.instant(seconds):
            return
        call = base.current_call()
        waiter = _Waiter(
            task_id=call.task_id if call is not None else None,
            deadline_us=self.simulated_us() + round(seconds * US),
            loop=asyncio.get_running_loop(),
            wake=asyncio.Event(),
        )
        with self._lock:
            if self._state.mode == emulator.PER_POLL and waiter.task_id in self._credits:
                self._credits.discard(waiter.task_id)
                return
            self._waiters.add(waiter)
        try:
            while True:
                # Cleared before looking: a change made after the look sets it again.
                waiter.wake.clear()
                done, timeout = self._due(waiter)
                if done:
                    return
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(waiter.wake.wait(), timeout)
        finally:
            with self._lock:
                self._waiters.discard(waiter)

    def _due(self, waiter: _Waiter) -> tuple[bool, float | None]:
        """Whether the wait is over; if not, how many real seconds it may sleep before
        looking again (None: until something changes)."""
        with self._lock:
            state = self._state
            if waiter.released:
                return True, None
            if waiter.task_id is None and state.mode != emulator.REALTIME:
                return True, None
            if state.mode == emulator.PER_POLL:
                return False, None
            remaining = waiter.deadline_us - state.at(self._wall.now_us())
            if remaining <= 0 or (state.mode == emulator.REALTIME and state.speed == 0):
                return True, None
            if state.mode == emulator.MANUAL:
                return False, None
            return False, remaining / US / state.speed


def _wake(waiters: list[_Waiter]) -> None:
    for waiter in waiters:
        with contextlib.suppress(RuntimeError):  # its loop has closed: nobody waits
            waiter.loop.call_soon_threadsafe(waiter.wake.set)
