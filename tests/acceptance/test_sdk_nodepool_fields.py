"""Every field of the SDK's CreateClusterNodePoolRequest and ModifyClusterNodePoolRequest
is stored and read back by DescribeClusterNodePoolDetail and DescribeClusterNodePools:
Terraform's Read copies them all, and a field not echoed is a diff on every plan."""

from __future__ import annotations

from typing import Any

import httpx
from alibabacloud_cs20151215 import models as cs_models
from alibabacloud_cs20151215.client import Client

from tests.acceptance import sdk, sdk_models
from tests.support import signing
from tests.support.server import ServerProcess

# Request keys that say what to do, not what the pool is: never read back.
DIRECTIVES = {"count", "update_nodes", "concurrency"}
# Fields the requests carry that the SDK's response models have no field for: echoed on
# the wire, dropped by the SDK when it reads the answer.
NOT_IN_DETAIL_MODEL = {
    "management.auto_upgrade_policy.auto_upgrade_os",
    "management.auto_upgrade_policy.auto_upgrade_runtime",
}
NOT_IN_LIST_MODEL = NOT_IN_DETAIL_MODEL | {
    "host_network",
    "intranet",
    "scaling_group.instance_metadata_options.http_tokens",
}


def _valid(request: Any, *, instance_type: str, effect: str) -> Any:
    """Every field stays filled; the few the cloud checks get values it accepts."""
    request.count = None
    request.nodepool_info.name = "tf-pool"
    request.nodepool_info.type = "ess"
    group = request.scaling_group
    group.instance_types = [instance_type]
    group.vswitch_ids = ["vsw-hangzhou-h"]
    group.desired_size = 1
    group.system_disk_size = 120
    group.login_password = "Secret-1234"
    # ACK reports the first of the list as the (deprecated) single group.
    group.security_group_id = group.security_group_ids[0]
    request.kubernetes_config.taints[0].effect = effect
    return request


def _read(server: ServerProcess, client: Client, cluster_id: str, pool_id: str) -> Any:
    raw = httpx.get(
        f"{server.url}/clusters/{cluster_id}/nodepools/{pool_id}",
        auth=signing.auth(),
        trust_env=False,
    ).json()
    detail = client.describe_cluster_node_pool_detail(cluster_id, pool_id).body.to_map()
    listed = client.describe_cluster_node_pools(
        cluster_id, cs_models.DescribeClusterNodePoolsRequest()
    ).body.nodepools
    (item,) = [p.to_map() for p in listed if p.nodepool_info.nodepool_id == pool_id]
    return raw, detail, item


def _assert_read_back(applied: dict[str, Any], reads: tuple[Any, Any, Any]) -> None:
    raw, detail, item = reads
    expected = [
        (path, value)
        for path, value in sdk_models.leaves(applied)
        if path.split(".")[0] not in DIRECTIVES
    ]
    assert len(expected) > 100, "the walk should reach every field"
    for path, value in expected:
        wanted = "" if path == "scaling_group.login_password" else value
        assert sdk_models.at(raw, path) == wanted, path
        if path not in NOT_IN_DETAIL_MODEL:
            assert sdk_models.at(detail, path) == wanted, path
        if path not in NOT_IN_LIST_MODEL:
            assert sdk_models.at(item, path) == wanted, path


def test_every_create_and_modify_field_reads_back(server: ServerProcess) -> None:
    client = sdk.client(server)
    cluster_id, created = sdk.create_cluster(client, pool_size=0)
    assert created.state == "success"

    create = _valid(
        sdk_models.filled(cs_models.CreateClusterNodePoolRequest, 1),
        instance_type="ecs.g7.large",
        effect="NoSchedule",
    )
    answer = client.create_cluster_node_pool(cluster_id, create).body
    task = sdk.wait_task(client, answer.task_id)
    assert task.state == "success", (task.error.code, task.error.message)
    reads = _read(server, client, cluster_id, answer.nodepool_id)
    _assert_read_back(create.to_map(), reads)
    assert reads[1]["status"]["total_nodes"] == 1

    # Every field changed (booleans flipped): the second read shows the new values.
    modify = _valid(
        sdk_models.filled(cs_models.ModifyClusterNodePoolRequest, 2),
        instance_type="ecs.g7.xlarge",
        effect="NoExecute",
    )
    # The SDK types this one a string in ModifyClusterNodePoolRequest (a boolean
    # everywhere else); ACK reads "true"/"false" and answers a boolean.
    modify.eflo_node_group.auto_attach_enabled = "false"
    answer = client.modify_cluster_node_pool(cluster_id, answer.nodepool_id, modify).body
    task = sdk.wait_task(client, answer.task_id)
    assert task.state == "success", (task.error.code, task.error.message)
    applied = modify.to_map()
    applied["eflo_node_group"]["auto_attach_enabled"] = False
    _assert_read_back(applied, _read(server, client, cluster_id, answer.nodepool_id))


def test_a_partial_modify_keeps_what_it_does_not_name(server: ServerProcess) -> None:
    client = sdk.client(server)
    cluster_id, _ = sdk.create_cluster(client, pool_size=0)
    create = sdk.pool_request("partial", 0)
    create.management = cs_models.CreateClusterNodePoolRequestManagement(
        enable=True, auto_repair=True, auto_upgrade=True
    )
    create.scaling_group.security_group_ids = ["sg-1", "sg-2"]
    create.scaling_group.tags = [cs_models.Tag(key="team", value="a")]
    created = client.create_cluster_node_pool(cluster_id, create).body
    assert sdk.wait_task(client, created.task_id).state == "success"
    pool_id = created.nodepool_id

    modify = cs_models.ModifyClusterNodePoolRequest(
        management=cs_models.ModifyClusterNodePoolRequestManagement(auto_upgrade=False),
    )
    task = sdk.wait_task(
        client, client.modify_cluster_node_pool(cluster_id, pool_id, modify).body.task_id
    )
    assert task.state == "success"
    pool = client.describe_cluster_node_pool_detail(cluster_id, pool_id).body
    assert (pool.management.enable, pool.management.auto_repair) == (True, True)
    assert pool.management.auto_upgrade is False
    assert pool.scaling_group.security_group_ids == ["sg-1", "sg-2"]
    assert pool.scaling_group.security_group_id == "sg-1"
    assert [(t.key, t.value) for t in pool.scaling_group.tags] == [("team", "a")]


def test_a_field_of_the_wrong_type_is_refused_by_name(server: ServerProcess) -> None:
    response = httpx.post(
        f"{server.url}/clusters/{_cluster(server)}/nodepools",
        json={
            "nodepool_info": {"name": "bad"},
            "scaling_group": {"instance_types": ["ecs.g7.large"], "vswitch_ids": ["vsw-1"]},
            "management": {"auto_repair": "sometimes"},
        },
        auth=signing.auth(),
        trust_env=False,
    )
    assert response.status_code == 400
    assert response.json()["code"] == "InvalidParameter"
    assert "management.auto_repair" in response.json()["message"]


def _cluster(server: ServerProcess) -> str:
    cluster_id, _ = sdk.create_cluster(sdk.client(server), pool_size=0)
    return cluster_id
