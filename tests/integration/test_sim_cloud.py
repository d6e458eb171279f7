"""The simulated ACK cloud on real SQLite and PostgreSQL databases."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import ipaddress
import time
from collections.abc import Awaitable, Iterator
from typing import Any, TypeVar

import pytest
import sqlalchemy as sa

from clustertasks import errors, settings
from clustertasks.domain import ids, world
from clustertasks.emulator import catalogue, cloud, timing
from clustertasks.emulator import world_store as world_storage
from clustertasks.providers import base, inventory
from clustertasks.storage import dialects, migrate, schema
from tests.support import databases, factories

T = TypeVar("T")
VERSION = "1.32.1-aliyun.1"
ZONE_H = "cn-hangzhou-h"
ZONE_I = "cn-hangzhou-i"
VSW_H = "vsw-cn-hangzhou-h-01"
VSW_I = "vsw-cn-hangzhou-i-01"


class TickingClock:
    """Each reading is a millisecond after the previous one: creation order is visible."""

    def __init__(self) -> None:
        self._now = factories.BASE_US

    def now_us(self) -> int:
        self._now += 1_000
        return self._now


def _engine(url: str) -> sa.Engine:
    engine = dialects.create_engine(settings.StorageSettings(url=url))
    migrate.upgrade(engine)
    return engine


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    opened = _engine(db_url)
    try:
        yield opened
    finally:
        opened.dispose()


@pytest.fixture
def other_db_url(backend: str, all_databases: databases.Databases) -> Iterator[str]:
    """A second new database on the same backend as ``db_url``."""
    url = all_databases.migrated(backend)
    yield url
    all_databases.drop(url)


def _sim(engine: sa.Engine, **options: Any) -> cloud.SimCloud:
    durations = options.pop("durations", timing.REALISTIC)
    report = options.pop("report", None)
    config = settings.SimSettings(**{"speed": 0, **options})
    store = world_storage.WorldStore(engine)
    return cloud.SimCloud(store, config, TickingClock(), durations=durations, report=report)


def run(awaitable: Awaitable[T]) -> T:
    async def main() -> T:
        return await awaitable

    return asyncio.run(main())


def _cluster_spec(**changes: Any) -> world.ClusterSpec:
    spec = world.ClusterSpec(
        name="prod", region_id="cn-hangzhou", kubernetes_version=VERSION, vswitch_ids=(VSW_H,)
    )
    return dataclasses.replace(spec, **changes)


def _pool_spec(**changes: Any) -> world.NodePoolSpec:
    spec = world.NodePoolSpec(
        name="workers",
        instance_types=("ecs.g7.large", "ecs.c7.large"),
        vswitch_ids=(VSW_H,),
        labels=(world.Label("team", "payments"), world.Label("tier", "")),
        taints=(world.Taint("dedicated", "payments", "NoSchedule"),),
    )
    return dataclasses.replace(spec, **changes)


async def _cluster_with_pool(
    sim: cloud.SimCloud, prefix: str = "T-1", **pool_changes: Any
) -> tuple[world.Cluster, world.NodePool]:
    cluster = await sim.create_cluster(
        f"{prefix}:cluster", _id("c", f"{prefix}:cluster"), _cluster_spec()
    )
    cluster = await sim.provision_control_plane(f"{prefix}:control-plane", cluster.cluster_id)
    pool = await sim.create_nodepool(
        f"{prefix}:pool",
        cluster.cluster_id,
        _id("np", f"{prefix}:pool"),
        _pool_spec(**pool_changes),
    )
    return cluster, pool


async def _node_for(sim: cloud.SimCloud, key: str, cluster_id: str, pool_id: str) -> world.Node:
    instance = await sim.create_instance(f"{key}:create", cluster_id, pool_id)
    await sim.wait_instance_running(instance.instance_id)
    return await sim.join_node(f"{key}:join", instance.instance_id)


def _id(prefix: str, key: str) -> str:
    """A cluster ("c") or node pool ("np") id of the right form, one per key."""
    return prefix + hashlib.sha256(key.encode()).hexdigest()[:32]


def _rows(engine: sa.Engine, table: sa.Table) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())


def test_simcloud_is_the_cloud_port_and_the_inventory(engine: sa.Engine) -> None:
    sim = _sim(engine)
    port: base.CloudPort = sim
    known: inventory.Inventory = sim
    assert known.list_clusters() == []
    with pytest.raises(errors.ClusterNotFound):
        run(port.describe("c" + "0" * 32))


def test_a_cluster_comes_up_and_gets_a_pool(engine: sa.Engine) -> None:
    sim = _sim(engine)
    created = run(sim.create_cluster("T-1:cluster", _id("c", "T-1:cluster"), _cluster_spec()))
    assert ids.CLUSTER_ID_RE.fullmatch(created.cluster_id)
    assert (created.state, created.current_version, created.size) == ("initial", VERSION, 0)
    assert created.vpc_id.startswith("vpc-")
    assert created.node_quota == 200

    running = run(sim.provision_control_plane("T-1:control-plane", created.cluster_id))
    assert running.state == "running"
    # Vswitches default to the cluster's when the pool names none.
    pool = run(
        sim.create_nodepool(
            "T-1:pool", created.cluster_id, _id("np", "T-1:pool"), _pool_spec(vswitch_ids=())
        )
    )
    assert ids.NODEPOOL_ID_RE.fullmatch(pool.nodepool_id)
    assert (pool.state, pool.desired_size, pool.kubernetes_version) == ("active", 0, VERSION)
    assert tuple(pool.spec.vswitch_ids) == (VSW_H,)

    resized = run(
        sim.update_nodepool(created.cluster_id, pool.nodepool_id, state="scaling", desired_size=3)
    )
    assert (resized.state, resized.desired_size) == ("scaling", 3)
    assert sim.get_nodepool(created.cluster_id, pool.nodepool_id) == resized
    assert [p.nodepool_id for p in sim.list_nodepools(created.cluster_id)] == [pool.nodepool_id]
    assert [c.cluster_id for c in sim.list_clusters()] == [created.cluster_id]
    assert run(sim.update_cluster(created.cluster_id, state="scaling")).state == "scaling"


def test_unknown_things_are_reported_by_name(engine: sa.Engine) -> None:
    sim = _sim(engine)
    with pytest.raises(errors.ClusterNotFound):
        sim.get_cluster("c" + "0" * 32)
    cluster, _ = run(_cluster_with_pool(sim))
    with pytest.raises(errors.NodePoolNotFound):
        sim.get_nodepool(cluster.cluster_id, "np" + "0" * 32)
    with pytest.raises(errors.InvalidParameter) as caught:
        run(
            sim.create_cluster(
                "T-2:cluster", _id("c", "T-2:cluster"), _cluster_spec(region_id="Hangzhou 1")
            )
        )
    assert (caught.value.field, "Hangzhou 1" in caught.value.message) == ("region_id", True)
    with pytest.raises(errors.InvalidParameter) as bad_state:
        run(sim.update_cluster(cluster.cluster_id, state="sleeping"))
    assert "sleeping" in bad_state.value.message


def test_a_region_missing_from_the_catalogue_gets_zones_of_its_own(engine: sa.Engine) -> None:
    sim = _sim(engine)
    spec = _cluster_spec(region_id="cn-qingdao", vswitch_ids=("vsw-m5e0000000000000000",))
    cluster = run(sim.create_cluster("T-1:cluster", _id("c", "T-1:cluster"), spec))
    pool = run(
        sim.create_nodepool(
            "T-1:pool", cluster.cluster_id, _id("np", "T-1:pool"), _pool_spec(vswitch_ids=())
        )
    )
    node = run(_node_for(sim, "T-2:0", cluster.cluster_id, pool.nodepool_id))
    instance = sim.get_instance(node.instance_id)
    assert instance.zone_id in ("cn-qingdao-a", "cn-qingdao-b", "cn-qingdao-c")
    assert node.node_name == f"cn-qingdao.{instance.ip_address}"


def test_registering_by_id_is_idempotent_and_needs_no_wait(engine: sa.Engine) -> None:
    sim = _sim(engine, speed=1)  # registering must not wait, whatever the speed
    cluster_id, pool_id = "c" + "1" * 32, "np" + "2" * 32
    cluster = sim.register_cluster(cluster_id, _cluster_spec())
    assert (cluster.cluster_id, cluster.state) == (cluster_id, "initial")
    assert sim.register_cluster(cluster_id, _cluster_spec(name="other")) == cluster
    pool = sim.register_nodepool(cluster_id, pool_id, _pool_spec())
    assert (pool.nodepool_id, pool.state, pool.desired_size) == (pool_id, "active", 0)
    assert sim.register_nodepool(cluster_id, pool_id, _pool_spec(name="other")) == pool
    assert (_rows(engine, schema.sim_clusters), _rows(engine, schema.sim_nodepools)) == (1, 1)
    with pytest.raises(errors.ClusterNotFound):
        sim.register_nodepool("c" + "9" * 32, "np" + "3" * 32, _pool_spec())
    assert sim.node_quota() == 200


def test_instances_boot_and_join_as_ready_nodes_of_the_pool(engine: sa.Engine) -> None:
    sim = _sim(engine)
    cluster, pool = run(_cluster_with_pool(sim))

    async def scale_out() -> list[world.Node]:
        return await asyncio.gather(
            *(_node_for(sim, f"T-2:{n}", cluster.cluster_id, pool.nodepool_id) for n in range(6))
        )

    nodes = run(scale_out())
    instances = sim.list_instances(cluster.cluster_id, pool.nodepool_id)
    assert len({i.instance_id for i in instances}) == 6
    assert all(ids.INSTANCE_ID_RE.fullmatch(i.instance_id) for i in instances)
    assert len({i.ip_address for i in instances}) == 6
    vpc = ipaddress.IPv4Network(catalogue.VPC_CIDR)
    assert all(ipaddress.IPv4Address(i.ip_address) in vpc for i in instances)
    assert {i.status for i in instances} == {"Running"}
    assert {(i.instance_type, i.zone_id) for i in instances} == {("ecs.g7.large", ZONE_H)}
    by_instance = {i.instance_id: i for i in instances}
    for node in nodes:
        instance = by_instance[node.instance_id]
        assert node.node_name == ids.node_name("cn-hangzhou", instance.ip_address)
        assert (node.node_status, node.schedulable, node.kubelet_version) == (
            "Ready",
            True,
            VERSION,
        )
        assert tuple(node.labels) == tuple(pool.spec.labels)
        assert tuple(node.taints) == tuple(pool.spec.taints)
    assert sorted(sim.list_nodes(cluster.cluster_id), key=lambda n: n.node_name) == sorted(
        nodes, key=lambda n: n.node_name
    )
    assert sim.get_cluster(cluster.cluster_id).size == 6
    assert sim.stock("ecs.g7.large", ZONE_H) == catalogue.DEFAULT_STOCK - 6


def test_an_unschedulable_pool_makes_cordoned_nodes(engine: sa.Engine) -> None:
    sim = _sim(engine)
    cluster, pool = run(_cluster_with_pool(sim, unschedulable=True))
    node = run(_node_for(sim, "T-2:0", cluster.cluster_id, pool.nodepool_id))
    assert (node.node_status, node.schedulable) == ("Ready", False)


def test_a_node_takes_new_labels_and_taints(engine: sa.Engine) -> None:
    sim = _sim(engine)
    cluster, pool = run(_cluster_with_pool(sim))
    node = run(_node_for(sim, "T-2:0", cluster.cluster_id, pool.nodepool_id))
    labels, taints = [world.Label("team", "search")], [world.Taint("spot", "", "NoExecute")]
    changed = run(sim.update_node(cluster.cluster_id, node.node_name, labels=labels, taints=taints))
    assert (tuple(changed.labels), tuple(changed.taints)) == (tuple(labels), tuple(taints))
    assert sim.list_nodes(cluster.cluster_id) == [changed]
    assert (changed.node_status, changed.kubelet_version) == ("Ready", VERSION)
    with pytest.raises(errors.NotFound):
        run(sim.update_node(cluster.cluster_id, "cn-hangzhou.10.0.0.1", labels=[], taints=[]))


def test_the_same_key_twice_creates_nothing_new(engine: sa.Engine) -> None:
    sim = _sim(engine)
    cluster, pool = run(_cluster_with_pool(sim))
    again_cluster, again_pool = run(_cluster_with_pool(sim))
    assert (again_cluster.cluster_id, again_pool.nodepool_id) == (
        cluster.cluster_id,
        pool.nodepool_id,
    )

    async def twice_and_three_at_once() -> list[world.Instance]:
        first = await sim.create_instance("T-2:i0", cluster.cluster_id, pool.nodepool_id)
        second = await sim.create_instance("T-2:i0", cluster.cluster_id, pool.nodepool_id)
        racing = await asyncio.gather(
            *(sim.create_instance("T-2:i1", cluster.cluster_id, pool.nodepool_id) for _ in "abc")
        )
        return [first, second, *racing]

    made = run(twice_and_three_at_once())
    assert made[0] == made[1]
    assert made[2] == made[3] == made[4]
    assert made[0].instance_id != made[2].instance_id
    assert _rows(engine, schema.sim_instances) == 2
    assert sim.stock("ecs.g7.large", ZONE_H) == catalogue.DEFAULT_STOCK - 2

    instance_id = made[0].instance_id
    run(sim.wait_instance_running(instance_id))
    first_node = run(sim.join_node("T-2:join0", instance_id))
    assert run(sim.join_node("T-2:join0", instance_id)) == first_node
    # One node per instance, whatever key a confused caller passes.
    assert run(sim.join_node("T-9:other", instance_id)) == first_node
    assert (_rows(engine, schema.sim_nodes), _rows(engine, schema.sim_clusters)) == (1, 1)
    assert _rows(engine, schema.sim_nodepools) == 1


def test_a_restarted_cloud_sees_everything_and_keys_still_hold(db_url: str) -> None:
    engine = _engine(db_url)
    try:
        first = _sim(engine)
        cluster, pool = run(_cluster_with_pool(first))
        node = run(_node_for(first, "T-2:0", cluster.cluster_id, pool.nodepool_id))
    finally:
        engine.dispose()

    engine = _engine(db_url)
    try:
        restarted = _sim(engine)  # no seed: a new random salt
        assert restarted.get_cluster(cluster.cluster_id).size == 1
        assert restarted.get_nodepool(cluster.cluster_id, pool.nodepool_id) == pool
        assert restarted.list_nodes(cluster.cluster_id) == [node]
        again = run(restarted.create_instance("T-2:0:create", cluster.cluster_id, pool.nodepool_id))
        assert again.instance_id == node.instance_id
        fresh = run(restarted.create_instance("T-3:0", cluster.cluster_id, pool.nodepool_id))
        assert fresh.instance_id != node.instance_id
        assert run(_cluster_with_pool(restarted)) == (
            restarted.get_cluster(cluster.cluster_id),
            pool,
        )
        assert _rows(engine, schema.sim_instances) == 2
    finally:
        engine.dispose()


def test_a_stock_out_falls_back_to_the_next_type_then_fails(engine: sa.Engine) -> None:
    sim = _sim(engine)
    cluster, pool = run(_cluster_with_pool(sim))
    sim.set_stock("ecs.g7.large", ZONE_H, 0)
    fallback = run(sim.create_instance("T-2:0", cluster.cluster_id, pool.nodepool_id))
    assert (fallback.instance_type, fallback.zone_id) == ("ecs.c7.large", ZONE_H)

    sim.set_stock("ecs.c7.large", ZONE_H, 0)
    with pytest.raises(errors.InstanceCreateFailed) as caught:
        run(sim.create_instance("T-2:1", cluster.cluster_id, pool.nodepool_id))
    assert caught.value.code == "InstanceCreateFailed"
    assert caught.value.message == (
        f"no stock for ecs.g7.large, ecs.c7.large in {ZONE_H} (node pool {pool.nodepool_id})"
    )
    assert len(sim.list_instances(cluster.cluster_id)) == 1


def test_a_stock_out_in_one_zone_moves_to_the_next_vswitch(engine: sa.Engine) -> None:
    sim = _sim(engine)
    cluster, pool = run(
        _cluster_with_pool(sim, instance_types=("ecs.g7.large",), vswitch_ids=(VSW_H, VSW_I))
    )
    sim.set_stock("ecs.g7.large", ZONE_H, 1)
    first = run(sim.create_instance("T-2:0", cluster.cluster_id, pool.nodepool_id))
    second = run(sim.create_instance("T-2:1", cluster.cluster_id, pool.nodepool_id))
    assert (first.zone_id, first.vswitch_id) == (ZONE_H, VSW_H)
    assert (second.zone_id, second.vswitch_id) == (ZONE_I, VSW_I)
    assert sim.stock("ecs.g7.large", ZONE_H) == 0


def test_the_node_quota_counts_instances_and_names_the_cluster(engine: sa.Engine) -> None:
    sim = _sim(engine, node_quota=3)
    cluster, pool = run(_cluster_with_pool(sim))
    for n in range(2):
        run(sim.create_instance(f"T-2:{n}", cluster.cluster_id, pool.nodepool_id))
    sim.check_node_quota(cluster.cluster_id, 1)
    with pytest.raises(errors.QuotaExceeded) as caught:
        sim.check_node_quota(cluster.cluster_id, 2)
    assert caught.value.code == "QuotaExceeded.Node"
    assert caught.value.message == (
        f"the cluster {cluster.cluster_id} may have at most 3 nodes: "
        "it has 2 and 2 more were asked for"
    )
    # A scale-out in flight has raised the desired size before its instances exist.
    run(sim.update_nodepool(cluster.cluster_id, pool.nodepool_id, desired_size=3))
    with pytest.raises(errors.QuotaExceeded):
        sim.check_node_quota(cluster.cluster_id, 1)


def test_usage_reads_the_cluster_its_pool_and_the_quota_count_together(
    engine: sa.Engine,
) -> None:
    sim = _sim(engine, node_quota=4)
    cluster, pool = run(_cluster_with_pool(sim))
    run(sim.create_instance("T-3:0", cluster.cluster_id, pool.nodepool_id))
    usage = sim.usage(cluster.cluster_id, pool.nodepool_id)
    assert (usage.cluster.cluster_id, usage.counted) == (cluster.cluster_id, 1)
    assert usage.nodepool is not None
    assert usage.nodepool.nodepool_id == pool.nodepool_id
    assert sim.usage(cluster.cluster_id, "np-unknown").nodepool is None
    usage.check_quota(3)
    with pytest.raises(errors.QuotaExceeded):
        usage.check_quota(4)
    run(sim.update_nodepool(cluster.cluster_id, pool.nodepool_id, desired_size=4))
    assert sim.usage(cluster.cluster_id).counted == 4
    with pytest.raises(errors.ClusterNotFound):
        sim.usage("c-unknown")


def test_unknown_instance_types_are_named(engine: sa.Engine) -> None:
    sim = _sim(engine)
    sim.check_instance_types(["ecs.g7.large", "ecs.c7.xlarge"])
    with pytest.raises(errors.InvalidParameter) as caught:
        sim.check_instance_types(["ecs.g7.large", "ecs.z9.huge"])
    assert caught.value.field == "scaling_group.instance_types"
    assert "ecs.z9.huge" in caught.value.message
    cluster, _ = run(_cluster_with_pool(sim))
    with pytest.raises(errors.InvalidParameter):
        run(
            sim.create_nodepool(
                "T-2:pool",
                cluster.cluster_id,
                _id("np", "T-2:pool"),
                _pool_spec(instance_types=("ecs.z9.huge",)),
            )
        )


def test_release_is_idempotent_and_returns_the_stock(engine: sa.Engine) -> None:
    sim = _sim(engine)
    cluster, pool = run(_cluster_with_pool(sim))
    node = run(_node_for(sim, "T-2:0", cluster.cluster_id, pool.nodepool_id))
    assert sim.stock("ecs.g7.large", ZONE_H) == catalogue.DEFAULT_STOCK - 1

    run(sim.release_instance("T-3:release", node.instance_id))
    run(sim.release_instance("T-3:release", node.instance_id))
    run(sim.release_instance("T-4:release", node.instance_id))

    assert sim.get_instance(node.instance_id).status == "Released"
    assert sim.list_instances(cluster.cluster_id) == []
    assert sim.list_nodes(cluster.cluster_id) == []
    assert sim.get_cluster(cluster.cluster_id).size == 0
    assert sim.stock("ecs.g7.large", ZONE_H) == catalogue.DEFAULT_STOCK
    assert _rows(engine, schema.sim_instances) == 1  # kept for history
    # A released instance can neither boot nor join.
    with pytest.raises(errors.InstanceBootFailed):
        run(sim.wait_instance_running(node.instance_id))
    with pytest.raises(errors.NodeJoinFailed):
        run(sim.join_node("T-5:join", node.instance_id))


def test_deletion_refuses_while_dependents_remain(engine: sa.Engine) -> None:
    sim = _sim(engine)
    cluster, pool = run(_cluster_with_pool(sim))
    instance = run(sim.create_instance("T-2:0", cluster.cluster_id, pool.nodepool_id))

    with pytest.raises(errors.ResourceInUse) as cluster_in_use:
        run(sim.delete_cluster("T-3:delete", cluster.cluster_id))
    assert pool.nodepool_id in cluster_in_use.value.message
    with pytest.raises(errors.ResourceInUse) as pool_in_use:
        run(sim.delete_nodepool("T-3:pool", cluster.cluster_id, pool.nodepool_id))
    assert instance.instance_id in pool_in_use.value.message

    run(sim.release_instance("T-3:release", instance.instance_id))
    run(sim.delete_nodepool("T-3:pool", cluster.cluster_id, pool.nodepool_id))
    run(sim.delete_nodepool("T-3:pool", cluster.cluster_id, pool.nodepool_id))
    assert sim.list_nodepools(cluster.cluster_id) == []
    with pytest.raises(errors.NodePoolNotFound):
        sim.get_nodepool(cluster.cluster_id, pool.nodepool_id)

    run(sim.delete_cluster("T-3:delete", cluster.cluster_id))
    run(sim.delete_cluster("T-3:delete", cluster.cluster_id))
    with pytest.raises(errors.ClusterNotFound):
        sim.get_cluster(cluster.cluster_id)
    assert sim.list_clusters() == []


async def _seeded_world(sim: cloud.SimCloud) -> list[str]:
    """The ids the seed derives (cluster and pool ids are the caller's)."""
    cluster, pool = await _cluster_with_pool(sim)
    made = [cluster.vpc_id, pool.scaling_group_id]
    for n in range(4):
        node = await _node_for(sim, f"T-2:{n}", cluster.cluster_id, pool.nodepool_id)
        made += [node.instance_id, node.node_name]
    return made


def test_seeded_ids_repeat_across_databases(engine: sa.Engine, other_db_url: str) -> None:
    other = _engine(other_db_url)
    try:
        first = run(_seeded_world(_sim(engine, seed=42)))
        second = run(_seeded_world(_sim(other, seed=42)))
    finally:
        other.dispose()
    assert first == second
    assert len(set(first)) == len(first)


def test_another_seed_gives_other_ids(engine: sa.Engine, other_db_url: str) -> None:
    other = _engine(other_db_url)
    try:
        first = run(_seeded_world(_sim(engine, seed=42)))
        second = run(_seeded_world(_sim(other, seed=43)))
    finally:
        other.dispose()
    assert set(first).isdisjoint(second)


def test_speed_one_waits_the_simulated_durations(engine: sa.Engine) -> None:
    short = timing.Durations(
        instance_pending=0.05,
        instance_starting=0.1,
        node_join=0.1,
        control_plane=0.0,
        pool_create=0.0,
        pool_delete=0.0,
        release=0.1,
    )
    sim = _sim(engine, speed=1, durations=short)
    cluster, pool = run(_cluster_with_pool(sim))
    instance = run(sim.create_instance("T-2:0", cluster.cluster_id, pool.nodepool_id))

    def timed(step: Awaitable[Any]) -> float:
        started = time.monotonic()
        run(step)
        return time.monotonic() - started

    # Lower bounds only: a loaded machine may take longer, never shorter.
    assert timed(sim.wait_instance_running(instance.instance_id)) >= 0.15
    assert timed(sim.join_node("T-2:join", instance.instance_id)) >= 0.1
    assert timed(sim.release_instance("T-2:release", instance.instance_id)) >= 0.1

    faster = _sim(engine, speed=2, durations=short)
    second = run(faster.create_instance("T-3:0", cluster.cluster_id, pool.nodepool_id))
    assert timed(faster.wait_instance_running(second.instance_id)) >= 0.075


def test_speed_zero_never_sleeps(engine: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def record(delay: float, result: Any = None) -> Any:
        slept.append(delay)
        return result

    monkeypatch.setattr(asyncio, "sleep", record)
    sim = _sim(engine)  # speed 0 with the realistic durations (minutes in all)
    cluster, pool = run(_cluster_with_pool(sim))
    node = run(_node_for(sim, "T-2:0", cluster.cluster_id, pool.nodepool_id))
    run(sim.release_instance("T-2:release", node.instance_id))
    run(sim.delete_nodepool("T-2:delete", cluster.cluster_id, pool.nodepool_id))
    assert slept == []
