"""Every field of the SDK's ModifyClusterRequest is applied and read back by
DescribeClusterDetail where ACK's document has a place for it (Terraform's managed-cluster
Read copies those fields)."""

from __future__ import annotations

from typing import Any

import httpx
from alibabacloud_cs20151215 import models as cs_models

from tests.acceptance import sdk, sdk_models
from tests.support import signing
from tests.support.server import ServerProcess

# Request paths whose value shows elsewhere in DescribeClusterDetail.
MOVED = {
    "cluster_name": "name",
    "enable_rrsa": "rrsa_config.enabled",
}
# Accepted and kept, with no place in ACK's detail document (or a secret): not read back.
NOT_IN_DETAIL = {
    "access_control_list",
    "api_server_custom_cert_sans.action",
    "api_server_eip",
    "api_server_eip_id",
    "client_token",
    "control_plane_config.login_password",
    "ingress_domain_rebinding",
    "ingress_loadbalancer_id",
    "instance_deletion_protection",
    "system_events_logging.enabled",
    "system_events_logging.logging_project",
}


def test_every_modify_cluster_field_reads_back(server: ServerProcess) -> None:
    client = sdk.client(server)
    cluster_id, _ = sdk.create_cluster(client, name="fields", pool_size=0)
    request: Any = sdk_models.filled(cs_models.ModifyClusterRequest, 1)
    request.cluster_name = "fields-renamed"
    request.api_server_custom_cert_sans.action = "overwrite"
    request.client_token = None
    answer = client.modify_cluster(cluster_id, request).body
    task = sdk.wait_task(client, answer.task_id)
    assert task.state == "success", (task.error.code, task.error.message)

    raw = httpx.get(
        f"{server.url}/clusters/{cluster_id}", auth=signing.auth(), trust_env=False
    ).json()
    detail = client.describe_cluster_detail(cluster_id).body.to_map()
    applied = request.to_map()
    checked = 0
    for path, value in sdk_models.leaves(applied):
        if path in NOT_IN_DETAIL:
            continue
        if path == "api_server_custom_cert_sans.subject_alternative_names":
            where = "extra_sans"
        else:
            where = MOVED.get(path, path)
        assert sdk_models.at(detail, where) == value, path
        assert sdk_models.at(raw, where) == value, path
        checked += 1
    assert checked > 40
    assert "login_password" not in raw["control_plane_config"]
