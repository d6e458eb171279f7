"""Cluster and node-pool use cases: validate a request, then submit its task.

Everything a request can get wrong is checked here, before any task exists: a rejected
request creates nothing.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clustertasks import errors
from clustertasks.domain import (
    addons,
    cluster_fields,
    ids,
    params,
    pool_fields,
    records,
    specs,
    world,
)
from clustertasks.providers import inventory
from clustertasks.service import control, submission

MAX_SCALE = 500
DEFAULT_VERSION = "1.32.1-aliyun.1"


@dataclass(frozen=True, slots=True)
class PoolView:
    pool: world.NodePool
    instances: Sequence[world.Instance]
    nodes: Sequence[world.Node]


class CloudService:
    def __init__(
        self,
        provider: inventory.Inventory,
        task_control: control.TaskControl,
        id_generator: ids.IdGenerator | None = None,
    ) -> None:
        self._cloud = provider
        self._control = task_control
        self._ids = id_generator or ids.IdGenerator(random.Random())

    # -- reads -----------------------------------------------------------------------------

    def cluster(self, cluster_id: str) -> world.Cluster:
        return self._cloud.get_cluster(_id(cluster_id, errors.ClusterNotFound))

    def clusters(self) -> Sequence[world.Cluster]:
        return self._cloud.list_clusters()

    def nodepool(self, cluster_id: str, nodepool_id: str) -> PoolView:
        cluster = self.cluster(cluster_id)
        if not ids.is_lookup_id(nodepool_id):
            raise errors.NodePoolNotFound(nodepool_id, cluster.cluster_id)
        pool = self._cloud.get_nodepool(cluster.cluster_id, nodepool_id)
        return self._pool_view(pool)

    def nodepools(self, cluster_id: str, name: str | None = None) -> list[PoolView]:
        cluster = self.cluster(cluster_id)
        pools = self._cloud.list_nodepools(cluster.cluster_id)
        return [self._pool_view(p) for p in pools if not name or p.spec.name == name]

    def nodes(self, cluster_id: str, nodepool_id: str | None = None) -> Sequence[world.Node]:
        cluster = self.cluster(cluster_id)
        if nodepool_id:
            self._cloud.get_nodepool(cluster.cluster_id, nodepool_id)
        return self._cloud.list_nodes(cluster.cluster_id, nodepool_id or None)

    def instances(self, cluster_id: str) -> Sequence[world.Instance]:
        return self._cloud.list_instances(self.cluster(cluster_id).cluster_id)

    def _pool_view(self, pool: world.NodePool) -> PoolView:
        return PoolView(
            pool=pool,
            instances=self._cloud.list_instances(pool.cluster_id, pool.nodepool_id),
            nodes=self._cloud.list_nodes(pool.cluster_id, pool.nodepool_id),
        )

    # -- clusters --------------------------------------------------------------------------

    def create_cluster(self, body: Mapping[str, Any]) -> submission.Submitted:
        name = params.text(body, "name", required=True, max_length=63)
        region = params.text(body, "region_id", required=True, max_length=64)
        self._cloud.check_region(region)
        cluster_type = params.text(body, "cluster_type", default="ManagedKubernetes")
        if cluster_type not in ("ManagedKubernetes", "Kubernetes"):
            raise errors.InvalidParameter(
                "cluster_type", "must be ManagedKubernetes (or Kubernetes)"
            )
        vswitches = params.text_list(body, "vswitch_ids") or params.text_list(
            body, "worker_vswitch_ids"
        )
        spec = world.ClusterSpec(
            name=name,
            region_id=region,
            kubernetes_version=params.text(body, "kubernetes_version", default=DEFAULT_VERSION),
            cluster_type=cluster_type,
            cluster_spec=params.text(body, "cluster_spec", default="ack.pro.small"),
            profile=params.text(body, "profile", default="Default"),
            vpc_id=params.text(body, "vpcid"),
            vswitch_ids=tuple(vswitches),
            container_cidr=params.text(body, "container_cidr", default="172.20.0.0/16"),
            service_cidr=params.text(body, "service_cidr", default="172.21.0.0/20"),
            tags=tuple(_labels(body, "tags")),
            deletion_protection=params.boolean(body, "deletion_protection"),
            resource_group_id=params.text(body, "resource_group_id"),
            timezone=params.text(body, "timezone"),
            extra={**cluster_fields.kept(body, {}), **_addons(body), **_logging(body)},
        )
        asked = []
        adding = 0
        for index, pool_body in enumerate(params.object_list(body, "nodepools", max_items=20)):
            pool_spec, count = self._pool_request(pool_body, f"nodepools[{index}].", vswitches)
            adding += count
            asked.append(
                {
                    "count": count,
                    "spec": specs.to_json(dataclasses.replace(pool_spec, desired_size=count)),
                }
            )
        if adding > self._quota_for_new_cluster():
            raise errors.QuotaExceeded(
                f"cluster {name} would have {adding} nodes; the quota is "
                f"{self._quota_for_new_cluster()} nodes per cluster"
            )
        client_token = params.text(body, "client_token", max_length=64) or None
        # Ids are drawn only now, and a retry with the token is compared without them.
        cluster_id = self._ids.cluster_id()
        pools = [{"nodepool_id": self._ids.nodepool_id(), **pool} for pool in asked]
        outcome = self._control.submit(
            "cluster_create",
            cluster_id=cluster_id,
            target=records.Target(cluster_id, "cluster"),
            parameters={"cluster_id": cluster_id, "spec": specs.to_json(spec), "nodepools": pools},
            client_token=client_token,
            request={"spec": specs.to_json(spec), "nodepools": asked},
            # Describable at once, in state initial, if and only if the task exists.
            accepted=self._cloud.registering_cluster(cluster_id, spec),
        )
        task = outcome.task
        return submission.Submitted(task, cluster_id=str(task.parameters["cluster_id"]))

    def delete_cluster(self, cluster_id: str) -> submission.Submitted:
        cluster = self.cluster(cluster_id)
        if cluster.spec.deletion_protection:
            raise errors.ClusterStateError(
                f"cluster {cluster.cluster_id} has deletion protection enabled"
            )
        outcome = self._control.submit(
            "cluster_delete",
            cluster_id=cluster.cluster_id,
            target=records.Target(cluster.cluster_id, "cluster"),
            parameters={},
            accepted=self._cloud.shown_at_once(cluster.cluster_id, cluster_state="deleting"),
        )
        return submission.Submitted(outcome.task, cluster_id=cluster.cluster_id)

    def scale_out_cluster(self, cluster_id: str, body: Mapping[str, Any]) -> submission.Submitted:
        """Legacy ScaleOutCluster: grow the cluster's default pool (made on first use)."""
        cluster = self._usable(cluster_id)
        count = params.integer(body, "count", low=1, high=MAX_SCALE)
        if count is None:
            raise errors.InvalidParameter("count", "is required")
        types = params.text_list(body, "worker_instance_types")
        vswitches = params.text_list(body, "vswitch_ids") or list(cluster.spec.vswitch_ids)
        pools = self._cloud.list_nodepools(cluster.cluster_id)
        default = next((p for p in pools if p.spec.is_default), None)
        if default is None:
            if not types:
                raise errors.InvalidParameter(
                    "worker_instance_types", "is required when the cluster has no default pool"
                )
            self._cloud.check_instance_types(types)
            spec = world.NodePoolSpec(
                name="default-nodepool",
                instance_types=tuple(types),
                vswitch_ids=tuple(vswitches),
                is_default=True,
                taints=tuple(_taints(body, "taints")),
            )
            # The task makes the pool: a refused request must leave nothing behind.
            nodepool_id = self._ids.nodepool_id()
            self._cloud.check_node_quota(cluster.cluster_id, count)
            outcome = self._control.submit(
                "cluster_scaleout",
                cluster_id=cluster.cluster_id,
                target=records.Target(cluster.cluster_id, "cluster"),
                parameters={
                    "nodepool_id": nodepool_id,
                    "count": count,
                    "desired_size": count,
                    "default_pool": specs.to_json(spec),
                },
            )
            return submission.Submitted(
                outcome.task, cluster_id=cluster.cluster_id, nodepool_id=nodepool_id
            )
        return self._scale(cluster.cluster_id, default, count, body, target_cluster=True)

    # -- node pools ------------------------------------------------------------------------

    def create_nodepool(self, cluster_id: str, body: Mapping[str, Any]) -> submission.Submitted:
        cluster = self._usable(cluster_id)
        spec, count = self._pool_request(body, "", list(cluster.spec.vswitch_ids))
        self._cloud.check_node_quota(cluster.cluster_id, count)
        nodepool_id = self._ids.nodepool_id()
        parameters = {
            "nodepool_id": nodepool_id,
            "count": count,
            "desired_size": count,
            "spec": specs.to_json(dataclasses.replace(spec, desired_size=count)),
        }
        outcome = self._control.submit(
            "nodepool_create",
            cluster_id=cluster.cluster_id,
            target=records.Target(nodepool_id, "nodepool"),
            parameters=parameters,
            accepted=self._cloud.registering_nodepool(cluster.cluster_id, nodepool_id, spec),
        )
        return submission.Submitted(
            outcome.task, cluster_id=cluster.cluster_id, nodepool_id=nodepool_id
        )

    def scale_nodepool(
        self, cluster_id: str, nodepool_id: str, body: Mapping[str, Any]
    ) -> submission.Submitted:
        # The cluster, the pool and the quota's count in one read: checked in the order
        # the separate reads were (cluster, its state, the pool, the fields, the quota).
        usage = self._cloud.usage(_id(cluster_id, errors.ClusterNotFound), nodepool_id)
        cluster = _usable(usage.cluster)
        pool = usage.nodepool
        if pool is None or not ids.is_lookup_id(nodepool_id):
            raise errors.NodePoolNotFound(nodepool_id, cluster.cluster_id)
        count = params.integer(body, "count", low=1, high=MAX_SCALE)
        desired = params.integer(body, "desired_size", low=0, high=MAX_SCALE)
        if count is None and desired is None:
            raise errors.InvalidParameter("count", "is required")
        if count is None:
            assert desired is not None
            count = desired - pool.desired_size
            if count < 0:
                raise errors.InvalidParameter(
                    "desired_size",
                    f"must not be below the pool's size {pool.desired_size}: remove nodes "
                    "with RemoveNodePoolNodes",
                )
        return self._scale(cluster.cluster_id, pool, count, body, usage=usage)

    def modify_nodepool(
        self, cluster_id: str, nodepool_id: str, body: Mapping[str, Any]
    ) -> submission.Submitted:
        cluster = self._usable(cluster_id)
        pool = self.nodepool(cluster.cluster_id, nodepool_id).pool
        group = params.obj(body, "scaling_group")
        spec = self._pool_spec(body, "", pool.spec)
        desired = params.integer(group, "desired_size", "scaling_group.", low=0, high=1000)
        top_count = params.integer(body, "count", low=1, high=MAX_SCALE)
        count = 0
        removing: list[dict[str, str]] = []
        if desired is not None:
            if desired < pool.desired_size:
                # A shrink drains and releases the newest nodes, as RemoveNodePoolNodes does.
                removing = submission.newest_nodes(
                    self._cloud, cluster.cluster_id, pool.nodepool_id, keep=desired
                )
            count = max(0, desired - pool.desired_size)
        elif top_count is not None:
            count = top_count
        if count:
            self._cloud.check_node_quota(cluster.cluster_id, count)
        parameters = {
            "nodepool_id": pool.nodepool_id,
            "count": count,
            "desired_size": pool.desired_size + count,
            "update_nodes": params.boolean(body, "update_nodes"),
            "spec": specs.to_json(spec),
        }
        shown = {}
        if count:
            shown = {pool.nodepool_id: "scaling"}
        if removing:
            shown = {pool.nodepool_id: "removing"}
            parameters.update(
                desired_size=desired,
                nodes=removing,
                drain_node=True,
                release_node=True,
                **submission.drain_options(body),
            )
        outcome = self._control.submit(
            "nodepool_update",
            cluster_id=cluster.cluster_id,
            target=records.Target(pool.nodepool_id, "nodepool"),
            parameters=parameters,
            accepted=self._cloud.shown_at_once(cluster.cluster_id, nodepool_states=shown),
        )
        return submission.Submitted(
            outcome.task, cluster_id=cluster.cluster_id, nodepool_id=pool.nodepool_id
        )

    def delete_nodepool(
        self, cluster_id: str, nodepool_id: str, force: bool
    ) -> submission.Submitted:
        cluster = self.cluster(cluster_id)
        view = self.nodepool(cluster.cluster_id, nodepool_id)
        if view.instances and not force:
            raise errors.ResourceInUse(
                f"node pool {nodepool_id} still has {len(view.instances)} nodes: remove them "
                "first or delete with force=true"
            )
        outcome = self._control.submit(
            "nodepool_delete",
            cluster_id=cluster.cluster_id,
            target=records.Target(nodepool_id, "nodepool"),
            parameters={"nodepool_id": nodepool_id, "force": force},
            accepted=self._cloud.shown_at_once(
                cluster.cluster_id, nodepool_states={nodepool_id: "deleting"}
            ),
        )
        return submission.Submitted(
            outcome.task, cluster_id=cluster.cluster_id, nodepool_id=nodepool_id
        )

    # -- plumbing --------------------------------------------------------------------------

    def _scale(
        self,
        cluster_id: str,
        pool: world.NodePool,
        count: int,
        body: Mapping[str, Any],
        *,
        target_cluster: bool = False,
        usage: world.Usage | None = None,
    ) -> submission.Submitted:
        """``usage``: the cluster's, read with the pool (else it is read now)."""
        if usage is None:
            self._cloud.check_node_quota(cluster_id, count)
        else:
            usage.check_quota(count)
        parameters = {
            "nodepool_id": pool.nodepool_id,
            "count": count,
            "desired_size": pool.desired_size + count,
        }
        target = (
            records.Target(cluster_id, "cluster")
            if target_cluster
            else records.Target(pool.nodepool_id, "nodepool")
        )
        outcome = self._control.submit(
            "cluster_scaleout",
            cluster_id=cluster_id,
            target=target,
            parameters=parameters,
            accepted=self._cloud.shown_at_once(
                cluster_id, nodepool_states={pool.nodepool_id: "scaling"}
            ),
        )
        return submission.Submitted(
            outcome.task, cluster_id=cluster_id, nodepool_id=pool.nodepool_id
        )

    def _usable(self, cluster_id: str) -> world.Cluster:
        return _usable(self.cluster(cluster_id))

    def _quota_for_new_cluster(self) -> int:
        return self._cloud.node_quota()

    def _pool_request(
        self, body: Mapping[str, Any], path: str, cluster_vswitches: Sequence[str]
    ) -> tuple[world.NodePoolSpec, int]:
        info = params.obj(body, "nodepool_info", path)
        group = params.obj(body, "scaling_group", path)
        name = params.text(info, "name", f"{path}nodepool_info.", required=True, max_length=63)
        if not params.text_list(group, "instance_types", f"{path}scaling_group."):
            raise errors.InvalidParameter(f"{path}scaling_group.instance_types", "is required")
        base = world.NodePoolSpec(
            name=name, instance_types=(), vswitch_ids=tuple(cluster_vswitches)
        )
        spec = self._pool_spec(body, path, base)
        if not spec.vswitch_ids:
            # Refused now, not by the task: nodes need a vSwitch to boot in.
            raise errors.InvalidParameter(
                f"{path}scaling_group.vswitch_ids",
                "is required when the cluster has no vswitch_ids of its own",
            )
        desired = params.integer(
            group, "desired_size", f"{path}scaling_group.", low=0, high=MAX_SCALE
        )
        legacy_count = params.integer(body, "count", path, low=0, high=MAX_SCALE)
        count = desired if desired is not None else (legacy_count or 0)
        return spec, count

    def _pool_spec(
        self, body: Mapping[str, Any], path: str, base: world.NodePoolSpec
    ) -> world.NodePoolSpec:
        """``base`` with what ``body`` sets (CreateClusterNodePool or ModifyClusterNodePool
        fields), every accepted field kept: the record's own, the rest in ``extra``."""
        info = params.obj(body, "nodepool_info", path)
        group = params.obj(body, "scaling_group", path)
        kube = params.obj(body, "kubernetes_config", path)
        at_info, at_group, at_kube = (
            f"{path}nodepool_info.",
            f"{path}scaling_group.",
            f"{path}kubernetes_config.",
        )
        spec = dataclasses.replace(
            base,
            name=params.text(info, "name", at_info, default=base.name, max_length=63),
            type=params.text(info, "type", at_info, default=base.type),
            system_disk_category=params.text(
                group, "system_disk_category", at_group, default=base.system_disk_category
            ),
            system_disk_size=params.integer(
                group,
                "system_disk_size",
                at_group,
                default=base.system_disk_size,
                low=20,
                high=2048,
            )
            or base.system_disk_size,
            image_id=params.text(group, "image_id", at_group, default=base.image_id),
            image_type=params.text(group, "image_type", at_group, default=base.image_type),
            instance_charge_type=params.text(
                group, "instance_charge_type", at_group, default=base.instance_charge_type
            ),
            runtime=params.text(kube, "runtime", at_kube, default=base.runtime),
            runtime_version=params.text(
                kube, "runtime_version", at_kube, default=base.runtime_version
            ),
            unschedulable=params.boolean(
                kube, "unschedulable", at_kube, default=base.unschedulable
            ),
            extra=pool_fields.merged(base.extra, pool_fields.sections(body, path)),
        )
        if "instance_types" in group:
            types = params.text_list(group, "instance_types", at_group)
            if not types:
                raise errors.InvalidParameter(f"{at_group}instance_types", "must not be empty")
            try:
                self._cloud.check_instance_types(types)
            except errors.InvalidParameter as exc:
                raise errors.InvalidParameter(
                    f"{at_group}instance_types", exc.message.split(": ", 1)[-1]
                ) from None
            spec = dataclasses.replace(spec, instance_types=tuple(types))
        if group.get("vswitch_ids"):
            spec = dataclasses.replace(
                spec, vswitch_ids=tuple(params.text_list(group, "vswitch_ids", at_group))
            )
        if "labels" in kube:
            spec = dataclasses.replace(spec, labels=tuple(_labels(kube, "labels", at_kube)))
        if "taints" in kube:
            spec = dataclasses.replace(spec, taints=tuple(_taints(kube, "taints", at_kube)))
        return spec


