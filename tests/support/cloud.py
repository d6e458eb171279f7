"""The simulated cloud on a test's database, to arrange the world (stock, quota, nodes)."""

from __future__ import annotations

from clustertasks import clock, settings
from clustertasks.providers.sim import cloud as sim_cloud
from clustertasks.storage import store


def sim_for(task_store: store.TaskStore) -> sim_cloud.SimCloud:
    """A simulated cloud on ``task_store``'s database that never waits."""
    return sim_cloud.SimCloud(
        task_store.world_store(), settings.SimSettings(speed=0), clock.SystemClock()
    )
