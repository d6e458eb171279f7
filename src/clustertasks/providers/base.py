"""The interface between operations and the cloud they act on.

Reads are synchronous (they are quick lookups, used by the service to validate a request
before any task exists). Actions are ``async`` because real clouds make you wait; each one
that creates or changes something takes an idempotency ``key`` (derived from task id +
stage + item) and, called again with the same key, returns what the first call made
instead of making it twice. That is what lets a stage be re-run after a crash.

Failures are raised as ``clustertasks.errors`` classes: ``errors.PermanentError``
subclasses stop the task with their code; ``errors.TemporaryError`` ones are retried.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from clustertasks.domain import world


class CloudProvider(Protocol):
    # -- reads -----------------------------------------------------------------------------

    def get_cluster(self, cluster_id: str) -> world.Cluster:
        """Raises ``errors.ClusterNotFound`` (also for a deleted cluster)."""
        ...

    def list_clusters(self) -> Sequence[world.Cluster]:
        """Every cluster not yet deleted, newest first."""
        ...

    def get_nodepool(self, cluster_id: str, nodepool_id: str) -> world.NodePool:
        """Raises ``errors.ClusterNotFound`` or ``errors.NodePoolNotFound``."""
        ...

    def list_nodepools(self, cluster_id: str) -> Sequence[world.NodePool]:
        """A cluster's pools not yet deleted, oldest first."""
        ...

    def list_nodes(
        self, cluster_id: str, nodepool_id: str | None = None
    ) -> Sequence[world.Node]: ...

    def list_instances(
        self, cluster_id: str, nodepool_id: str | None = None
    ) -> Sequence[world.Instance]:
        """Instances not released, oldest first."""
        ...

    def check_region(self, region_id: str) -> None:
        """Raises ``errors.InvalidParameter`` naming ``region_id`` if it is not a region."""
        ...

    def node_quota(self) -> int:
        """Most worker nodes one cluster may have."""
        ...

    def check_node_quota(self, cluster_id: str, adding: int) -> None:
        """Raises ``errors.QuotaExceeded`` if ``adding`` more nodes would pass the quota
        (counting nodes that exist and pools' desired sizes)."""
        ...

    def check_instance_types(self, instance_types: Sequence[str]) -> None:
        """Raises ``errors.InvalidParameter`` naming an unknown instance type."""
        ...

    # -- registering, synchronously, what a request creates ------------------------------
    # ACK answers CreateCluster and CreateClusterNodePool with the new id at once, and the
    # resource is describable from then on (state ``initial``); the task does the slow part.

    def register_cluster(self, cluster_id: str, spec: world.ClusterSpec) -> world.Cluster:
        """Record the cluster in state ``initial``; the same id again returns it unchanged."""
        ...

    def register_nodepool(
        self, cluster_id: str, nodepool_id: str, spec: world.NodePoolSpec
    ) -> world.NodePool:
        """Record the pool (state ``active``, desired size 0); idempotent on the id."""
        ...

    # -- clusters --------------------------------------------------------------------------

    async def create_cluster(self, key: str, spec: world.ClusterSpec) -> world.Cluster:
        """Record a new cluster in state ``initial``."""
        ...

    async def provision_control_plane(self, key: str, cluster_id: str) -> world.Cluster:
        """Wait for the managed control plane to come up (simulated minutes)."""
        ...

    async def set_cluster_state(self, cluster_id: str, state: str) -> world.Cluster: ...

    async def delete_cluster(self, key: str, cluster_id: str) -> None:
        """Mark the cluster ``deleted``; its pools must already be gone."""
        ...

    # -- node pools ------------------------------------------------------------------------

    async def create_nodepool(
        self, key: str, cluster_id: str, spec: world.NodePoolSpec
    ) -> world.NodePool:
        """Record a new pool (state ``active``, desired size 0; scale it with instances)."""
        ...

    async def update_nodepool(
        self,
        cluster_id: str,
        nodepool_id: str,
        *,
        state: str | None = None,
        desired_size: int | None = None,
        spec: world.NodePoolSpec | None = None,
    ) -> world.NodePool: ...

    async def delete_nodepool(self, key: str, cluster_id: str, nodepool_id: str) -> None:
        """Remove the pool; it must have no instances left."""
        ...

    # -- instances and nodes ---------------------------------------------------------------

    async def create_instance(self, key: str, cluster_id: str, nodepool_id: str) -> world.Instance:
        """Launch one ECS instance for the pool (status ``Pending``).

        Tries the pool's instance types in order, in each of its zones; raises
        ``errors.InstanceCreateFailed`` naming the types and zones when none has stock.
        """
        ...

    async def wait_instance_running(self, instance_id: str) -> world.Instance:
        """Wait for ``Pending`` → ``Starting`` → ``Running`` (tens of seconds at speed 1)."""
        ...

    async def join_node(self, key: str, instance_id: str) -> world.Node:
        """Bootstrap kubelet on a running instance; returns the ``Ready`` node."""
        ...

    async def update_node(
        self,
        cluster_id: str,
        node_name: str,
        *,
        labels: Sequence[world.Label],
        taints: Sequence[world.Taint],
    ) -> world.Node:
        """Replace a node's labels and taints (ModifyClusterNodePool with update_nodes)."""
        ...

    async def release_instance(self, key: str, instance_id: str) -> None:
        """Remove the instance's node (if any) and release the instance. Idempotent."""
        ...
