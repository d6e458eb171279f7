"""Drain, node removal, rolling upgrades, repair and attach with the official SDK against
``clustertasks serve --sim-speed 0``."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from alibabacloud_cs20151215 import models as cs_models
from alibabacloud_cs20151215.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException

from clustertasks.emulator import cloud as sim_cloud
from tests.acceptance import sdk
from tests.support import signing
from tests.support.server import ServerProcess

OLD = "1.31.1-aliyun.1"
NEW = "1.32.1-aliyun.1"


def _cluster(client: Client, size: int, version: str = NEW) -> tuple[str, str]:
    """A running cluster with one pool of ``size`` nodes; returns (cluster id, pool id)."""
    request = cs_models.CreateClusterRequest(
        name="nodes",
        region_id="cn-hangzhou",
        cluster_type="ManagedKubernetes",
        kubernetes_version=version,
        vswitch_ids=["vsw-hangzhou-h"],
        nodepools=[
            cs_models.Nodepool(
                nodepool_info=cs_models.NodepoolNodepoolInfo(name="pool-a"),
                scaling_group=cs_models.NodepoolScalingGroup(
                    instance_types=["ecs.g7.large"], desired_size=size
                ),
            )
        ],
    )
    body = client.create_cluster(request).body
    created = sdk.wait_task(client, body.task_id)
    assert created.state == "success", (created.error.code, created.error.message)
    pools = client.describe_cluster_node_pools(
        body.cluster_id, cs_models.DescribeClusterNodePoolsRequest()
    ).body.nodepools
    return body.cluster_id, pools[0].nodepool_info.nodepool_id


def _nodes(client: Client, cluster_id: str, pool_id: str | None = None) -> list[Any]:
    request = cs_models.DescribeClusterNodesRequest(nodepool_id=pool_id, page_size="100")
    nodes: list[Any] = client.describe_cluster_nodes(cluster_id, request).body.nodes
    return sorted(nodes, key=lambda n: n.node_name)


def _emulator(server: ServerProcess, method: str, path: str, **kwargs: Any) -> Any:
    response = httpx.request(
        method, f"{server.url}{path}", auth=signing.auth(), trust_env=False, **kwargs
    )
    assert response.status_code == 200, response.text
    return response.json()


def _workloads(server: ServerProcess, cluster_id: str, body: dict[str, Any] | None = None) -> Any:
    path = f"/_emulator/clusters/{cluster_id}/workloads"
    if body is None:
        return _emulator(server, "GET", path)
    return _emulator(server, "POST", path, json=body)


class _Stage:
    """A stage of the task by its ``name`` (an extension the SDK drops)."""

    def __init__(self, raw: dict[str, Any]) -> None:
        self.state: str = raw["state"]
        self.outputs: dict[str, Any] = raw["outputs"]


def _stage(server: ServerProcess, task: Any, name: str) -> _Stage:
    raw = _emulator(server, "GET", f"/tasks/{task.task_id}")
    return _Stage(next(s for s in raw["stages"] if s["name"] == name))


def _raw(server: ServerProcess, task_id: str) -> Any:
    return _emulator(server, "GET", f"/tasks/{task_id}")


def _reasons(task: Any) -> list[str]:
    return [e.reason for e in task.events]


# -- removal -----------------------------------------------------------------------------------


def test_remove_two_of_five_nodes_with_drain_and_release(
    server: ServerProcess, sim: sim_cloud.SimCloud
) -> None:
    client = sdk.client(server)
    cluster_id, pool_id = _cluster(client, 5)
    declared = _workloads(
        server,
        cluster_id,
        {
            "deployments": [{"name": "web", "replicas": 5}],
            "daemonsets": [{"name": "logger"}],
            "pdbs": [{"name": "web-pdb", "selector": {"app": "web"}, "minAvailable": 4}],
        },
    )
    assert {p["phase"] for p in declared["pods"]} == {"Running"}
    assert sum(p["kind"] == "DaemonSet" for p in declared["pods"]) == 5
    nodes = _nodes(client, cluster_id, pool_id)
    leaving = nodes[:2]
    staying = {n.node_name for n in nodes[2:]}

    removed = client.remove_node_pool_nodes(
        cluster_id,
        pool_id,
        cs_models.RemoveNodePoolNodesRequest(
            instance_ids=[n.instance_id for n in leaving],
            drain_node=True,
            release_node=True,
            concurrency=True,
        ),
    ).body
    assert removed.request_id
    task = sdk.wait_task(client, removed.task_id)
    assert task.state == "success", task.error.message
    assert task.task_type == "cluster_node_delete"
    assert (task.target.id, task.target.type) == (pool_id, "nodepool")
    assert task.parameters["drain_node"] is True
    assert task.parameters["release_node"] is True
    assert [s["name"] for s in _raw(server, removed.task_id)["stages"]] == [
        "Precheck",
        "DrainNodes",
        "RemoveNodes",
        "Finish",
    ]
    assert {(r.data, r.status) for r in task.task_result} == {
        (n.instance_id, "success") for n in leaving
    }
    assert _stage(server, task, "DrainNodes").outputs["nodes_drained"] == 2
    assert _stage(server, task, "RemoveNodes").outputs["nodes_removed"] == 2
    reasons = _reasons(task)
    assert reasons.count("NodeCordoned") == 2
    assert reasons.count("NodeRemoved") == 2
    assert "DrainBlockedByPDB" not in reasons
    evicted = [e.message for e in task.events if e.reason == "PodEvicted"]
    assert evicted
    assert all(any(n.node_name in m for n in leaving) for m in evicted)

    assert {n.node_name for n in _nodes(client, cluster_id, pool_id)} == staying
    pool = client.describe_cluster_node_pool_detail(cluster_id, pool_id).body
    assert (pool.status.state, pool.status.total_nodes, pool.scaling_group.desired_size) == (
        "active",
        3,
        3,
    )
    for node in leaving:
        assert sim.get_instance(node.instance_id).status == "Released"
    pods = _workloads(server, cluster_id)["pods"]
    web = [p for p in pods if p["workload"] == "web"]
    assert len(web) == 5
    assert all(p["phase"] == "Running" for p in web)
    assert {p["node_name"] for p in pods} == staying
    assert sum(p["kind"] == "DaemonSet" for p in pods) == 3


def test_pdb_blocking_a_drain_fails_with_drain_timeout(server: ServerProcess) -> None:
    client = sdk.client(server)
    cluster_id, pool_id = _cluster(client, 2)
    _workloads(
        server,
        cluster_id,
        {
            "deployments": [{"name": "db", "replicas": 2}],
            "pdbs": [{"name": "db-pdb", "selector": {"app": "db"}, "min_available": 2}],
        },
    )
    victim = _nodes(client, cluster_id, pool_id)[0]
    pod = next(
        p["name"]
        for p in _workloads(server, cluster_id)["pods"]
        if p["node_name"] == victim.node_name
    )

    # The SDK cannot send the drain_timeout extension: the default (1800 simulated
    # seconds) applies, counted in retry rounds, so at speed 0 it still ends.
    removed = client.remove_node_pool_nodes(
        cluster_id,
        pool_id,
        cs_models.RemoveNodePoolNodesRequest(
            nodes=[victim.node_name], drain_node=True, release_node=True
        ),
    ).body
    task = sdk.wait_task(client, removed.task_id)
    assert task.state == "fail"
    assert task.error.code == "DrainTimeout"
    for name in (victim.node_name, pod, "db-pdb"):
        assert name in task.error.message
    assert [(r.data, r.status) for r in task.task_result] == [(victim.instance_id, "failed")]
    blocked = [e for e in task.events if e.reason == "DrainBlockedByPDB"]
    assert len(blocked) == 1
    assert blocked[0].level == "Warning"
    assert pod in blocked[0].message
    assert "db-pdb" in blocked[0].message
    assert "NodeRemoved" not in _reasons(task)
    # Nothing happened to the node but a cordon, which was undone.
    kept = _nodes(client, cluster_id, pool_id)
    assert victim.node_name in {n.node_name for n in kept}
    pods = _workloads(server, cluster_id)["pods"]
    assert next(p for p in pods if p["name"] == pod)["node_name"] == victim.node_name
    pool = client.describe_cluster_node_pool_detail(cluster_id, pool_id).body
    assert (pool.status.state, pool.scaling_group.desired_size) == ("active", 2)

    # on_drain_timeout=force (an extension, in the query): the pod is deleted anyway.
    query = {
        "nodes": f'["{victim.node_name}"]',
        "drain_node": "True",
        "release_node": "False",
        "drain_timeout": "60",
        "on_drain_timeout": "force",
    }
    forced = _emulator(
        server, "DELETE", f"/clusters/{cluster_id}/nodepools/{pool_id}/nodes", params=query
    )
    task = sdk.wait_task(client, forced["task_id"])
    assert task.state == "success", task.error.message
    warning = [e for e in task.events if e.reason == "DrainForced"]
    assert len(warning) == 1
    assert warning[0].level == "Warning"
    assert pod in warning[0].message
    assert "db-pdb" in warning[0].message
    assert "60s" in warning[0].message
    assert victim.node_name not in {n.node_name for n in _nodes(client, cluster_id)}
    moved = next(p for p in _workloads(server, cluster_id)["pods"] if p["name"] == pod)
    assert moved["node_name"] != victim.node_name


def test_remove_without_release_then_attach_to_another_pool(server: ServerProcess) -> None:
    client = sdk.client(server)
    cluster_id, pool_a = _cluster(client, 3)
    created = client.create_cluster_node_pool(cluster_id, sdk.pool_request("pool-b", 1)).body
    assert sdk.wait_task(client, created.task_id).state == "success"
    pool_b = created.nodepool_id
    leaving, busy = _nodes(client, cluster_id, pool_a)[:2]

    removed = client.delete_cluster_nodes(
        cluster_id,
        cs_models.DeleteClusterNodesRequest(
            nodes=[leaving.node_name], drain_node=True, release_node=False
        ),
    ).body
    assert removed.cluster_id == cluster_id
    task = sdk.wait_task(client, removed.task_id)
    assert task.state == "success", task.error.message
    assert (task.target.id, task.target.type) == (cluster_id, "cluster")
    assert "kept running as a free ECS instance" in next(
        e.message for e in task.events if e.reason == "NodeRemoved"
    )
    free = _emulator(server, "GET", "/_emulator/instances")["instances"]
    assert [i["instance_id"] for i in free] == [leaving.instance_id]
    assert (
        client.describe_cluster_node_pool_detail(cluster_id, pool_a).body.scaling_group.desired_size
        == 2
    )

    attached = client.attach_instances_to_node_pool(
        cluster_id,
        pool_b,
        cs_models.AttachInstancesToNodePoolRequest(instances=[leaving.instance_id]),
    ).body
    assert attached.request_id
    task = sdk.wait_task(client, attached.task_id)
    assert task.state == "success", task.error.message
    assert task.task_type == "cluster_attach"
    assert [(r.data, r.status) for r in task.task_result] == [(leaving.instance_id, "success")]
    joined = {n.instance_id: n for n in _nodes(client, cluster_id, pool_b)}
    assert joined[leaving.instance_id].node_status == "Ready"
    pool = client.describe_cluster_node_pool_detail(cluster_id, pool_b).body
    assert (pool.status.total_nodes, pool.scaling_group.desired_size) == (2, 2)
    assert _emulator(server, "GET", "/_emulator/instances")["instances"] == []

    # A node of a pool is refused before any task exists, naming it; nothing changes.
    made = _emulator(server, "POST", "/_emulator/instances", json={"cluster_id": cluster_id})
    spare = made["instances"][0]["instance_id"]
    tasks_before = client.describe_cluster_tasks(
        cluster_id, cs_models.DescribeClusterTasksRequest()
    ).body.page_info.total_count
    with pytest.raises(ClientException) as refused:
        client.attach_instances_to_node_pool(
            cluster_id,
            pool_b,
            cs_models.AttachInstancesToNodePoolRequest(instances=[spare, busy.instance_id]),
        )
    assert (refused.value.status_code, refused.value.code) == (400, "InstanceNotFree")
    assert busy.instance_id in refused.value.message
    assert pool_a in refused.value.message
    assert (
        client.describe_cluster_tasks(
            cluster_id, cs_models.DescribeClusterTasksRequest()
        ).body.page_info.total_count
        == tasks_before
    )
    assert [
        i["instance_id"] for i in _emulator(server, "GET", "/_emulator/instances")["instances"]
    ] == [spare]

    # Instances unknown at request time fail in the task, one by one, each with its reason.
    bad = client.attach_instances_to_node_pool(
        cluster_id,
        pool_b,
        cs_models.AttachInstancesToNodePoolRequest(instances=[spare, "i-doesnotexist000000"]),
    ).body
    task = sdk.wait_task(client, bad.task_id)
    assert task.state == "fail"
    assert {r.data: r.status for r in task.task_result} == {
        spare: "success",
        "i-doesnotexist000000": "failed",
    }
    failures = [e.message for e in task.events if e.reason == "InstanceAttachFailed"]
    assert any("InstanceNotFound" in m and "i-doesnotexist000000" in m for m in failures)
    assert task.error.code == "InstanceNotFound"
    assert "i-doesnotexist000000" in task.error.message


def test_shrinking_desired_size_removes_the_newest_nodes(server: ServerProcess) -> None:
    client = sdk.client(server)
    cluster_id, pool_id = _cluster(client, 4)
    _workloads(server, cluster_id, {"deployments": [{"name": "web", "replicas": 4}]})
    modified = client.modify_cluster_node_pool(
        cluster_id,
        pool_id,
        cs_models.ModifyClusterNodePoolRequest(
            scaling_group=cs_models.ModifyClusterNodePoolRequestScalingGroup(desired_size=2)
        ),
    ).body
    task = sdk.wait_task(client, modified.task_id)
    assert task.state == "success", task.error.message
    assert task.task_type == "nodepool_update"
    assert _stage(server, task, "RemoveNodes").outputs["nodes_removed"] == 2
    assert len(task.task_result) == 2
    pool = client.describe_cluster_node_pool_detail(cluster_id, pool_id).body
    assert (pool.status.total_nodes, pool.scaling_group.desired_size) == (2, 2)
    pods = _workloads(server, cluster_id)["pods"]
    assert len(pods) == 4
    assert {p["phase"] for p in pods} == {"Running"}


# -- rolling upgrades ----------------------------------------------------------------------------


def _upgrade_control_plane(client: Client, cluster_id: str) -> None:
    done = client.upgrade_cluster(
        cluster_id, cs_models.UpgradeClusterRequest(next_version=NEW, master_only=True)
    ).body
    task = sdk.wait_task(client, done.task_id)
    assert task.state == "success", task.error.message
    assert task.task_type == "cluster_upgrade"
    assert client.describe_cluster_detail(cluster_id).body.current_version == NEW


def _upgrade_pool(client: Client, cluster_id: str, pool_id: str, **rolling: Any) -> str:
    response = client.upgrade_cluster_nodepool(
        cluster_id,
        pool_id,
        cs_models.UpgradeClusterNodepoolRequest(
            kubernetes_version=NEW,
            rolling_policy=cs_models.UpgradeClusterNodepoolRequestRollingPolicy(**rolling),
        ),
    )
    assert response.body.request_id  # sent as PascalCase RequestId
    task_id: str = response.body.task_id
    return task_id


def test_rolling_upgrade_pauses_after_first_batch_and_resumes(
    executor_server: ServerProcess, executor_sim: sim_cloud.SimCloud
) -> None:
    server, sim = executor_server, executor_sim
    client = sdk.client(server)
    cluster_id, pool_id = _cluster(client, 6, version=OLD)
    _workloads(server, cluster_id, {"deployments": [{"name": "web", "replicas": 6}]})

    with pytest.raises(ClientException) as above:
        _upgrade_pool(client, cluster_id, pool_id, max_parallelism=2)
    assert above.value.code == "InvalidParameter"
    assert NEW in above.value.message
    assert OLD in above.value.message
    _upgrade_control_plane(client, cluster_id)

    task_id = _upgrade_pool(
        client, cluster_id, pool_id, max_parallelism=2, pause_policy="FirstBatch"
    )
    paused = sdk.wait_task(client, task_id, states=("paused", "success", "fail"))
    assert paused.state == "paused"
    assert paused.task_type == "nodepool_upgrade"
    counters = _stage(server, paused, "UpgradeNodes").outputs
    assert (counters["nodes_total"], counters["nodes_done"]) == (6, 2)
    assert (counters["batch"], counters["batches_total"]) == (1, 3)
    upgraded = {r.data for r in paused.task_result if r.status == "success"}
    assert len(upgraded) == 2
    at_new = {n.instance_id for n in sim.list_nodes(cluster_id) if n.kubelet_version == NEW}
    assert at_new == upgraded
    assert sim.get_nodepool(cluster_id, pool_id).kubernetes_version == OLD
    assert "TaskPaused" in _reasons(paused)

    client.resume_task(task_id)
    task = sdk.wait_task(client, task_id)
    assert task.state == "success", task.error.message
    counters = _stage(server, task, "UpgradeNodes").outputs
    assert (counters["nodes_done"], counters["batch"], counters["batches_total"]) == (6, 3, 3)
    assert [r.status for r in task.task_result] == ["success"] * 6
    assert _reasons(task).count("NodeUpgraded") == 6
    assert _reasons(task).count("TaskPaused") == 1
    nodes = _nodes(client, cluster_id, pool_id)
    assert all(n.node_status == "Ready" for n in nodes)
    raw_nodes = sim.list_nodes(cluster_id)
    assert {n.kubelet_version for n in raw_nodes} == {NEW}
    assert all(n.schedulable for n in raw_nodes)
    assert sim.get_nodepool(cluster_id, pool_id).kubernetes_version == NEW


def test_cancel_an_upgrade_after_its_first_batch(
    executor_server: ServerProcess, executor_sim: sim_cloud.SimCloud
) -> None:
    server, sim = executor_server, executor_sim
    client = sdk.client(server)
    cluster_id, pool_id = _cluster(client, 6, version=OLD)
    _upgrade_control_plane(client, cluster_id)
    task_id = _upgrade_pool(
        client, cluster_id, pool_id, max_parallelism=2, pause_policy="FirstBatch"
    )
    assert sdk.wait_task(client, task_id, states=("paused", "success", "fail")).state == "paused"
    client.cancel_task(task_id)
    task = sdk.wait_task(client, task_id)
    assert task.state == "canceled"
    assert _stage(server, task, "UpgradeNodes").state == "canceled"
    assert _stage(server, task, "Finish").state == "canceled"
    statuses = sorted(r.status for r in task.task_result)
    assert statuses == ["initial"] * 4 + ["success"] * 2
    nodes = sim.list_nodes(cluster_id)
    assert sorted(n.kubelet_version for n in nodes) == [OLD] * 4 + [NEW] * 2
    assert all(n.schedulable and n.node_status == "Ready" for n in nodes)
    assert sim.get_nodepool(cluster_id, pool_id).kubernetes_version == OLD
    pool = client.describe_cluster_node_pool_detail(cluster_id, pool_id).body
    assert pool.status.state == "active"


def test_more_failed_nodes_than_max_failed_nodes_fails_the_rollout(
    server: ServerProcess, sim: sim_cloud.SimCloud
) -> None:
    client = sdk.client(server)
    cluster_id, pool_id = _cluster(client, 4, version=OLD)
    _upgrade_control_plane(client, cluster_id)
    nodes = _nodes(client, cluster_id, pool_id)
    broken = [nodes[0].node_name, nodes[1].node_name]
    for name in broken:
        _emulator(
            server,
            "POST",
            f"/_emulator/clusters/{cluster_id}/nodes/{name}/faults",
            json={"action": "upgrade"},
        )
    task_id = _upgrade_pool(client, cluster_id, pool_id, max_parallelism=4, max_failed_nodes=1)
    task = sdk.wait_task(client, task_id)
    assert task.state == "fail"
    assert task.error.code == "MaxFailedNodesExceeded"
    assert all(name in task.error.message for name in broken)
    results = {r.data: r.status for r in task.task_result}
    assert sorted(results.values()) == ["failed", "failed", "success", "success"]
    assert results[nodes[0].instance_id] == results[nodes[1].instance_id] == "failed"
    assert _reasons(task).count("NodeUpgradeFailed") == 2
    versions = {n.node_name: n.kubelet_version for n in sim.list_nodes(cluster_id)}
    assert [versions[name] for name in broken] == [OLD, OLD]
    assert sim.get_nodepool(cluster_id, pool_id).kubernetes_version == OLD

    # Within max_failed_nodes the rollout goes on and reports the failed node honestly.
    retry = _upgrade_pool(client, cluster_id, pool_id, max_parallelism=1, max_failed_nodes=2)
    task = sdk.wait_task(client, retry)
    assert task.state == "success", task.error.message
    assert sorted(r.status for r in task.task_result) == ["failed", "failed", "success", "success"]
    assert "UpgradePartiallySucceeded" in _reasons(task)
    assert sim.get_nodepool(cluster_id, pool_id).kubernetes_version == OLD


# -- repair and versions -------------------------------------------------------------------------


def test_repair_brings_a_not_ready_node_back(
    server: ServerProcess, sim: sim_cloud.SimCloud
) -> None:
    client = sdk.client(server)
    cluster_id, pool_id = _cluster(client, 3)
    sick, healthy = _nodes(client, cluster_id, pool_id)[:2]
    sim.set_node_status(cluster_id, sick.node_name, "NotReady")
    assert {n.node_name: n.node_status for n in _nodes(client, cluster_id)}[
        sick.node_name
    ] == "NotReady"

    repaired = client.repair_cluster_node_pool(
        cluster_id,
        pool_id,
        cs_models.RepairClusterNodePoolRequest(
            nodes=[sick.node_name, healthy.node_name],
            operations=[
                cs_models.RepairClusterNodePoolRequestOperations(operation_id="restart.kubelet")
            ],
        ),
    ).body
    task = sdk.wait_task(client, repaired.task_id)
    assert task.state == "success", task.error.message
    assert task.task_type == "nodepool_repair"
    assert {(r.data, r.status) for r in task.task_result} == {
        (sick.instance_id, "success"),
        (healthy.instance_id, "success"),
    }
    reasons = {e.reason: e.message for e in task.events}
    assert sick.node_name in reasons["NodeRepaired"]
    assert "restart.kubelet" in reasons["NodeRepairStart"]
    assert healthy.node_name in reasons["NodeHealthy"]
    assert {n.node_status for n in _nodes(client, cluster_id)} == {"Ready"}

    # A node the repair cannot fix is named in the error.
    _emulator(
        server,
        "POST",
        f"/_emulator/clusters/{cluster_id}/nodes/{sick.node_name}/status",
        json={"node_status": "NotReady"},
    )
    _emulator(
        server,
        "POST",
        f"/_emulator/clusters/{cluster_id}/nodes/{sick.node_name}/faults",
        json={"action": "repair"},
    )
    failed = client.repair_cluster_node_pool(
        cluster_id, pool_id, cs_models.RepairClusterNodePoolRequest()
    ).body
    task = sdk.wait_task(client, failed.task_id)
    assert task.state == "fail"
    assert task.error.code == "NodeRepairFailed"
    assert sick.node_name in task.error.message
    assert sorted(r.status for r in task.task_result) == ["failed", "success", "success"]


# The versions are a fixed catalogue: past the signature check (on both backends in every
# other test) nothing here reaches the server's database.
@pytest.mark.one_backend
def test_kubernetes_versions_are_listed(server: ServerProcess) -> None:
    client = sdk.client(server)
    items = client.describe_kubernetes_version_metadata(
        cs_models.DescribeKubernetesVersionMetadataRequest(
            region="cn-hangzhou", cluster_type="ManagedKubernetes"
        )
    ).body
    listed = [item.version for item in items]
    assert len(listed) >= 4
    assert listed[-1] == NEW
    assert OLD in listed
    assert next(i for i in items if i.version == OLD).upgradable_versions == [NEW]
