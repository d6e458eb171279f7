"""The states Terraform's waits poll for, read right after each call is answered.

The provider polls a resource's state after some calls instead of the task
(``CsKubernetesNodePoolStateRefreshFunc``: pending ``removing``, target ``active`` after
RemoveClusterNodes; ``CsKubernetesInstanceStateRefreshFunc``: pending ``updating``, target
``running`` after ModifyCluster, ...). A first poll that still shows ``active``/``running``
ends such a wait at once, before anything happened: ACK shows the new state as soon as it
accepts the task, and so must the emulator, however late the task starts.

Every action of every task here first waits a minute of a manual simulated clock (one fault
rule), so no task has done anything when the state is read; switching the clock back to
realtime (at speed 0) lets the task finish.
"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from alibabacloud_cs20151215 import models as cs_models
from alibabacloud_cs20151215.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException

from tests.acceptance import sdk
from tests.support import polling, signing
from tests.support.server import ServerProcess


def _emulator(server: ServerProcess, path: str, document: dict[str, Any]) -> None:
    answer = httpx.post(
        f"{server.url}/_emulator/{path}", json=document, auth=signing.auth(), trust_env=False
    )
    assert answer.status_code == 200, answer.text


def _hold_tasks(server: ServerProcess) -> None:
    _emulator(server, "clock", {"mode": "manual"})


def _hold_every_action(server: ServerProcess) -> None:
    """Every action a task makes first waits a simulated minute; the clock stands still."""
    rule = {"match": {}, "effect": {"latency_seconds": 60}, "probability": 1.0}
    _emulator(server, "faults", rule)
    _hold_tasks(server)


def _finish(server: ServerProcess, client: Client, task_id: str) -> None:
    """Let the task run to its end, then hold the next one again."""
    _emulator(server, "clock", {"mode": "realtime"})
    task = sdk.wait_task(client, task_id)
    assert task.state == "success", (task.task_type, task.error.code, task.error.message)
    _hold_tasks(server)


def _pool_state(client: Client, cluster_id: str, pool_id: str) -> str:
    body = client.describe_cluster_node_pool_detail(cluster_id, pool_id).body
    return str(body.status.state)


def _cluster_state(client: Client, cluster_id: str) -> str:
    return str(client.describe_cluster_detail(cluster_id).body.state)


def test_each_wait_sees_the_new_state_at_once(server: ServerProcess) -> None:
    client = sdk.client(server)
    cluster_id, _ = sdk.create_cluster(client, name="tf-waits", pool_size=2)
    pools = client.describe_cluster_node_pools(
        cluster_id, cs_models.DescribeClusterNodePoolsRequest()
    ).body.nodepools
    pool_id = pools[0].nodepool_info.nodepool_id
    _hold_every_action(server)

    # node_count up: ScaleClusterNodePool.
    task_id = client.scale_cluster_node_pool(
        cluster_id, pool_id, cs_models.ScaleClusterNodePoolRequest(count=1)
    ).body.task_id
    assert _pool_state(client, cluster_id, pool_id) == "scaling"
    _finish(server, client, task_id)
    assert _pool_state(client, cluster_id, pool_id) == "active"

    # node_count down: removeNodePoolNodes = RemoveClusterNodes, then wait removing -> active.
    nodes = client.describe_cluster_nodes(
        cluster_id, cs_models.DescribeClusterNodesRequest(nodepool_id=pool_id)
    ).body.nodes
    client.remove_cluster_nodes(
        cluster_id,
        cs_models.RemoveClusterNodesRequest(
            nodes=[nodes[0].node_name], release_node=True, drain_node=False
        ),
    )
    assert _pool_state(client, cluster_id, pool_id) == "removing"
    # The SDK's RemoveClusterNodes answer has no body: the task is the cluster's newest.
    tasks = client.describe_cluster_tasks(
        cluster_id, cs_models.DescribeClusterTasksRequest()
    ).body.tasks
    task_id = next(t.task_id for t in tasks if t.task_type == "cluster_node_delete")
    _finish(server, client, task_id)
    detail = client.describe_cluster_node_pool_detail(cluster_id, pool_id).body
    assert (detail.status.state, detail.status.total_nodes) == ("active", 2)

    # kubelet_configuration: ModifyNodePoolNodeConfig.
    task_id = client.modify_node_pool_node_config(
        cluster_id,
        pool_id,
        cs_models.ModifyNodePoolNodeConfigRequest(
            kubelet_config=cs_models.KubeletConfig(max_pods=64)
        ),
    ).body.task_id
    assert _pool_state(client, cluster_id, pool_id) == "updating"
    _finish(server, client, task_id)

    # The cluster: ModifyCluster, then wait updating -> running.
    task_id = client.modify_cluster(
        cluster_id, cs_models.ModifyClusterRequest(resource_group_id="rg-tf")
    ).body.task_id
    assert _cluster_state(client, cluster_id) == "updating"
    _finish(server, client, task_id)
    assert _cluster_state(client, cluster_id) == "running"

    # The pool's destroy: DeleteClusterNodepool.
    task_id = client.delete_cluster_nodepool(
        cluster_id, pool_id, cs_models.DeleteClusterNodepoolRequest(force=True)
    ).body.task_id
    assert _pool_state(client, cluster_id, pool_id) == "deleting"
    _finish(server, client, task_id)

    # The cluster's destroy: DeleteCluster, then wait running/deleting -> gone.
    task_id = client.delete_cluster(cluster_id, cs_models.DeleteClusterRequest()).body.task_id
    assert _cluster_state(client, cluster_id) == "deleting"
    _finish(server, client, task_id)


def _clock_waiters(server: ServerProcess) -> int:
    answer = httpx.get(f"{server.url}/_emulator/clock", auth=signing.auth(), trust_env=False)
    assert answer.status_code == 200, answer.text
    return int(answer.json()["waiting"])


def _tags(client: Client, cluster_id: str) -> dict[str, str]:
    tags = client.describe_cluster_detail(cluster_id).body.tags or []
    return {str(t.key): str(t.value) for t in tags}


def test_tags_changed_while_a_task_writes_the_cluster_are_kept(server: ServerProcess) -> None:
    """An add-on task and ModifyCluster write the cluster's stored settings; a tag request
    answered while they are under way (after they read, before they write) is not lost."""
    client = sdk.client(server)
    cluster_id, _ = sdk.create_cluster(client, name="tf-tags", pool_size=0)
    # Each write of the cluster's settings by a task first waits a simulated minute.
    _emulator(
        server,
        "faults",
        {
            "match": {"operation": "set_cluster_spec"},
            "effect": {"latency_seconds": 60},
            "probability": 1.0,
        },
    )
    _hold_tasks(server)

    install = cs_models.InstallClusterAddonsRequest(
        body=[cs_models.InstallClusterAddonsRequestBody(name="arms-prometheus", version="1.1.21")]
    )
    task_id = client.install_cluster_addons(cluster_id, install).body.task_id
    polling.until("the add-on task waits on the clock", lambda: _clock_waiters(server) > 0)
    client.modify_cluster_tags(
        cluster_id,
        cs_models.ModifyClusterTagsRequest(body=[cs_models.Tag(key="team", value="web")]),
    )
    _finish(server, client, task_id)
    assert _tags(client, cluster_id) == {"team": "web"}
    addon = client.describe_cluster_addon_instance(cluster_id, "arms-prometheus").body
    assert (addon.version, addon.state) == ("1.1.21", "active")

    task_id = client.modify_cluster(
        cluster_id, cs_models.ModifyClusterRequest(resource_group_id="rg-tf")
    ).body.task_id
    polling.until("ModifyCluster's task waits on the clock", lambda: _clock_waiters(server) > 0)
    client.tag_resources(
        cs_models.TagResourcesRequest(
            region_id="cn-hangzhou",
            resource_type="CLUSTER",
            resource_ids=[cluster_id],
            tags=[cs_models.Tag(key="owner", value="ops")],
        )
    )
    _finish(server, client, task_id)
    assert _tags(client, cluster_id) == {"team": "web", "owner": "ops"}
    assert client.describe_cluster_detail(cluster_id).body.resource_group_id == "rg-tf"
    addon = client.describe_cluster_addon_instance(cluster_id, "arms-prometheus").body
    assert addon.state == "active"


def test_control_plane_and_audit_logging_as_the_managed_cluster_applies_them(
    server: ServerProcess,
) -> None:
    """resource_alicloud_cs_managed_kubernetes: CreateCluster with control_plane_log_* and
    audit_log_config; its Read (CheckControlPlaneLogEnable, GetClusterAuditProject) reads
    them back; its Update calls UpdateControlPlaneLog and UpdateClusterAuditLogConfig, each
    a task, and waits for the cluster to go from updating back to running."""
    client = sdk.client(server)
    create = cs_models.CreateClusterRequest(
        name="tf-logs",
        region_id="cn-hangzhou",
        cluster_type="ManagedKubernetes",
        kubernetes_version="1.32.1-aliyun.1",
        vswitch_ids=["vsw-hangzhou-h"],
        controlplane_log_ttl="30",
        controlplane_log_project="tf-sls",
        controlplane_log_components=["apiserver", "kcm"],
        audit_log_config=cs_models.CreateClusterRequestAuditLogConfig(
            enabled=True, sls_project_name="tf-audit"
        ),
    )
    answer = client.create_cluster(create).body
    cluster_id = answer.cluster_id
    assert sdk.wait_task(client, answer.task_id).state == "success"

    log = client.check_control_plane_log_enable(cluster_id).body
    assert (log.log_ttl, log.log_project, log.components) == ("30", "tf-sls", ["apiserver", "kcm"])
    audit = client.get_cluster_audit_project(cluster_id).body
    assert (audit.audit_enabled, audit.sls_project_name) == (True, "tf-audit")

    _hold_every_action(server)
    update = cs_models.UpdateControlPlaneLogRequest(
        log_ttl="90", components=["apiserver", "kcm", "scheduler"]
    )
    answer = client.update_control_plane_log(cluster_id, update).body
    assert answer.cluster_id == cluster_id
    assert _cluster_state(client, cluster_id) == "updating"
    _finish(server, client, answer.task_id)
    assert _cluster_state(client, cluster_id) == "running"
    log = client.check_control_plane_log_enable(cluster_id).body
    assert (log.log_ttl, log.log_project, log.components) == (
        "90",
        "tf-sls",
        ["apiserver", "kcm", "scheduler"],
    )

    disable = cs_models.UpdateClusterAuditLogConfigRequest(disable=True)
    answer = client.update_cluster_audit_log_config(cluster_id, disable).body
    assert _cluster_state(client, cluster_id) == "updating"
    _finish(server, client, answer.task_id)
    audit = client.get_cluster_audit_project(cluster_id).body
    assert (audit.audit_enabled, audit.sls_project_name) == (False, "tf-audit")
    # The logging settings survive a ModifyCluster, which rewrites the others.
    task_id = client.modify_cluster(
        cluster_id, cs_models.ModifyClusterRequest(timezone="UTC")
    ).body.task_id
    _finish(server, client, task_id)
    assert client.check_control_plane_log_enable(cluster_id).body.log_ttl == "90"

    # A wrong value is refused naming the field, and changes nothing.
    for request, field in (
        (cs_models.UpdateControlPlaneLogRequest(components=["etcd"]), "components"),
        (cs_models.UpdateControlPlaneLogRequest(log_ttl="forever"), "log_ttl"),
    ):
        with pytest.raises(ClientException) as refused:
            client.update_control_plane_log(cluster_id, request)
        assert (refused.value.status_code, refused.value.code) == (400, "InvalidParameter")
        assert field in refused.value.message
    assert client.check_control_plane_log_enable(cluster_id).body.log_ttl == "90"
    assert _cluster_state(client, cluster_id) == "running"


def _capabilities(client: Client, cluster_id: str) -> dict[str, Any]:
    meta_data = client.describe_cluster_detail(cluster_id).body.meta_data
    found: dict[str, Any] = json.loads(meta_data)["Capabilities"]
    return found


def test_encryption_and_migration_as_the_managed_cluster_applies_them(
    server: ServerProcess,
) -> None:
    """encryption_provider_key is read back from meta_data's Capabilities; changing it is
    UpdateKMSEncryption (wait updating -> running); cluster_spec from ack.standard is
    MigrateCluster (wait migrating -> running)."""
    client = sdk.client(server)
    create = cs_models.CreateClusterRequest(
        name="tf-kms",
        region_id="cn-hangzhou",
        cluster_type="ManagedKubernetes",
        cluster_spec="ack.standard",
        kubernetes_version="1.32.1-aliyun.1",
        vswitch_ids=["vsw-hangzhou-h"],
        encryption_provider_key="key-tf-1",
    )
    answer = client.create_cluster(create).body
    cluster_id = answer.cluster_id
    assert sdk.wait_task(client, answer.task_id).state == "success"
    assert _capabilities(client, cluster_id) == {
        "DisableEncryption": False,
        "EncryptionKMSKeyId": "key-tf-1",
    }

    _hold_every_action(server)
    client.update_kmsencryption(
        cluster_id, cs_models.UpdateKMSEncryptionRequest(disable_encryption=True)
    )
    assert _cluster_state(client, cluster_id) == "updating"
    tasks = client.describe_cluster_tasks(
        cluster_id, cs_models.DescribeClusterTasksRequest()
    ).body.tasks
    _finish(server, client, tasks[0].task_id)
    assert _cluster_state(client, cluster_id) == "running"
    assert _capabilities(client, cluster_id)["DisableEncryption"] is True

    client.migrate_cluster(cluster_id, cs_models.MigrateClusterRequest())
    assert _cluster_state(client, cluster_id) == "migrating"
    tasks = client.describe_cluster_tasks(
        cluster_id, cs_models.DescribeClusterTasksRequest()
    ).body.tasks
    _finish(server, client, tasks[0].task_id)
    detail = client.describe_cluster_detail(cluster_id).body
    assert (detail.state, detail.cluster_spec) == ("running", "ack.pro.small")
    # A Pro cluster is not migrated again: refused, and nothing changes.
    with pytest.raises(ClientException) as refused:
        client.migrate_cluster(cluster_id, cs_models.MigrateClusterRequest())
    assert (refused.value.status_code, refused.value.code) == (400, "ErrorClusterState")
    assert _cluster_state(client, cluster_id) == "running"


def _set_status(server: ServerProcess, cluster_id: str, node_name: str) -> dict[str, Any]:
    answer = httpx.post(
        f"{server.url}/_emulator/clusters/{cluster_id}/nodes/{node_name}/status",
        json={"node_status": "NotReady"},
        auth=signing.auth(),
        trust_env=False,
    )
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def _node_statuses(client: Client, cluster_id: str, pool_id: str) -> dict[str, str]:
    nodes = client.describe_cluster_nodes(
        cluster_id, cs_models.DescribeClusterNodesRequest(nodepool_id=pool_id)
    ).body.nodes
    return {str(n.node_name): str(n.node_status) for n in nodes}


def test_a_pool_with_auto_repair_repairs_a_node_that_goes_not_ready(
    server: ServerProcess,
) -> None:
    """management.auto_repair: a node of such a pool that goes NotReady gets a repair task
    (nodepool_repair) and is Ready again; in a pool without it, the node stays NotReady."""
    client = sdk.client(server)
    cluster_id, _ = sdk.create_cluster(client, name="tf-repair", pool_size=1)
    plain_id = (
        client.describe_cluster_node_pools(cluster_id, cs_models.DescribeClusterNodePoolsRequest())
        .body.nodepools[0]
        .nodepool_info.nodepool_id
    )
    request = sdk.pool_request("managed", 2)
    request.management = cs_models.CreateClusterNodePoolRequestManagement(
        enable=True, auto_repair=True
    )
    created = client.create_cluster_node_pool(cluster_id, request).body
    assert sdk.wait_task(client, created.task_id).state == "success"
    managed_id = created.nodepool_id

    sick = sorted(_node_statuses(client, cluster_id, managed_id))[0]
    answer = _set_status(server, cluster_id, sick)
    assert answer["node_status"] == "NotReady"
    task = sdk.wait_task(client, answer["repair_task_id"])
    assert (task.task_type, task.state) == ("nodepool_repair", "success")
    assert task.target.id == managed_id
    assert set(_node_statuses(client, cluster_id, managed_id).values()) == {"Ready"}

    lonely = next(iter(_node_statuses(client, cluster_id, plain_id)))
    assert _set_status(server, cluster_id, lonely)["repair_task_id"] == ""
    assert _node_statuses(client, cluster_id, plain_id) == {lonely: "NotReady"}


def test_serverless_and_dedicated_cluster_creation(server: ServerProcess) -> None:
    """resource_alicloud_cs_serverless_kubernetes sends ManagedKubernetes with profile
    Serverless (and alibaba-log-controller when sls_project_name is set);
    resource_alicloud_cs_kubernetes sends cluster_type Kubernetes. Both wait for the task,
    then for initial -> running, then read the detail and the resources."""
    client = sdk.client(server)
    serverless = cs_models.CreateClusterRequest(
        name="tf-serverless",
        kubernetes_version="1.32.1-aliyun.1",
        cluster_type="ManagedKubernetes",
        profile="Serverless",
        region_id="cn-hangzhou",
        vpcid="vpc-tf",
        vswitch_ids=["vsw-hangzhou-h"],
        zone_id="cn-hangzhou-h",
        snat_entry=True,
        nat_gateway=True,
        endpoint_public_access=True,
        service_discovery_types=["PrivateZone"],
        logging_type="SLS",
        deletion_protection=False,
        resource_group_id="rg-tf",
        tags=[cs_models.Tag(key="kind", value="serverless")],
        addons=[
            cs_models.Addon(
                name="alibaba-log-controller",
                config='{"sls_project_name":"tf-sls"}',
                version="",
                disabled=False,
            )
        ],
    )
    dedicated = cs_models.CreateClusterRequest(
        name="tf-dedicated",
        kubernetes_version="1.32.1-aliyun.1",
        cluster_type="Kubernetes",
        region_id="cn-hangzhou",
        master_vswitch_ids=["vsw-hangzhou-h"] * 3,
        master_instance_types=["ecs.g7.large"] * 3,
        worker_vswitch_ids=["vsw-hangzhou-h"],
        addons=[cs_models.Addon(name="flannel", config="", version="", disabled=False)],
    )
    for request, profile in ((serverless, "Serverless"), (dedicated, "Default")):
        answer = client.create_cluster(request).body
        assert sdk.wait_task(client, answer.task_id).state == "success"
        detail = client.describe_cluster_detail(answer.cluster_id).body
        assert (detail.name, detail.state) == (request.name, "running")
        assert (detail.cluster_type, detail.profile) == (request.cluster_type, profile)
        resources = client.describe_cluster_resources(
            answer.cluster_id, cs_models.DescribeClusterResourcesRequest()
        ).body
        assert resources
    log = client.describe_cluster_addon_instance(
        client.describe_clusters(cs_models.DescribeClustersRequest(name="tf-serverless"))
        .body[0]
        .cluster_id,
        "alibaba-log-controller",
    ).body
    assert (log.state, log.config) == ("active", '{"sls_project_name":"tf-sls"}')
