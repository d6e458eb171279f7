"""A task's cluster and node pools read their settled state only once the task has ended.

A client (Terraform's alicloud provider) polls a pool until it reads ``active`` and then
sends its next request at once: that request must not find the task that made the pool
``active`` still running (409 ``ErrorTaskConflict``). So the states a task leaves are
written in the transaction that writes the task's final state. Each test holds the task
at the very end of its work (after the last stage's body, or after the compensation), reads
the world there, then lets it end. Both executors, both backends.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from clustertasks import bootstrap, errors, settings
from clustertasks.api import services as api_services
from clustertasks.domain import records, states
from clustertasks.emulator import catalogue
from clustertasks.emulator import cloud as sim_cloud
from clustertasks.engine import executor, runner
from clustertasks.engine.temporal import client as temporal_client
from clustertasks.engine.temporal import worker as temporal_worker
from clustertasks.operations import base, catalog
from clustertasks.storage import database as storage_database
from tests.integration import test_sim_cloud as sim_support
from tests.support import cloud, executors, polling

OLD = "1.31.1-aliyun.1"


class Hold:
    """Holds a task at the end of its work: ``reached`` once there, until ``release``."""

    def __init__(self) -> None:
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    def after(self, function: base.StageFunction) -> base.StageFunction:
        async def held(ctx: base.StageContext) -> None:
            await function(ctx)
            self.reached.set()
            await self.release.wait()

        return held

    async def wait(self) -> None:
        await asyncio.wait_for(self.reached.wait(), polling.TIMEOUT)


def held_registry(task_type: str, hold: Hold, *, in_compensation: bool = False) -> base.Registry:
    """The real operations, with ``task_type`` held after its last stage (or after its
    compensation)."""
    real = catalog.registry()
    operation = real.get(task_type)
    assert operation is not None
    if in_compensation:
        assert operation.compensate is not None
        operation = dataclasses.replace(operation, compensate=hold.after(operation.compensate))
    else:
        *before, last = operation.stages
        last = dataclasses.replace(last, run=hold.after(last.run))
        operation = dataclasses.replace(operation, stages=[*before, last])
    others = [real.get(t) for t in real.task_types() if t != task_type]
    return base.Registry([operation, *(o for o in others if o is not None)])


@asynccontextmanager
async def running(
    db: storage_database.Database,
    registry: base.Registry,
    sim: sim_cloud.SimCloud,
    engine: executors.Choice,
) -> AsyncIterator[api_services.Services]:
    """The request services with an executor of the kind asked for running their tasks."""
    tuning = runner.EngineTuning(retry_delay_scale=0)
    if engine.kind == executors.LOCAL:
        local = executor.LocalExecutor(
            db.tasks, registry, sim, lock=db.executor_lock(), tuning=tuning
        )
        await local.start()
        try:
            yield bootstrap.build_services(db, registry, sim, executor=local)
        finally:
            await local.stop()
        return
    assert engine.temporal_address is not None
    queue = f"test-{uuid.uuid4().hex}"
    notifier = temporal_client.Notifier(
        db.tasks, settings.TemporalSettings(address=engine.temporal_address, task_queue=queue)
    )
    temporal = await notifier.start()
    activities = temporal_worker.StageActivities(db.tasks, registry, sim, tuning=tuning)
    worker = temporal_worker.TemporalWorker(temporal, activities, db.tasks, task_queue=queue)
    stopping = asyncio.Event()
    working = asyncio.create_task(worker.run(stopping))
    try:
        yield bootstrap.build_services(db, registry, sim, notify=notifier.notify)
    finally:
        stopping.set()
        await working
        activities.close()


async def _world(sim: sim_cloud.SimCloud, nodes: int) -> tuple[str, str, list[str]]:
    """A running cluster with one pool of ``nodes`` nodes, its desired size ``nodes``."""
    cluster, pool = await sim_support._cluster_with_pool(sim, instance_types=("ecs.g7.large",))
    names = [
        (await sim_support._node_for(sim, f"n{i}", cluster.cluster_id, pool.nodepool_id)).node_name
        for i in range(nodes)
    ]
    await sim.update_nodepool(cluster.cluster_id, pool.nodepool_id, desired_size=nodes)
    return cluster.cluster_id, pool.nodepool_id, names


def _scenario(
    db: storage_database.Database,
    engine: executors.Choice,
    registry: base.Registry,
    scenario: Callable[[api_services.Services, sim_cloud.SimCloud], Awaitable[None]],
) -> None:
    sim = cloud.sim_for(db)

    async def main() -> None:
        async with running(db, registry, sim, engine) as services:
            await scenario(services, sim)

    asyncio.run(main())


def _task(services: api_services.Services, task_id: str) -> records.Task:
    return services.database.tasks.get_task(task_id)


async def _succeeds(services: api_services.Services, task_id: str, what: str) -> None:
    """Wait for the task to end (``what`` names it in a timeout) and check it succeeded."""
    done = await polling.until_async(
        what, lambda: _task(services, task_id), lambda task: task.state.terminal
    )
    assert done.state is states.TaskState.SUCCESS, done.error


def test_removed_nodes_leave_the_pool_removing_until_the_task_has_ended(
    database: storage_database.Database, engine: executors.Choice
) -> None:
    hold = Hold()

    async def scenario(services: api_services.Services, sim: sim_cloud.SimCloud) -> None:
        cluster_id, pool_id, names = await _world(sim, 3)
        query = {"nodes": json.dumps(names[:2]), "release_node": "true", "drain_node": "false"}
        task_id = services.nodes.remove_nodepool_nodes(cluster_id, pool_id, query).task.task_id
        await hold.wait()
        # The nodes are gone and the size is right, but the task has not ended: the pool
        # still reads removing (it read active here before, and a delete sent now would
        # have been refused).
        pool = sim.get_nodepool(cluster_id, pool_id)
        assert _task(services, task_id).state is states.TaskState.RUNNING
        assert (pool.state, pool.desired_size) == ("removing", 1)
        assert len(sim.list_instances(cluster_id, pool_id)) == 1

        hold.release.set()
        await polling.until_async(
            "the pool active",
            lambda: sim.get_nodepool(cluster_id, pool_id).state == "active",
            interval=0.005,
        )
        # The next request right after the pool reads active is accepted.
        deleting = services.cloud.delete_nodepool(cluster_id, pool_id, force=True)
        assert _task(services, task_id).state is states.TaskState.SUCCESS
        assert sim.get_nodepool(cluster_id, pool_id).desired_size == 1
        await _succeeds(services, deleting.task.task_id, "the pool's deletion to end")

    _scenario(database, engine, held_registry("cluster_node_delete", hold), scenario)


def test_a_scale_out_leaves_the_pool_scaling_until_the_task_has_ended(
    database: storage_database.Database, engine: executors.Choice
) -> None:
    hold = Hold()

    async def scenario(services: api_services.Services, sim: sim_cloud.SimCloud) -> None:
        cluster_id, pool_id, _ = await _world(sim, 1)
        task_id = services.cloud.scale_nodepool(cluster_id, pool_id, {"count": 2}).task.task_id
        await hold.wait()
        pool = sim.get_nodepool(cluster_id, pool_id)
        assert _task(services, task_id).state is states.TaskState.RUNNING
        assert (pool.state, pool.desired_size) == ("scaling", 3)

        hold.release.set()
        await polling.until_async(
            "the pool active",
            lambda: sim.get_nodepool(cluster_id, pool_id).state == "active",
            interval=0.005,
        )
        removing = services.nodes.remove_nodepool_nodes(
            cluster_id,
            pool_id,
            {"nodes": json.dumps([sim.list_nodes(cluster_id, pool_id)[0].node_name])},
        )
        assert _task(services, task_id).state is states.TaskState.SUCCESS
        view = services.database.tasks.describe_task(task_id)
        finish = next(s for s in view.stages if s.name == "Finish")
        assert finish.outputs["settles"] == {"nodepools": {pool_id: "active"}}
        await _succeeds(services, removing.task.task_id, "the removal to end")

    _scenario(database, engine, held_registry("cluster_scaleout", hold), scenario)


def test_a_failed_scale_out_settles_the_pool_with_its_failure(
    database: storage_database.Database, engine: executors.Choice
) -> None:
    """The compensation's settle too is written with the task's end (``fail``)."""
    hold = Hold()

    async def scenario(services: api_services.Services, sim: sim_cloud.SimCloud) -> None:
        cluster_id, pool_id, _ = await _world(sim, 1)
        pool = sim.get_nodepool(cluster_id, pool_id)
        region = sim.get_cluster(cluster_id).spec.region_id
        for vswitch in pool.spec.vswitch_ids:
            for instance_type in pool.spec.instance_types:
                sim.set_stock(instance_type, catalogue.zone_of_vswitch(region, vswitch), 0)
        task_id = services.cloud.scale_nodepool(cluster_id, pool_id, {"count": 2}).task.task_id
        await hold.wait()
        assert _task(services, task_id).state is states.TaskState.RUNNING
        assert sim.get_nodepool(cluster_id, pool_id).state == "scaling"

        hold.release.set()
        await polling.until_async(
            "the pool active",
            lambda: sim.get_nodepool(cluster_id, pool_id).state == "active",
            interval=0.005,
        )
        task = _task(services, task_id)
        assert task.state is states.TaskState.FAIL
        assert task.error.code == "InstanceCreateFailed"
        assert sim.get_nodepool(cluster_id, pool_id).desired_size == 1

    _scenario(
        database,
        engine,
        held_registry("cluster_scaleout", hold, in_compensation=True),
        scenario,
    )


def test_a_cluster_update_leaves_the_cluster_updating_until_the_task_has_ended(
    database: storage_database.Database, engine: executors.Choice
) -> None:
    hold = Hold()

    async def scenario(services: api_services.Services, sim: sim_cloud.SimCloud) -> None:
        cluster_id, _, _ = await _world(sim, 0)
        task_id = services.cluster_settings.update_kms_encryption(
            cluster_id, {"kms_key_id": "key-1"}
        ).task.task_id
        await hold.wait()
        cluster = sim.get_cluster(cluster_id)
        assert _task(services, task_id).state is states.TaskState.RUNNING
        assert cluster.state == "updating"
        assert cluster.spec.extra["encryption"] == {"disabled": False, "kms_key_id": "key-1"}

        hold.release.set()
        await polling.until_async(
            "the cluster running",
            lambda: sim.get_cluster(cluster_id).state == "running",
            interval=0.005,
        )
        assert _task(services, task_id).state is states.TaskState.SUCCESS

    _scenario(database, engine, held_registry("cluster_update", hold), scenario)


def test_a_deleted_pool_is_described_until_the_task_has_ended(
    database: storage_database.Database, engine: executors.Choice
) -> None:
    """Terraform's destroy waits for the pool to be gone, then deletes the cluster: a
    cluster-wide task that the pool's deletion, still running, would have refused."""
    hold = Hold()

    async def scenario(services: api_services.Services, sim: sim_cloud.SimCloud) -> None:
        cluster_id, pool_id, _ = await _world(sim, 1)
        task_id = services.cloud.delete_nodepool(cluster_id, pool_id, force=True).task.task_id
        await hold.wait()
        assert _task(services, task_id).state is states.TaskState.RUNNING
        pool = sim.get_nodepool(cluster_id, pool_id)
        assert pool.state == "deleting"
        assert sim.list_instances(cluster_id, pool_id) == []

        hold.release.set()
        await polling.until_async(
            "the pool gone",
            lambda: pool_id not in {p.nodepool_id for p in sim.list_nodepools(cluster_id)},
            interval=0.005,
        )
        deleting = services.cloud.delete_cluster(cluster_id)
        assert _task(services, task_id).state is states.TaskState.SUCCESS
        await _succeeds(services, deleting.task.task_id, "the cluster's deletion to end")

    _scenario(database, engine, held_registry("nodepool_delete", hold), scenario)


