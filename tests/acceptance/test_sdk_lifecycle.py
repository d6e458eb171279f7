"""Cluster and node-pool lifecycle with the official SDK against ``clustertasks serve``."""

from __future__ import annotations

from xml.etree import ElementTree

import httpx
import pytest
from alibabacloud_cs20151215 import models as cs_models
from alibabacloud_tea_openapi.exceptions import ClientException

from clustertasks.emulator import catalogue
from clustertasks.emulator import cloud as sim_cloud
from tests.acceptance import sdk
from tests.support import signing
from tests.support.server import ServerProcess


def test_cluster_pool_scale_modify_delete(executor_server: ServerProcess) -> None:
    server = executor_server
    client = sdk.client(server)

    cluster_id, created = sdk.create_cluster(client, pool_size=2)
    assert created.state == "success", created.error.message
    assert created.task_type == "cluster_create"
    assert (created.target.id, created.target.type) == (cluster_id, "cluster")
    detail = client.describe_cluster_detail(cluster_id).body
    assert (detail.cluster_id, detail.state, detail.size) == (cluster_id, "running", 2)
    assert detail.name == "demo"
    assert detail.current_version == "1.32.1-aliyun.1"

    pools = client.describe_cluster_node_pools(
        cluster_id, cs_models.DescribeClusterNodePoolsRequest()
    ).body.nodepools
    assert len(pools) == 1
    pool_id = pools[0].nodepool_info.nodepool_id
    assert pools[0].status.state == "active"
    assert pools[0].status.total_nodes == 2

    # Scale out by 3: DescribeTaskInfo key by key.
    scale = client.scale_cluster_node_pool(
        cluster_id, pool_id, cs_models.ScaleClusterNodePoolRequest(count=3)
    )
    assert scale.body.task_id.startswith("T-")
    task = sdk.wait_task(client, scale.body.task_id)
    raw = httpx.get(
        f"{server.url}/tasks/{scale.body.task_id}", trust_env=False, auth=signing.auth()
    ).json()
    assert task.state == "success"
    assert task.task_type == "cluster_scaleout"
    assert task.cluster_id == cluster_id
    assert (task.target.id, task.target.type) == (pool_id, "nodepool")
    assert task.parameters == {"nodepool_id": pool_id, "count": 3, "desired_size": 5}
    assert [s["name"] for s in raw["stages"]] == [
        "Precheck",
        "CreateInstances",
        "JoinNodes",
        "Finish",
    ]
    assert [s.state for s in task.stages] == ["success"] * 4
    assert all(s.start_time and s.end_time for s in task.stages)
    assert task.current_stage == "Finish"
    assert task.stages[1].outputs["instances_total"] == 3
    assert task.stages[1].outputs["instances_created"] == 3
    assert task.stages[2].outputs["nodes_total"] == 3
    assert task.stages[2].outputs["nodes_done"] == 3
    assert len(task.task_result) == 3
    assert all(r.data.startswith("i-") and r.status == "success" for r in task.task_result)
    assert (task.error.code, task.error.message) == ("", "")
    reasons = [e.reason for e in task.events]
    assert reasons[0] == "TaskStart"
    assert reasons[-1] == "TaskSucceed"
    assert reasons.count("InstanceCreated") == 3
    assert reasons.count("NodeJoined") == 3
    for event in task.events:
        assert event.source == "ACK"
        assert event.level == "Normal"
        assert event.timestamp.isdigit()
    instance_ids = {r.data for r in task.task_result}
    joined = [e.message for e in task.events if e.reason == "NodeJoined"]
    assert all(any(i in message for i in instance_ids) for message in joined)

    nodes = client.describe_cluster_nodes(
        cluster_id, cs_models.DescribeClusterNodesRequest(nodepool_id=pool_id, page_size="50")
    ).body
    assert nodes.page.total_count == 5
    assert {n.node_status for n in nodes.nodes} == {"Ready"}
    assert instance_ids <= {n.instance_id for n in nodes.nodes}
    pool = client.describe_cluster_node_pool_detail(cluster_id, pool_id).body
    assert (pool.status.state, pool.status.total_nodes, pool.scaling_group.desired_size) == (
        "active",
        5,
        5,
    )

    # The same task in XML carries the same values.
    xml = httpx.get(
        f"{server.url}/tasks/{scale.body.task_id}",
        headers={"Accept": "application/xml"},
        trust_env=False,
        auth=signing.auth(),
    )
    root = ElementTree.fromstring(xml.content)
    assert root.tag == "DescribeTaskInfoResponse"
    assert root.findtext("state") == "success"
    assert [s.findtext("name") for s in root.findall("stages")] == [
        "Precheck",
        "CreateInstances",
        "JoinNodes",
        "Finish",
    ]
    assert {r.findtext("data") for r in root.findall("task_result")} == instance_ids
    assert root.findtext("stages/outputs/instances_total") == "3"

    # Modify: grow the desired size and relabel the nodes.
    modify = client.modify_cluster_node_pool(
        cluster_id,
        pool_id,
        cs_models.ModifyClusterNodePoolRequest(
            scaling_group=cs_models.ModifyClusterNodePoolRequestScalingGroup(desired_size=6),
            kubernetes_config=cs_models.ModifyClusterNodePoolRequestKubernetesConfig(
                labels=[cs_models.Tag(key="team", value="infra")]
            ),
            update_nodes=True,
        ),
    ).body
    assert modify.nodepool_id == pool_id
    modified = sdk.wait_task(client, modify.task_id)
    assert modified.state == "success", modified.error.message
    assert modified.task_type == "nodepool_update"
    labelled = client.describe_cluster_nodes(
        cluster_id, cs_models.DescribeClusterNodesRequest(node_labels="team=infra", page_size="50")
    ).body
    assert labelled.page.total_count == 6
    assert client.describe_cluster_detail(cluster_id).body.size == 6

    # Delete the pool (force) and the cluster: instances released, cluster deleted.
    delete_pool = client.delete_cluster_nodepool(
        cluster_id, pool_id, cs_models.DeleteClusterNodepoolRequest(force=True)
    ).body
    assert delete_pool.request_id
    removed = sdk.wait_task(client, delete_pool.task_id)
    assert removed.state == "success", removed.error.message
    assert len(removed.task_result) == 6
    assert {r.status for r in removed.task_result} == {"success"}
    with pytest.raises(ClientException) as gone:
        client.describe_cluster_node_pool_detail(cluster_id, pool_id)
    assert gone.value.code == "ErrorNodePoolNotFound"
    assert gone.value.status_code == 404

    deleted = client.delete_cluster(cluster_id, cs_models.DeleteClusterRequest()).body
    assert deleted.cluster_id == cluster_id
    assert sdk.wait_task(client, deleted.task_id).state == "success"
    with pytest.raises(ClientException) as missing:
        client.describe_cluster_detail(cluster_id)
    assert missing.value.code == "ErrorClusterNotFound"
    listed = client.describe_clusters_v1(cs_models.DescribeClustersV1Request()).body
    assert cluster_id not in {c.cluster_id for c in listed.clusters}


