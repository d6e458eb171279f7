"""Records of the cloud that operations act on: clusters, node pools, instances, nodes.

Pure data, like the task records. Providers return these; the API renders them with
``clustertasks.domain.world_wire`` into ACK's documents.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clustertasks import errors
from clustertasks.domain import workloads

# Cluster ``state`` values (reference/ack-api.md §6.1).
CLUSTER_STATES = frozenset(
    {
        "initial",
        "failed",
        "running",
        "updating",
        "upgrading",
        "migrating",
        "removing",
        "draining",
        "scaling",
        "inactive",
        "unavailable",
        "deleting",
        "deleted",
        "delete_failed",
        "waiting",
        "disconnected",
    }
)
# Node pool ``status.state`` values (reference/ack-api.md §6.2).
NODEPOOL_STATES = frozenset({"active", "scaling", "removing", "deleting", "updating", "failed"})
# ECS instance status.
INSTANCE_STATES = ("Pending", "Starting", "Running", "Stopping", "Stopped", "Released")
NODE_STATUSES = frozenset({"Ready", "NotReady", "Unknown", "Offline"})


@dataclass(frozen=True, slots=True)
class Label:
    key: str
    value: str = ""


@dataclass(frozen=True, slots=True)
class Taint:
    key: str
    value: str = ""
    effect: str = "NoSchedule"


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    """What CreateCluster asked for, normalised."""

    name: str
    region_id: str
    kubernetes_version: str
    cluster_type: str = "ManagedKubernetes"
    cluster_spec: str = "ack.pro.small"
    profile: str = "Default"
    vpc_id: str = ""
    vswitch_ids: Sequence[str] = ()
    container_cidr: str = "172.20.0.0/16"
    service_cidr: str = "172.21.0.0/20"
    tags: Sequence[Label] = ()
    deletion_protection: bool = False
    resource_group_id: str = ""
    timezone: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Accepted settings clustertasks stores and echoes but does not act on (maintenance
    window, operation policy, endpoints, security group, ...)."""


SpecEdit = Callable[[ClusterSpec], ClusterSpec]
"""A change of a cluster's spec: given the spec as stored, the spec to store. Applied by
the store under the cluster's row lock, so two edits never lose each other's change."""


@dataclass(frozen=True, slots=True)
class Cluster:
    cluster_id: str
    spec: ClusterSpec
    state: str
    current_version: str
    created_us: int
    updated_us: int
    node_quota: int
    """Most worker nodes the cluster may have (QuotaExceeded.Node beyond it)."""
    vpc_id: str
    security_group_id: str
    size: int = 0
    """Number of nodes (ACK counts every node of the cluster)."""


@dataclass(frozen=True, slots=True)
class NodePoolSpec:
    """What CreateClusterNodePool (or CreateCluster's ``nodepools[]``) asked for, normalised."""

    name: str
    instance_types: Sequence[str]
    vswitch_ids: Sequence[str]
    desired_size: int = 0
    system_disk_category: str = "cloud_essd"
    system_disk_size: int = 120
    image_id: str = ""
    image_type: str = "AliyunLinux3"
    instance_charge_type: str = "PostPaid"
    labels: Sequence[Label] = ()
    taints: Sequence[Taint] = ()
    runtime: str = "containerd"
    runtime_version: str = "1.6.36"
    unschedulable: bool = False
    type: str = "ess"
    is_default: bool = False
    extra: Mapping[str, Any] = field(default_factory=dict)
    """Accepted request sections clustertasks stores and echoes but does not act on."""


@dataclass(frozen=True, slots=True)
class NodePool:
    nodepool_id: str
    cluster_id: str
    spec: NodePoolSpec
    state: str
    desired_size: int
    kubernetes_version: str
    scaling_group_id: str
    created_us: int
    updated_us: int


@dataclass(frozen=True, slots=True)
class Instance:
    """An ECS instance. ``nodepool_id`` is empty for a free instance (detached or legacy)."""

    instance_id: str
    cluster_id: str
    nodepool_id: str
    instance_type: str
    zone_id: str
    vswitch_id: str
    ip_address: str
    status: str
    created_us: int
    image_id: str = ""
    instance_charge_type: str = "PostPaid"


@dataclass(frozen=True, slots=True)
class Node:
    """A Kubernetes node, named ``<region>.<ip>``, backed by one instance."""

    node_name: str
    cluster_id: str
    nodepool_id: str
    instance_id: str
    node_status: str
    schedulable: bool
    kubelet_version: str
    labels: Sequence[Label] = ()
    taints: Sequence[Taint] = ()
    created_us: int = 0


@dataclass(frozen=True, slots=True)
class Usage:
    """A cluster and the nodes its quota counts: its instances not released, or the sum
    of its pools' desired sizes when that is more (a scale-out raises the desired size
    before its instances exist, and those nodes are as good as taken)."""

    cluster: Cluster
    counted: int
    nodepool: NodePool | None = None
    """The pool asked about, when the cluster has it (not deleted)."""

    def check_quota(self, adding: int) -> None:
        """Raises ``errors.QuotaExceeded`` if ``adding`` more nodes would pass the quota."""
        quota = self.cluster.node_quota
        if self.counted + adding > quota:
            raise errors.QuotaExceeded(
                f"the cluster {self.cluster.cluster_id} may have at most {quota} nodes: "
                f"it has {self.counted} and {adding} more were asked for"
            )


@dataclass(frozen=True, slots=True)
class CloudView:
    """What a stage sees of a cluster at one moment: the cluster, its pools not deleted
    (oldest first), its instances not released (oldest first) and its nodes. Narrowed to one
    pool, ``nodepools`` holds that pool and the instances and nodes are the pool's."""

    cluster: Cluster
    nodepools: Sequence[NodePool] = ()
    instances: Sequence[Instance] = ()
    nodes: Sequence[Node] = ()

    @property
    def nodepool(self) -> NodePool:
        """The one pool of a view narrowed to a pool."""
        (pool,) = self.nodepools
        return pool


@dataclass(frozen=True, slots=True)
class NodeView:
    """A node and the pods on it."""

    node: Node
    pods: Sequence[workloads.Pod] = ()
