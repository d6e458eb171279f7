"""WorkloadStore: pods, Deployments, DaemonSets and PodDisruptionBudgets of the simulated
cloud, and the node changes that move pods (cordon, eviction, removal).

Every change that moves pods runs in one write transaction that first locks the cluster's
row, so evictions in one cluster are serialised: two drains can never both take a
budget's last allowed disruption (SQLite serialises writers anyway; PostgreSQL needs the
``FOR UPDATE``).

Scheduling: a pod fits a node that is ``Ready``, schedulable and has the CPU it requests
left; among those the one with the most room wins (``domain.workloads.choose_node``). A
node's CPU comes from its instance type through ``capacity_of``, which the provider passes
in because only it knows the catalogue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from clustertasks import errors
from clustertasks.domain import workloads, world
from clustertasks.emulator import world_rows
from clustertasks.emulator import world_store as world_storage
from clustertasks.storage import prepared, schema, transactions

C = schema.sim_clusters
P = schema.sim_nodepools
VM = schema.sim_instances
N = schema.sim_nodes
W = schema.sim_workloads
POD = schema.sim_pods
PDB = schema.sim_pdbs

Capacity = Callable[[str], int]
"""CPU millicores of an instance type."""

# Asked after every node join: compiled once, run on the driver (storage/prepared.py).
_ANY_WORKLOAD = prepared.Prepared(
    sa.select(W.c.name)
    .where(W.c.cluster_id == sa.bindparam("p_cluster_id", type_=W.c.cluster_id.type))
    .limit(1)
)


class WorkloadStore:
    def __init__(self, engine: sa.Engine) -> None:
        self._tx = transactions.Transactions(engine, "the simulated cloud's store")

    @classmethod
    def beside(cls, world_store: world_storage.WorldStore) -> WorkloadStore:
        """On the same engine (and connection pool) as ``world_store``."""
        return cls(world_store._tx.engine)

    # -- declaring and reading ---------------------------------------------------------------

    def declare(
        self,
        cluster_id: str,
        declared: Sequence[workloads.Workload],
        budgets: Sequence[workloads.DisruptionBudget],
        capacity_of: Capacity,
        now_us: int,
    ) -> None:
        """Create or replace the workloads and budgets by name, then schedule: Deployments
        get pods ``<name>-<n>`` up to their replicas (extra ones go), DaemonSets one pod
        per node."""
        with self._tx.write() as conn:
            _lock_cluster(conn, cluster_id)
            for item in declared:
                row = {
                    "kind": item.kind,
                    "replicas": item.replicas,
                    "cpu_millis": item.cpu_millis,
                    "labels": dict(item.labels),
                    "updated_us": now_us,
                }
                where = (W.c.cluster_id == cluster_id, W.c.name == item.name)
                if conn.execute(sa.update(W).where(*where).values(**row)).rowcount == 0:
                    conn.execute(
                        sa.insert(W).values(
                            cluster_id=cluster_id, name=item.name, created_us=now_us, **row
                        )
                    )
                conn.execute(
                    sa.update(POD)
                    .where(POD.c.cluster_id == cluster_id, POD.c.workload == item.name)
                    .values(cpu_millis=item.cpu_millis, labels=dict(item.labels))
                )
            for budget in budgets:
                conn.execute(
                    sa.delete(PDB).where(PDB.c.cluster_id == cluster_id, PDB.c.name == budget.name)
                )
                conn.execute(
                    sa.insert(PDB).values(
                        cluster_id=cluster_id,
                        name=budget.name,
                        selector=dict(budget.selector),
                        min_available=budget.min_available,
                        max_unavailable=budget.max_unavailable,
                        created_us=now_us,
                    )
                )
            _reconcile(conn, cluster_id, capacity_of, now_us)

    def reconcile(self, cluster_id: str, capacity_of: Capacity, now_us: int) -> None:
        """Bring pods in line with nodes: DaemonSet pods on every node, Pending pods placed
        where they now fit, pods of nodes that left rescheduled."""
        with self._tx.read() as conn:
            declared = _ANY_WORKLOAD.send(conn, {"p_cluster_id": cluster_id}).first()
        if declared is None:
            return  # nothing to schedule: no lock, no writes (joins call this every time)
        with self._tx.write() as conn:
            _lock_cluster(conn, cluster_id)
            _reconcile(conn, cluster_id, capacity_of, now_us)

    def list_workloads(self, cluster_id: str) -> list[workloads.Workload]:
        with self._tx.read() as conn:
            rows = conn.execute(
                sa.select(W).where(W.c.cluster_id == cluster_id).order_by(W.c.name)
            ).all()
        return [_workload(r._mapping) for r in rows]

    def list_budgets(self, cluster_id: str) -> list[workloads.DisruptionBudget]:
        with self._tx.read() as conn:
            return _budgets(conn, cluster_id)

    def list_pods(self, cluster_id: str, node_name: str | None = None) -> list[workloads.Pod]:
        with self._tx.read() as conn:
            return _pods(conn, cluster_id, node_name)

    # -- evictions ---------------------------------------------------------------------------

    def evict(
        self,
        cluster_id: str,
        pod_name: str,
        from_node: str,
        capacity_of: Capacity,
        now_us: int,
        *,
        force: bool = False,
    ) -> workloads.Eviction:
        """Evict the pod from ``from_node`` as the Eviction API does: refused when a budget
        covering it allows no disruption (unless ``force``: the pod is deleted anyway);
        otherwise its replacement is scheduled on another node with room, or is Pending."""
        with self._tx.write() as conn:
            _lock_cluster(conn, cluster_id)
            pods = _pods(conn, cluster_id)
            pod = next((p for p in pods if p.name == pod_name), None)
            if pod is None or pod.node_name != from_node:
                return workloads.Eviction(pod_name, "gone")
            if not force:
                blocking = workloads.blocking_budget(pod, _budgets(conn, cluster_id), pods)
                if blocking is not None:
                    return workloads.Eviction(pod_name, "blocked", blocked_by=blocking.name)
            free = _free_cpu(conn, cluster_id, capacity_of, exclude={from_node})
            target = workloads.choose_node(pod.cpu_millis, free)
            _move(conn, pod, target, now_us)
            return workloads.Eviction(pod_name, "evicted", to_node=target)

    # -- nodes -------------------------------------------------------------------------------

    def detach_node(
        self, cluster_id: str, instance_id: str, capacity_of: Capacity, now_us: int
    ) -> world.Node | None:
        """The instance's node leaves the cluster: its DaemonSet pods go with it, any other
        pod still on it is rescheduled (or Pending). Returns the node that left, ``None``
        when it had already gone."""
        with self._tx.write() as conn:
            _lock_cluster(conn, cluster_id)
            row = conn.execute(sa.select(N).where(N.c.instance_id == instance_id)).one_or_none()
            if row is None:
                return None
            node = world_rows.node_from_row(row._mapping)
            conn.execute(sa.delete(N).where(N.c.instance_id == instance_id))
            _reconcile(conn, cluster_id, capacity_of, now_us)
            return node

    def free_instance(self, instance_id: str, now_us: int) -> world.Instance:
        """The instance leaves its pool and stays running: a free ECS instance."""
        with self._tx.write() as conn:
            conn.execute(
                sa.update(VM)
                .where(VM.c.instance_id == instance_id, VM.c.status != world_storage.RELEASED)
                .values(nodepool_id="", updated_us=now_us)
            )
            return world_storage._get_instance(conn, instance_id)

    def claim_instance(
        self, instance_id: str, cluster_id: str, nodepool_id: str, now_us: int
    ) -> world.Instance:
        """Give a free instance to the pool. Claiming one the pool already has returns it;
        raises ``errors.InstanceNotFound`` or ``errors.InstanceNotFree`` naming why not."""
        with self._tx.write() as conn:
            row = conn.execute(sa.select(VM).where(VM.c.instance_id == instance_id)).one_or_none()
            if row is None or row.status == world_storage.RELEASED:
                raise errors.InstanceNotFound(f"the instance {instance_id} does not exist")
            instance = world_rows.instance_from_row(row._mapping)
            if instance.nodepool_id == nodepool_id and instance.cluster_id == cluster_id:
                return instance
            node = conn.execute(
                sa.select(N.c.node_name, N.c.cluster_id).where(N.c.instance_id == instance_id)
            ).one_or_none()
            if instance.nodepool_id or node is not None:
                owner = node.cluster_id if node is not None else instance.cluster_id
                where = f" (node pool {instance.nodepool_id})" if instance.nodepool_id else ""
                raise errors.InstanceNotFree(
                    f"the instance {instance_id} is already in the cluster {owner}{where}"
                )
            if instance.status != "Running":
                raise errors.InstanceNotFree(
                    f"the instance {instance_id} is {instance.status}: only a Running free "
                    "instance can be attached"
                )
            conn.execute(
                sa.update(VM)
                .where(VM.c.instance_id == instance_id)
                .values(cluster_id=cluster_id, nodepool_id=nodepool_id, updated_us=now_us)
            )
            return world_storage._get_instance(conn, instance_id)

    def free_instances(self) -> list[world.Instance]:
        """Running instances in no pool and without a node, oldest first."""
        has_node = sa.select(N.c.instance_id).where(N.c.instance_id == VM.c.instance_id)
        with self._tx.read() as conn:
            rows = conn.execute(
                sa.select(VM)
                .where(VM.c.nodepool_id == "", VM.c.status == "Running", ~has_node.exists())
                .order_by(VM.c.created_us, VM.c.instance_id)
            ).all()
        return [world_rows.instance_from_row(r._mapping) for r in rows]

    def set_image(self, instance_id: str, image_id: str, now_us: int) -> None:
        with self._tx.write() as conn:
            conn.execute(
                sa.update(VM)
                .where(VM.c.instance_id == instance_id)
                .values(image_id=image_id, updated_us=now_us)
            )

    def set_cluster_version(self, cluster_id: str, version: str, now_us: int) -> None:
        with self._tx.write() as conn:
            conn.execute(
                sa.update(C)
                .where(C.c.cluster_id == cluster_id)
                .values(current_version=version, updated_us=now_us)
            )

    def set_pool_version(self, nodepool_id: str, version: str, now_us: int) -> None:
        with self._tx.write() as conn:
            conn.execute(
                sa.update(P)
                .where(P.c.nodepool_id == nodepool_id)
                .values(kubernetes_version=version, updated_us=now_us)
            )


# -- inside a transaction ------------------------------------------------------------------------


def _lock_cluster(conn: sa.Connection, cluster_id: str) -> None:
    found = conn.execute(
        sa.select(C.c.cluster_id)
        .where(C.c.cluster_id == cluster_id, C.c.state != "deleted")
        .with_for_update()
    ).one_or_none()
    if found is None:
        raise errors.ClusterNotFound(cluster_id)


def _pods(
    conn: sa.Connection, cluster_id: str, node_name: str | None = None
) -> list[workloads.Pod]:
    where = [POD.c.cluster_id == cluster_id]
    if node_name is not None:
        where.append(POD.c.node_name == node_name)
    rows = conn.execute(sa.select(POD).where(*where).order_by(POD.c.name)).all()
    return [_pod(r._mapping) for r in rows]


def _budgets(conn: sa.Connection, cluster_id: str) -> list[workloads.DisruptionBudget]:
    rows = conn.execute(
        sa.select(PDB).where(PDB.c.cluster_id == cluster_id).order_by(PDB.c.name)
    ).all()
    return [
        workloads.DisruptionBudget(
            cluster_id=r.cluster_id,
            name=r.name,
            selector={str(k): str(v) for k, v in dict(r.selector).items()},
            min_available=r.min_available,
            max_unavailable=r.max_unavailable,
        )
        for r in rows
    ]


def _nodes(conn: sa.Connection, cluster_id: str) -> list[tuple[str, bool, str]]:
    """(node name, accepts new pods, instance type) of every node of the cluster."""
    rows = conn.execute(
        sa.select(N.c.node_name, N.c.node_status, N.c.schedulable, VM.c.instance_type)
        .join(VM, VM.c.instance_id == N.c.instance_id)
        .where(N.c.cluster_id == cluster_id)
        .order_by(N.c.node_name)
    ).all()
    return [
        (r.node_name, r.node_status == "Ready" and bool(r.schedulable), r.instance_type)
        for r in rows
    ]


def _free_cpu(
    conn: sa.Connection,
    cluster_id: str,
    capacity_of: Capacity,
    *,
    exclude: Iterable[str] = (),
) -> dict[str, int]:
    """CPU left on each node that accepts new pods."""
    skip = set(exclude)
    free = {
        name: capacity_of(instance_type)
        for name, accepts, instance_type in _nodes(conn, cluster_id)
        if accepts and name not in skip
    }
    for pod in _pods(conn, cluster_id):
        if pod.node_name in free:
            free[pod.node_name] -= pod.cpu_millis
    return free


def _move(conn: sa.Connection, pod: workloads.Pod, node_name: str, now_us: int) -> None:
    conn.execute(
        sa.update(POD)
        .where(POD.c.cluster_id == pod.cluster_id, POD.c.name == pod.name)
        .values(
            node_name=node_name,
            phase=workloads.RUNNING if node_name else workloads.PENDING,
            updated_us=now_us,
        )
    )


def _reconcile(conn: sa.Connection, cluster_id: str, capacity_of: Capacity, now_us: int) -> None:
    nodes = _nodes(conn, cluster_id)
    names = {name for name, _, _ in nodes}
    declared = [
        _workload(r._mapping)
        for r in conn.execute(sa.select(W).where(W.c.cluster_id == cluster_id)).all()
    ]
    pods = {pod.name: pod for pod in _pods(conn, cluster_id)}
    wanted: dict[str, tuple[workloads.Workload, str]] = {}
    for item in declared:
        if item.kind == workloads.DAEMONSET:
            # A DaemonSet pod is bound to its node: it tolerates cordons and never moves.
            for name in names:
                wanted[f"{item.name}-{name}"] = (item, name)
        else:
            for index in range(item.replicas):
                wanted[f"{item.name}-{index}"] = (item, "")
    for name in pods:
        if name not in wanted:
            conn.execute(sa.delete(POD).where(POD.c.cluster_id == cluster_id, POD.c.name == name))
    for name, (item, bound) in wanted.items():
        if name not in pods:
            conn.execute(
                sa.insert(POD).values(
                    cluster_id=cluster_id,
                    name=name,
                    workload=item.name,
                    kind=item.kind,
                    node_name=bound,
                    phase=workloads.RUNNING if bound else workloads.PENDING,
                    cpu_millis=item.cpu_millis,
                    labels=dict(item.labels),
                    created_us=now_us,
                    updated_us=now_us,
                )
            )
        elif pods[name].node_name and pods[name].node_name not in names:
            _move(conn, pods[name], "", now_us)  # its node left: the pod needs a new one
    free = _free_cpu(conn, cluster_id, capacity_of)
    for pod in _pods(conn, cluster_id):
        if pod.node_name:
            continue
        target = workloads.choose_node(pod.cpu_millis, free)
        if target:
            free[target] -= pod.cpu_millis
            _move(conn, pod, target, now_us)


# -- rows <-> records --------------------------------------------------------------------------


def _labels(data: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in dict(data or {}).items()}


def _workload(row: sa.RowMapping) -> workloads.Workload:
    return workloads.Workload(
        cluster_id=row["cluster_id"],
        name=row["name"],
        kind=row["kind"],
        replicas=int(row["replicas"]),
        cpu_millis=int(row["cpu_millis"]),
        labels=_labels(row["labels"]),
    )


def _pod(row: sa.RowMapping) -> workloads.Pod:
    return workloads.Pod(
        cluster_id=row["cluster_id"],
        name=row["name"],
        workload=row["workload"],
        kind=row["kind"],
        node_name=row["node_name"],
        phase=row["phase"],
        cpu_millis=int(row["cpu_millis"]),
        labels=_labels(row["labels"]),
    )
