"""WorldStore: the simulated cloud's clusters, node pools, instances, nodes and stock.

Synchronous and short-transactioned like the TaskStore, on the same engine. Rows load into
the frozen records of ``clustertasks.domain.world``. Methods that create a row take the
caller's idempotency key and, when a row with that key exists, return it instead: on SQLite
the check and the insert share one locked transaction; on PostgreSQL a concurrent twin
loses on the unique key and the loser returns the winner's row.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from clustertasks import errors
from clustertasks.domain import specs, world
from clustertasks.emulator import fault_store as faults
from clustertasks.emulator import world_rows
from clustertasks.storage import dialects, prepared, schema, store, transactions

C = schema.sim_clusters
P = schema.sim_nodepools
VM = schema.sim_instances
N = schema.sim_nodes
STOCK = schema.sim_stock

RELEASED = "Released"
# A lost race on a unique key is retried this often before we call it a storage failure;
# one retry is enough unless a constraint is broken for another reason.
_ATTEMPTS = 4

_SIZE = (
    sa.select(sa.func.count())
    .select_from(N)
    .where(N.c.cluster_id == C.c.cluster_id)
    .correlate(C)
    .scalar_subquery()
    .label("size")
)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where an instance could go: one instance type in the zone of one vSwitch."""

    instance_type: str
    zone_id: str
    vswitch_id: str


@dataclass(frozen=True, slots=True)
class Launch:
    """One instance to create; everything but the placement and address is decided."""

    key: str
    instance_id: str
    cluster_id: str
    nodepool_id: str
    vpc_id: str
    placements: Sequence[Placement]
    """Tried in order; the first with stock left wins."""
    default_stock: int
    """Stock of a (type, zone) nobody has used or set yet."""
    choose_address: Callable[[AbstractSet[str]], str]
    """Picks a free private address given those the VPC has already handed out."""
    image_id: str = ""
    instance_charge_type: str = "PostPaid"