def _addons(body: Mapping[str, Any]) -> dict[str, Any]:
    """CreateCluster's ``addons[]``: installed with the cluster (none disabled)."""
    found: dict[str, Any] = {}
    for index, item in enumerate(params.object_list(body, "addons", max_items=50)):
        where = f"addons[{index}]."
        name = params.text(item, "name", where, required=True)
        info = addons.find(name)
        if info is None:
            raise errors.InvalidParameter(f"{where}name", f"unknown add-on {name!r}")
        if params.boolean(item, "disabled", where):
            continue
        version = params.text(item, "version", where, default=info.latest)
        if version not in info.versions:
            raise errors.InvalidParameter(
                f"{where}version", f"add-on {name} has versions {', '.join(info.versions)}"
            )
        config = params.text(item, "config", where, max_length=65536)
        found[name] = {
            "name": name,
            "version": version,
            "config": config,
            "state": "active",
            "task_id": "",
        }
    return {"addons": found} if found else {}


def _logging(body: Mapping[str, Any]) -> dict[str, Any]:
    """CreateCluster's control-plane logging (``controlplane_log_*``), auditing
    (``audit_log_config``) and secret encryption (``encryption_provider_key``), read back
    by CheckControlPlaneLogEnable, GetClusterAuditProject and DescribeClusterDetail's
    ``meta_data``."""
    found: dict[str, Any] = {}
    control_plane = cluster_fields.control_plane_log(body, {}, prefix="controlplane_")
    if control_plane:
        found["control_plane_log"] = control_plane
    key = params.text(body, "encryption_provider_key", max_length=128)
    if key:
        found["encryption"] = {"disabled": False, "kms_key_id": key}
    audit = params.obj(body, "audit_log_config")
    if audit:
        found["audit_log"] = {
            "enabled": params.boolean(audit, "enabled", "audit_log_config."),
            "sls_project_name": params.text(
                audit, "sls_project_name", "audit_log_config.", max_length=128
            ),
        }
    return found


