"""What the simulated cloud does to nodes and their pods: cordon, evict, upgrade, repair;
and the workloads declared per cluster that give a drain something to move.

``SimCloud`` delegates to :class:`NodeActions`; both share the database, the clock and the
timing. Each action is idempotent: asking for a state the node is already in returns it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from collections.abc import Set as AbstractSet

from clustertasks import clock, errors
from clustertasks.domain import workloads, world
from clustertasks.emulator import catalogue, timing
from clustertasks.emulator import workload_store as workload_storage
from clustertasks.emulator import world_store as world_storage


def free_launch(
    cluster: world.Cluster,
    key: str,
    instance_id: str,
    instance_type: str,
    choose_address: Callable[[AbstractSet[str]], str],
) -> world_storage.Launch:
    """An instance outside any pool, in one of the cluster's vSwitches with stock."""
    region = cluster.spec.region_id
    vswitches = cluster.spec.vswitch_ids or (f"vsw-{region}",)
    return world_storage.Launch(
        key=key,
        instance_id=instance_id,
        cluster_id=cluster.cluster_id,
        nodepool_id="",
        vpc_id=cluster.vpc_id,
        placements=[
            world_storage.Placement(instance_type, catalogue.zone_of_vswitch(region, vsw), vsw)
            for vsw in vswitches
        ],
        default_stock=catalogue.DEFAULT_STOCK,
        choose_address=choose_address,
        image_id=catalogue.image_for("AliyunLinux3"),
    )


def cpu_millis(instance_type: str) -> int:
    """Allocatable CPU of a node of this type (unknown types: one vCPU)."""
    found = catalogue.instance_type(instance_type)
    return (found.vcpu if found is not None else 1) * 1000