class WorldStore:
    def __init__(self, engine: sa.Engine) -> None:
        self._tx = transactions.Transactions(engine, "the simulated cloud's store")

    def fault_store(self) -> faults.FaultStore:
        """The emulator's fault rules, on the same database."""
        return faults.FaultStore(self._tx.engine)

    # -- clusters ----------------------------------------------------------------------------

    def add_cluster(self, cluster: world.Cluster, key: str | None = None) -> world.Cluster:
        """Insert ``cluster`` unless one with its id (or made with ``key``) exists; return the
        one stored."""
        row = _cluster_row(cluster, key)
        same = C.c.cluster_id == cluster.cluster_id
        if key is not None:
            same = sa.or_(same, C.c.idempotency_key == key)
        return world_rows.cluster_from_row(
            self._insert_once(C, row, sa.select(C, _SIZE).where(same))
        )

    def check_deletable(self, cluster_id: str) -> None:
        """What :meth:`delete_cluster` checks, without deleting."""
        with self._tx.read() as conn:
            _deletable(conn, cluster_id)

    def get_cluster(self, cluster_id: str) -> world.Cluster:
        """Raises ``errors.ClusterNotFound``, also for a deleted cluster."""
        with self._tx.read() as conn:
            return self._live_cluster(conn, cluster_id)

    def list_clusters(self) -> list[world.Cluster]:
        """Clusters not deleted, newest first."""
        with self._tx.read() as conn:
            rows = conn.execute(
                sa.select(C, _SIZE)
                .where(C.c.state != "deleted")
                .order_by(C.c.created_us.desc(), C.c.cluster_id.desc())
            ).all()
        return [world_rows.cluster_from_row(r._mapping) for r in rows]

    def set_cluster_state(
        self, cluster_id: str, state: str, now_us: int, *, from_state: str | None = None
    ) -> world.Cluster:
        """Set the state (only if it is ``from_state``, when given); return the cluster."""
        where = [C.c.cluster_id == cluster_id]
        if from_state is not None:
            where.append(C.c.state == from_state)
        with self._tx.write() as conn:
            self._live_cluster(conn, cluster_id)
            conn.execute(sa.update(C).where(*where).values(state=state, updated_us=now_us))
            return self._live_cluster(conn, cluster_id)

    def edit_cluster_spec(
        self, cluster_id: str, edit: world.SpecEdit, now_us: int
    ) -> world.Cluster:
        """Store ``edit(spec)`` (and the name kept beside it); return the cluster. The row
        is locked from the read to the write (SQLite's one writer holds the database), so
        concurrent edits (a tag request, an add-on task) apply one after the other."""
        with self._tx.write() as conn:
            stored = conn.execute(
                sa.select(C.c.spec)
                .where(C.c.cluster_id == cluster_id, C.c.state != "deleted")
                .with_for_update()
            ).one_or_none()
            if stored is None:
                raise errors.ClusterNotFound(cluster_id)
            spec = edit(specs.cluster_spec(stored.spec))
            conn.execute(
                sa.update(C)
                .where(C.c.cluster_id == cluster_id)
                .values(spec=world_rows.plain(spec), name=spec.name, updated_us=now_us)
            )
            return self._live_cluster(conn, cluster_id)

    def delete_cluster(self, cluster_id: str, now_us: int) -> None:
        """Mark the cluster ``deleted``; a no-op when it already is.

        Raises ``errors.ResourceInUse`` naming the pools or instances it still has.
        """
        with self._tx.write() as conn:
            if not _deletable(conn, cluster_id):
                return
            conn.execute(
                sa.update(C)
                .where(C.c.cluster_id == cluster_id)
                .values(state="deleted", updated_us=now_us)
            )

    # -- node pools --------------------------------------------------------------------------

    def add_nodepool(self, pool: world.NodePool, key: str | None = None) -> world.NodePool:
        """Insert ``pool`` unless one with its id (or made with ``key``) exists; return the
        one stored."""
        row = _nodepool_row(pool, key)
        same = P.c.nodepool_id == pool.nodepool_id
        if key is not None:
            same = sa.or_(same, P.c.idempotency_key == key)
        return world_rows.nodepool_from_row(self._insert_once(P, row, sa.select(P).where(same)))

    def get_nodepool(self, cluster_id: str, nodepool_id: str) -> world.NodePool:
        """Raises ``errors.ClusterNotFound`` or ``errors.NodePoolNotFound`` (also if deleted)."""
        with self._tx.read() as conn:
            return self._live_nodepool(conn, cluster_id, nodepool_id)

    def list_nodepools(self, cluster_id: str) -> list[world.NodePool]:
        """The cluster's pools not deleted, oldest first."""
        with self._tx.read() as conn:
            self._live_cluster(conn, cluster_id)
            return _nodepools(conn, cluster_id)

    def usage(self, cluster_id: str, nodepool_id: str | None = None) -> world.Usage:
        """The cluster, the nodes its quota counts (``world.Usage``) and its pool
        ``nodepool_id`` if it has it, in one read transaction; ``errors.ClusterNotFound``."""
        with self._tx.read() as conn:
            cluster = self._live_cluster(conn, cluster_id)
            pools = _nodepools(conn, cluster_id)
            instances = _count_instances(conn, cluster_id)
        counted = max(instances, sum(pool.desired_size for pool in pools))
        asked = next((p for p in pools if p.nodepool_id == nodepool_id), None)
        return world.Usage(cluster, counted, asked)

    def view(self, cluster_id: str, nodepool_id: str | None = None) -> world.CloudView:
        """The cluster with its pools (or only ``nodepool_id``), their instances not
        released and their nodes, in one read transaction; raises as :meth:`get_nodepool`."""
        with self._tx.read() as conn:
            cluster = self._live_cluster(conn, cluster_id)
            if nodepool_id is None:
                pools = _nodepools(conn, cluster_id)
            else:
                pools = [self._live_pair(conn, cluster_id, nodepool_id)[1]]
            return world.CloudView(
                cluster=cluster,
                nodepools=tuple(pools),
                instances=tuple(_instances(conn, cluster_id, nodepool_id)),
                nodes=tuple(_nodes(conn, cluster_id, nodepool_id)),
            )

    def update_nodepool(
        self,
        cluster_id: str,
        nodepool_id: str,
        now_us: int,
        *,
        state: str | None = None,
        desired_size: int | None = None,
        spec: world.NodePoolSpec | None = None,
    ) -> world.NodePool:
        """Change what is given, leave the rest; returns the pool as stored."""
        values = _changes(updated_us=now_us, state=state, desired_size=desired_size)
        if spec is not None:
            values.update(spec=world_rows.plain(spec), name=spec.name)
        with self._tx.write() as conn:
            self._live_nodepool(conn, cluster_id, nodepool_id)
            _update(P, ("nodepool_id",), values).send(
                conn, {"p_where_nodepool_id": nodepool_id, **_params(values)}
            )
            return self._live_nodepool(conn, cluster_id, nodepool_id)

    def delete_nodepool(self, cluster_id: str, nodepool_id: str, now_us: int) -> None:
        """Mark the pool deleted; a no-op when it already is.

        Raises ``errors.ResourceInUse`` naming the instances it still has.
        """
        with self._tx.write() as conn:
            self._live_cluster(conn, cluster_id)
            deleted = conn.execute(
                sa.select(P.c.deleted_us).where(
                    P.c.cluster_id == cluster_id, P.c.nodepool_id == nodepool_id
                )
            ).one_or_none()
            if deleted is None:
                raise errors.NodePoolNotFound(nodepool_id, cluster_id)
            if deleted.deleted_us is not None:
                return
            live = sa.select(VM.c.instance_id).where(
                VM.c.nodepool_id == nodepool_id, VM.c.status != RELEASED
            )
            owner = f"the node pool {nodepool_id}"
            _refuse_dependents(conn, owner, "instances", live.order_by(VM.c.created_us))
            conn.execute(
                sa.update(P)
                .where(P.c.nodepool_id == nodepool_id)
                .values(deleted_us=now_us, updated_us=now_us)
            )

    # -- instances ---------------------------------------------------------------------------

    def launch_in_pool(
        self,
        key: str,
        cluster_id: str,
        nodepool_id: str,
        plan: Callable[[world.Cluster, world.NodePool], Launch],
        now_us: int,
    ) -> world.Instance | None:
        """:meth:`launch_instance` of what ``plan`` makes of the cluster and pool, read in
        the same transaction (which first looks for an instance made with ``key``, and
        returns it whatever became of the pool). Raises ``errors.ClusterNotFound`` or
        ``errors.NodePoolNotFound``."""
        for _ in range(_ATTEMPTS):
            try:
                with self._tx.write() as conn:
                    existing = _INSTANCE_BY_KEY.send(conn, {"p_key": key}).mapping()
                    if existing is not None:
                        return world_rows.instance_from_row(existing)
                    launch = plan(*self._live_pair(conn, cluster_id, nodepool_id))
                    return _launch(conn, launch, now_us)
            except errors.RowConflict:
                continue  # a concurrent twin won the key or the address; look again
        raise errors.StorageError(f"could not record an instance made with {key}")

    def launch_instance(self, launch: Launch, now_us: int) -> world.Instance | None:
        """Create the instance in the first placement with stock, taking one from that stock.

        Returns the instance made earlier with ``launch.key`` if there is one, and ``None``
        when no placement has stock left (nothing is written then).
        """
        find = {"p_key": launch.key}
        for _ in range(_ATTEMPTS):
            try:
                with self._tx.write() as conn:
                    existing = _INSTANCE_BY_KEY.send(conn, find).mapping()
                    if existing is not None:
                        return world_rows.instance_from_row(existing)
                    return _launch(conn, launch, now_us)
            except errors.RowConflict:
                continue  # a concurrent twin won the key or the address; look again
        raise errors.StorageError(f"could not record the instance {launch.instance_id}")

    def instance_by_key(self, key: str) -> world.Instance | None:
        with self._tx.read() as conn:
            row = _INSTANCE_BY_KEY.send(conn, {"p_key": key}).mapping()
        return None if row is None else world_rows.instance_from_row(row)

    def get_instance(self, instance_id: str) -> world.Instance:
        """Any instance, released ones included; raises ``errors.NotFound``."""
        with self._tx.read() as conn:
            return _get_instance(conn, instance_id)

    def list_instances(
        self, cluster_id: str, nodepool_id: str | None = None
    ) -> list[world.Instance]:
        """Instances not released, oldest first."""
        with self._tx.read() as conn:
            self._live_cluster(conn, cluster_id)
            return _instances(conn, cluster_id, nodepool_id)

    def count_all(self) -> dict[str, int]:
        """Clusters and node pools ever recorded, deleted ones included (id sequences)."""
        with self._tx.read() as conn:
            clusters = conn.execute(sa.select(sa.func.count()).select_from(C)).scalar_one()
            pools = conn.execute(sa.select(sa.func.count()).select_from(P)).scalar_one()
        return {"cluster": int(clusters), "nodepool": int(pools)}

    def count_instances(self, cluster_id: str) -> int:
        """Instances of the cluster not released."""
        with self._tx.read() as conn:
            return _count_instances(conn, cluster_id)

    def advance_instance(
        self, instance_id: str, from_status: str, to_status: str, now_us: int
    ) -> world.Instance:
        """Move the instance to ``to_status`` if it is in ``from_status``; return it as it is.

        Conditional, so two waiters racing through the same step move it once, and a
        release that happened meanwhile is never undone.
        """
        with self._tx.write() as conn:
            _ADVANCE_INSTANCE.send(
                conn,
                {
                    "p_instance_id": instance_id,
                    "p_from_status": from_status,
                    "p_to_status": to_status,
                    "p_now": now_us,
                },
            )
            return _get_instance(conn, instance_id)

    def boot_instance(
        self, instance_id: str, steps: Sequence[tuple[str, str]], now_us: Callable[[], int]
    ) -> world.Instance:
        """:meth:`advance_instance` through each (from, to) step in turn, in one transaction:
        a boot with nothing to wait between its steps. Raises ``errors.NotFound``."""
        with self._tx.write() as conn:
            instance = _get_instance(conn, instance_id)
            for from_status, to_status in steps:
                if instance.status == from_status:
                    _ADVANCE_INSTANCE.send(
                        conn,
                        {
                            "p_instance_id": instance_id,
                            "p_from_status": from_status,
                            "p_to_status": to_status,
                            "p_now": now_us(),
                        },
                    )
                    instance = _get_instance(conn, instance_id)
            return instance

    def stop_instance(self, instance_id: str, now_us: int) -> world.Instance:
        """First half of a release: the node leaves the cluster, the instance is ``Stopping``."""
        with self._tx.write() as conn:
            conn.execute(sa.delete(N).where(N.c.instance_id == instance_id))
            conn.execute(
                sa.update(VM)
                .where(VM.c.instance_id == instance_id, VM.c.status != RELEASED)
                .values(status="Stopping", updated_us=now_us)
            )
            return _get_instance(conn, instance_id)

    def release_instance(self, instance_id: str, now_us: int) -> world.Instance:
        """The instance becomes ``Released`` and its stock returns, once however often called."""
        with self._tx.write() as conn:
            conn.execute(sa.delete(N).where(N.c.instance_id == instance_id))
            released = conn.execute(
                sa.update(VM)
                .where(VM.c.instance_id == instance_id, VM.c.status != RELEASED)
                .values(status=RELEASED, updated_us=now_us, released_us=now_us)
                .returning(VM.c.instance_type, VM.c.zone_id)
            ).one_or_none()
            if released is not None:
                conn.execute(
                    sa.update(STOCK)
                    .where(
                        STOCK.c.instance_type == released.instance_type,
                        STOCK.c.zone_id == released.zone_id,
                    )
                    .values(available=STOCK.c.available + 1)
                )
            return _get_instance(conn, instance_id)

    # -- nodes -------------------------------------------------------------------------------

    def add_node(self, key: str, node: world.Node) -> world.Node:
        """Insert ``node`` unless its instance already has a node (or ``key`` made one)."""
        row = {
            "cluster_id": node.cluster_id,
            "node_name": node.node_name,
            "instance_id": node.instance_id,
            "nodepool_id": node.nodepool_id,
            "idempotency_key": key,
            "node_status": node.node_status,
            "schedulable": node.schedulable,
            "kubelet_version": node.kubelet_version,
            "labels": world_rows.plain(tuple(node.labels)),
            "taints": world_rows.plain(tuple(node.taints)),
            "created_us": node.created_us,
            "updated_us": node.created_us,
        }
        find = {"p_idempotency_key": key, "p_instance_id": node.instance_id}
        for _ in range(_ATTEMPTS):
            try:
                with self._tx.write() as conn:
                    existing = _NODE_BY_KEY_OR_INSTANCE.send(conn, find).mapping()
                    if existing is None:
                        _INSERT_NODE.send(conn, _params(row))
                        existing = _NODE_BY_KEY_OR_INSTANCE.send(conn, find).mapping()
                    if existing is None:
                        raise errors.StorageError(f"the node {node.node_name} vanished")
                    return world_rows.node_from_row(existing)
            except errors.RowConflict:
                continue  # a concurrent twin committed first; its row is found next time
        raise errors.StorageError(f"could not record a row in {N.name}")

    def joining(
        self, instance_id: str
    ) -> tuple[world.Instance, world.Node | None, world.Cluster | None, world.NodePool | None]:
        """What a node joining for the instance is made of, read together: the instance,
        its node (if it has one), and unless that node is ``Ready`` or the instance is not
        ``Running`` (nothing to join then), its cluster and its pool (None outside a pool).
        Raises ``errors.NotFound`` (the instance), ``errors.ClusterNotFound`` or
        ``errors.NodePoolNotFound``."""
        with self._tx.read() as conn:
            instance = _get_instance(conn, instance_id)
            row = _NODE_OF_INSTANCE.send(conn, {"p_instance_id": instance_id}).mapping()
            node = None if row is None else world_rows.node_from_row(row)
            if (node is not None and node.node_status == "Ready") or instance.status != "Running":
                return instance, node, None, None
            if instance.nodepool_id:
                cluster, pool = self._live_pair(conn, instance.cluster_id, instance.nodepool_id)
                return instance, node, cluster, pool
            return instance, node, self._live_cluster(conn, instance.cluster_id), None

    def node_of_instance(self, instance_id: str) -> world.Node | None:
        with self._tx.read() as conn:
            row = _NODE_OF_INSTANCE.send(conn, {"p_instance_id": instance_id}).mapping()
        return None if row is None else world_rows.node_from_row(row)

    def update_node(
        self,
        cluster_id: str,
        node_name: str,
        now_us: int,
        *,
        node_status: str | None = None,
        schedulable: bool | None = None,
        kubelet_version: str | None = None,
        labels: Sequence[world.Label] | None = None,
        taints: Sequence[world.Taint] | None = None,
    ) -> world.Node:
        """Change what is given; raises ``errors.NotFound`` for a node that left."""
        values = _changes(
            updated_us=now_us,
            node_status=node_status,
            schedulable=schedulable,
            kubelet_version=kubelet_version,
            labels=None if labels is None else world_rows.plain(tuple(labels)),
            taints=None if taints is None else world_rows.plain(tuple(taints)),
        )
        key = {"p_cluster_id": cluster_id, "p_node_name": node_name}
        with self._tx.write() as conn:
            _update(N, ("cluster_id", "node_name"), values).send(
                conn,
                {
                    "p_where_cluster_id": cluster_id,
                    "p_where_node_name": node_name,
                    **_params(values),
                },
            )
            row = _NODE.send(conn, key).mapping()
        if row is None:
            raise errors.NotFound(f"the node {node_name} not found in cluster {cluster_id}")
        return world_rows.node_from_row(row)

    def list_nodes(self, cluster_id: str, nodepool_id: str | None = None) -> list[world.Node]:
        """The cluster's nodes, oldest first."""
        with self._tx.read() as conn:
            self._live_cluster(conn, cluster_id)
            return _nodes(conn, cluster_id, nodepool_id)

    # -- stock -------------------------------------------------------------------------------

    def set_stock(self, instance_type: str, zone_id: str, available: int) -> None:
        values = {"instance_type": instance_type, "zone_id": zone_id, "available": available}
        with self._tx.write() as conn:
            conn.execute(
                dialects.upsert(
                    self._tx.engine,
                    STOCK,
                    values,
                    keys=["instance_type", "zone_id"],
                    update=["available"],
                )
            )

    def stock(self, instance_type: str, zone_id: str, default: int) -> int:
        """What the zone can still supply of the type (``default`` if never used or set)."""
        with self._tx.read() as conn:
            available = conn.execute(
                sa.select(STOCK.c.available).where(
                    STOCK.c.instance_type == instance_type, STOCK.c.zone_id == zone_id
                )
            ).scalar_one_or_none()
        return default if available is None else int(available)

    # -- plumbing ----------------------------------------------------------------------------

    def _insert_once(
        self, table: sa.Table, row: Mapping[str, Any], find: sa.Select[Any]
    ) -> sa.RowMapping:
        """Insert ``row`` unless ``find`` already selects a row; return the row found or made."""
        for _ in range(_ATTEMPTS):
            try:
                with self._tx.write() as conn:
                    existing = conn.execute(find).first()
                    if existing is None:
                        conn.execute(sa.insert(table).values(**row))
                        existing = conn.execute(find).one()
                    return existing._mapping
            except errors.RowConflict:
                continue  # a concurrent twin committed first; its row is found next time
        raise errors.StorageError(f"could not record a row in {table.name}")

    def _live_cluster(self, conn: sa.Connection, cluster_id: str) -> world.Cluster:
        row = _LIVE_CLUSTER.send(conn, {"p_cluster_id": cluster_id}).mapping()
        if row is None:
            raise errors.ClusterNotFound(cluster_id)
        return world_rows.cluster_from_row(row)

    def _live_nodepool(
        self, conn: sa.Connection, cluster_id: str, nodepool_id: str
    ) -> world.NodePool:
        return self._live_pair(conn, cluster_id, nodepool_id)[1]

    def _live_pair(
        self, conn: sa.Connection, cluster_id: str, nodepool_id: str
    ) -> tuple[world.Cluster, world.NodePool]:
        cluster = self._live_cluster(conn, cluster_id)
        row = _LIVE_NODEPOOL.send(
            conn, {"p_cluster_id": cluster_id, "p_nodepool_id": nodepool_id}
        ).mapping()
        if row is None:
            raise errors.NodePoolNotFound(nodepool_id, cluster_id)
        return cluster, world_rows.nodepool_from_row(row)