def test_stock_out_is_reported_honestly(server: ServerProcess, sim: sim_cloud.SimCloud) -> None:
    client = sdk.client(server)
    cluster_id, _ = sdk.create_cluster(client, pool_size=0)
    pool = client.create_cluster_node_pool(
        cluster_id, sdk.pool_request("scarce", 2, ["ecs.g7.large", "ecs.g7.xlarge"])
    ).body
    assert sdk.wait_task(client, pool.task_id).state == "success"
    for zone in catalogue.zones("cn-hangzhou"):
        sim.set_stock("ecs.g7.large", zone, 0)
        sim.set_stock("ecs.g7.xlarge", zone, 0)
    zone = client.describe_cluster_nodes(
        cluster_id, cs_models.DescribeClusterNodesRequest()
    ).body.nodes[0]
    # One more instance of the fallback type in the pool's zone, then nothing.
    for z in catalogue.zones("cn-hangzhou"):
        sim.set_stock("ecs.g7.xlarge", z, 1)

    scale = client.scale_cluster_node_pool(
        cluster_id, pool.nodepool_id, cs_models.ScaleClusterNodePoolRequest(count=3)
    ).body
    task = sdk.wait_task(client, scale.task_id)
    assert task.state == "fail"
    assert task.error.code == "InstanceCreateFailed"
    assert "ecs.g7.large" in task.error.message
    assert "ecs.g7.xlarge" in task.error.message
    assert "cn-hangzhou-" in task.error.message
    assert [(r.status) for r in task.task_result] == ["success"], [
        (s.state, s.message, s.outputs) for s in task.stages
    ] + [(e.reason, e.message) for e in task.events]
    assert task.events[-1].reason in ("TaskFailed", "NodePoolScaleOutFailed") or any(
        e.reason == "TaskFailed" and e.level == "Warning" for e in task.events
    )
    detail = client.describe_cluster_node_pool_detail(cluster_id, pool.nodepool_id).body
    assert detail.status.state == "active"
    assert detail.status.total_nodes == 3
    assert detail.scaling_group.desired_size == 3
    assert zone.node_status == "Ready"


