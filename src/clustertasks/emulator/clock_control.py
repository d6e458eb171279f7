"""The emulator's clock controls: read it, switch its mode, advance it by hand."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clustertasks import errors
from clustertasks.domain import emulator, params
from clustertasks.emulator import cloud

MAX_SPEED = 1_000_000.0
MAX_ADVANCE = 10 * 366 * 24 * 3600.0
"""Ten years of simulated time in one advance."""


class ClockService:
    def __init__(self, sim: cloud.SimCloud) -> None:
        self._cloud = sim

    def view(self) -> emulator.ClockView:
        return self._cloud.clock()

    def set(self, body: Mapping[str, Any]) -> emulator.ClockView:
        """``{"mode": …, "speed": …}``: the mode is required, the speed optional."""
        params.only_keys(body, ("mode", "speed"))
        mode = params.text(body, "mode", required=True)
        if mode not in emulator.CLOCK_MODES:
            raise errors.InvalidParameter(
                "mode", f"must be one of {', '.join(emulator.CLOCK_MODES)}, got {mode!r}"
            )
        speed = params.number(body, "speed", low=0.0, high=MAX_SPEED)
        return self._cloud.set_clock(mode, speed)

    def reload(self) -> None:
        """After the database was reset or replaced (``/_emulator/reset``, a state import):
        the clock takes its stored state again (or keeps its own when none is stored, and
        stores it), and fault probability draws start afresh."""
        self._cloud.reload_emulator_state()

    def advance(self, body: Mapping[str, Any]) -> emulator.ClockView:
        """``{"seconds": N}`` (N >= 0) on a manual clock; ``errors.ClockNotManual`` else."""
        params.only_keys(body, ("seconds",))
        seconds = params.number(body, "seconds", low=0.0, high=MAX_ADVANCE)
        if seconds is None:
            raise errors.InvalidParameter("seconds", "is required")
        return self._cloud.advance_clock(seconds)