def _cluster_row(cluster: world.Cluster, key: str | None = None) -> dict[str, Any]:
    return {
        "cluster_id": cluster.cluster_id,
        "idempotency_key": key,
        "name": cluster.spec.name,
        "region_id": cluster.spec.region_id,
        "state": cluster.state,
        "current_version": cluster.current_version,
        "vpc_id": cluster.vpc_id,
        "security_group_id": cluster.security_group_id,
        "node_quota": cluster.node_quota,
        "spec": world_rows.plain(cluster.spec),
        "created_us": cluster.created_us,
        "updated_us": cluster.updated_us,
    }


def _nodepool_row(pool: world.NodePool, key: str | None = None) -> dict[str, Any]:
    return {
        "nodepool_id": pool.nodepool_id,
        "cluster_id": pool.cluster_id,
        "idempotency_key": key,
        "name": pool.spec.name,
        "state": pool.state,
        "desired_size": pool.desired_size,
        "kubernetes_version": pool.kubernetes_version,
        "scaling_group_id": pool.scaling_group_id,
        "spec": world_rows.plain(pool.spec),
        "created_us": pool.created_us,
        "updated_us": pool.updated_us,
    }


def recording(
    cluster: world.Cluster | None = None, nodepool: world.NodePool | None = None
) -> store.Accepted:
    """What inserts ``cluster`` or ``nodepool`` in the transaction it is given (the one that
    accepts the task creating it), unless a row with its id is there already."""

    def record(conn: sa.Connection) -> None:
        if cluster is not None:
            found = conn.execute(
                sa.select(C.c.cluster_id).where(C.c.cluster_id == cluster.cluster_id)
            ).first()
            if found is None:
                conn.execute(sa.insert(C).values(**_cluster_row(cluster)))
        if nodepool is not None:
            found = conn.execute(
                sa.select(P.c.nodepool_id).where(P.c.nodepool_id == nodepool.nodepool_id)
            ).first()
            if found is None:
                conn.execute(sa.insert(P).values(**_nodepool_row(nodepool)))

    return record


