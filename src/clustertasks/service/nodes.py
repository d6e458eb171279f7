"""Node use cases: remove, upgrade, repair and attach nodes; the simulated cloud's workloads,
free instances, fault rules and Kubernetes versions.

As in ``service/cloud.py`` every request is validated before a task exists: the nodes a
task will act on are resolved here (name, instance, pool) and stored in its parameters, so
a stage never has to guess what the request meant.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from clustertasks import errors
from clustertasks.domain import params, records, versions, workloads, world
from clustertasks.providers import inventory
from clustertasks.service import cloud, control

MAX_NODES = 500
MAX_DRAIN_TIMEOUT = 7 * 24 * 3600
PAUSE_POLICIES = ("FirstBatch", "EveryBatch", "NotPause")
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


def entry(node: world.Node | None, instance: world.Instance) -> dict[str, str]:
    """How a task's parameters name a node: its name ("" before it joined), its instance
    and its pool."""
    return {
        "node_name": node.node_name if node else "",
        "instance_id": instance.instance_id,
        "nodepool_id": instance.nodepool_id,
    }


def drain_options(source: Mapping[str, Any]) -> dict[str, Any]:
    """``drain_timeout`` (seconds) and ``on_drain_timeout`` (``fail`` | ``force``)."""
    timeout = params.integer(source, "drain_timeout", default=1800, low=0, high=MAX_DRAIN_TIMEOUT)
    on_timeout = params.text(source, "on_drain_timeout", default="fail")
    if on_timeout not in ("fail", "force"):
        raise errors.InvalidParameter("on_drain_timeout", "must be fail or force")
    return {"drain_timeout": timeout, "on_drain_timeout": on_timeout}


def newest_nodes(
    provider: inventory.Inventory, cluster_id: str, nodepool_id: str, keep: int
) -> list[dict[str, str]]:
    """The pool's instances beyond the ``keep`` oldest, newest first: what ESS removes when
    a scaling group shrinks."""
    instances = list(provider.list_instances(cluster_id, nodepool_id))
    by_instance = {n.instance_id: n for n in provider.list_nodes(cluster_id, nodepool_id)}
    return [entry(by_instance.get(i.instance_id), i) for i in reversed(instances[keep:])]


class EmulatedCloud(inventory.Inventory, Protocol):
    """The inventory and the simulated cloud's own controls that the emulator's endpoints
    below still reach through this service (the emulator's SimCloud is one)."""

    def get_node(self, cluster_id: str, node_name: str) -> world.Node: ...

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
    ) -> None: ...

    def free_instances(self) -> Sequence[world.Instance]: ...

    async def create_free_instance(
        self, key: str, cluster_id: str, instance_type: str = ""
    ) -> world.Instance: ...

    def set_node_status(self, cluster_id: str, node_name: str, status: str) -> world.Node: ...

    def add_node_fault(
        self, cluster_id: str, node_name: str, action: str, message: str = ""
    ) -> None: ...


