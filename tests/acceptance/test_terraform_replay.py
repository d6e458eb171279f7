"""Terraform's alicloud provider, replayed call by call through the official SDK: the
requests its node-pool and managed-cluster resources make, in their order (create, read,
update, read, scale down, destroy). After each apply the next read must equal what was
applied, or Terraform would plan a change again."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import pytest
from alibabacloud_cs20151215 import models as cs_models
from alibabacloud_cs20151215.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException

from tests.acceptance import sdk, sdk_models
from tests.support import polling
from tests.support.server import ServerProcess


def _merge(base: Mapping[str, Any], change: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in change.items():
        old = out.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            out[key] = _merge(old, value)
        else:
            out[key] = value
    return out


def _assert_reads_back(applied: Mapping[str, Any], read: Mapping[str, Any]) -> None:
    for path, value in sdk_models.leaves(applied):
        if path in ("count", "scaling_group.login_password"):
            continue
        assert sdk_models.at(read, path) == value, path


def _ok(client: Client, task_id: str) -> Any:
    task = sdk.wait_task(client, task_id)
    assert task.state == "success", (task.task_type, task.error.code, task.error.message)
    return task


def _pool_state(client: Client, cluster_id: str, pool_id: str) -> Any:
    return client.describe_cluster_node_pool_detail(cluster_id, pool_id).body


def test_node_pool_resource(server: ServerProcess) -> None:
    client = sdk.client(server)
    cluster_id, _ = sdk.create_cluster(client, name="tf-np", pool_size=0)

    # resourceAliCloudAckNodepoolCreate: CreateClusterNodePool, then wait on its task.
    create = cs_models.CreateClusterNodePoolRequest(
        nodepool_info=cs_models.CreateClusterNodePoolRequestNodepoolInfo(
            name="tf-pool", resource_group_id="rg-acfm"
        ),
        scaling_group=cs_models.CreateClusterNodePoolRequestScalingGroup(
            instance_types=["ecs.g7.large", "ecs.g7.xlarge"],
            vswitch_ids=["vsw-hangzhou-h"],
            desired_size=3,
            system_disk_category="cloud_essd",
            system_disk_size=120,
            key_pair="tf-key",
            security_group_ids=["sg-tf1", "sg-tf2"],
            data_disks=[
                cs_models.DataDisk(category="cloud_essd", size=200, encrypted="true"),
            ],
            tags=[cs_models.CreateClusterNodePoolRequestScalingGroupTags(key="env", value="ci")],
        ),
        kubernetes_config=cs_models.CreateClusterNodePoolRequestKubernetesConfig(
            labels=[cs_models.Tag(key="role", value="web")],
            taints=[cs_models.Taint(key="dedicated", value="web", effect="NoSchedule")],
            cpu_policy="static",
            cms_enabled=True,
            runtime="containerd",
            runtime_version="1.6.36",
        ),
        management=cs_models.CreateClusterNodePoolRequestManagement(
            enable=True,
            auto_repair=True,
            auto_repair_policy=cs_models.CreateClusterNodePoolRequestManagementAutoRepairPolicy(
                restart_node=True
            ),
            upgrade_config=cs_models.CreateClusterNodePoolRequestManagementUpgradeConfig(
                max_unavailable=1, surge=1
            ),
        ),
        auto_scaling=cs_models.CreateClusterNodePoolRequestAutoScaling(
            enable=False, max_instances=5, min_instances=0
        ),
    )
    created = client.create_cluster_node_pool(cluster_id, create).body
    pool_id = created.nodepool_id
    _ok(client, created.task_id)

    # Read: DescribeClusterNodePoolDetail, every field copied into the state.
    read = _pool_state(client, cluster_id, pool_id)
    _assert_reads_back(create.to_map(), read.to_map())
    assert read.scaling_group.security_group_id == "sg-tf1"
    assert (read.status.state, read.status.total_nodes) == ("active", 3)

    # Update: ModifyClusterNodePool, then ModifyNodePoolNodeConfig for the kubelet.
    modify = cs_models.ModifyClusterNodePoolRequest(
        kubernetes_config=cs_models.ModifyClusterNodePoolRequestKubernetesConfig(
            labels=[cs_models.Tag(key="role", value="api")],
            taints=[],
            cpu_policy="none",
        ),
        management=cs_models.ModifyClusterNodePoolRequestManagement(auto_repair=False),
        scaling_group=cs_models.ModifyClusterNodePoolRequestScalingGroup(
            desired_size=3, data_disks=[cs_models.DataDisk(category="cloud_essd", size=500)]
        ),
        update_nodes=True,
    )
    _ok(client, client.modify_cluster_node_pool(cluster_id, pool_id, modify).body.task_id)
    node_config = cs_models.ModifyNodePoolNodeConfigRequest(
        kubelet_config=cs_models.KubeletConfig(
            max_pods=64, eviction_hard={"memory.available": "5%"}, cpu_manager_policy="static"
        ),
        rolling_policy=cs_models.ModifyNodePoolNodeConfigRequestRollingPolicy(max_parallelism=2),
    )
    answer = client.modify_node_pool_node_config(cluster_id, pool_id, node_config).body
    assert answer.nodepool_id == pool_id
    rolled = _ok(client, answer.task_id)
    assert rolled.task_type == "nodepool_node_config"
    assert [s.state for s in rolled.stages] == ["success"] * 3
    assert rolled.stages[1].outputs["nodes_done"] == 3
    assert rolled.stages[1].outputs["batches_total"] == 2
    assert sorted(e.reason for e in rolled.events).count("NodeConfigApplied") == 3
    assert {r.status for r in rolled.task_result} == {"success"}

    # Read again: equal to everything applied.
    read = _pool_state(client, cluster_id, pool_id)
    applied = _merge(create.to_map(), modify.to_map())
    del applied["update_nodes"]
    _assert_reads_back(applied, read.to_map())
    kubelet = read.node_config.kubelet_configuration
    assert (kubelet.max_pods, kubelet.eviction_hard, kubelet.cpu_manager_policy) == (
        64,
        {"memory.available": "5%"},
        "static",
    )
    nodes = client.describe_cluster_nodes(
        cluster_id, cs_models.DescribeClusterNodesRequest(nodepool_id=pool_id)
    ).body.nodes
    assert len(nodes) == 3

    # Scale down node_count 3 -> 1: RemoveClusterNodes (the provider's aliyungo call) on the
    # first nodes listed, then wait until the pool is active again.
    names = [n.node_name for n in nodes][:2]
    removal = cs_models.RemoveClusterNodesRequest(nodes=names, release_node=True, drain_node=False)
    client.remove_cluster_nodes(cluster_id, removal)
    polling.until(
        f"node pool {pool_id} back to active with 1 node",
        lambda: _pool_state(client, cluster_id, pool_id),
        lambda pool: pool.status.state == "active" and pool.status.total_nodes == 1,
        timeout=60,
        interval=0.05,
    )
    # The pool reads active only once the removal task has ended (the pool's state is
    # written in the transaction that ends the task): the delete below is never refused.
    read = _pool_state(client, cluster_id, pool_id)
    assert read.scaling_group.desired_size == 1
    _assert_reads_back(_merge(applied, {"scaling_group": {"desired_size": 1}}), read.to_map())

    # Destroy: DeleteClusterNodepool (force), wait, and the pool is gone.
    deleted = client.delete_cluster_nodepool(
        cluster_id, pool_id, cs_models.DeleteClusterNodepoolRequest(force=True)
    ).body
    _ok(client, deleted.task_id)
    with pytest.raises(ClientException) as gone:
        _pool_state(client, cluster_id, pool_id)
    assert gone.value.status_code == 404


def test_managed_cluster_resource(server: ServerProcess) -> None:
    client = sdk.client(server)
    window = cs_models.MaintenanceWindow(
        enable=True, maintenance_time="03:00:00Z", duration="3h", weekly_period="Monday"
    )
    create = cs_models.CreateClusterRequest(
        name="tf-managed",
        region_id="cn-hangzhou",
        cluster_type="ManagedKubernetes",
        cluster_spec="ack.pro.small",
        kubernetes_version="1.32.1-aliyun.1",
        vswitch_ids=["vsw-hangzhou-h"],
        deletion_protection=True,
        timezone="Asia/Shanghai",
        resource_group_id="rg-tf",
        tags=[cs_models.Tag(key="owner", value="tf")],
        maintenance_window=window,
        custom_san="api.example.com,10.0.0.1",
    )
    answer = client.create_cluster(create).body
    cluster_id = answer.cluster_id
    _ok(client, answer.task_id)

    # Read: DescribeClusterDetail, then the calls the managed cluster's Read adds.
    detail = client.describe_cluster_detail(cluster_id).body
    assert (detail.name, detail.state, detail.deletion_protection) == (
        "tf-managed",
        "running",
        True,
    )
    assert (detail.timezone, detail.resource_group_id) == ("Asia/Shanghai", "rg-tf")
    assert [(t.key, t.value) for t in detail.tags] == [("owner", "tf")]
    assert detail.maintenance_window.to_map() == _merge(
        detail.maintenance_window.to_map(), window.to_map()
    )
    assert detail.extra_sans == ["api.example.com", "10.0.0.1"]
    log = client.check_control_plane_log_enable(cluster_id).body
    assert log.log_project == f"k8s-log-{cluster_id}"
    assert log.components == []
    kubeconfig = client.describe_cluster_user_kubeconfig(
        cluster_id, cs_models.DescribeClusterUserKubeconfigRequest(private_ip_address=False)
    ).body
    assert cluster_id in kubeconfig.config
    assert kubeconfig.expiration
    resources = client.describe_cluster_resources(
        cluster_id, cs_models.DescribeClusterResourcesRequest()
    ).body
    assert {r.resource_type for r in resources} >= {"ALIYUN::ECS::VPC"}
    assert all(r.cluster_id == cluster_id for r in resources)
    legacy = client.describe_clusters(cs_models.DescribeClustersRequest(name="tf-managed")).body
    assert [c.cluster_id for c in legacy] == [cluster_id]

    # Deletion protection holds while it is on.
    with pytest.raises(ClientException) as protected:
        client.delete_cluster(cluster_id, cs_models.DeleteClusterRequest())
    assert protected.value.code == "ErrorClusterState"
    assert protected.value.status_code == 400
    assert client.describe_cluster_detail(cluster_id).body.state == "running"

    # A name another cluster has is refused, and changes nothing.
    other_id, _ = sdk.create_cluster(client, name="tf-other", pool_size=0)
    with pytest.raises(ClientException) as taken:
        client.modify_cluster(cluster_id, cs_models.ModifyClusterRequest(cluster_name="tf-other"))
    assert (taken.value.status_code, taken.value.code) == (400, "ErrorClusterNameAlreadyExist")
    assert client.describe_cluster_detail(cluster_id).body.name == "tf-managed"

    # Update: ModifyCluster (a task, then the cluster is running), ModifyClusterTags.
    modify = cs_models.ModifyClusterRequest(
        cluster_name="tf-renamed",
        deletion_protection=False,
        maintenance_window=cs_models.MaintenanceWindow(enable=False, weekly_period="Sunday"),
        operation_policy=cs_models.ModifyClusterRequestOperationPolicy(
            cluster_auto_upgrade=cs_models.ModifyClusterRequestOperationPolicyClusterAutoUpgrade(
                enabled=True, channel="stable"
            )
        ),
        timezone="UTC",
    )
    modified = client.modify_cluster(cluster_id, modify).body
    assert modified.cluster_id == cluster_id
    task = _ok(client, modified.task_id)
    assert task.task_type == "cluster_update"
    tags = [cs_models.Tag(key="owner", value="platform"), cs_models.Tag(key="env", value="ci")]
    client.modify_cluster_tags(cluster_id, cs_models.ModifyClusterTagsRequest(body=tags))

    # Read again: what was applied.
    detail = client.describe_cluster_detail(cluster_id).body
    assert (detail.name, detail.state, detail.deletion_protection) == (
        "tf-renamed",
        "running",
        False,
    )
    assert detail.timezone == "UTC"
    assert (detail.maintenance_window.enable, detail.maintenance_window.weekly_period) == (
        False,
        "Sunday",
    )
    assert detail.maintenance_window.maintenance_time == "03:00:00Z"
    upgrade = detail.operation_policy.cluster_auto_upgrade
    assert (upgrade.enabled, upgrade.channel) == (True, "stable")
    assert [(t.key, t.value) for t in detail.tags] == [("owner", "platform"), ("env", "ci")]

    # The tag API of the resource manager sees the same tags.
    client.tag_resources(
        cs_models.TagResourcesRequest(
            region_id="cn-hangzhou",
            resource_ids=[cluster_id, other_id],
            resource_type="CLUSTER",
            tags=[cs_models.Tag(key="team", value="a")],
        )
    )
    client.untag_resources(
        cs_models.UntagResourcesRequest(
            region_id="cn-hangzhou",
            resource_ids=[cluster_id],
            resource_type="CLUSTER",
            tag_keys=["env"],
        )
    )
    listed = client.list_tag_resources(
        cs_models.ListTagResourcesRequest(
            region_id="cn-hangzhou", resource_ids=[cluster_id, other_id], resource_type="CLUSTER"
        )
    ).body.tag_resources.tag_resource
    assert sorted((t.resource_id, t.tag_key, t.tag_value) for t in listed) == sorted(
        [(cluster_id, "owner", "platform"), (cluster_id, "team", "a"), (other_id, "team", "a")]
    )

    # Destroy: DeleteCluster, wait, and the cluster is gone.
    deleted = client.delete_cluster(cluster_id, cs_models.DeleteClusterRequest()).body
    _ok(client, deleted.task_id)
    with pytest.raises(ClientException) as gone:
        client.describe_cluster_detail(cluster_id)
    assert gone.value.status_code == 404


def test_refused_requests_name_the_field_and_change_nothing(server: ServerProcess) -> None:
    client = sdk.client(server)
    cluster_id, _ = sdk.create_cluster(client, name="tf-bad", pool_size=1)
    pool = client.describe_cluster_node_pools(
        cluster_id, cs_models.DescribeClusterNodePoolsRequest()
    ).body.nodepools[0]
    pool_id = pool.nodepool_info.nodepool_id

    cases: list[Callable[[], Any]] = [
        lambda: client.modify_node_pool_node_config(
            cluster_id,
            pool_id,
            cs_models.ModifyNodePoolNodeConfigRequest(
                kubelet_config=cs_models.KubeletConfig(max_pods="many"),
            ),
        ),
        lambda: client.remove_cluster_nodes(
            cluster_id, cs_models.RemoveClusterNodesRequest(nodes=["cn-hangzhou.10.9.9.9"])
        ),
        lambda: client.modify_cluster(
            cluster_id,
            cs_models.ModifyClusterRequest(
                api_server_custom_cert_sans=cs_models.ModifyClusterRequestApiServerCustomCertSans(
                    action="replace", subject_alternative_names=["a"]
                )
            ),
        ),
    ]
    fields = ["kubelet_config.maxPods", "nodes", "api_server_custom_cert_sans.action"]
    for call, field in zip(cases, fields, strict=True):
        with pytest.raises(ClientException) as refused:
            call()
        assert (refused.value.status_code, refused.value.code) == (400, "InvalidParameter")
        assert field in refused.value.message
    tasks = client.describe_cluster_tasks(
        cluster_id, cs_models.DescribeClusterTasksRequest()
    ).body.tasks
    assert [t.task_type for t in tasks] == ["cluster_create"]