DELETED_POOL = "deleted"
"""What :func:`marking_states` takes to delete a pool (a deleted pool is a row with
``deleted_us``; its ``state`` column keeps its last state)."""


def marking_states(
    cluster_id: str,
    now_us: Callable[[], int],
    *,
    cluster_state: str | None = None,
    nodepool_states: Mapping[str, str] | None = None,
) -> store.Accepted:
    """What sets the cluster's and pools' states in the transaction it is given (the one
    that accepts a task, or the one that ends it); a pool or cluster already gone is left
    alone: the task reports it. A pool's :data:`DELETED_POOL` deletes it (the task checked
    that it has no instances left), as the cluster's state ``deleted`` does the cluster's
    (the task checked that it has no pools or instances left)."""
    pools = dict(nodepool_states or {})

    def mark(conn: sa.Connection) -> None:
        now = now_us()
        if cluster_state is not None:
            conn.execute(
                sa.update(C)
                .where(C.c.cluster_id == cluster_id, C.c.state != "deleted")
                .values(state=cluster_state, updated_us=now)
            )
        for nodepool_id, state in pools.items():
            values = (
                {"deleted_us": now, "updated_us": now}
                if state == DELETED_POOL
                else {"state": state, "updated_us": now}
            )
            conn.execute(
                sa.update(P)
                .where(
                    P.c.cluster_id == cluster_id,
                    P.c.nodepool_id == nodepool_id,
                    P.c.deleted_us.is_(None),
                )
                .values(**values)
            )

    return mark


