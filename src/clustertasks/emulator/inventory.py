"""SimInventory: what the request services read of the simulated cloud before a task
exists (``providers.inventory.Inventory``), and its stock. ``cloud.SimCloud`` builds on it
with the port's actions."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping, Sequence

from clustertasks import clock, errors, settings
from clustertasks.domain import world
from clustertasks.emulator import catalogue, names, versions
from clustertasks.emulator import world_store as world_storage
from clustertasks.storage import store


class SimInventory:
    def __init__(
        self,
        world_store: world_storage.WorldStore,
        settings: settings.SimSettings,
        clock: clock.Clock,
    ) -> None:
        """``clock`` stamps the world's records."""
        self._store = world_store
        self._settings = settings
        self._clock = clock
        salt = f"seed:{settings.seed}" if settings.seed is not None else secrets.token_hex(16)
        self._names = names.Names(salt)

    # -- reads -------------------------------------------------------------------------------

    def get_cluster(self, cluster_id: str) -> world.Cluster:
        return self._store.get_cluster(cluster_id)

    def list_clusters(self) -> Sequence[world.Cluster]:
        return self._store.list_clusters()

    def get_nodepool(self, cluster_id: str, nodepool_id: str) -> world.NodePool:
        return self._store.get_nodepool(cluster_id, nodepool_id)

    def list_nodepools(self, cluster_id: str) -> Sequence[world.NodePool]:
        return self._store.list_nodepools(cluster_id)

    def list_nodes(self, cluster_id: str, nodepool_id: str | None = None) -> Sequence[world.Node]:
        return self._store.list_nodes(cluster_id, nodepool_id)

    def list_instances(
        self, cluster_id: str, nodepool_id: str | None = None
    ) -> Sequence[world.Instance]:
        return self._store.list_instances(cluster_id, nodepool_id)

    def get_instance(self, instance_id: str) -> world.Instance:
        """Any instance, released ones included; raises ``errors.NotFound``."""
        return self._store.get_instance(instance_id)

    def check_region(self, region_id: str) -> None:
        catalogue.zones(region_id)

    def node_quota(self) -> int:
        return self._settings.node_quota

    def check_not_in_use(self, instance_ids: Sequence[str]) -> None:
        for instance_id in instance_ids:
            try:
                instance = self._store.get_instance(instance_id)
            except errors.NotFound:
                continue
            if instance.status == world_storage.RELEASED:
                continue
            node = self._store.node_of_instance(instance_id)
            if instance.nodepool_id or node is not None:
                owner = node.cluster_id if node is not None else instance.cluster_id
                where = f" (node pool {instance.nodepool_id})" if instance.nodepool_id else ""
                raise errors.InstanceNotFree(
                    f"the instance {instance_id} is already in the cluster {owner}{where}"
                )

    def usage(self, cluster_id: str, nodepool_id: str | None = None) -> world.Usage:
        return self._store.usage(cluster_id, nodepool_id)

    def check_node_quota(self, cluster_id: str, adding: int) -> None:
        self._store.usage(cluster_id).check_quota(adding)

    def check_instance_types(self, instance_types: Sequence[str]) -> None:
        field = "scaling_group.instance_types"
        if not instance_types:
            raise errors.InvalidParameter(field, "at least one instance type is required")
        unknown = catalogue.unknown_instance_types(instance_types)
        if unknown:
            raise errors.InvalidParameter(field, f"unknown instance type {', '.join(unknown)}")

    def kubernetes_versions(self) -> Sequence[str]:
        return [release.version for release in versions.RELEASES]

    # -- stock (tests and fault injection) ---------------------------------------------------

    def set_stock(self, instance_type: str, zone_id: str, count: int) -> None:
        """Let ``zone_id`` supply ``count`` more instances of the type (0: a stock-out)."""
        self.check_instance_types([instance_type])
        if count < 0:
            raise errors.InvalidParameter("count", f"stock cannot be negative, got {count}")
        self._store.set_stock(instance_type, zone_id, count)

    def stock(self, instance_type: str, zone_id: str) -> int:
        return self._store.stock(instance_type, zone_id, catalogue.DEFAULT_STOCK)

    # -- registering what a request creates (the API answers with the id at once) ----------

    def register_cluster(self, cluster_id: str, spec: world.ClusterSpec) -> world.Cluster:
        return self._store.add_cluster(self._new_cluster(cluster_id, spec, basis=cluster_id))

    def edit_cluster_spec(self, cluster_id: str, edit: world.SpecEdit) -> world.Cluster:
        return self._store.edit_cluster_spec(cluster_id, edit, self._clock.now_us())

    def shown_at_once(
        self,
        cluster_id: str,
        *,
        cluster_state: str | None = None,
        nodepool_states: Mapping[str, str] | None = None,
    ) -> store.Accepted:
        return world_storage.marking_states(
            cluster_id,
            self._clock.now_us,
            cluster_state=cluster_state,
            nodepool_states=nodepool_states,
        )

    def register_nodepool(
        self, cluster_id: str, nodepool_id: str, spec: world.NodePoolSpec
    ) -> world.NodePool:
        pool = self._new_nodepool(cluster_id, nodepool_id, spec, basis=nodepool_id)
        return self._store.add_nodepool(pool)

    def registering_cluster(self, cluster_id: str, spec: world.ClusterSpec) -> store.Accepted:
        cluster = self._new_cluster(cluster_id, spec, basis=cluster_id)
        return world_storage.recording(cluster=cluster)

    def registering_nodepool(
        self, cluster_id: str, nodepool_id: str, spec: world.NodePoolSpec
    ) -> store.Accepted:
        pool = self._new_nodepool(cluster_id, nodepool_id, spec, basis=nodepool_id)
        return world_storage.recording(nodepool=pool)

    def _new_cluster(
        self, cluster_id: str, spec: world.ClusterSpec, *, basis: str
    ) -> world.Cluster:
        """A cluster in state ``initial``; its VPC and security group ids derive from
        ``basis`` (the key or id that makes the cluster unique)."""
        catalogue.zones(spec.region_id)
        now = self._clock.now_us()
        return world.Cluster(
            cluster_id=cluster_id,
            spec=spec,
            state="initial",
            current_version=spec.kubernetes_version,
            created_us=now,
            updated_us=now,
            node_quota=self._settings.node_quota,
            vpc_id=spec.vpc_id or self._names.vpc_id(basis),
            security_group_id=self._names.security_group_id(basis),
        )

    def _new_nodepool(
        self, cluster_id: str, nodepool_id: str, spec: world.NodePoolSpec, *, basis: str
    ) -> world.NodePool:
        """A pool (``active``, desired size 0) of the cluster, checked against the catalogue;
        without vSwitches of its own it gets the cluster's."""
        cluster = self._store.get_cluster(cluster_id)
        self.check_instance_types(spec.instance_types)
        if not spec.vswitch_ids:
            if not cluster.spec.vswitch_ids:
                raise errors.InvalidParameter(
                    "scaling_group.vswitch_ids",
                    f"the node pool needs a vSwitch and the cluster {cluster_id} has none",
                )
            spec = dataclasses.replace(spec, vswitch_ids=tuple(cluster.spec.vswitch_ids))
        now = self._clock.now_us()
        return world.NodePool(
            nodepool_id=nodepool_id,
            cluster_id=cluster_id,
            spec=spec,
            state="active",
            desired_size=0,
            kubernetes_version=cluster.current_version,
            scaling_group_id=self._names.scaling_group_id(basis),
            created_us=now,
            updated_us=now,
        )