class NodeService:
    def __init__(
        self,
        provider: EmulatedCloud,
        task_control: control.TaskControl,
        clouds: cloud.CloudService,
    ) -> None:
        self._cloud = provider
        self._control = task_control
        self._clouds = clouds

    # -- removal ---------------------------------------------------------------------------

    def remove_nodepool_nodes(
        self, cluster_id: str, nodepool_id: str, query: Mapping[str, Any]
    ) -> cloud.Submitted:
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

    def delete_cluster_nodes(self, cluster_id: str, body: Mapping[str, Any]) -> cloud.Submitted:
        """DeleteClusterNodes: node names of any pools of the cluster, in a JSON body."""
        cluster = self._clouds.cluster(cluster_id)
        names = params.text_list(body, "nodes", max_items=MAX_NODES)
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
    ) -> cloud.Submitted:
        parameters = {
            "nodepool_id": nodepool_id,
            "nodes": [dict(n) for n in nodes],
            "drain_node": params.boolean(source, "drain_node"),
            "release_node": params.boolean(source, "release_node"),
            "concurrency": params.boolean(source, "concurrency"),
            **drain_options(source),
        }
        outcome = self._control.submit(
            "cluster_node_delete", cluster_id=cluster_id, target=target, parameters=parameters
        )
        return cloud.Submitted(outcome.task, cluster_id=cluster_id, nodepool_id=nodepool_id)

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
            chosen[node.instance_id] = entry(node, instances[node.instance_id])
        for instance_id in instance_ids:
            found = instances.get(instance_id)
            if found is None or (nodepool_id is not None and found.nodepool_id != nodepool_id):
                raise errors.InvalidParameter(
                    field or "instance_ids",
                    f"the instance {instance_id} is not in "
                    + (f"node pool {nodepool_id}" if nodepool_id else f"cluster {cluster_id}"),
                )
            chosen[instance_id] = entry(by_instance.get(instance_id), found)
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
    ) -> cloud.Submitted:
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
        names = params.text_list(body, "node_names", max_items=MAX_NODES)
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
            **drain_options(body),
        }
        outcome = self._control.submit(
            "nodepool_upgrade",
            cluster_id=cluster.cluster_id,
            target=records.Target(pool.nodepool_id, "nodepool"),
            parameters=parameters,
        )
        return cloud.Submitted(outcome.task, cluster.cluster_id, pool.nodepool_id)

    def upgrade_cluster(self, cluster_id: str, body: Mapping[str, Any]) -> cloud.Submitted:
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
            **drain_options(body),
        }
        outcome = self._control.submit(
            "cluster_upgrade",
            cluster_id=cluster.cluster_id,
            target=records.Target(cluster.cluster_id, "cluster"),
            parameters=parameters,
        )
        return cloud.Submitted(outcome.task, cluster.cluster_id)

    def _check_version(self, field: str, version: str) -> None:
        known = list(self._cloud.kubernetes_versions())
        if version not in known:
            raise errors.InvalidParameter(
                field, f"unknown Kubernetes version {version!r}; known: {', '.join(known)}"
            )

    def _pool_nodes(self, cluster_id: str, nodepool_id: str) -> list[dict[str, str]]:
        instances = {i.instance_id: i for i in self._cloud.list_instances(cluster_id, nodepool_id)}
        return [
            entry(node, instances[node.instance_id])
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
    ) -> cloud.Submitted:
        cluster = self._clouds.cluster(cluster_id)
        pool = self._clouds.nodepool(cluster.cluster_id, nodepool_id).pool
        names = params.text_list(body, "nodes", max_items=MAX_NODES)
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
        )
        return cloud.Submitted(outcome.task, cluster.cluster_id, pool.nodepool_id)

    def attach_instances(
        self, cluster_id: str, nodepool_id: str, body: Mapping[str, Any]
    ) -> cloud.Submitted:
        cluster = self._clouds.cluster(cluster_id)
        pool = self._clouds.nodepool(cluster.cluster_id, nodepool_id).pool
        instances = list(dict.fromkeys(params.text_list(body, "instances", max_items=100)))
        if not instances:
            raise errors.InvalidParameter("instances", "is required")
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
        )
        return cloud.Submitted(outcome.task, cluster.cluster_id, pool.nodepool_id)

    # -- the emulator's own endpoints ------------------------------------------------------

    def declare_workloads(self, cluster_id: str, body: Mapping[str, Any]) -> None:
        cluster = self._clouds.cluster(cluster_id)
        declared = [
            _workload(cluster.cluster_id, item, f"deployments[{i}].", workloads.DEPLOYMENT)
            for i, item in enumerate(params.object_list(body, "deployments"))
        ]
        declared += [
            _workload(cluster.cluster_id, item, f"daemonsets[{i}].", workloads.DAEMONSET)
            for i, item in enumerate(params.object_list(body, "daemonsets"))
        ]
        budgets = [
            _budget(cluster.cluster_id, item, f"pdbs[{i}].")
            for i, item in enumerate(params.object_list(body, "pdbs"))
        ]
        self._cloud.declare_workloads(cluster.cluster_id, declared, budgets)

    def workloads(self, cluster_id: str) -> dict[str, Any]:
        cluster = self._clouds.cluster(cluster_id)
        items = self._cloud.list_workloads(cluster.cluster_id)
        return {
            "deployments": [_workload_doc(w) for w in items if w.kind == workloads.DEPLOYMENT],
            "daemonsets": [_workload_doc(w) for w in items if w.kind == workloads.DAEMONSET],
            "pdbs": [
                {
                    "name": b.name,
                    "selector": dict(b.selector),
                    "min_available": b.min_available,
                    "max_unavailable": b.max_unavailable,
                }
                for b in self._cloud.list_budgets(cluster.cluster_id)
            ],
            "pods": [
                {
                    "name": p.name,
                    "workload": p.workload,
                    "kind": p.kind,
                    "node_name": p.node_name,
                    "phase": p.phase,
                    "cpu": p.cpu_millis,
                }
                for p in self._cloud.list_pods(cluster.cluster_id)
            ],
        }

    async def create_free_instances(self, body: Mapping[str, Any]) -> list[world.Instance]:
        cluster = self._clouds.cluster(params.text(body, "cluster_id", required=True))
        count = params.integer(body, "count", default=1, low=1, high=50) or 1
        instance_type = params.text(body, "instance_type", default="ecs.g7.large")
        self._cloud.check_instance_types([instance_type])
        token = params.text(body, "client_token", max_length=64) or uuid.uuid4().hex
        return [
            await self._cloud.create_free_instance(
                f"emulator/instances/{token}/{n}", cluster.cluster_id, instance_type
            )
            for n in range(1, count + 1)
        ]

    def free_instances(self) -> Sequence[world.Instance]:
        return self._cloud.free_instances()

    def set_node_status(
        self, cluster_id: str, node_name: str, body: Mapping[str, Any]
    ) -> world.Node:
        cluster = self._clouds.cluster(cluster_id)
        status = params.text(body, "node_status", required=True)
        self._cloud.get_node(cluster.cluster_id, node_name)
        return self._cloud.set_node_status(cluster.cluster_id, node_name, status)

    def add_node_fault(self, cluster_id: str, node_name: str, body: Mapping[str, Any]) -> None:
        cluster = self._clouds.cluster(cluster_id)
        self._cloud.add_node_fault(
            cluster.cluster_id,
            node_name,
            params.text(body, "action", required=True),
            params.text(body, "message", max_length=1024),
        )