# -- the hot statements ------------------------------------------------------------------------
# Nearly every call of the simulated cloud runs some of these: built and compiled once, run
# on the driver's cursor in the caller's transaction (storage/prepared.py), as the task
# store's writes are. Parameters are named ``p_*`` so they never clash with a column.


def _p(name: str, column: sa.Column[Any]) -> sa.BindParameter[Any]:
    return sa.bindparam(f"p_{name}", type_=column.type)


_LIVE_CLUSTER = prepared.Prepared(
    sa.select(C, _SIZE).where(
        C.c.cluster_id == _p("cluster_id", C.c.cluster_id), C.c.state != "deleted"
    )
)
_LIVE_NODEPOOL = prepared.Prepared(
    sa.select(P).where(
        P.c.cluster_id == _p("cluster_id", P.c.cluster_id),
        P.c.nodepool_id == _p("nodepool_id", P.c.nodepool_id),
        P.c.deleted_us.is_(None),
    )
)
_LIVE_NODEPOOLS = prepared.Prepared(
    sa.select(P)
    .where(P.c.cluster_id == _p("cluster_id", P.c.cluster_id), P.c.deleted_us.is_(None))
    .order_by(P.c.created_us, P.c.nodepool_id)
)
_INSTANCE = prepared.Prepared(
    sa.select(VM).where(VM.c.instance_id == _p("instance_id", VM.c.instance_id))
)
_INSTANCE_BY_KEY = prepared.Prepared(
    sa.select(VM).where(VM.c.idempotency_key == _p("key", VM.c.idempotency_key))
)
_CLUSTER_INSTANCES = VM.c.cluster_id == _p("cluster_id", VM.c.cluster_id)
_INSTANCE_ORDER = (VM.c.created_us, VM.c.instance_id)
_LIVE_INSTANCES = prepared.Prepared(
    sa.select(VM).where(_CLUSTER_INSTANCES, VM.c.status != RELEASED).order_by(*_INSTANCE_ORDER)
)
_LIVE_POOL_INSTANCES = prepared.Prepared(
    sa.select(VM)
    .where(
        _CLUSTER_INSTANCES,
        VM.c.status != RELEASED,
        VM.c.nodepool_id == _p("nodepool_id", VM.c.nodepool_id),
    )
    .order_by(*_INSTANCE_ORDER)
)
_COUNT_LIVE_INSTANCES = prepared.Prepared(
    sa.select(sa.func.count()).select_from(VM).where(_CLUSTER_INSTANCES, VM.c.status != RELEASED)
)
_ADVANCE_INSTANCE = prepared.Prepared(
    sa.update(VM)
    .where(
        VM.c.instance_id == _p("instance_id", VM.c.instance_id),
        VM.c.status == _p("from_status", VM.c.status),
    )
    .values(status=_p("to_status", VM.c.status), updated_us=_p("now", VM.c.updated_us))
)
_USED_ADDRESSES = prepared.Prepared(
    sa.select(VM.c.ip_address).where(VM.c.vpc_id == _p("vpc_id", VM.c.vpc_id))
)
_INSERT_INSTANCE = prepared.Prepared(
    sa.insert(VM).values(
        {
            name: _p(name, VM.c[name])
            for name in (
                "instance_id",
                "cluster_id",
                "nodepool_id",
                "idempotency_key",
                "vpc_id",
                "instance_type",
                "zone_id",
                "vswitch_id",
                "ip_address",
                "status",
                "image_id",
                "instance_charge_type",
                "created_us",
                "updated_us",
            )
        }
    )
)
_STOCK_WHERE = (
    STOCK.c.instance_type == _p("instance_type", STOCK.c.instance_type),
    STOCK.c.zone_id == _p("zone_id", STOCK.c.zone_id),
)
_STOCK = prepared.Prepared(sa.select(STOCK.c.available).where(*_STOCK_WHERE))
_INSERT_STOCK = prepared.Prepared(
    sa.insert(STOCK).values(
        instance_type=_p("instance_type", STOCK.c.instance_type),
        zone_id=_p("zone_id", STOCK.c.zone_id),
        available=_p("available", STOCK.c.available),
    )
)
_TAKE_STOCK = prepared.Prepared(
    sa.update(STOCK)
    .where(*_STOCK_WHERE, STOCK.c.available > 0)
    .values(available=STOCK.c.available - 1)
)
_CLUSTER_NODES = N.c.cluster_id == _p("cluster_id", N.c.cluster_id)
_NODE_ORDER = (N.c.created_us, N.c.node_name)
_NODES = prepared.Prepared(sa.select(N).where(_CLUSTER_NODES).order_by(*_NODE_ORDER))
_POOL_NODES = prepared.Prepared(
    sa.select(N)
    .where(_CLUSTER_NODES, N.c.nodepool_id == _p("nodepool_id", N.c.nodepool_id))
    .order_by(*_NODE_ORDER)
)
_NODE = prepared.Prepared(
    sa.select(N).where(_CLUSTER_NODES, N.c.node_name == _p("node_name", N.c.node_name))
)
_NODE_OF_INSTANCE = prepared.Prepared(
    sa.select(N).where(N.c.instance_id == _p("instance_id", N.c.instance_id))
)
_NODE_BY_KEY_OR_INSTANCE = prepared.Prepared(
    sa.select(N).where(
        sa.or_(
            N.c.idempotency_key == _p("idempotency_key", N.c.idempotency_key),
            N.c.instance_id == _p("instance_id", N.c.instance_id),
        )
    )
)
_NODE_COLUMNS = tuple(column.name for column in N.columns)
_INSERT_NODE = prepared.Prepared(
    sa.insert(N).values({name: _p(name, N.c[name]) for name in _NODE_COLUMNS})
)
_UPDATES: dict[tuple[str, tuple[str, ...]], prepared.Prepared] = {}


