"""Node use cases: remove, upgrade, repair and attach nodes; the Kubernetes versions.

As in ``service/cloud.py`` every request is validated before a task exists: the nodes a
task will act on are resolved here (name, instance, pool) and stored in its parameters, so
a stage never has to guess what the request meant.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from clustertasks import errors
from clustertasks.domain import json_text, params, pool_fields, records, rollout, specs, versions
from clustertasks.providers import inventory
from clustertasks.service import cloud, control, submission
from clustertasks.storage import store

REPAIR_OPERATIONS = (
    "restart.kubelet",
    "restart.docker",
    "restart.containerd",
    "restart.ntp",
    "remove.containerdContainerInSandbox",
    "remove.dockerContainerInSandbox",
    "remove.containerdContainer",
    "remove.dockerContainer",
)


class NodeService:
    def __init__(
        self,
        provider: inventory.Inventory,
        task_control: control.TaskControl,
        clouds: cloud.CloudService,
    ) -> None:
        self._cloud = provider
        self._control = task_control
        self._clouds = clouds

    # -- removal ---------------------------------------------------------------------------

    def remove_nodepool_nodes(
        self, cluster_id: str, nodepool_id: str, query: Mapping[str, Any]
    ) -> submission.Submitted:
        """RemoveNodePoolNodes: everything arrives in the query string, lists as JSON."""
        cluster = self._clouds.cluster(cluster_id)
        pool = self._clouds.nodepool(cluster.cluster_id, nodepool_id).pool
        wanted_ids = _json_list(query, "instance_ids")
        wanted_names = _json_list(query, "nodes")
        if not wanted_ids and not wanted_names:
            raise errors.InvalidParameter("instance_ids", "name at least one instance or node")
        nodes = self._resolve(cluster.cluster_id, pool.nodepool_id, wanted_ids, wanted_names)
        return self._submit_removal(
            cluster.cluster_id,
            records.Target(pool.nodepool_id, "nodepool"),
            nodes,
            query,
            nodepool_id=pool.nodepool_id,
        )

    def delete_cluster_nodes(
        self, cluster_id: str, body: Mapping[str, Any]
    ) -> submission.Submitted:
        """DeleteClusterNodes: node names of any pools of the cluster, in a JSON body."""
        cluster = self._clouds.cluster(cluster_id)
        names = params.text_list(body, "nodes", max_items=submission.MAX_NODES)
        if not names:
            raise errors.InvalidParameter("nodes", "is required")
        nodes = self._resolve(cluster.cluster_id, None, [], names, field="nodes")
        return self._submit_removal(
            cluster.cluster_id, records.Target(cluster.cluster_id, "cluster"), nodes, body
        )

    def _submit_removal(
        self,
        cluster_id: str,
        target: records.Target,
        nodes: Sequence[Mapping[str, str]],
        source: Mapping[str, Any],
        nodepool_id: str = "",
    ) -> submission.Submitted:
        parameters = {
            "nodepool_id": nodepool_id,
            "nodes": [dict(n) for n in nodes],
            "drain_node": params.boolean(source, "drain_node"),
            "release_node": params.boolean(source, "release_node"),
            "concurrency": params.boolean(source, "concurrency"),
            **submission.drain_options(source),
        }
        pools = {n["nodepool_id"]: "removing" for n in nodes if n["nodepool_id"]}
        outcome = self._control.submit(
            "cluster_node_delete",
            cluster_id=cluster_id,
            target=target,
            parameters=parameters,
            accepted=self._cloud.shown_at_once(cluster_id, nodepool_states=pools),
        )
        return submission.Submitted(outcome.task, cluster_id=cluster_id, nodepool_id=nodepool_id)

    def _resolve(
        self,
        cluster_id: str,
        nodepool_id: str | None,
        instance_ids: Sequence[str],
        node_names: Sequence[str],
        *,
        field: str = "",
    ) -> list[dict[str, str]]:
        """The entries for the named instances and nodes, each once, in request order;
        an unknown one, or one outside the pool, is an ``InvalidParameter`` naming it."""
        instances = {i.instance_id: i for i in self._cloud.list_instances(cluster_id)}
        nodes = list(self._cloud.list_nodes(cluster_id))
        by_instance = {n.instance_id: n for n in nodes}
        by_name = {n.node_name: n for n in nodes}
        chosen: dict[str, dict[str, str]] = {}
        for name in node_names:
            node = by_name.get(name)
            if node is None or node.instance_id not in instances:
                raise errors.InvalidParameter(
                    field or "nodes", f"the node {name} is not in cluster {cluster_id}"
                )
            chosen[node.instance_id] = submission.entry(node, instances[node.instance_id])
        for instance_id in instance_ids:
            found = instances.get(instance_id)
            if found is None or (nodepool_id is not None and found.nodepool_id != nodepool_id):
                raise errors.InvalidParameter(
                    field or "instance_ids",
                    f"the instance {instance_id} is not in "
                    + (f"node pool {nodepool_id}" if nodepool_id else f"cluster {cluster_id}"),
                )
            chosen[instance_id] = submission.entry(by_instance.get(instance_id), found)
        if nodepool_id is not None:
            for item in chosen.values():
                if item["nodepool_id"] != nodepool_id:
                    raise errors.InvalidParameter(
                        field or "nodes",
                        f"the node {item['node_name']} is not in node pool {nodepool_id}",
                    )
        return list(chosen.values())

    # -- upgrades --------------------------------------------------------------------------

    def upgrade_nodepool(
        self, cluster_id: str, nodepool_id: str, body: Mapping[str, Any]
    ) -> submission.Submitted:
        cluster = self._clouds.cluster(cluster_id)
        pool = self._clouds.nodepool(cluster.cluster_id, nodepool_id).pool
        version = params.text(body, "kubernetes_version", default=pool.kubernetes_version)
        self._check_version("kubernetes_version", version)
        if versions.key(version) > versions.key(cluster.current_version):
            raise errors.InvalidParameter(
                "kubernetes_version",
                f"{version} is above the control plane's version {cluster.current_version}: "
                "upgrade the cluster first",
            )
        if versions.key(version) < versions.key(pool.kubernetes_version):
            raise errors.InvalidParameter(
                "kubernetes_version",
                f"{version} is below the node pool's version {pool.kubernetes_version}",
            )
        names = params.text_list(body, "node_names", max_items=submission.MAX_NODES)
        if names:
            nodes = self._resolve(
                cluster.cluster_id, pool.nodepool_id, [], names, field="node_names"
            )
        else:
            nodes = self._pool_nodes(cluster.cluster_id, pool.nodepool_id)
        parameters = {
            "nodepool_id": pool.nodepool_id,
            "from_version": pool.kubernetes_version,
            "kubernetes_version": version,
            "image_id": params.text(body, "image_id"),
            "runtime_type": params.text(body, "runtime_type"),
            "runtime_version": params.text(body, "runtime_version"),
            "use_replace": params.boolean(body, "use_replace"),
            "nodes": nodes,
            "rolling_policy": _rolling_policy(body),
            **submission.drain_options(body),
        }
        outcome = self._control.submit(
            "nodepool_upgrade",
            cluster_id=cluster.cluster_id,
            target=records.Target(pool.nodepool_id, "nodepool"),
            parameters=parameters,
            accepted=self._updating(cluster.cluster_id, pool.nodepool_id),
        )
        return submission.Submitted(outcome.task, cluster.cluster_id, pool.nodepool_id)

    def upgrade_cluster(self, cluster_id: str, body: Mapping[str, Any]) -> submission.Submitted:
        cluster = self._clouds.cluster(cluster_id)
        if cluster.state != "running":
            raise errors.ClusterStateError(
                f"cluster {cluster.cluster_id} is {cluster.state}: only a running cluster "
                "can be upgraded"
            )
        version = params.text(body, "next_version") or params.text(body, "version")
        if not version:
            raise errors.InvalidParameter("next_version", "is required")
        self._check_version("next_version", version)
        current = cluster.current_version
        step = versions.minor(version)[1] - versions.minor(current)[1]
        if versions.key(version) < versions.key(current) or step > 1:
            raise errors.InvalidParameter(
                "next_version",
                f"{version} is not an upgrade of {current} by at most one minor version",
            )
        master_only = params.boolean(body, "master_only")
        nodes: list[dict[str, str]] = []
        if not master_only:
            for pool in self._cloud.list_nodepools(cluster.cluster_id):
                nodes += self._pool_nodes(cluster.cluster_id, pool.nodepool_id)
        parameters = {
            "from_version": current,
            "next_version": version,
            "master_only": master_only,
            "nodes": nodes,
            "rolling_policy": _rolling_policy(body),
            **submission.drain_options(body),
        }
        outcome = self._control.submit(
            "cluster_upgrade",
            cluster_id=cluster.cluster_id,
            target=records.Target(cluster.cluster_id, "cluster"),
            parameters=parameters,
            accepted=self._cloud.shown_at_once(
                cluster.cluster_id, cluster_state="upgrading" if version != current else None
            ),
        )
        return submission.Submitted(outcome.task, cluster.cluster_id)

    # -- node configuration ----------------------------------------------------------------

    def modify_node_config(
        self, cluster_id: str, nodepool_id: str, body: Mapping[str, Any]
    ) -> submission.Submitted:
        """ModifyNodePoolNodeConfig: the pool keeps the new kubelet, OS and containerd
        settings and its nodes (or the named ones) take them, batch by batch."""
        cluster = self._clouds.cluster(cluster_id)
        pool = self._clouds.nodepool(cluster.cluster_id, nodepool_id).pool
        given = [params.obj(body, key) for key in ("kubelet_config", "os_config")]
        containerd = params.obj(body, "containerd_config")
        if not any(given) and not containerd:
            raise errors.InvalidParameter(
                "kubelet_config", "set kubelet_config, os_config or containerd_config"
            )
        # Checked against the pool document's types, as CreateClusterNodePool's are.
        checked = pool_fields.node_config(given[0], given[1], containerd)
        spec = dataclasses.replace(pool.spec, extra=pool_fields.merged(pool.spec.extra, checked))
        names = params.text_list(body, "node_names", max_items=submission.MAX_NODES)
        if names:
            nodes = self._resolve(
                cluster.cluster_id, pool.nodepool_id, [], names, field="node_names"
            )
        else:
            nodes = self._pool_nodes(cluster.cluster_id, pool.nodepool_id)
        rolling = params.obj(body, "rolling_policy")
        parameters = {
            "nodepool_id": pool.nodepool_id,
            "spec": specs.to_json(spec),
            "nodes": nodes,
            "max_parallelism": params.integer(
                rolling, "max_parallelism", "rolling_policy.", default=1, low=1, high=100
            ),
            "max_failed_nodes": params.integer(
                rolling, "max_failed_nodes", "rolling_policy.", default=0, low=0
            ),
        }
        outcome = self._control.submit(
            "nodepool_node_config",
            cluster_id=cluster.cluster_id,
            target=records.Target(pool.nodepool_id, "nodepool"),
            parameters=parameters,
            accepted=self._updating(cluster.cluster_id, pool.nodepool_id),
        )
        return submission.Submitted(outcome.task, cluster.cluster_id, pool.nodepool_id)

    def _updating(self, cluster_id: str, nodepool_id: str) -> store.Accepted:
        return self._cloud.shown_at_once(cluster_id, nodepool_states={nodepool_id: "updating"})

    def _check_version(self, field: str, version: str) -> None:
        known = list(self._cloud.kubernetes_versions())
        if version not in known:
            raise errors.InvalidParameter(
                field, f"unknown Kubernetes version {version!r}; known: {', '.join(known)}"
            )

    def _pool_nodes(self, cluster_id: str, nodepool_id: str) -> list[dict[str, str]]:
        instances = {i.instance_id: i for i in self._cloud.list_instances(cluster_id, nodepool_id)}
        return [
            submission.entry(node, instances[node.instance_id])
            for node in self._cloud.list_nodes(cluster_id, nodepool_id)
            if node.instance_id in instances
        ]

    def version_metadata(self, kubernetes_version: str = "") -> list[dict[str, Any]]:
        """DescribeKubernetesVersionMetadata's items, oldest first (only
        ``kubernetes_version`` when one is asked for)."""
        known = list(self._cloud.kubernetes_versions())
        items = []
        for version in known:
            if kubernetes_version and version != kubernetes_version:
                continue
            later = [v for v in known if versions.key(v) > versions.key(version)]
            next_minor = [
                v for v in later if versions.minor(v)[1] - versions.minor(version)[1] == 1
            ]
            items.append(
                {
                    "capabilities": {},
                    "images": [],
                    "meta_data": {},
                    "runtimes": [{"name": "containerd", "version": "1.6.36"}],
                    "version": version,
                    "release_date": "",
                    "expiration_date": "",
                    "creatable": True,
                    "upgradable_versions": next_minor,
                }
            )
        return items

    # -- repair and attach -----------------------------------------------------------------

    def repair_nodepool(
        self, cluster_id: str, nodepool_id: str, body: Mapping[str, Any]
    ) -> submission.Submitted:
        cluster = self._clouds.cluster(cluster_id)
        pool = self._clouds.nodepool(cluster.cluster_id, nodepool_id).pool
        names = params.text_list(body, "nodes", max_items=submission.MAX_NODES)
        if names:
            nodes = self._resolve(cluster.cluster_id, pool.nodepool_id, [], names, field="nodes")
        else:
            nodes = self._pool_nodes(cluster.cluster_id, pool.nodepool_id)
        operations = []
        for index, item in enumerate(params.object_list(body, "operations")):
            where = f"operations[{index}]."
            operation_id = params.text(item, "operation_id", where, required=True)
            if operation_id not in REPAIR_OPERATIONS:
                raise errors.InvalidParameter(
                    f"{where}operation_id", f"must be one of {', '.join(REPAIR_OPERATIONS)}"
                )
            operations.append(
                {"operation_id": operation_id, "args": params.text_list(item, "args", where)}
            )
        outcome = self._control.submit(
            "nodepool_repair",
            cluster_id=cluster.cluster_id,
            target=records.Target(pool.nodepool_id, "nodepool"),
            parameters={"nodepool_id": pool.nodepool_id, "nodes": nodes, "operations": operations},
            accepted=self._updating(cluster.cluster_id, pool.nodepool_id),
        )
        return submission.Submitted(outcome.task, cluster.cluster_id, pool.nodepool_id)

    def repair_automatically(self, cluster_id: str, node_name: str) -> records.Task | None:
        """A node that is not Ready, in a pool with ``management.enable`` and
        ``management.auto_repair``: a repair task for it, as a managed pool of ACK starts
        one. None when the pool does not repair itself, or another task holds the pool (the
        node then stays as it is until someone repairs it)."""
        node = next(
            (n for n in self._cloud.list_nodes(cluster_id) if n.node_name == node_name), None
        )
        if node is None or node.node_status == "Ready" or not node.nodepool_id:
            return None
        pool = self._cloud.get_nodepool(cluster_id, node.nodepool_id)
        management = pool.spec.extra.get("management") or {}
        if not (management.get("enable") and management.get("auto_repair")):
            return None
        try:
            return self.repair_nodepool(cluster_id, pool.nodepool_id, {"nodes": [node_name]}).task
        except errors.TaskConflict:
            return None

    def attach_instances(
        self, cluster_id: str, nodepool_id: str, body: Mapping[str, Any]
    ) -> submission.Submitted:
        cluster = self._clouds.cluster(cluster_id)
        pool = self._clouds.nodepool(cluster.cluster_id, nodepool_id).pool
        instances = list(dict.fromkeys(params.text_list(body, "instances", max_items=100)))
        if not instances:
            raise errors.InvalidParameter("instances", "is required")
        # Known now: refused before any task exists (the task checks again, for races).
        self._cloud.check_not_in_use(instances)
        self._cloud.check_node_quota(cluster.cluster_id, len(instances))
        parameters = {
            "nodepool_id": pool.nodepool_id,
            "instances": instances,
            "format_disk": params.boolean(body, "format_disk"),
            "keep_instance_name": params.boolean(body, "keep_instance_name", default=True),
        }
        outcome = self._control.submit(
            "cluster_attach",
            cluster_id=cluster.cluster_id,
            target=records.Target(pool.nodepool_id, "nodepool"),
            parameters=parameters,
            accepted=self._cloud.shown_at_once(
                cluster.cluster_id, nodepool_states={pool.nodepool_id: "scaling"}
            ),
        )
        return submission.Submitted(outcome.task, cluster.cluster_id, pool.nodepool_id)


# -- parsing ---------------------------------------------------------------------------------


def _json_list(source: Mapping[str, Any], key: str) -> list[str]:
    """A list sent as a JSON array string in a query (``["a","b"]``), or a real list."""
    value = source.get(key)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json_text.parse(value, key)
        except errors.InvalidParameter:
            value = [part.strip() for part in value.split(",") if part.strip()]
    return params.text_list({key: value}, key, max_items=submission.MAX_NODES)


def _rolling_policy(body: Mapping[str, Any]) -> dict[str, Any]:
    rolling = params.obj(body, "rolling_policy")
    path = "rolling_policy."
    pause_policy = params.text(rolling, "pause_policy", path, default="NotPause")
    if pause_policy not in rollout.PAUSE_POLICIES:
        raise errors.InvalidParameter(
            f"{path}pause_policy", f"must be one of {', '.join(rollout.PAUSE_POLICIES)}"
        )
    interval = params.integer(rolling, "batch_interval", path, default=0, low=0, high=120) or 0
    if interval and pause_policy != "NotPause":
        raise errors.InvalidParameter(
            f"{path}batch_interval", "applies only with pause_policy NotPause"
        )
    return {
        "max_parallelism": params.integer(
            rolling, "max_parallelism", path, default=10, low=1, high=10
        ),
        "batch_interval": interval,
        "max_failed_nodes": params.integer(
            rolling, "max_failed_nodes", path, default=0, low=0, high=submission.MAX_NODES
        ),
        "pause_policy": pause_policy,
    }
