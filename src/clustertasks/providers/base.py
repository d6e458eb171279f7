"""The interface between operations and the cloud they act on.

Reads are synchronous (they are quick lookups, used by the service to validate a request
before any task exists). Actions are ``async`` because real clouds make you wait; each one
that creates or changes something takes an idempotency ``key`` (derived from task id +
stage + item) and, called again with the same key, returns what the first call made
instead of making it twice. That is what lets a stage be re-run after a crash.

Failures are raised as ``clustertasks.errors`` classes: ``errors.PermanentError``
subclasses stop the task with their code; ``errors.TemporaryError`` ones are retried.

A provider knows which task is calling it, without an argument on every method: the engine
sets :data:`CURRENT_CALL` around each stage (:func:`calling_as`), and a stage working on
one instance of its task narrows it with :func:`for_instance`. The simulated cloud uses it
to make a task's waits follow the emulator's clock and to match fault rules.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
from collections.abc import Iterator, Sequence
from typing import Protocol

from clustertasks.domain import emulator, workloads, world


@dataclasses.dataclass(frozen=True, slots=True)
class TaskCall:
    """On whose behalf a provider call is made."""

    task_id: str
    task_type: str
    stage: str
    instance_index: int | None = None
    """The 1-based number, within the task, of the instance the call works on (None when
    the call is not about one of the task's instances)."""


CURRENT_CALL: contextvars.ContextVar[TaskCall | None] = contextvars.ContextVar(
    "clustertasks_provider_call", default=None
)
"""Set by the engine around each stage; asyncio tasks and worker threads started inside
inherit it."""


def current_call() -> TaskCall | None:
    return CURRENT_CALL.get()


@contextlib.contextmanager
def calling_as(call: TaskCall) -> Iterator[None]:
    """Provider calls made inside are made by ``call``'s task and stage."""
    token = CURRENT_CALL.set(call)
    try:
        yield
    finally:
        CURRENT_CALL.reset(token)


@contextlib.contextmanager
def for_instance(index: int) -> Iterator[None]:
    """Provider calls made inside work on the task's ``index``-th instance (1-based).

    Operations number instances the same way on every run: the n-th instance a task asks
    for, or the n-th node or instance of its request. Outside a task it changes nothing.
    """
    call = CURRENT_CALL.get()
    if call is None:
        yield
        return
    token = CURRENT_CALL.set(dataclasses.replace(call, instance_index=index))
    try:
        yield
    finally:
        CURRENT_CALL.reset(token)


FAULT_OPERATIONS = (
    "create_cluster",
    "provision_control_plane",
    "set_cluster_state",
    "delete_cluster",
    "create_nodepool",
    "update_nodepool",
    "delete_nodepool",
    "create_instance",
    "wait_instance_running",
    "join_node",
    "update_node",
    "release_instance",
    "set_schedulable",
    "evict_pod",
    "upgrade_node",
    "repair_node",
    "upgrade_control_plane",
    "set_pool_version",
    "remove_node",
    "attach_instance",
)
"""The provider actions a fault rule may name (``match.operation``): the methods of
:class:`CloudProvider` that act on the cloud for a task."""

NODE_OPERATIONS = frozenset(
    {
        "join_node",
        "attach_instance",
        "update_node",
        "set_schedulable",
        "evict_pod",
        "upgrade_node",
        "repair_node",
    }
)
"""Actions that leave a node behind them: the ones a ``node_not_ready`` effect applies to."""


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

    # -- nodes and workloads: drain, removal, upgrade, repair, attach ----------------------

    async def wait(self, seconds: float) -> None:
        """Wait ``seconds`` of the cloud's time for the calling task (eviction retries and
        batch intervals are the cloud's time, not the wall clock's)."""
        ...

    def kubernetes_versions(self) -> Sequence[str]:
        """The versions the cloud offers, oldest first; the last is the default."""
        ...

    def get_node(self, cluster_id: str, node_name: str) -> world.Node:
        """Raises ``errors.NodeNotFound``."""
        ...

    def list_pods(
        self, cluster_id: str, node_name: str | None = None
    ) -> Sequence[workloads.Pod]: ...

    def list_workloads(self, cluster_id: str) -> Sequence[workloads.Workload]: ...

    def list_budgets(self, cluster_id: str) -> Sequence[workloads.DisruptionBudget]: ...

    def declare_workloads(
        self,
        cluster_id: str,
        declared: Sequence[workloads.Workload],
        budgets: Sequence[workloads.DisruptionBudget],
    ) -> None:
        """Create or replace workloads and budgets by name and schedule their pods."""
        ...

    def free_instances(self) -> Sequence[world.Instance]:
        """Running instances that belong to no pool and have no node."""
        ...

    async def set_schedulable(
        self, cluster_id: str, node_name: str, schedulable: bool
    ) -> world.Node:
        """Cordon (False) or uncordon (True) a node."""
        ...

    async def evict_pod(
        self, cluster_id: str, pod_name: str, node_name: str, *, force: bool = False
    ) -> workloads.Eviction:
        """One Eviction API call for a pod on ``node_name``: ``blocked`` (a PDB refuses;
        retry later), ``evicted`` (rescheduled or Pending) or ``gone`` (already moved).
        ``force`` deletes the pod whatever its budgets say."""
        ...

    async def upgrade_node(
        self,
        cluster_id: str,
        node_name: str,
        *,
        kubernetes_version: str,
        image_id: str = "",
        replace: bool = False,
    ) -> world.Node:
        """Upgrade in place (or replace the system disk) and wait for ``Ready``; raises
        ``errors.NodeUpgradeFailed`` naming the node. A node already there returns."""
        ...

    async def repair_node(self, cluster_id: str, node_name: str) -> world.Node:
        """Bring a ``NotReady`` node back to ``Ready``; ``errors.NodeRepairFailed``."""
        ...

    async def upgrade_control_plane(self, cluster_id: str, version: str) -> world.Cluster: ...

    async def set_pool_version(self, nodepool_id: str, version: str) -> None: ...

    async def remove_node(
        self, key: str, cluster_id: str, instance_id: str, *, release: bool
    ) -> None:
        """The instance's node leaves the cluster (its pods are rescheduled); the instance
        is released, or stays running as a free instance. Idempotent."""
        ...

    async def attach_instance(
        self, key: str, cluster_id: str, nodepool_id: str, instance_id: str
    ) -> world.Node:
        """A free instance joins the pool; ``errors.InstanceNotFound`` or
        ``errors.InstanceNotFree`` naming why it cannot."""
        ...

    async def create_free_instance(
        self, key: str, cluster_id: str, instance_type: str = ""
    ) -> world.Instance:
        """A running instance in the cluster's VPC, in no pool (to attach later)."""
        ...

    # -- emulator hooks: arranging a test world (a real cloud would refuse these) --------

    def set_node_status(self, cluster_id: str, node_name: str, status: str) -> world.Node:
        """Make a node ``NotReady`` (or another status), as a failing kubelet would."""
        ...

    def clock(self) -> emulator.ClockView:
        """The cloud's clock: its mode, speed, simulated time and pending waits."""
        ...

    def set_clock(self, mode: str, speed: float | None = None) -> emulator.ClockView:
        """Switch the clock's mode (and speed); simulated time goes on from where it is."""
        ...

    def advance_clock(self, seconds: float) -> emulator.ClockView:
        """Move a manual clock ``seconds`` forward; waits it passes complete.
        Raises ``errors.ClockNotManual`` in the other modes."""
        ...

    def task_polled(self, task_id: str) -> bool:
        """A client read the task (DescribeTaskInfo): a per-poll clock lets the task's
        pending waits complete. True when the task moves only so (a per-poll clock)."""
        ...

    def reload_emulator_state(self) -> None:
        """The database was emptied or replaced under the cloud (an emulator reset, a state
        import): read the clock again and start the probability draws afresh."""
        ...
