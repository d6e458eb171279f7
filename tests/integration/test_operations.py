"""Real operations run by the in-process executor on the simulated cloud, both backends."""

from __future__ import annotations

import asyncio

from clustertasks.domain import records, specs, states, world
from clustertasks.engine import executor
from clustertasks.operations import catalog
from clustertasks.service import control
from clustertasks.storage import database as storage_database
from tests.support import cloud, polling

CLUSTER = "c" + "7" * 32


def test_a_cluster_create_the_executor_starts_before_the_api_registers_it_succeeds(
    database: storage_database.Database,
) -> None:
    """CreateCluster accepts the task, then registers the cluster; an executor that starts
    the task in between must find (or make) the cluster rather than fail it."""
    registry = catalog.registry()
    task_store = database.tasks
    sim = cloud.sim_for(database)
    spec = world.ClusterSpec(name="raced", region_id="cn-hangzhou", kubernetes_version="1.32.1")
    submitted = control.TaskControl(task_store, registry).submit(
        "cluster_create",
        cluster_id=CLUSTER,
        target=records.Target(CLUSTER, "cluster"),
        parameters={"cluster_id": CLUSTER, "spec": specs.to_json(spec), "nodepools": []},
    )

    async def scenario() -> records.TaskView:
        engine = executor.LocalExecutor(task_store, registry, sim, lock=database.executor_lock())
        await engine.start()
        try:
            return await polling.until_async(
                "the task to end",
                lambda: task_store.describe_task(submitted.task.task_id),
                lambda view: view.task.state.terminal,
                timeout=30,
                interval=0.01,
            )
        finally:
            await engine.stop()

    view = asyncio.run(scenario())
    assert view.task.state is states.TaskState.SUCCESS, view.task.error
    cluster = sim.get_cluster(CLUSTER)
    assert (cluster.state, cluster.spec.name) == ("running", "raced")
    # The API registering it afterwards changes nothing.
    assert sim.register_cluster(CLUSTER, spec).state == "running"