def _update(table: sa.Table, keys: Sequence[str], values: Mapping[str, Any]) -> prepared.Prepared:
    """UPDATE ``table`` SET ``values``' columns WHERE each of ``keys`` equals its parameter
    (``p_where_<key>``): one prepared statement per set of columns (a handful exist), made
    on first use."""
    shape = (table.name, (*keys, "=", *sorted(values)))
    found = _UPDATES.get(shape)
    if found is None:
        statement = (
            sa.update(table)
            .where(*(table.c[key] == _p(f"where_{key}", table.c[key]) for key in keys))
            .values({name: _p(name, table.c[name]) for name in sorted(values)})
        )
        found = _UPDATES.setdefault(shape, prepared.Prepared(statement))
    return found


def _params(values: Mapping[str, Any]) -> dict[str, Any]:
    return {f"p_{name}": value for name, value in values.items()}


def _take_stock(
    conn: sa.Connection, placements: Sequence[Placement], default_stock: int
) -> Placement | None:
    """Take one instance from the first placement that has one left."""
    for placement in placements:
        where = {"p_instance_type": placement.instance_type, "p_zone_id": placement.zone_id}
        if _STOCK.send(conn, where).first() is None:
            # First use of this (type, zone): its row starts at the default. Created before
            # the decrement so that the decrement always meets a row (on PostgreSQL a
            # concurrent first use loses on the primary key and the launch is retried).
            _INSERT_STOCK.send(conn, {**where, "p_available": default_stock})
        if _TAKE_STOCK.send(conn, where).rowcount == 1:
            return placement
    return None


