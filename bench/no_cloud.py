"""A cloud port for benchmarks whose stages never touch a cloud: every action refuses,
and waits return at once. Engine overhead is measured, not a simulated cloud's."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

from clustertasks import errors
from clustertasks.domain import workloads, world


def _refuse(action: str) -> NoReturn:
    raise errors.PermanentError(f"the benchmark's cloud has no {action}")


class NoCloud:
    """Implements ``clustertasks.providers.base.CloudPort``."""

    async def describe(self, cluster_id: str, nodepool_id: str | None = None) -> world.CloudView:
        _refuse("describe")

    async def describe_node(self, cluster_id: str, node_name: str) -> world.NodeView:
        _refuse("describe_node")

    async def create_cluster(
        self, key: str, cluster_id: str, spec: world.ClusterSpec
    ) -> world.Cluster:
        _refuse("create_cluster")

    async def provision_control_plane(self, key: str, cluster_id: str) -> world.Cluster:
        _refuse("provision_control_plane")

    async def update_cluster(
        self, cluster_id: str, *, state: str | None = None, kubernetes_version: str | None = None
    ) -> world.Cluster:
        _refuse("update_cluster")

    async def delete_cluster(self, key: str, cluster_id: str) -> None:
        _refuse("delete_cluster")

    async def create_nodepool(
        self, key: str, cluster_id: str, nodepool_id: str, spec: world.NodePoolSpec
    ) -> world.NodePool:
        _refuse("create_nodepool")

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
        _refuse("update_nodepool")

    async def delete_nodepool(self, key: str, cluster_id: str, nodepool_id: str) -> None:
        _refuse("delete_nodepool")

    async def create_instance(self, key: str, cluster_id: str, nodepool_id: str) -> world.Instance:
        _refuse("create_instance")

    async def wait_instance_running(self, instance_id: str) -> world.Instance:
        _refuse("wait_instance_running")

    async def join_node(self, key: str, instance_id: str) -> world.Node:
        _refuse("join_node")

    async def release_instance(self, key: str, instance_id: str) -> None:
        _refuse("release_instance")

    async def remove_node(
        self, key: str, cluster_id: str, instance_id: str, *, release: bool
    ) -> None:
        _refuse("remove_node")

    async def attach_instance(
        self, key: str, cluster_id: str, nodepool_id: str, instance_id: str
    ) -> world.Node:
        _refuse("attach_instance")

    async def update_node(
        self,
        cluster_id: str,
        node_name: str,
        *,
        labels: Sequence[world.Label] | None = None,
        taints: Sequence[world.Taint] | None = None,
        schedulable: bool | None = None,
    ) -> world.Node:
        _refuse("update_node")

    async def evict_pod(
        self, cluster_id: str, pod_name: str, node_name: str, *, force: bool = False
    ) -> workloads.Eviction:
        _refuse("evict_pod")

    async def upgrade_node(
        self,
        cluster_id: str,
        node_name: str,
        *,
        kubernetes_version: str,
        image_id: str = "",
        replace: bool = False,
    ) -> world.Node:
        _refuse("upgrade_node")

    async def repair_node(self, cluster_id: str, node_name: str) -> world.Node:
        _refuse("repair_node")

    async def wait(self, seconds: float) -> None:
        return None