def _usable(cluster: world.Cluster) -> world.Cluster:
    """The cluster, if its state lets it take an operation."""
    if cluster.state not in ("running", "scaling", "updating", "initial"):
        raise errors.ClusterStateError(
            f"cluster {cluster.cluster_id} is {cluster.state}: it cannot take this operation"
        )
    return cluster


def _id(value: str, not_found: type[errors.ClusterNotFound]) -> str:
    if not ids.is_lookup_id(value):
        raise not_found(value)
    return value


def _labels(parent: Mapping[str, Any], key: str, path: str = "") -> list[world.Label]:
    out = []
    for index, item in enumerate(params.object_list(parent, key, path)):
        where = f"{path}{key}[{index}]."
        out.append(
            world.Label(
                key=params.text(item, "key", where, required=True, max_length=63),
                value=params.text(item, "value", where, max_length=63),
            )
        )
    return out


def _taints(parent: Mapping[str, Any], key: str, path: str = "") -> list[world.Taint]:
    out = []
    for index, item in enumerate(params.object_list(parent, key, path)):
        where = f"{path}{key}[{index}]."
        effect = params.text(item, "effect", where, default="NoSchedule")
        if effect not in ("NoSchedule", "NoExecute", "PreferNoSchedule"):
            raise errors.InvalidParameter(
                f"{where}effect", "must be NoSchedule, NoExecute or PreferNoSchedule"
            )
        out.append(
            world.Taint(
                key=params.text(item, "key", where, required=True, max_length=63),
                value=params.text(item, "value", where, max_length=63),
                effect=effect,
            )
        )
    return out