def _deletable(conn: sa.Connection, cluster_id: str) -> bool:
    """Whether the cluster is there to delete (False: it is deleted already); raises
    ``errors.ClusterNotFound``, or ``errors.ResourceInUse`` naming the pools or instances
    it still has."""
    state = conn.execute(
        sa.select(C.c.state).where(C.c.cluster_id == cluster_id)
    ).scalar_one_or_none()
    if state is None:
        raise errors.ClusterNotFound(cluster_id)
    if state == "deleted":
        return False
    owner = f"the cluster {cluster_id}"
    live_pools = sa.select(P.c.nodepool_id).where(
        P.c.cluster_id == cluster_id, P.c.deleted_us.is_(None)
    )
    _refuse_dependents(conn, owner, "node pools", live_pools.order_by(P.c.created_us))
    live = sa.select(VM.c.instance_id).where(VM.c.cluster_id == cluster_id, VM.c.status != RELEASED)
    _refuse_dependents(conn, owner, "instances", live.order_by(VM.c.created_us))
    return True


def _refuse_dependents(conn: sa.Connection, owner: str, kind: str, ids: sa.Select[Any]) -> None:
    """Raise ``errors.ResourceInUse`` naming what ``ids`` selects, if it selects anything."""
    found = list(conn.execute(ids).scalars())
    if found:
        raise errors.ResourceInUse(f"{owner} still has {kind}: {', '.join(found)}")


