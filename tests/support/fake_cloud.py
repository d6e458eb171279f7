"""FakeCloud: the cloud port (``providers.base.CloudPort``) in memory, for tests.

A few dicts make the world; nothing waits, nothing is simulated beyond what a stage can
observe. Actions that take an idempotency key remember what the key made and return it
again, as a real cloud must. Pods do not move when evicted: an eviction deletes the pod,
unless a budget in ``blocked`` names it. ``actions`` records every action made, in order,
so a test can check what a task asked of the cloud.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TypeVar

from clustertasks import errors
from clustertasks.domain import workloads, world
from clustertasks.providers import base as providers

VERSION = "1.32.1-aliyun.1"
REGION = "cn-hangzhou"
T = TypeVar("T")


class FakeCloud:
    """A dict-backed cloud; ``add_*`` arrange the world a test starts from."""

    def __init__(self) -> None:
        self.clusters: dict[str, world.Cluster] = {}
        self.nodepools: dict[str, world.NodePool] = {}
        self.instances: dict[str, world.Instance] = {}
        self.nodes: dict[str, world.Node] = {}
        self.pods: dict[str, workloads.Pod] = {}
        self.blocked: dict[str, str] = {}
        """Pod name -> the budget that refuses its eviction."""
        self.actions: list[tuple[str, ...]] = []
        self.waited = 0.0
        self._made: dict[str, object] = {}
        self._tick = itertools.count(1)
        self._addresses = itertools.count(10)

    # -- arranging a world -----------------------------------------------------------------

    def add_cluster(self, cluster_id: str, state: str = "running") -> world.Cluster:
        spec = world.ClusterSpec(name="fake", region_id=REGION, kubernetes_version=VERSION)
        cluster = world.Cluster(cluster_id, spec, state, VERSION, 0, 0, 200, "vpc-fake", "sg-fake")
        self.clusters[cluster_id] = cluster
        return cluster

    def add_nodepool(self, cluster_id: str, nodepool_id: str, nodes: int = 0) -> world.NodePool:
        spec = world.NodePoolSpec("pool", ("ecs.g7.large",), ("vsw-fake",))
        pool = world.NodePool(
            nodepool_id, cluster_id, spec, "active", nodes, VERSION, "asg-fake", 0, 0
        )
        self.nodepools[nodepool_id] = pool
        for _ in range(nodes):
            instance = self._launch(cluster_id, nodepool_id, status="Running")
            self._join(instance)
        return pool

    def add_pod(self, node_name: str, name: str, kind: str = workloads.DEPLOYMENT) -> None:
        node = self.nodes[node_name]
        self.pods[name] = workloads.Pod(
            node.cluster_id, name, name.rsplit("-", 1)[0], kind, node_name, "Running", 100
        )

    # -- the port: reads -------------------------------------------------------------------

    async def describe(self, cluster_id: str, nodepool_id: str | None = None) -> world.CloudView:
        cluster = self._cluster(cluster_id)
        if nodepool_id is None:
            pools = [p for p in self.nodepools.values() if p.cluster_id == cluster_id]
        else:
            pools = [self._pool(cluster_id, nodepool_id)]

        def wanted(item: world.Instance | world.Node) -> bool:
            return item.cluster_id == cluster_id and nodepool_id in (None, item.nodepool_id)

        return world.CloudView(
            cluster,
            tuple(pools),
            tuple(i for i in self.instances.values() if wanted(i) and i.status != "Released"),
            tuple(n for n in self.nodes.values() if wanted(n)),
        )

    async def describe_node(self, cluster_id: str, node_name: str) -> world.NodeView:
        node = self._node(cluster_id, node_name)
        return world.NodeView(node, tuple(self._pods_on(node_name)))

    # -- the port: clusters ----------------------------------------------------------------

    async def create_cluster(
        self, key: str, cluster_id: str, spec: world.ClusterSpec
    ) -> world.Cluster:
        self.actions.append(("create_cluster", cluster_id))
        if cluster_id not in self.clusters:
            self.add_cluster(cluster_id, state="initial")
            self.clusters[cluster_id] = dataclasses.replace(self.clusters[cluster_id], spec=spec)
        return self.clusters[cluster_id]

    async def provision_control_plane(self, key: str, cluster_id: str) -> world.Cluster:
        self.actions.append(("provision_control_plane", cluster_id))
        cluster = self._cluster(cluster_id)
        if cluster.state == "initial":
            cluster = self._set(self.clusters, cluster_id, state="running")
        return cluster

    async def update_cluster(
        self,
        cluster_id: str,
        *,
        state: str | None = None,
        kubernetes_version: str | None = None,
        edit: world.SpecEdit | None = None,
    ) -> world.Cluster:
        self.actions.append(("update_cluster", cluster_id, state or "", kubernetes_version or ""))
        cluster = self._cluster(cluster_id)
        if edit is not None:
            cluster = self._set(self.clusters, cluster_id, spec=edit(cluster.spec))
        if state is not None:
            cluster = self._set(self.clusters, cluster_id, state=state)
        if kubernetes_version is not None:
            cluster = self._set(self.clusters, cluster_id, current_version=kubernetes_version)
        return cluster

    async def delete_cluster(self, key: str, cluster_id: str) -> None:
        self.actions.append(("delete_cluster", cluster_id))
        self._cluster(cluster_id)
        if any(p.cluster_id == cluster_id for p in self.nodepools.values()):
            raise errors.ResourceInUse(f"the cluster {cluster_id} still has node pools")
        del self.clusters[cluster_id]

    # -- the port: node pools --------------------------------------------------------------

    async def create_nodepool(
        self, key: str, cluster_id: str, nodepool_id: str, spec: world.NodePoolSpec
    ) -> world.NodePool:
        self.actions.append(("create_nodepool", nodepool_id))
        self._cluster(cluster_id)
        if nodepool_id not in self.nodepools:
            self.add_nodepool(cluster_id, nodepool_id)
            self._set(self.nodepools, nodepool_id, spec=spec)
        return self.nodepools[nodepool_id]

    async def update_nodepool(
        self,
        cluster_id: str,
        nodepool_id: str,
        *,
        state: str | None = None,
        desired_size: int | None = None,
        spec: world.NodePoolSpec | None = None,
        kubernetes_version: str | None = None,
    ) -> world.NodePool:
        self.actions.append(("update_nodepool", nodepool_id, state or "", str(desired_size)))
        pool = self._pool(cluster_id, nodepool_id)
        changes = {
            "state": state,
            "desired_size": desired_size,
            "spec": spec,
            "kubernetes_version": kubernetes_version,
        }
        given = {name: value for name, value in changes.items() if value is not None}
        return self._set(self.nodepools, pool.nodepool_id, **given) if given else pool

    async def delete_nodepool(self, key: str, cluster_id: str, nodepool_id: str) -> None:
        self.actions.append(("delete_nodepool", nodepool_id))
        view = await self.describe(cluster_id, nodepool_id)
        if view.instances:
            raise errors.ResourceInUse(f"the node pool {nodepool_id} still has instances")
        del self.nodepools[nodepool_id]

    # -- the port: instances and nodes -----------------------------------------------------

    async def create_instance(self, key: str, cluster_id: str, nodepool_id: str) -> world.Instance:
        self.actions.append(("create_instance", key))
        self._pool(cluster_id, nodepool_id)
        return self._once(key, lambda: self._launch(cluster_id, nodepool_id, key=key))

    async def wait_instance_running(self, instance_id: str) -> world.Instance:
        self.actions.append(("wait_instance_running", instance_id))
        instance = self._instance(instance_id)
        if instance.status == "Pending":
            instance = self._set(self.instances, instance_id, status="Running")
        if instance.status != "Running":
            raise errors.InstanceBootFailed(f"the instance {instance_id} is {instance.status}")
        return instance

    async def join_node(self, key: str, instance_id: str) -> world.Node:
        self.actions.append(("join_node", instance_id))
        return self._once(key, lambda: self._join(self._instance(instance_id)))

    async def release_instance(self, key: str, instance_id: str) -> None:
        self.actions.append(("release_instance", instance_id))
        self._leave(instance_id)
        self._set(self.instances, instance_id, status="Released")

    async def remove_node(
        self, key: str, cluster_id: str, instance_id: str, *, release: bool
    ) -> None:
        self.actions.append(("remove_node", instance_id, "release" if release else "keep"))
        self._leave(instance_id)
        status = "Released" if release else self._instance(instance_id).status
        self._set(self.instances, instance_id, status=status, nodepool_id="")

    async def attach_instance(
        self, key: str, cluster_id: str, nodepool_id: str, instance_id: str
    ) -> world.Node:
        self.actions.append(("attach_instance", instance_id))
        self._pool(cluster_id, nodepool_id)
        if self._instance(instance_id).nodepool_id:
            raise errors.InstanceNotFree(f"the instance {instance_id} is in a node pool")
        instance = self._set(self.instances, instance_id, nodepool_id=nodepool_id)
        return self._once(key, lambda: self._join(instance))

    async def update_node(
        self,
        cluster_id: str,
        node_name: str,
        *,
        labels: Sequence[world.Label] | None = None,
        taints: Sequence[world.Taint] | None = None,
        schedulable: bool | None = None,
    ) -> world.Node:
        self.actions.append(("update_node", node_name, str(schedulable)))
        self._node(cluster_id, node_name)
        changes = {"labels": labels, "taints": taints, "schedulable": schedulable}
        given = {name: value for name, value in changes.items() if value is not None}
        return self._set(self.nodes, node_name, **given)

    async def evict_pod(
        self, cluster_id: str, pod_name: str, node_name: str, *, force: bool = False
    ) -> workloads.Eviction:
        self.actions.append(("evict_pod", pod_name))
        pod = self.pods.get(pod_name)
        if pod is None or pod.node_name != node_name:
            return workloads.Eviction(pod_name, "gone")
        if pod_name in self.blocked and not force:
            return workloads.Eviction(pod_name, "blocked", blocked_by=self.blocked[pod_name])
        del self.pods[pod_name]
        return workloads.Eviction(pod_name, "evicted")

    async def upgrade_node(
        self,
        cluster_id: str,
        node_name: str,
        *,
        kubernetes_version: str,
        image_id: str = "",
        replace: bool = False,
    ) -> world.Node:
        self.actions.append(("upgrade_node", node_name, kubernetes_version))
        self._node(cluster_id, node_name)
        return self._set(self.nodes, node_name, kubelet_version=kubernetes_version)

    async def repair_node(self, cluster_id: str, node_name: str) -> world.Node:
        self.actions.append(("repair_node", node_name))
        self._node(cluster_id, node_name)
        return self._set(self.nodes, node_name, node_status="Ready")

    async def wait(self, seconds: float) -> None:
        self.waited += seconds

    # -- plumbing --------------------------------------------------------------------------

    def _once(self, key: str, make: Callable[[], T]) -> T:
        if key not in self._made:
            self._made[key] = make()
        made: Any = self._made[key]  # each key makes one kind of thing
        return made  # type: ignore[no-any-return]

    def _launch(
        self, cluster_id: str, nodepool_id: str, *, key: str = "", status: str = "Pending"
    ) -> world.Instance:
        tick = next(self._tick)
        basis = key or f"seeded-{tick}"
        instance = world.Instance(
            instance_id="i-" + hashlib.sha256(basis.encode()).hexdigest()[:20],
            cluster_id=cluster_id,
            nodepool_id=nodepool_id,
            instance_type="ecs.g7.large",
            zone_id=f"{REGION}-h",
            vswitch_id="vsw-fake",
            ip_address=f"10.0.0.{next(self._addresses)}",
            status=status,
            created_us=tick,
        )
        self.instances[instance.instance_id] = instance
        return instance

    def _join(self, instance: world.Instance) -> world.Node:
        node = world.Node(
            node_name=f"{REGION}.{instance.ip_address}",
            cluster_id=instance.cluster_id,
            nodepool_id=instance.nodepool_id,
            instance_id=instance.instance_id,
            node_status="Ready",
            schedulable=True,
            kubelet_version=VERSION,
            created_us=next(self._tick),
        )
        self.nodes[node.node_name] = node
        return node

    def _leave(self, instance_id: str) -> None:
        for node in [n for n in self.nodes.values() if n.instance_id == instance_id]:
            del self.nodes[node.node_name]
            for pod in self._pods_on(node.node_name):
                del self.pods[pod.name]

    def _pods_on(self, node_name: str) -> Iterable[workloads.Pod]:
        return [p for p in self.pods.values() if p.node_name == node_name]

    def _cluster(self, cluster_id: str) -> world.Cluster:
        if cluster_id not in self.clusters:
            raise errors.ClusterNotFound(cluster_id)
        return self.clusters[cluster_id]

    def _pool(self, cluster_id: str, nodepool_id: str) -> world.NodePool:
        self._cluster(cluster_id)
        pool = self.nodepools.get(nodepool_id)
        if pool is None or pool.cluster_id != cluster_id:
            raise errors.NodePoolNotFound(nodepool_id, cluster_id)
        return pool

    def _instance(self, instance_id: str) -> world.Instance:
        if instance_id not in self.instances:
            raise errors.InstanceNotFound(f"the instance {instance_id} does not exist")
        return self.instances[instance_id]

    def _node(self, cluster_id: str, node_name: str) -> world.Node:
        node = self.nodes.get(node_name)
        if node is None or node.cluster_id != cluster_id:
            raise errors.NodeNotFound(f"the node {node_name} not found in cluster {cluster_id}")
        return node

    def _set(self, table: dict[str, T], name: str, **changes: Any) -> T:
        record: Any = table[name]
        table[name] = dataclasses.replace(record, **changes)
        return table[name]


def conforms(cloud: FakeCloud) -> providers.CloudPort:
    """mypy checks here that FakeCloud is the port."""
    return cloud
