"""The simulated cloud on a test's database, to arrange the world (stock, quota, nodes)."""

from __future__ import annotations

from clustertasks import clock, settings
from clustertasks.emulator import cloud as sim_cloud
from clustertasks.emulator import world_store
from clustertasks.storage import database


def sim_for(db: database.Database) -> sim_cloud.SimCloud:
    """A simulated cloud on ``db`` that never waits."""
    return sim_cloud.SimCloud(
        world_store.WorldStore(db.engine), settings.SimSettings(speed=0), clock.SystemClock()
    )
