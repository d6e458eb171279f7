"""Node operations as the official SDK calls them (sdk-shapes.md): RemoveNodePoolNodes,
DeleteClusterNodes, RemoveClusterNodes, ModifyNodePoolNodeConfig, UpgradeClusterNodepool,
UpgradeCluster, RepairClusterNodePool, AttachInstancesToNodePool,
DescribeKubernetesVersionMetadata."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from clustertasks.api import body, deps, render
from clustertasks.api import errors as api_errors
from clustertasks.service import nodes as node_service

router = APIRouter(tags=["nodes"])


def _nodes(request: Request) -> node_service.NodeService:
    return deps.services(request).nodes


def _rid(request: Request) -> str:
    return api_errors.request_id(request)


@router.delete(
    "/clusters/{cluster_id}/nodepools/{nodepool_id}/nodes",
    operation_id="RemoveNodePoolNodes",
    summary="RemoveNodePoolNodes",
)
def remove_node_pool_nodes(
    request: Request,
    cluster_id: str,
    nodepool_id: str,
    instance_ids: Annotated[str | None, Query(description='JSON array, e.g. ["i-1"]')] = None,
    nodes: Annotated[str | None, Query(description="JSON array of node names")] = None,
    drain_node: Annotated[str | None, Query(description="True or False")] = None,
    release_node: Annotated[str | None, Query(description="True or False")] = None,
    concurrency: Annotated[str | None, Query(description="True or False")] = None,
    drain_timeout: Annotated[str | None, Query(description="seconds (extension)")] = None,
    on_drain_timeout: Annotated[str | None, Query(description="fail or force")] = None,
) -> Response:
    query = {
        "instance_ids": instance_ids,
        "nodes": nodes,
        "drain_node": drain_node,
        "release_node": release_node,
        "concurrency": concurrency,
        "drain_timeout": drain_timeout,
        "on_drain_timeout": on_drain_timeout,
    }
    done = _nodes(request).remove_nodepool_nodes(
        cluster_id, nodepool_id, {k: v for k, v in query.items() if v is not None}
    )
    return render.document(
        request, "RemoveNodePoolNodes", {"task_id": done.task.task_id, "request_id": _rid(request)}
    )


@router.post(
    "/clusters/{cluster_id}/nodes",
    operation_id="DeleteClusterNodes",
    summary="DeleteClusterNodes",
)
async def delete_cluster_nodes(request: Request, cluster_id: str) -> Response:
    document = await body.json_object(request)
    done = await run_in_threadpool(_nodes(request).delete_cluster_nodes, cluster_id, document)
    return render.document(
        request,
        "DeleteClusterNodes",
        {"cluster_id": done.cluster_id, "task_id": done.task.task_id, "request_id": _rid(request)},
    )


@router.post(
    "/api/v2/clusters/{cluster_id}/nodes/remove",
    operation_id="RemoveClusterNodes",
    summary="RemoveClusterNodes",
)
async def remove_cluster_nodes(request: Request, cluster_id: str) -> Response:
    # The same request as DeleteClusterNodes, at the path Terraform's provider uses.
    document = await body.json_object(request)
    done = await run_in_threadpool(_nodes(request).delete_cluster_nodes, cluster_id, document)
    return render.document(
        request,
        "RemoveClusterNodes",
        {"cluster_id": done.cluster_id, "task_id": done.task.task_id, "request_id": _rid(request)},
    )


@router.put(
    "/clusters/{cluster_id}/nodepools/{nodepool_id}/node_config",
    operation_id="ModifyNodePoolNodeConfig",
    summary="ModifyNodePoolNodeConfig",
)
async def modify_node_pool_node_config(
    request: Request, cluster_id: str, nodepool_id: str
) -> Response:
    document = await body.json_object(request)
    done = await run_in_threadpool(
        _nodes(request).modify_node_config, cluster_id, nodepool_id, document
    )
    return render.document(
        request,
        "ModifyNodePoolNodeConfig",
        {
            "nodepool_id": done.nodepool_id,
            "task_id": done.task.task_id,
            "request_id": _rid(request),
        },
    )


@router.post(
    "/clusters/{cluster_id}/nodepools/{nodepool_id}/upgrade",
    operation_id="UpgradeClusterNodepool",
    summary="UpgradeClusterNodepool",
)
async def upgrade_cluster_nodepool(request: Request, cluster_id: str, nodepool_id: str) -> Response:
    document = await body.json_object(request)
    done = await run_in_threadpool(
        _nodes(request).upgrade_nodepool, cluster_id, nodepool_id, document
    )
    # This one answers with PascalCase RequestId (sdk-shapes.md).
    return render.document(
        request,
        "UpgradeClusterNodepool",
        {"task_id": done.task.task_id, "RequestId": _rid(request)},
    )


@router.post(
    "/api/v2/clusters/{cluster_id}/upgrade",
    operation_id="UpgradeCluster",
    summary="UpgradeCluster",
)
async def upgrade_cluster(request: Request, cluster_id: str) -> Response:
    document = await body.json_object(request)
    done = await run_in_threadpool(_nodes(request).upgrade_cluster, cluster_id, document)
    return render.document(
        request,
        "UpgradeCluster",
        {"cluster_id": done.cluster_id, "task_id": done.task.task_id, "request_id": _rid(request)},
    )


@router.post(
    "/clusters/{cluster_id}/nodepools/{nodepool_id}/repair",
    operation_id="RepairClusterNodePool",
    summary="RepairClusterNodePool",
)
async def repair_cluster_node_pool(request: Request, cluster_id: str, nodepool_id: str) -> Response:
    document = await body.json_object(request)
    done = await run_in_threadpool(
        _nodes(request).repair_nodepool, cluster_id, nodepool_id, document
    )
    return render.document(
        request,
        "RepairClusterNodePool",
        {"task_id": done.task.task_id, "request_id": _rid(request)},
    )


@router.post(
    "/clusters/{cluster_id}/nodepools/{nodepool_id}/attach",
    operation_id="AttachInstancesToNodePool",
    summary="AttachInstancesToNodePool",
)
async def attach_instances_to_node_pool(
    request: Request, cluster_id: str, nodepool_id: str
) -> Response:
    document = await body.json_object(request)
    done = await run_in_threadpool(
        _nodes(request).attach_instances, cluster_id, nodepool_id, document
    )
    return render.document(
        request,
        "AttachInstancesToNodePool",
        {"task_id": done.task.task_id, "request_id": _rid(request)},
    )


@router.get(
    "/api/v1/metadata/versions",
    operation_id="DescribeKubernetesVersionMetadata",
    summary="DescribeKubernetesVersionMetadata",
)
def describe_kubernetes_version_metadata(
    request: Request,
    kubernetes_version: Annotated[str | None, Query(alias="KubernetesVersion")] = None,
) -> Response:
    items = _nodes(request).version_metadata(kubernetes_version or "")
    # The SDK reads this body as a JSON array; XML has no array root, so JSON only.
    payload = json.dumps(items, ensure_ascii=False, separators=(",", ":")).encode()
    return Response(payload, 200, media_type=render.JSON_TYPE)
