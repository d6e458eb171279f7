"""Giving memory back to the system once a crowd of connections has gone.

CPython frees the objects of ended requests, but glibc keeps the freed heap pages in the
process: after 10,000 waits ended the server stayed at its peak resident size. A full
collection followed by ``malloc_trim(0)`` returns those pages. Elsewhere than glibc (no
``malloc_trim``) only the collection runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
import logging
from collections.abc import Callable

log = logging.getLogger("clustertasks.api")

_DELAY_SECONDS = 1.0
"""Let the last connections of the crowd close before the collection runs."""


def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    with contextlib.suppress(OSError, AttributeError):
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
        return trim
    return None


_TRIM = _malloc_trim()
_scheduled: asyncio.TimerHandle | None = None


def release() -> None:
    """Collect garbage and hand the heap's free pages back to the system, now."""
    global _scheduled
    _scheduled = None
    gc.collect()
    if _TRIM is not None:
        _TRIM(0)


def release_soon() -> None:
    """``release()`` a moment from now on the running loop (once, however often asked)."""
    global _scheduled
    if _scheduled is not None:
        return
    _scheduled = asyncio.get_running_loop().call_later(_DELAY_SECONDS, release)