# -- parsing ---------------------------------------------------------------------------------


def _json_list(source: Mapping[str, Any], key: str) -> list[str]:
    """A list sent as a JSON array string in a query (``["a","b"]``), or a real list."""
    value = source.get(key)
    if value is None or value == "":
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            value = [part.strip() for part in value.split(",") if part.strip()]
    return params.text_list({key: value}, key, max_items=MAX_NODES)


def _rolling_policy(body: Mapping[str, Any]) -> dict[str, Any]:
    rolling = params.obj(body, "rolling_policy")
    path = "rolling_policy."
    pause_policy = params.text(rolling, "pause_policy", path, default="NotPause")
    if pause_policy not in PAUSE_POLICIES:
        raise errors.InvalidParameter(
            f"{path}pause_policy", f"must be one of {', '.join(PAUSE_POLICIES)}"
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
            rolling, "max_failed_nodes", path, default=0, low=0, high=MAX_NODES
        ),
        "pause_policy": pause_policy,
    }


def _labels(item: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
    found = params.obj(item, key, path)
    if "matchLabels" in found:
        found = params.obj(found, "matchLabels", f"{path}{key}.")
    labels = {}
    for name, value in found.items():
        if not isinstance(value, str):
            raise errors.InvalidParameter(f"{path}{key}.{name}", "must be a string")
        labels[str(name)] = value
    return labels


def _cpu(item: Mapping[str, Any], path: str, default: int) -> int:
    """``cpu`` as millicores: ``250``, ``"250m"`` or ``"0.25"`` cores."""
    value = item.get("cpu")
    if value is None:
        return default
    if isinstance(value, str) and value.endswith("m"):
        value = value[:-1]
    elif isinstance(value, str):
        try:
            return max(1, round(float(value) * 1000))
        except ValueError:
            raise errors.InvalidParameter(f"{path}cpu", "must be like 250m or 0.25") from None
    return params.integer({"cpu": value}, "cpu", path, low=1, high=512_000) or default


def _workload(cluster_id: str, item: Mapping[str, Any], path: str, kind: str) -> workloads.Workload:
    name = params.text(item, "name", path, required=True, max_length=200)
    replicas = 0
    if kind == workloads.DEPLOYMENT:
        replicas = params.integer(item, "replicas", path, default=1, low=0, high=1000) or 0
    default_cpu = workloads.DEFAULT_CPU_MILLIS if kind == workloads.DEPLOYMENT else 50
    return workloads.Workload(
        cluster_id=cluster_id,
        name=name,
        kind=kind,
        replicas=replicas,
        cpu_millis=_cpu(item, path, default_cpu),
        labels={"app": name, **_labels(item, "labels", path)},
    )


def _budget(cluster_id: str, item: Mapping[str, Any], path: str) -> workloads.DisruptionBudget:
    name = params.text(item, "name", path, required=True, max_length=200)
    selector = _labels(item, "selector", path)
    if not selector:
        raise errors.InvalidParameter(f"{path}selector", "needs at least one label")
    low = params.integer(item, "min_available", path, low=0) if "min_available" in item else None
    if low is None and "minAvailable" in item:
        low = params.integer(item, "minAvailable", path, low=0)
    high = (
        params.integer(item, "max_unavailable", path, low=0)
        if "max_unavailable" in item
        else params.integer(item, "maxUnavailable", path, low=0)
    )
    if (low is None) == (high is None):
        raise errors.InvalidParameter(
            f"{path}min_available", "give exactly one of min_available and max_unavailable"
        )
    return workloads.DisruptionBudget(cluster_id, name, selector, low, high)


def _workload_doc(item: workloads.Workload) -> dict[str, Any]:
    return {
        "name": item.name,
        "replicas": item.replicas,
        "cpu": item.cpu_millis,
        "labels": dict(item.labels),
    }
