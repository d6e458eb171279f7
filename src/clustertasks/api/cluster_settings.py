"""A cluster's settings as the official SDK calls them (what Terraform's cluster resources
send): ModifyCluster, the legacy DescribeClusters, tags, resource deletion protection, and
control-plane and audit logging (UpdateControlPlaneLog and UpdateClusterAuditLogConfig,
tasks), and the reads of a managed cluster's refresh (CheckControlPlaneLogEnable,
GetClusterAuditProject, DescribeClusterUserKubeconfig, DescribeClusterResources)."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from clustertasks.api import body, deps, render
from clustertasks.api import errors as api_errors
from clustertasks.domain import params, world_wire
from clustertasks.service import cluster_settings, submission

router = APIRouter(tags=["clusters"])


def _settings(request: Request) -> cluster_settings.ClusterSettings:
    return deps.services(request).cluster_settings


def _rid(request: Request) -> str:
    return api_errors.request_id(request)


def _array(items: list[dict[str, Any]]) -> Response:
    # The SDK reads these bodies as JSON arrays; XML has no array root, so JSON only.
    payload = json.dumps(items, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(payload, 200, media_type=render.JSON_TYPE)


@router.put("/api/v2/clusters/{cluster_id}", operation_id="ModifyCluster", summary="ModifyCluster")
async def modify_cluster(request: Request, cluster_id: str) -> Response:
    document = await body.json_object(request)
    done = await run_in_threadpool(_settings(request).modify_cluster, cluster_id, document)
    return render.document(
        request,
        "ModifyCluster",
        {"cluster_id": done.cluster_id, "task_id": done.task.task_id, "request_id": _rid(request)},
    )


@router.get("/clusters", operation_id="DescribeClusters", summary="DescribeClusters (legacy)")
def describe_clusters(
    request: Request,
    cluster_type: Annotated[str | None, Query(alias="clusterType")] = None,
    name: Annotated[str | None, Query()] = None,
    resource_group_id: Annotated[str | None, Query()] = None,
) -> Response:
    tz = deps.timezone(request)
    items = []
    for cluster in deps.services(request).cloud.clusters():
        spec = cluster.spec
        if cluster_type and spec.cluster_type != cluster_type:
            continue
        if name and spec.name != name:
            continue
        if resource_group_id and spec.resource_group_id != resource_group_id:
            continue
        item = world_wire.cluster_list_item(cluster, tz)
        item.update(data_disk_category="", data_disk_size=0, vswitch_cidr="")
        items.append(item)
    return _array(items)


@router.post("/clusters/{cluster_id}/tags", operation_id="ModifyClusterTags")
async def modify_cluster_tags(request: Request, cluster_id: str) -> Response:
    tags = await body.json_value(request, [])
    await run_in_threadpool(_settings(request).modify_cluster_tags, cluster_id, tags)
    return render.document(request, "ModifyClusterTags", {"request_id": _rid(request)})


@router.put("/tags", operation_id="TagResources", summary="TagResources")
async def tag_resources(request: Request) -> Response:
    document = await body.json_object(request)
    await run_in_threadpool(_settings(request).tag_resources, document)
    return render.document(request, "TagResources", {"request_id": _rid(request)})


@router.delete("/tags", operation_id="UntagResources", summary="UntagResources")
def untag_resources(
    request: Request,
    region_id: Annotated[str | None, Query()] = None,
    resource_ids: Annotated[str | None, Query(description="JSON array")] = None,
    resource_type: Annotated[str | None, Query()] = None,
    tag_keys: Annotated[str | None, Query(description="JSON array")] = None,
    all_tags: Annotated[str | None, Query(alias="all", description="True or False")] = None,
) -> Response:
    query = {
        "region_id": region_id,
        "resource_ids": resource_ids,
        "resource_type": resource_type,
        "tag_keys": tag_keys,
        "all": all_tags,
    }
    _settings(request).untag_resources(query)
    return render.document(request, "UntagResources", {"request_id": _rid(request)})


@router.get("/tags", operation_id="ListTagResources", summary="ListTagResources")
def list_tag_resources(
    request: Request,
    region_id: Annotated[str | None, Query()] = None,
    resource_ids: Annotated[str | None, Query(description="JSON array")] = None,
    resource_type: Annotated[str | None, Query()] = None,
    tags: Annotated[str | None, Query(description="JSON array of {key, value}")] = None,
    next_token: Annotated[str | None, Query()] = None,
) -> Response:
    query = {
        "region_id": region_id,
        "resource_ids": resource_ids,
        "resource_type": resource_type,
        "tags": tags,
    }
    rows = _settings(request).list_tag_resources(query)
    return render.document(
        request,
        "ListTagResources",
        {"next_token": "", "request_id": _rid(request), "tag_resources": {"tag_resource": rows}},
    )


@router.put(
    "/clusters/{cluster_id}/resources/protection",
    operation_id="UpdateResourcesDeleteProtection",
    summary="UpdateResourcesDeleteProtection",
)
async def update_resources_delete_protection(request: Request, cluster_id: str) -> Response:
    document = await body.json_object(request)
    answer = await run_in_threadpool(
        _settings(request).update_resources_delete_protection, cluster_id, document
    )
    answer["request_id"] = _rid(request)
    return render.document(request, "UpdateResourcesDeleteProtection", answer)


@router.get(
    "/clusters/{cluster_id}/controlplanelog",
    operation_id="CheckControlPlaneLogEnable",
    summary="CheckControlPlaneLogEnable",
)
def check_control_plane_log_enable(request: Request, cluster_id: str) -> Response:
    answer = _settings(request).control_plane_log(cluster_id)
    return render.document(request, "CheckControlPlaneLogEnable", answer)


@router.put(
    "/clusters/{cluster_id}/controlplanelog",
    operation_id="UpdateControlPlaneLog",
    summary="UpdateControlPlaneLog",
)
async def update_control_plane_log(request: Request, cluster_id: str) -> Response:
    document = await body.json_object(request)
    done = await run_in_threadpool(
        _settings(request).update_control_plane_log, cluster_id, document
    )
    return _task_answer(request, "UpdateControlPlaneLog", done)


@router.get(
    "/clusters/{cluster_id}/audit",
    operation_id="GetClusterAuditProject",
    summary="GetClusterAuditProject",
)
def get_cluster_audit_project(request: Request, cluster_id: str) -> Response:
    answer = _settings(request).audit_project(cluster_id)
    return render.document(request, "GetClusterAuditProject", answer)


@router.put(
    "/clusters/{cluster_id}/audit_log",
    operation_id="UpdateClusterAuditLogConfig",
    summary="UpdateClusterAuditLogConfig",
)
async def update_cluster_audit_log_config(request: Request, cluster_id: str) -> Response:
    document = await body.json_object(request)
    done = await run_in_threadpool(_settings(request).update_audit_log_config, cluster_id, document)
    return _task_answer(request, "UpdateClusterAuditLogConfig", done)


@router.put(
    "/clusters/{cluster_id}/kms", operation_id="UpdateKMSEncryption", summary="UpdateKMSEncryption"
)
async def update_kms_encryption(request: Request, cluster_id: str) -> Response:
    document = await body.json_object(request)
    done = await run_in_threadpool(_settings(request).update_kms_encryption, cluster_id, document)
    return _task_answer(request, "UpdateKMSEncryption", done)


@router.post(
    "/clusters/{cluster_id}/migrate", operation_id="MigrateCluster", summary="MigrateCluster"
)
async def migrate_cluster(request: Request, cluster_id: str) -> Response:
    document = await body.json_object(request)
    done = await run_in_threadpool(_settings(request).migrate_cluster, cluster_id, document)
    return _task_answer(request, "MigrateCluster", done)


def _task_answer(request: Request, operation: str, done: submission.Submitted) -> Response:
    return render.document(
        request,
        operation,
        {"cluster_id": done.cluster_id, "request_id": _rid(request), "task_id": done.task.task_id},
    )


@router.get(
    "/k8s/{cluster_id}/user_config",
    operation_id="DescribeClusterUserKubeconfig",
    summary="DescribeClusterUserKubeconfig",
)
def describe_cluster_user_kubeconfig(
    request: Request,
    cluster_id: str,
    private_ip_address: Annotated[str | None, Query(alias="PrivateIpAddress")] = None,
    minutes: Annotated[str | None, Query(alias="TemporaryDurationMinutes")] = None,
) -> Response:
    query = {"PrivateIpAddress": private_ip_address, "TemporaryDurationMinutes": minutes}
    private = params.boolean(query, "PrivateIpAddress")
    lifetime = params.integer(query, "TemporaryDurationMinutes", low=15, high=4320)
    answer = _settings(request).user_kubeconfig(cluster_id, private, lifetime)
    return render.document(request, "DescribeClusterUserKubeconfig", answer)


@router.get(
    "/clusters/{cluster_id}/resources",
    operation_id="DescribeClusterResources",
    summary="DescribeClusterResources",
)
def describe_cluster_resources(
    request: Request,
    cluster_id: str,
    with_addon_resources: Annotated[str | None, Query()] = None,
) -> Response:
    params.boolean({"with_addon_resources": with_addon_resources}, "with_addon_resources")
    return _array(_settings(request).cluster_resources(cluster_id))