def test_a_deleted_cluster_is_described_until_the_task_has_ended(
    database: storage_database.Database, engine: executors.Choice
) -> None:
    """Terraform's destroy polls the cluster until it is not found, and a client reading
    the deletion's task then must find it ended."""
    hold = Hold()

    async def scenario(services: api_services.Services, sim: sim_cloud.SimCloud) -> None:
        cluster_id, _, _ = await _world(sim, 1)
        task_id = services.cloud.delete_cluster(cluster_id).task.task_id
        await hold.wait()
        assert _task(services, task_id).state is states.TaskState.RUNNING
        assert sim.get_cluster(cluster_id).state == "deleting"
        assert sim.list_nodepools(cluster_id) == []
        assert sim.list_instances(cluster_id) == []

        hold.release.set()

        def gone() -> bool:
            try:
                sim.get_cluster(cluster_id)
            except errors.ClusterNotFound:
                return True
            return False

        await polling.until_async("the cluster gone", gone, interval=0.005)
        assert _task(services, task_id).state is states.TaskState.SUCCESS

    _scenario(database, engine, held_registry("cluster_delete", hold), scenario)


def test_an_upgraded_cluster_is_upgrading_until_the_task_has_ended(
    database: storage_database.Database, engine: executors.Choice
) -> None:
    """Not only until its control plane is upgraded: the rollout of its nodes follows."""
    hold = Hold()

    async def scenario(services: api_services.Services, sim: sim_cloud.SimCloud) -> None:
        spec = dataclasses.replace(sim_support._cluster_spec(), kubernetes_version=OLD)
        made = await sim.create_cluster("old:cluster", sim_support._id("c", "old"), spec)
        cluster_id = (await sim.provision_control_plane("old:up", made.cluster_id)).cluster_id
        task_id = services.nodes.upgrade_cluster(
            cluster_id, {"next_version": sim_support.VERSION, "master_only": True}
        ).task.task_id
        await hold.wait()
        cluster = sim.get_cluster(cluster_id)
        assert _task(services, task_id).state is states.TaskState.RUNNING
        assert (cluster.state, cluster.current_version) == ("upgrading", sim_support.VERSION)

        hold.release.set()
        await polling.until_async(
            "the cluster running",
            lambda: sim.get_cluster(cluster_id).state == "running",
            interval=0.005,
        )
        assert _task(services, task_id).state is states.TaskState.SUCCESS

    _scenario(database, engine, held_registry("cluster_upgrade", hold), scenario)