def _changes(**values: Any) -> dict[str, Any]:
    """The values given (not ``None``): what an update should write."""
    return {name: value for name, value in values.items() if value is not None}


def _get_instance(conn: sa.Connection, instance_id: str) -> world.Instance:
    row = _INSTANCE.send(conn, {"p_instance_id": instance_id}).mapping()
    if row is None:
        raise errors.NotFound(f"the instance {instance_id} not found")
    return world_rows.instance_from_row(row)


def _launch(conn: sa.Connection, launch: Launch, now_us: int) -> world.Instance | None:
    """Take stock and insert the instance (``None``: no placement has stock)."""
    placement = _take_stock(conn, launch.placements, launch.default_stock)
    if placement is None:
        return None
    used = _USED_ADDRESSES.send(conn, {"p_vpc_id": launch.vpc_id}).rows()
    address = launch.choose_address(frozenset(row[0] for row in used))
    values = {
        "instance_id": launch.instance_id,
        "cluster_id": launch.cluster_id,
        "nodepool_id": launch.nodepool_id,
        "idempotency_key": launch.key,
        "vpc_id": launch.vpc_id,
        "instance_type": placement.instance_type,
        "zone_id": placement.zone_id,
        "vswitch_id": placement.vswitch_id,
        "ip_address": address,
        "status": "Pending",
        "image_id": launch.image_id,
        "instance_charge_type": launch.instance_charge_type,
        "created_us": now_us,
        "updated_us": now_us,
    }
    _INSERT_INSTANCE.send(conn, _params(values))
    made = _INSTANCE_BY_KEY.send(conn, {"p_key": launch.key}).mapping()
    if made is None:
        raise errors.StorageError(f"the instance {launch.instance_id} vanished")
    return world_rows.instance_from_row(made)


def _nodepools(conn: sa.Connection, cluster_id: str) -> list[world.NodePool]:
    rows = _LIVE_NODEPOOLS.send(conn, {"p_cluster_id": cluster_id}).mappings()
    return [world_rows.nodepool_from_row(row) for row in rows]


def _instances(
    conn: sa.Connection, cluster_id: str, nodepool_id: str | None
) -> list[world.Instance]:
    """Instances not released, oldest first."""
    if nodepool_id is None:
        sent = _LIVE_INSTANCES.send(conn, {"p_cluster_id": cluster_id})
    else:
        params = {"p_cluster_id": cluster_id, "p_nodepool_id": nodepool_id}
        sent = _LIVE_POOL_INSTANCES.send(conn, params)
    return [world_rows.instance_from_row(row) for row in sent.mappings()]


def _count_instances(conn: sa.Connection, cluster_id: str) -> int:
    row = _COUNT_LIVE_INSTANCES.send(conn, {"p_cluster_id": cluster_id}).first()
    return int(row[0]) if row is not None else 0


def _nodes(conn: sa.Connection, cluster_id: str, nodepool_id: str | None) -> list[world.Node]:
    """The cluster's (or pool's) nodes, oldest first."""
    if nodepool_id is None:
        sent = _NODES.send(conn, {"p_cluster_id": cluster_id})
    else:
        sent = _POOL_NODES.send(conn, {"p_cluster_id": cluster_id, "p_nodepool_id": nodepool_id})
    return [world_rows.node_from_row(row) for row in sent.mappings()]
