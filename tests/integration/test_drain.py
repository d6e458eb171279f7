"""Eviction, scheduling and node removal in the simulated cloud, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from clustertasks import errors
from clustertasks.domain import emulator, workloads
from clustertasks.emulator import cloud, fault_store
from clustertasks.emulator import workload_store as workload_storage
from clustertasks.providers import base as providers
from tests.integration import test_sim_cloud as sim_support

run = sim_support.run


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    opened = sim_support._engine(db_url)
    try:
        yield opened
    finally:
        opened.dispose()


def _world(engine: sa.Engine, nodes: int) -> tuple[cloud.SimCloud, str, str, list[str]]:
    """A cluster with one pool of ``nodes`` ecs.g7.large nodes (2 vCPU each)."""
    sim = sim_support._sim(engine)
    cluster, pool = run(sim_support._cluster_with_pool(sim, instance_types=("ecs.g7.large",)))
    names = [
        run(sim_support._node_for(sim, f"n{i}", cluster.cluster_id, pool.nodepool_id)).node_name
        for i in range(nodes)
    ]
    # The pool's taint does not matter to the scheduler here; nodes are schedulable.
    return sim, cluster.cluster_id, pool.nodepool_id, sorted(names)


def _deployment(cluster_id: str, name: str, replicas: int, cpu: int = 100) -> workloads.Workload:
    return workloads.Workload(cluster_id, name, workloads.DEPLOYMENT, replicas, cpu, {"app": name})


def _budget(cluster_id: str, name: str, app: str, **limits: int) -> workloads.DisruptionBudget:
    return workloads.DisruptionBudget(cluster_id, name, {"app": app}, **limits)


def _placement(sim: cloud.SimCloud, cluster_id: str) -> dict[str, str]:
    return {p.name: p.node_name for p in sim.list_pods(cluster_id)}


def test_pods_spread_and_daemonsets_get_one_pod_per_node(engine: sa.Engine) -> None:
    sim, cluster_id, _, nodes = _world(engine, 3)
    logger = workloads.Workload(cluster_id, "logger", workloads.DAEMONSET, 0, 50, {"app": "logger"})
    sim.declare_workloads(cluster_id, [_deployment(cluster_id, "web", 3), logger], [])
    placed = _placement(sim, cluster_id)
    assert sorted(placed[f"web-{i}"] for i in range(3)) == nodes
    assert sorted(v for k, v in placed.items() if k.startswith("logger-")) == nodes
    assert {p.phase for p in sim.list_pods(cluster_id)} == {"Running"}

    # Scaling the Deployment down removes its last replicas.
    sim.declare_workloads(cluster_id, [_deployment(cluster_id, "web", 1)], [])
    assert [p.name for p in sim.list_pods(cluster_id) if p.workload == "web"] == ["web-0"]


@pytest.mark.parametrize(
    ("limits", "allowed"),
    [
        ({"min_available": 3}, False),
        ({"min_available": 2}, True),
        ({"max_unavailable": 0}, False),
        ({"max_unavailable": 1}, True),
    ],
)
def test_an_eviction_honours_the_budget(
    engine: sa.Engine, limits: dict[str, int], allowed: bool
) -> None:
    sim, cluster_id, _, nodes = _world(engine, 3)
    sim.declare_workloads(
        cluster_id,
        [_deployment(cluster_id, "web", 3)],
        [_budget(cluster_id, "web-pdb", "web", **limits)],
    )
    pod = next(p for p in sim.list_pods(cluster_id, nodes[0]))
    run(sim.update_node(cluster_id, nodes[0], schedulable=False))
    eviction = run(sim.evict_pod(cluster_id, pod.name, nodes[0]))
    if allowed:
        assert eviction.outcome == "evicted"
        assert eviction.to_node in nodes[1:]
        assert _placement(sim, cluster_id)[pod.name] == eviction.to_node
    else:
        assert (eviction.outcome, eviction.blocked_by) == ("blocked", "web-pdb")
        assert _placement(sim, cluster_id)[pod.name] == nodes[0]
        forced = run(sim.evict_pod(cluster_id, pod.name, nodes[0], force=True))
        assert forced.outcome == "evicted"
    # A second request for the same pod on the same node finds it gone.
    if eviction.outcome == "evicted":
        assert run(sim.evict_pod(cluster_id, pod.name, nodes[0])).outcome == "gone"


def test_an_evicted_pod_without_room_is_pending_until_a_node_has_room(engine: sa.Engine) -> None:
    sim, cluster_id, _, nodes = _world(engine, 2)
    sim.declare_workloads(cluster_id, [_deployment(cluster_id, "big", 2, cpu=1500)], [])
    on_first = next(p.name for p in sim.list_pods(cluster_id, nodes[0]))
    run(sim.update_node(cluster_id, nodes[0], schedulable=False))
    eviction = run(sim.evict_pod(cluster_id, on_first, nodes[0]))
    assert (eviction.outcome, eviction.to_node) == ("evicted", "")
    pending = next(p for p in sim.list_pods(cluster_id) if p.name == on_first)
    assert (pending.phase, pending.node_name) == ("Pending", "")
    run(sim.update_node(cluster_id, nodes[0], schedulable=True))
    placed = next(p for p in sim.list_pods(cluster_id) if p.name == on_first)
    assert (placed.phase, placed.node_name) == ("Running", nodes[0])


def test_concurrent_evictions_never_overdraw_a_budget(engine: sa.Engine) -> None:
    """Two drains evict the two replicas a budget guards at the same instant: the budget
    allows one disruption, and the replacement cannot be placed, so exactly one wins."""
    sim, cluster_id, _, nodes = _world(engine, 3)
    sim.declare_workloads(
        cluster_id,
        [_deployment(cluster_id, "db", 2, cpu=1500), _deployment(cluster_id, "filler", 1, 1500)],
        [_budget(cluster_id, "db-pdb", "db", max_unavailable=1)],
    )
    placed = _placement(sim, cluster_id)
    for node in nodes:
        run(sim.update_node(cluster_id, node, schedulable=False))
    store = workload_storage.WorkloadStore(engine)
    barrier = threading.Barrier(2)
    outcomes: list[workloads.Eviction] = []

    def evict(pod: str) -> None:
        barrier.wait()
        outcomes.append(store.evict(cluster_id, pod, placed[pod], lambda _t: 2000, 1))

    threads = [threading.Thread(target=evict, args=(pod,)) for pod in ("db-0", "db-1")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(o.outcome for o in outcomes) == ["blocked", "evicted"]
    assert next(o for o in outcomes if o.outcome == "blocked").blocked_by == "db-pdb"


def test_removing_a_node_reschedules_its_pods_and_frees_or_releases_the_instance(
    engine: sa.Engine,
) -> None:
    sim, cluster_id, pool_id, nodes = _world(engine, 3)
    logger = workloads.Workload(cluster_id, "logger", workloads.DAEMONSET, 0, 50, {})
    sim.declare_workloads(cluster_id, [_deployment(cluster_id, "web", 3), logger], [])
    by_name = {n.node_name: n for n in sim.list_nodes(cluster_id)}
    kept, released = by_name[nodes[0]], by_name[nodes[1]]

    run(sim.remove_node("T-9/RemoveNodes/a", cluster_id, kept.instance_id, release=False))
    run(sim.remove_node("T-9/RemoveNodes/a", cluster_id, kept.instance_id, release=False))
    run(sim.remove_node("T-9/RemoveNodes/b", cluster_id, released.instance_id, release=True))
    assert [n.node_name for n in sim.list_nodes(cluster_id)] == [nodes[2]]
    pods = sim.list_pods(cluster_id)
    assert {p.node_name for p in pods} == {nodes[2]}
    assert sorted(p.name for p in pods) == ["logger-" + nodes[2], "web-0", "web-1", "web-2"]
    assert sim.get_instance(released.instance_id).status == "Released"
    assert [i.instance_id for i in sim.free_instances()] == [kept.instance_id]

    # The free instance joins another pool; one in use or unknown cannot.
    other = run(
        sim.create_nodepool(
            "T-9:other",
            cluster_id,
            sim_support._id("np", "T-9"),
            sim_support._pool_spec(name="other"),
        )
    )
    node = run(sim.attach_instance("T-10/a", cluster_id, other.nodepool_id, kept.instance_id))
    assert (node.nodepool_id, node.node_status) == (other.nodepool_id, "Ready")
    assert sim.free_instances() == []
    assert f"logger-{node.node_name}" in _placement(sim, cluster_id)
    in_use = sim.list_nodes(cluster_id, pool_id)[0].instance_id
    with pytest.raises(errors.InstanceNotFree, match=in_use):
        run(sim.attach_instance("T-10/b", cluster_id, other.nodepool_id, in_use))
    with pytest.raises(errors.InstanceNotFound, match="i-nothere"):
        run(sim.attach_instance("T-10/c", cluster_id, other.nodepool_id, "i-nothere"))


def _node_fault(
    engine: sa.Engine, fault_id: str, node_name: str, action: str, message: str = ""
) -> None:
    """What ``POST /_emulator/clusters/{c}/nodes/{n}/faults`` stores: a fault rule."""
    rule = emulator.node_fault_rule(fault_id, node_name, action, message, created_us=0)
    fault_store.FaultStore(engine).add(rule)


def test_upgrade_and_repair_follow_fault_rules(engine: sa.Engine) -> None:
    sim, cluster_id, _, nodes = _world(engine, 2)
    target = "1.33.0-aliyun.1"
    # Fault rules apply to the actions of a task.
    call = providers.TaskCall("T-1", "nodepool_upgrade", "UpgradeNodes")
    with providers.calling_as(call):
        upgraded = run(sim.upgrade_node(cluster_id, nodes[0], kubernetes_version=target))
    assert (upgraded.kubelet_version, upgraded.node_status) == (target, "Ready")
    _node_fault(engine, "F-1", nodes[1], "upgrade")
    with providers.calling_as(call), pytest.raises(errors.NodeUpgradeFailed, match=nodes[1]):
        run(sim.upgrade_node(cluster_id, nodes[1], kubernetes_version=target))
    untouched = sim.get_node(cluster_id, nodes[1])
    assert (untouched.kubelet_version, untouched.node_status) == (sim_support.VERSION, "Ready")

    sim.set_node_status(cluster_id, nodes[0], "NotReady")
    with providers.calling_as(call):
        assert run(sim.repair_node(cluster_id, nodes[0])).node_status == "Ready"
    sim.set_node_status(cluster_id, nodes[1], "NotReady")
    _node_fault(engine, "F-2", nodes[1], "repair", "disk full")
    with (
        providers.calling_as(call),
        pytest.raises(errors.NodeRepairFailed, match=f"node {nodes[1]}: disk full"),
    ):
        run(sim.repair_node(cluster_id, nodes[1]))
    with pytest.raises(errors.NodeNotFound):
        sim.get_node(cluster_id, "cn-hangzhou.10.9.9.9")
