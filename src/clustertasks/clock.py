"""Time, behind a seam so tests and the simulator can control it."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """A source of wall-clock time in integer microseconds since the Unix epoch (UTC)."""

    def now_us(self) -> int: ...


class SystemClock:
    """The machine's clock."""

    def now_us(self) -> int:
        return time.time_ns() // 1_000


class FixedClock:
    """A clock that moves only when told to (tests, manual simulated time)."""

    def __init__(self, start_us: int) -> None:
        self._now = start_us

    def now_us(self) -> int:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += int(seconds * 1_000_000)
