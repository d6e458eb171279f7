"""How long things take in the simulated cloud, and waiting for them.

The durations are what ACK takes in real life, roughly, in simulated seconds; the
simulated clock (``simclock.SimClock``) decides what a wait means: ``speed`` divides them
all in realtime mode, and at speed 0 nothing waits at all (:meth:`Timing.wait` returns
without touching the event loop, so a whole task runs as fast as the database allows).
"""

from __future__ import annotations

from dataclasses import dataclass

from clustertasks.emulator import simclock


@dataclass(frozen=True, slots=True)
class Durations:
    """Seconds each step takes at speed 1."""

    instance_pending: float = 5.0
    """ECS instance ``Pending`` → ``Starting``."""

    instance_starting: float = 25.0
    """ECS instance ``Starting`` → ``Running`` (the OS boots)."""

    node_join: float = 20.0
    """kubelet bootstrap until the node is ``Ready``."""

    control_plane: float = 180.0
    """A managed control plane coming up."""

    pool_create: float = 2.0
    """Creating a node pool's scaling group."""

    pool_delete: float = 2.0
    """Deleting a node pool's scaling group."""

    release: float = 5.0
    """Stopping and releasing an ECS instance."""

    node_upgrade: float = 60.0
    """Upgrading kubelet and the runtime in place, until the node is ``Ready`` again."""

    node_replace: float = 180.0
    """Replacing a node's system disk (``use_replace``) and re-initialising it."""

    node_repair: float = 30.0
    """Running the repair operations (restart kubelet, runtime …) on a ``NotReady`` node."""

    control_plane_upgrade: float = 300.0
    """Upgrading a managed control plane by one minor version."""


REALISTIC = Durations()


class Timing:
    def __init__(self, clock: simclock.SimClock, durations: Durations = REALISTIC) -> None:
        self.clock = clock
        self.durations = durations

    async def wait(self, seconds: float) -> None:
        """Wait ``seconds`` of simulated time, as the clock's mode says."""
        await self.clock.wait(seconds)

    def instant(self, *seconds: float) -> bool:
        """True when waiting each of ``seconds`` would return at once (``SimClock.instant``)."""
        return all(self.clock.instant(each) for each in seconds)
