"""Bounded polls: look again and again until something holds, and fail clearly when it never
does. The one implementation for every suite, in threads and in event loops alike."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

TIMEOUT = 60.0
"""Seconds: generous, because a busy CI machine can be slow without anything being wrong."""
INTERVAL = 0.02
"""Seconds between two looks."""


def _truthy(seen: object) -> bool:
    return bool(seen)


def until(
    what: str,
    probe: Callable[[], T],
    done: Callable[[T], bool] = _truthy,
    *,
    timeout: float = TIMEOUT,
    interval: float = INTERVAL,
    show: Callable[[T], object] = repr,
) -> T:
    """Call ``probe()`` until ``done`` holds for what it returns (by default, until that is
    truthy), and return it; after ``timeout`` seconds, an ``AssertionError`` naming
    ``what`` and the last value seen (as ``show`` puts it)."""
    deadline = time.monotonic() + timeout
    while True:
        seen = probe()
        if done(seen):
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: still {show(seen)} after {timeout}s")
        time.sleep(interval)


async def until_async(
    what: str,
    probe: Callable[[], T],
    done: Callable[[T], bool] = _truthy,
    *,
    timeout: float = TIMEOUT,
    interval: float = INTERVAL,
    show: Callable[[T], object] = repr,
) -> T:
    """:func:`until` inside an event loop: it waits with ``asyncio.sleep``, so that the
    loop's other tasks (an executor under test) run meanwhile."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        seen = probe()
        if done(seen):
            return seen
        if loop.time() > deadline:
            raise AssertionError(f"{what}: still {show(seen)} after {timeout}s")
        await asyncio.sleep(interval)
