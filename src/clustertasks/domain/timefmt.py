"""The three timestamp formats of the task API (reference/ack-api.md §1).

Internally every instant is an integer of microseconds since the Unix epoch, UTC.
"""

from __future__ import annotations

import datetime as dt
import functools
import zoneinfo


@functools.lru_cache(maxsize=32)
def zone(name: str) -> dt.tzinfo:
    if name == "UTC":
        return dt.UTC
    return zoneinfo.ZoneInfo(name)


def _as_datetime(us: int, tz: str) -> dt.datetime:
    seconds, micros = divmod(us, 1_000_000)
    return dt.datetime.fromtimestamp(seconds, zone(tz)).replace(microsecond=micros)


def rfc3339(us: int, tz: str = "UTC") -> str:
    """Task ``created``/``updated``: ``2020-11-10T16:02:04+08:00`` (offset always numeric)."""
    # Whole seconds: no microseconds to set and clear (each ``replace`` is a new object).
    return dt.datetime.fromtimestamp(us // 1_000_000, zone(tz)).isoformat()


def stage_time(us: int | None, tz: str = "UTC") -> str:
    """Stage ``start_time``/``end_time``: ``2022-12-15 23:00:00``; ``""`` when not reached."""
    if us is None:
        return ""
    moment = dt.datetime.fromtimestamp(us // 1_000_000, zone(tz))
    if moment.year >= 1000:
        # The same characters as strftime's, in half the time (rendering a document
        # formats two per stage).
        return moment.isoformat(" ")[:19]
    return moment.strftime("%Y-%m-%d %H:%M:%S")  # %Y: no leading zeros, as it always was


def epoch_ms(us: int) -> str:
    """Event ``timestamp``: milliseconds since the epoch, as a string."""
    return str(us // 1_000)


def iso_utc(us: int) -> str:
    """The simulated clock's ``now``: ``2026-11-29T10:00:00.000000Z`` (UTC, microseconds)."""
    return _as_datetime(us, "UTC").strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(text: str) -> int:
    """Inverse of :func:`rfc3339` (to the second); raises ValueError on bad input."""
    parsed = dt.datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no offset")
    return int(parsed.timestamp()) * 1_000_000
