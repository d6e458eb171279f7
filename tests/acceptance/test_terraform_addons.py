"""Terraform's ``alicloud_cs_kubernetes_addon``, replayed call by call through the official
SDK: install, read, upgrade, modify the config, read, uninstall; each change a task."""

from __future__ import annotations

import json

import pytest
from alibabacloud_cs20151215 import models as cs_models
from alibabacloud_cs20151215.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException

from tests.acceptance import sdk
from tests.support import polling
from tests.support.server import ServerProcess

INGRESS = "nginx-ingress-controller"
OLD, NEW = "v1.9.3-aliyun.1", "v1.10.2-aliyun.1"


def _ok(client: Client, task_id: str, task_type: str) -> None:
    task = sdk.wait_task(client, task_id)
    assert task.state == "success", (task.error.code, task.error.message)
    assert task.task_type == task_type
    assert [(r.data, r.status) for r in task.task_result] == [(INGRESS, "success")]


def _read(client: Client, cluster_id: str) -> tuple[str, str, str]:
    """The provider's Read: GetClusterAddonInstance, then DescribeAddon for its version."""
    instance = client.get_cluster_addon_instance(cluster_id, INGRESS).body
    described = client.describe_addon(
        INGRESS, cs_models.DescribeAddonRequest(cluster_id=cluster_id, version=instance.version)
    ).body
    assert described.version == instance.version
    return instance.version, instance.state, instance.config


def test_addon_resource(server: ServerProcess) -> None:
    client = sdk.client(server)
    create = cs_models.CreateClusterRequest(
        name="tf-addons",
        region_id="cn-hangzhou",
        cluster_type="ManagedKubernetes",
        vswitch_ids=["vsw-hangzhou-h"],
        addons=[cs_models.Addon(name="metrics-server"), cs_models.Addon(name="csi-plugin")],
    )
    created = client.create_cluster(create).body
    cluster_id = created.cluster_id
    assert sdk.wait_task(client, created.task_id).state == "success"
    installed = client.list_cluster_addon_instances(cluster_id).body.addons
    assert sorted((a.name, a.state) for a in installed) == [
        ("csi-plugin", "active"),
        ("metrics-server", "active"),
    ]

    # Create: the provider first looks the add-on up (not found), then installs it.
    with pytest.raises(ClientException) as missing:
        client.get_cluster_addon_instance(cluster_id, INGRESS)
    assert (missing.value.status_code, missing.value.code) == (404, "AddonNotFound")
    available = {a.name: a for a in client.list_addons(cs_models.ListAddonsRequest()).body.addons}
    assert available[INGRESS].version == NEW
    config = json.dumps({"replicas": 2})
    install = cs_models.InstallClusterAddonsRequest(
        body=[cs_models.InstallClusterAddonsRequestBody(name=INGRESS, version=OLD, config=config)]
    )
    answer = client.install_cluster_addons(cluster_id, install).body
    _ok(client, answer.task_id, "cluster_addon_install")
    assert _read(client, cluster_id) == (OLD, "active", config)
    versions = client.describe_cluster_addons_version(cluster_id).body
    assert (versions[INGRESS]["version"], versions[INGRESS]["next_version"]) == (OLD, NEW)
    assert versions[INGRESS]["can_upgrade"] is True

    # Update: the version (UpgradeClusterAddons, a task), then the config alone
    # (ModifyClusterAddon; the provider polls DescribeClusterAddonsUpgradeStatus).
    upgrade = cs_models.UpgradeClusterAddonsRequest(
        body=[
            cs_models.UpgradeClusterAddonsRequestBody(
                component_name=INGRESS, next_version=NEW, policy="overwrite"
            )
        ]
    )
    _ok(
        client,
        client.upgrade_cluster_addons(cluster_id, upgrade).body.task_id,
        "cluster_addon_upgrade",
    )
    new_config = json.dumps({"replicas": 3})
    client.modify_cluster_addon(
        cluster_id, INGRESS, cs_models.ModifyClusterAddonRequest(config=new_config)
    )
    status = polling.until(
        f"{INGRESS} reconfigured",
        lambda: client.describe_cluster_addons_upgrade_status(
            cluster_id,
            cs_models.DescribeClusterAddonsUpgradeStatusRequest(component_ids=[INGRESS]),
        ).body[INGRESS],
        lambda found: found["tasks"]["status"] == "Success",
        timeout=60,
        interval=0.05,
    )
    assert (status["addon_info"]["version"], status["can_upgrade"]) == (NEW, False)
    assert _read(client, cluster_id) == (NEW, "active", new_config)
    described = client.describe_cluster_addon_instance(cluster_id, INGRESS).body
    assert (described.version, described.config) == (NEW, new_config)

    # Refused: an unknown version, a second install, an invalid config; nothing changes.
    for body, field in [
        ([{"name": INGRESS}], "already installed"),
        ([{"name": "logtail-ds", "version": "v0"}], "body[0].version"),
        ([{"name": "logtail-ds", "config": "[1]"}], "body[0].config"),
    ]:
        request = cs_models.InstallClusterAddonsRequest(
            body=[cs_models.InstallClusterAddonsRequestBody().from_map(item) for item in body]
        )
        with pytest.raises(ClientException) as refused:
            client.install_cluster_addons(cluster_id, request)
        assert refused.value.code == "InvalidParameter"
        assert field in refused.value.message

    # Destroy: UnInstallClusterAddons, a task; then the add-on is gone.
    uninstall = cs_models.UnInstallClusterAddonsRequest(
        addons=[cs_models.UnInstallClusterAddonsRequestAddons(name=INGRESS)]
    )
    _ok(
        client,
        client.un_install_cluster_addons(cluster_id, uninstall).body.task_id,
        "cluster_addon_uninstall",
    )
    with pytest.raises(ClientException) as gone:
        client.get_cluster_addon_instance(cluster_id, INGRESS)
    assert gone.value.code == "AddonNotFound"
    tasks = client.describe_cluster_tasks(
        cluster_id, cs_models.DescribeClusterTasksRequest()
    ).body.tasks

    # Events: each tied to its task and typed by it, newest first.
    upgrade_task = next(t for t in tasks if t.task_type == "cluster_addon_upgrade")
    events = client.describe_cluster_events(
        cluster_id, cs_models.DescribeClusterEventsRequest(task_id=upgrade_task.task_id)
    ).body
    info = client.describe_task_info(upgrade_task.task_id).body
    assert events.page_info.total_count == len(info.events)
    assert [e.data.reason for e in events.events] == [e.reason for e in reversed(info.events)]
    assert {(e.cluster_id, e.type) for e in events.events} == {
        (cluster_id, "cluster_addon_upgrade")
    }
    assert "AddonUpgraded" in [e.data.reason for e in events.events]
    assert all(e.event_id.startswith("e-") and e.time for e in events.events)
    created = client.describe_events(
        cs_models.DescribeEventsRequest(cluster_id=cluster_id, type="cluster_create", page_size=5)
    ).body
    assert created.page_info.page_size == 5
    assert {e.type for e in created.events} == {"cluster_create"}
    everything = client.describe_cluster_events(
        cluster_id, cs_models.DescribeClusterEventsRequest(page_size=100)
    ).body
    assert everything.page_info.total_count == sum(
        len(client.describe_task_info(t.task_id).body.events) for t in tasks
    )
    assert sorted(t.task_type for t in tasks) == sorted(
        [
            "cluster_create",
            "cluster_addon_install",
            "cluster_addon_upgrade",
            "cluster_addon_modify",
            "cluster_addon_uninstall",
        ]
    )