def test_quota_and_bad_requests_create_nothing(server: ServerProcess) -> None:
    client = sdk.client(server)
    cluster_id, _ = sdk.create_cluster(client, pool_size=1)
    pool_id = (
        client.describe_cluster_node_pools(cluster_id, cs_models.DescribeClusterNodePoolsRequest())
        .body.nodepools[0]
        .nodepool_info.nodepool_id
    )
    before = client.describe_cluster_tasks(
        cluster_id, cs_models.DescribeClusterTasksRequest()
    ).body.page_info.total_count

    def refused(call: object, code: str, status: int, field: str) -> None:
        with pytest.raises(ClientException) as caught:
            call()  # type: ignore[operator]
        assert (caught.value.code, caught.value.status_code) == (code, status)
        assert field in caught.value.message

    refused(
        lambda: client.scale_cluster_node_pool(
            cluster_id, pool_id, cs_models.ScaleClusterNodePoolRequest(count=500)
        ),
        "QuotaExceeded.Node",
        400,
        cluster_id,
    )
    refused(
        lambda: client.scale_cluster_node_pool(
            cluster_id, pool_id, cs_models.ScaleClusterNodePoolRequest(count=0)
        ),
        "InvalidParameter",
        400,
        "count",
    )
    refused(
        lambda: client.scale_cluster_node_pool(
            cluster_id, pool_id, cs_models.ScaleClusterNodePoolRequest(count=501)
        ),
        "InvalidParameter",
        400,
        "count",
    )
    refused(
        lambda: client.create_cluster_node_pool(
            cluster_id, sdk.pool_request("bad", 1, ["ecs.nope.huge"])
        ),
        "InvalidParameter",
        400,
        "scaling_group.instance_types",
    )
    refused(
        lambda: client.scale_cluster_node_pool(
            "c-unknown", pool_id, cs_models.ScaleClusterNodePoolRequest(count=1)
        ),
        "ErrorClusterNotFound",
        404,
        "c-unknown",
    )
    refused(
        lambda: client.scale_cluster_node_pool(
            cluster_id, "np-unknown", cs_models.ScaleClusterNodePoolRequest(count=1)
        ),
        "ErrorNodePoolNotFound",
        404,
        "np-unknown",
    )
    clusters_before = len(
        client.describe_clusters_v1(cs_models.DescribeClustersV1Request()).body.clusters
    )
    no_vswitch = cs_models.CreateClusterRequest(
        name="nowhere",
        region_id="cn-hangzhou",
        kubernetes_version="1.32.1-aliyun.1",
        nodepools=[
            cs_models.Nodepool(
                nodepool_info=cs_models.NodepoolNodepoolInfo(name="pool-a"),
                scaling_group=cs_models.NodepoolScalingGroup(
                    instance_types=["ecs.g7.large"], desired_size=1
                ),
            )
        ],
    )
    refused(
        lambda: client.create_cluster(no_vswitch),
        "InvalidParameter",
        400,
        "nodepools[0].scaling_group.vswitch_ids",
    )
    clusters = client.describe_clusters_v1(cs_models.DescribeClustersV1Request()).body.clusters
    assert len(clusters) == clusters_before
    after = client.describe_cluster_tasks(
        cluster_id, cs_models.DescribeClusterTasksRequest()
    ).body.page_info.total_count
    assert after == before
    pools = client.describe_cluster_node_pools(
        cluster_id, cs_models.DescribeClusterNodePoolsRequest()
    ).body.nodepools
    assert len(pools) == 1
    assert pools[0].scaling_group.desired_size == 1