class NodeActions:
    def __init__(
        self,
        world_store: world_storage.WorldStore,
        time: clock.Clock,
        pace: timing.Timing,
    ) -> None:
        self._world = world_store
        self._store = workload_storage.WorkloadStore.beside(world_store)
        self._clock = time
        self._timing = pace

    # -- workloads ---------------------------------------------------------------------------

    def declare_workloads(
        self,
        cluster_id: str,
        declared: Sequence[workloads.Workload],
        budgets: Sequence[workloads.DisruptionBudget],
    ) -> None:
        self._world.get_cluster(cluster_id)
        self._store.declare(cluster_id, declared, budgets, cpu_millis, self._clock.now_us())

    def list_workloads(self, cluster_id: str) -> Sequence[workloads.Workload]:
        return self._store.list_workloads(cluster_id)

    def list_budgets(self, cluster_id: str) -> Sequence[workloads.DisruptionBudget]:
        return self._store.list_budgets(cluster_id)

    def list_pods(self, cluster_id: str, node_name: str | None = None) -> Sequence[workloads.Pod]:
        return self._store.list_pods(cluster_id, node_name)

    def reconcile(self, cluster_id: str) -> None:
        self._store.reconcile(cluster_id, cpu_millis, self._clock.now_us())

    # -- nodes -------------------------------------------------------------------------------

    def get_node(self, cluster_id: str, node_name: str) -> world.Node:
        for node in self._world.list_nodes(cluster_id):
            if node.node_name == node_name:
                return node
        raise errors.NodeNotFound(f"the node {node_name} not found in cluster {cluster_id}")

    async def set_schedulable(
        self, cluster_id: str, node_name: str, schedulable: bool
    ) -> world.Node:
        node = await asyncio.to_thread(
            self._world.update_node,
            cluster_id,
            node_name,
            self._clock.now_us(),
            schedulable=schedulable,
        )
        if schedulable:  # Pending pods may fit now
            await asyncio.to_thread(self.reconcile, cluster_id)
        return node

    def set_node_status(self, cluster_id: str, node_name: str, status: str) -> world.Node:
        """Make a node ``NotReady`` (or anything else) by hand, as a failing kubelet would."""
        if status not in world.NODE_STATUSES:
            raise errors.InvalidParameter("node_status", f"unknown node status {status!r}")
        return self._world.update_node(
            cluster_id, node_name, self._clock.now_us(), node_status=status
        )

    async def evict_pod(
        self, cluster_id: str, pod_name: str, node_name: str, *, force: bool = False
    ) -> workloads.Eviction:
        return await asyncio.to_thread(
            self._store.evict,
            cluster_id,
            pod_name,
            node_name,
            cpu_millis,
            self._clock.now_us(),
            force=force,
        )

    async def detach_node(self, cluster_id: str, instance_id: str) -> world.Node | None:
        return await asyncio.to_thread(
            self._store.detach_node, cluster_id, instance_id, cpu_millis, self._clock.now_us()
        )

    async def free_instance(self, instance_id: str) -> world.Instance:
        return await asyncio.to_thread(self._store.free_instance, instance_id, self._clock.now_us())

    async def claim_instance(
        self, instance_id: str, cluster_id: str, nodepool_id: str
    ) -> world.Instance:
        return await asyncio.to_thread(
            self._store.claim_instance, instance_id, cluster_id, nodepool_id, self._clock.now_us()
        )

    def free_instances(self) -> Sequence[world.Instance]:
        return self._store.free_instances()

    async def upgrade_node(
        self,
        cluster_id: str,
        node_name: str,
        *,
        kubernetes_version: str,
        image_id: str = "",
        replace: bool = False,
    ) -> world.Node:
        """``NotReady`` while kubelet (or the whole system disk, with ``replace``) is
        replaced, then ``Ready`` at ``kubernetes_version``; schedulability is left as it
        was (the rollout uncordons). A node already there returns at once."""
        node = await asyncio.to_thread(self.get_node, cluster_id, node_name)
        instance = await asyncio.to_thread(self._world.get_instance, node.instance_id)
        # Done already: the version is there and, for a replace to an image, the image too
        # (a replace without an image is simply done again: it changes nothing twice).
        imaged = not replace or (bool(image_id) and instance.image_id == image_id)
        if node.kubelet_version == kubernetes_version and node.node_status == "Ready" and imaged:
            return node
        await asyncio.to_thread(
            self._world.update_node,
            cluster_id,
            node_name,
            self._clock.now_us(),
            node_status="NotReady",
        )
        durations = self._timing.durations
        await self._timing.wait(durations.node_replace if replace else durations.node_upgrade)
        if replace and image_id:
            await asyncio.to_thread(
                self._store.set_image, node.instance_id, image_id, self._clock.now_us()
            )
        return await asyncio.to_thread(
            self._world.update_node,
            cluster_id,
            node_name,
            self._clock.now_us(),
            node_status="Ready",
            kubelet_version=kubernetes_version,
        )

    async def repair_node(self, cluster_id: str, node_name: str) -> world.Node:
        """A ``NotReady`` node is ``Ready`` after the repair operations; a ``Ready`` one is
        left alone."""
        node = await asyncio.to_thread(self.get_node, cluster_id, node_name)
        if node.node_status == "Ready":
            return node
        await self._timing.wait(self._timing.durations.node_repair)
        repaired = await asyncio.to_thread(
            self._world.update_node,
            cluster_id,
            node_name,
            self._clock.now_us(),
            node_status="Ready",
        )
        await asyncio.to_thread(self.reconcile, cluster_id)
        return repaired

    async def upgrade_control_plane(self, cluster_id: str, version: str) -> world.Cluster:
        """``upgrading`` for ``control_plane_upgrade``, then at ``version``: ``running``
        again, unless the cluster was ``upgrading`` already (a task showed it so when it was
        accepted, and leaves it ``running`` when it ends)."""
        cluster = await asyncio.to_thread(self._world.get_cluster, cluster_id)
        if cluster.current_version == version:
            return cluster
        shown = cluster.state == "upgrading"
        if not shown:
            await asyncio.to_thread(self._set_cluster_state, cluster_id, "upgrading")
        await self._timing.wait(self._timing.durations.control_plane_upgrade)
        await asyncio.to_thread(
            self._store.set_cluster_version, cluster_id, version, self._clock.now_us()
        )
        if shown:
            return await asyncio.to_thread(self._world.get_cluster, cluster_id)
        return await asyncio.to_thread(self._set_cluster_state, cluster_id, "running")

    async def set_pool_version(self, nodepool_id: str, version: str) -> None:
        await asyncio.to_thread(
            self._store.set_pool_version, nodepool_id, version, self._clock.now_us()
        )

    def _set_cluster_state(self, cluster_id: str, state: str) -> world.Cluster:
        return self._world.set_cluster_state(cluster_id, state, self._clock.now_us())
