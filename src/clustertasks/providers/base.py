"""The cloud port: what a stage may ask of the cloud it acts on (:class:`CloudPort`).

Every method is ``async``: real clouds make you wait, and an implementation does its own
blocking work off the event loop, so a stage only ``await``s. Each action that creates
something or changes it in a way a repeat could double takes an idempotency ``key``
(derived from task id + stage + item) and, called again with the same key, returns what
the first call made instead of making it twice. Updates set absolute values (a state, a
size, a version), so repeating one is harmless and they take no key. That is what lets a
stage be re-run after a crash.

The synchronous reads and checks a request needs before any task exists are another,
smaller interface: ``providers.inventory.Inventory``. Controls only a simulated cloud has
(its clock, faults, workloads, stock) are in neither.

A cloud whose state lives in the task store's database may also offer
:class:`SettlesWithTask`: the states a task leaves its cluster and node pools in are then
written in the transaction that ends the task, so a client never reads a pool ``active``
while the task that made it so is still running (and finds the next request refused).
The engine asks :func:`settles_with_task`; for a cloud without it, a stage writes those
states through :meth:`CloudPort.update_nodepool` / :meth:`CloudPort.update_cluster`.

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
from collections.abc import Iterator, Mapping, Sequence
from typing import Protocol, cast, runtime_checkable

from clustertasks.domain import workloads, world
from clustertasks.storage import changes


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


class CloudPort(Protocol):
    """The actions a stage may ask of a cloud: 20 methods, all ``async``.

    Not-found conditions raise ``errors.ClusterNotFound``, ``errors.NodePoolNotFound``,
    ``errors.NodeNotFound`` or ``errors.InstanceNotFound`` (all ``errors.NotFound``).
    """

    # -- reads -----------------------------------------------------------------------------

    async def describe(self, cluster_id: str, nodepool_id: str | None = None) -> world.CloudView:
        """The cluster with its pools, instances and nodes; with ``nodepool_id``, only that
        pool (``errors.NodePoolNotFound`` if it does not exist) and its instances and nodes.
        A deleted cluster raises ``errors.ClusterNotFound``."""
        ...

    async def describe_node(self, cluster_id: str, node_name: str) -> world.NodeView:
        """A node of the cluster and the pods on it; ``errors.NodeNotFound``."""
        ...

    # -- clusters --------------------------------------------------------------------------

    async def create_cluster(
        self, key: str, cluster_id: str, spec: world.ClusterSpec
    ) -> world.Cluster:
        """Record the cluster under ``cluster_id`` (the id the request was answered with) in
        state ``initial``; a cluster already recorded under the id is returned unchanged."""
        ...

    async def provision_control_plane(self, key: str, cluster_id: str) -> world.Cluster:
        """Bring an ``initial`` cluster's managed control plane up (simulated minutes) and
        make it ``running``; a cluster in any other state is returned as it is."""
        ...

    async def update_cluster(
        self,
        cluster_id: str,
        *,
        state: str | None = None,
        kubernetes_version: str | None = None,
        edit: world.SpecEdit | None = None,
    ) -> world.Cluster:
        """Set the cluster's state (never ``deleted``: see :meth:`delete_cluster`), change
        its spec (``edit`` gets the spec as stored and returns the new one, applied so that
        no other change of the spec is lost), and/or upgrade its control plane to
        ``kubernetes_version`` and wait for it."""
        ...

    async def delete_cluster(self, key: str, cluster_id: str) -> None:
        """Mark the cluster ``deleted``; its pools and instances must already be gone
        (``errors.ResourceInUse``). Deleting a deleted cluster does nothing."""
        ...

    # -- node pools ------------------------------------------------------------------------

    async def create_nodepool(
        self, key: str, cluster_id: str, nodepool_id: str, spec: world.NodePoolSpec
    ) -> world.NodePool:
        """Record the pool under ``nodepool_id`` (state ``active``, desired size 0; scale it
        with instances); a pool already recorded under the id is returned unchanged."""
        ...

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
        """Change what is given: the pool's state, desired size, spec (ModifyClusterNodePool)
        and/or the Kubernetes version it gives new nodes."""
        ...

    async def delete_nodepool(self, key: str, cluster_id: str, nodepool_id: str) -> None:
        """Remove the pool; it must have no instances left (``errors.ResourceInUse``)."""
        ...

    # -- instances and nodes ---------------------------------------------------------------

    async def create_instance(self, key: str, cluster_id: str, nodepool_id: str) -> world.Instance:
        """Launch one ECS instance for the pool (status ``Pending``).

        Tries the pool's instance types in order, in each of its zones; raises
        ``errors.InstanceCreateFailed`` naming the types and zones when none has stock.
        """
        ...

    async def wait_instance_running(self, instance_id: str) -> world.Instance:
        """Wait for ``Pending`` → ``Starting`` → ``Running``; ``errors.InstanceBootFailed``."""
        ...

    async def join_node(self, key: str, instance_id: str) -> world.Node:
        """Bootstrap kubelet on a running instance; returns the ``Ready`` node."""
        ...

    async def release_instance(self, key: str, instance_id: str) -> None:
        """Remove the instance's node (if any) and release the instance. Idempotent."""
        ...

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

    async def update_node(
        self,
        cluster_id: str,
        node_name: str,
        *,
        labels: Sequence[world.Label] | None = None,
        taints: Sequence[world.Taint] | None = None,
        schedulable: bool | None = None,
    ) -> world.Node:
        """Replace the node's labels and taints (given together), and/or cordon
        (``schedulable=False``) or uncordon it."""
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

    # -- time ------------------------------------------------------------------------------

    async def wait(self, seconds: float) -> None:
        """Wait ``seconds`` of the cloud's time for the calling task (eviction retries and
        batch intervals are the cloud's time, not the wall clock's)."""
        ...


@runtime_checkable
class SettlesWithTask(Protocol):
    """A cloud kept in the task store's database: it writes states in a task's transaction."""

    def settling(
        self,
        cluster_id: str,
        *,
        cluster_state: str | None = None,
        nodepool_states: Mapping[str, str] | None = None,
    ) -> changes.Also:
        """What sets the cluster's and pools' states in the transaction it is given (the
        one that writes a task's final state); a pool or cluster gone by then is left
        alone. A pool's state ``deleted`` deletes it (see :meth:`deleting_nodepool`), and
        so does the cluster's (:meth:`deleting_cluster`). Raises
        ``errors.InvalidParameter`` for a state the cloud does not have."""
        ...

    async def deleting_cluster(self, key: str, cluster_id: str) -> None:
        """What :meth:`CloudPort.delete_cluster` checks, without deleting the cluster:
        settling it ``deleted`` does that with the task's end."""
        ...

    async def deleting_nodepool(self, key: str, cluster_id: str, nodepool_id: str) -> None:
        """What :meth:`CloudPort.delete_nodepool` checks and waits for, without deleting
        the pool: settling it ``deleted`` does that with the task's end."""
        ...


def settles_with_task(provider: CloudPort) -> SettlesWithTask | None:
    """``provider`` if it can write states with a task's end, else None.

    Decided once per class: the engine asks for every stage it runs, and ``isinstance``
    against a protocol looks up each of its members every time (a noticeable share of a
    no-op stage's CPU)."""
    kind = type(provider)
    settles = _SETTLES_WITH_TASK.get(kind)
    if settles is None:
        settles = _SETTLES_WITH_TASK[kind] = isinstance(provider, SettlesWithTask)
    return cast(SettlesWithTask, provider) if settles else None


_SETTLES_WITH_TASK: dict[type, bool] = {}
