"""What the request services read and check of a cloud before any task exists.

Quick synchronous lookups, unlike the port's actions (``providers.base.CloudPort``): a
request is validated, and what it creates is registered so the API can answer with its id
at once (ACK answers CreateCluster and CreateClusterNodePool so, and the resource is
describable from then on in state ``initial``); the task does the slow part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from clustertasks.domain import world
from clustertasks.storage import store


class Inventory(Protocol):
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

    def check_instance_types(self, instance_types: Sequence[str]) -> None:
        """Raises ``errors.InvalidParameter`` naming an unknown instance type."""
        ...

    def node_quota(self) -> int:
        """Most worker nodes one cluster may have."""
        ...

    def check_not_in_use(self, instance_ids: Sequence[str]) -> None:
        """Raises ``errors.InstanceNotFree`` naming the first instance that is already in a
        node pool or a node of a cluster. Unknown instances pass: the task reports them,
        as it reports an instance taken between the request and the task."""
        ...

    def usage(self, cluster_id: str, nodepool_id: str | None = None) -> world.Usage:
        """The cluster, the nodes its quota counts and its pool ``nodepool_id`` (if it has
        one by that id), read together: what a request that adds nodes checks. Raises
        ``errors.ClusterNotFound``."""
        ...

    def check_node_quota(self, cluster_id: str, adding: int) -> None:
        """Raises ``errors.QuotaExceeded`` if ``adding`` more nodes would pass the quota
        (counting nodes that exist and pools' desired sizes)."""
        ...

    def kubernetes_versions(self) -> Sequence[str]:
        """The versions the cloud offers, oldest first; the last is the default."""
        ...

    def register_cluster(self, cluster_id: str, spec: world.ClusterSpec) -> world.Cluster:
        """Record the cluster in state ``initial``; the same id again returns it unchanged."""
        ...

    def registering_cluster(self, cluster_id: str, spec: world.ClusterSpec) -> store.Accepted:
        """What ``register_cluster`` records, checked now and written in the transaction
        that accepts the task creating the cluster: nothing is left of a refused request."""
        ...

    def registering_nodepool(
        self, cluster_id: str, nodepool_id: str, spec: world.NodePoolSpec
    ) -> store.Accepted:
        """What ``register_nodepool`` records, checked now and written in the transaction
        that accepts the task creating the pool."""
        ...

    def edit_cluster_spec(self, cluster_id: str, edit: world.SpecEdit) -> world.Cluster:
        """Change the cluster's spec at once (what ACK changes without a task: tags and
        resource protection): ``edit`` gets the spec as stored and returns the new one, in
        one transaction that no other change of the spec interleaves with (an error it
        raises changes nothing); ``errors.ClusterNotFound``."""
        ...

    def shown_at_once(
        self,
        cluster_id: str,
        *,
        cluster_state: str | None = None,
        nodepool_states: Mapping[str, str] | None = None,
    ) -> store.Accepted:
        """The states ACK shows as soon as it accepts a task (a pool ``removing``, a
        cluster ``updating``), written in the transaction that accepts it: a client polling
        right after the answer never sees the state from before the task."""
        ...

    def register_nodepool(
        self, cluster_id: str, nodepool_id: str, spec: world.NodePoolSpec
    ) -> world.NodePool:
        """Record the pool (state ``active``, desired size 0); idempotent on the id."""
        ...
