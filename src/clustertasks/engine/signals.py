"""How a checkpoint interrupts a stage. Internal to the engine; never reach a client."""

from __future__ import annotations


class Interrupt(Exception):
    """Unwinds a stage at a checkpoint."""


class PauseRequested(Interrupt):
    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class CancelRequested(Interrupt):
    pass
