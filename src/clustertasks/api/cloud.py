"""Cluster, node-pool and node routes, as the official SDK calls them (sdk-shapes.md)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from clustertasks import errors
from clustertasks.api import body, deps, render
from clustertasks.api import errors as api_errors
from clustertasks.domain import json_text, params, world_wire
from clustertasks.service import cloud as cloud_service

router = APIRouter(tags=["clusters"])


def _rid(request: Request) -> str:
    return api_errors.request_id(request)


def _cloud(request: Request) -> cloud_service.CloudService:
    return deps.services(request).cloud


# -- clusters ------------------------------------------------------------------------------


@router.post("/clusters", operation_id="CreateCluster", summary="CreateCluster")
async def create_cluster(request: Request) -> Response:
    document = await body.json_object(request)
    done = await run_in_threadpool(_cloud(request).create_cluster, document)
    return render.document(
        request,
        "CreateCluster",
        {"cluster_id": done.cluster_id, "task_id": done.task.task_id, "request_id": _rid(request)},
    )


@router.get(
    "/clusters/{cluster_id}", operation_id="DescribeClusterDetail", summary="DescribeClusterDetail"
)
def describe_cluster_detail(request: Request, cluster_id: str) -> Response:
    cluster = _cloud(request).cluster(cluster_id)
    document = world_wire.cluster_document(cluster, deps.timezone(request))
    document["request_id"] = _rid(request)
    return render.document(request, "DescribeClusterDetail", document)


@router.get("/api/v1/clusters", operation_id="DescribeClustersV1", summary="DescribeClustersV1")
def describe_clusters_v1(
    request: Request,
    page_number: Annotated[int | None, Query()] = None,
    page_size: Annotated[int | None, Query()] = None,
    cluster_id: Annotated[str | None, Query()] = None,
    name: Annotated[str | None, Query()] = None,
    cluster_type: Annotated[str | None, Query()] = None,
    cluster_spec: Annotated[str | None, Query()] = None,
    profile: Annotated[str | None, Query()] = None,
    region_id: Annotated[str | None, Query()] = None,
) -> Response:
    query = {"page_number": page_number, "page_size": page_size}
    number = params.integer(query, "page_number", default=1, low=1) or 1
    size = params.integer(query, "page_size", default=10, low=1, high=100) or 10
    filters = {
        "cluster_id": cluster_id,
        "name": name,
        "cluster_type": cluster_type,
        "cluster_spec": cluster_spec,
        "profile": profile,
        "region_id": region_id,
    }
    clusters = [
        c
        for c in _cloud(request).clusters()
        if all(
            value in (None, "") or _cluster_field(c, key) == value for key, value in filters.items()
        )
    ]
    page = clusters[(number - 1) * size : number * size]
    tz = deps.timezone(request)
    return render.document(
        request,
        "DescribeClustersV1",
        {
            "clusters": [world_wire.cluster_list_item(c, tz) for c in page],
            "page_info": {"page_number": number, "page_size": size, "total_count": len(clusters)},
            "request_id": _rid(request),
        },
    )


def _cluster_field(cluster: Any, key: str) -> Any:
    if key == "cluster_id":
        return cluster.cluster_id
    return getattr(cluster.spec, key)


@router.delete("/clusters/{cluster_id}", operation_id="DeleteCluster", summary="DeleteCluster")
def delete_cluster(request: Request, cluster_id: str) -> Response:
    done = _cloud(request).delete_cluster(cluster_id)
    return render.document(
        request,
        "DeleteCluster",
        {"cluster_id": done.cluster_id, "task_id": done.task.task_id, "request_id": _rid(request)},
        status_code=202,
    )


@router.post(
    "/api/v2/clusters/{cluster_id}",
    operation_id="ScaleOutCluster",
    summary="ScaleOutCluster (legacy)",
)
async def scale_out_cluster(request: Request, cluster_id: str) -> Response:
    document = await body.json_object(request)
    done = await run_in_threadpool(_cloud(request).scale_out_cluster, cluster_id, document)
    return render.document(
        request,
        "ScaleOutCluster",
        {"cluster_id": done.cluster_id, "task_id": done.task.task_id, "request_id": _rid(request)},
    )


# -- node pools ----------------------------------------------------------------------------


@router.post(
    "/clusters/{cluster_id}/nodepools",
    operation_id="CreateClusterNodePool",
    summary="CreateClusterNodePool",
)
async def create_cluster_node_pool(request: Request, cluster_id: str) -> Response:
    document = await body.json_object(request)
    done = await run_in_threadpool(_cloud(request).create_nodepool, cluster_id, document)
    return render.document(
        request,
        "CreateClusterNodePool",
        {
            "nodepool_id": done.nodepool_id,
            "task_id": done.task.task_id,
            "request_id": _rid(request),
        },
    )


@router.get(
    "/clusters/{cluster_id}/nodepools",
    operation_id="DescribeClusterNodePools",
    summary="DescribeClusterNodePools",
)
def describe_cluster_node_pools(
    request: Request,
    cluster_id: str,
    nodepool_name: Annotated[str | None, Query(alias="NodepoolName")] = None,
) -> Response:
    tz = deps.timezone(request)
    views = _cloud(request).nodepools(cluster_id, nodepool_name)
    items = [world_wire.nodepool_document(v.pool, v.instances, v.nodes, tz) for v in views]
    return render.document(
        request, "DescribeClusterNodePools", {"nodepools": items, "request_id": _rid(request)}
    )


@router.get(
    "/clusters/{cluster_id}/nodepools/{nodepool_id}",
    operation_id="DescribeClusterNodePoolDetail",
    summary="DescribeClusterNodePoolDetail",
)
def describe_cluster_node_pool_detail(
    request: Request, cluster_id: str, nodepool_id: str
) -> Response:
    view = _cloud(request).nodepool(cluster_id, nodepool_id)
    document = world_wire.nodepool_document(
        view.pool, view.instances, view.nodes, deps.timezone(request)
    )
    document["request_id"] = _rid(request)
    return render.document(request, "DescribeClusterNodePoolDetail", document)


@router.post(
    "/clusters/{cluster_id}/nodepools/{nodepool_id}",
    operation_id="ScaleClusterNodePool",
    summary="ScaleClusterNodePool",
)
async def scale_cluster_node_pool(request: Request, cluster_id: str, nodepool_id: str) -> Response:
    document = await body.json_object(request)
    done = await run_in_threadpool(
        _cloud(request).scale_nodepool, cluster_id, nodepool_id, document
    )
    return render.document(
        request, "ScaleClusterNodePool", {"task_id": done.task.task_id, "request_id": _rid(request)}
    )


@router.put(
    "/clusters/{cluster_id}/nodepools/{nodepool_id}",
    operation_id="ModifyClusterNodePool",
    summary="ModifyClusterNodePool",
)
async def modify_cluster_node_pool(request: Request, cluster_id: str, nodepool_id: str) -> Response:
    document = await body.json_object(request)
    done = await run_in_threadpool(
        _cloud(request).modify_nodepool, cluster_id, nodepool_id, document
    )
    return render.document(
        request,
        "ModifyClusterNodePool",
        {
            "nodepool_id": done.nodepool_id,
            "task_id": done.task.task_id,
            "request_id": _rid(request),
        },
    )


@router.delete(
    "/clusters/{cluster_id}/nodepools/{nodepool_id}",
    operation_id="DeleteClusterNodepool",
    summary="DeleteClusterNodepool",
)
def delete_cluster_nodepool(
    request: Request,
    cluster_id: str,
    nodepool_id: str,
    force: Annotated[str | None, Query(description="True or False")] = None,
) -> Response:
    forced = params.boolean({"force": force}, "force")
    done = _cloud(request).delete_nodepool(cluster_id, nodepool_id, forced)
    return render.document(
        request,
        "DeleteClusterNodepool",
        {"task_id": done.task.task_id, "request_id": _rid(request)},
    )


# -- nodes ---------------------------------------------------------------------------------

# DescribeClusterNodes' ``state`` filter, in terms of the node document's ``state``.
NODE_STATES: dict[str, frozenset[str]] = {
    "running": frozenset({"running"}),
    "initial": frozenset({"pending", "starting"}),
    "removing": frozenset({"stopping", "stopped", "removing"}),
    "failed": frozenset({"failed"}),
}


@router.get(
    "/clusters/{cluster_id}/nodes",
    operation_id="DescribeClusterNodes",
    summary="DescribeClusterNodes",
)
def describe_cluster_nodes(
    request: Request,
    cluster_id: str,
    nodepool_id: Annotated[str | None, Query()] = None,
    state: Annotated[str | None, Query()] = None,
    page_size: Annotated[str | None, Query(alias="pageSize")] = None,
    page_number: Annotated[str | None, Query(alias="pageNumber")] = None,
    instance_ids: Annotated[str | None, Query(alias="instanceIds")] = None,
    node_names: Annotated[str | None, Query(alias="nodeNames")] = None,
    node_ips: Annotated[str | None, Query(alias="nodeIps")] = None,
    node_labels: Annotated[str | None, Query(alias="nodeLabels")] = None,
) -> Response:
    query = {"pageSize": page_size, "pageNumber": page_number}
    size = params.integer(query, "pageSize", default=10, low=1, high=100) or 10
    number = params.integer(query, "pageNumber", default=1, low=1) or 1
    wanted_state = (state or "all").lower()
    if wanted_state != "all" and wanted_state not in NODE_STATES:
        allowed = ", ".join(["all", *sorted(NODE_STATES)])
        raise errors.InvalidParameter("state", f"must be one of {allowed}")
    service = _cloud(request)
    nodes = service.nodes(cluster_id, nodepool_id)
    instances = {i.instance_id: i for i in service.instances(cluster_id)}
    tz = deps.timezone(request)
    documents = [
        world_wire.node_document(node, instances.get(node.instance_id), tz) for node in nodes
    ]
    wanted_ids = _csv(instance_ids)
    wanted_names = _csv(node_names)
    wanted_ips = _csv(node_ips)
    wanted_labels = _labels(node_labels)
    by_name = {node.node_name: node for node in nodes}
    selected = []
    for document in documents:
        if wanted_ids and document["instance_id"] not in wanted_ids:
            continue
        if wanted_names and document["node_name"] not in wanted_names:
            continue
        if wanted_ips and not set(document["ip_address"]) & wanted_ips:
            continue
        if wanted_state != "all" and document["state"] not in NODE_STATES[wanted_state]:
            continue
        node = by_name[document["node_name"]]
        labels = {label.key: label.value for label in node.labels}
        if any(labels.get(k) != v for k, v in wanted_labels.items()):
            continue
        selected.append(document)
    page = selected[(number - 1) * size : number * size]
    return render.document(
        request,
        "DescribeClusterNodes",
        {
            "nodes": page,
            "page": {"page_number": number, "page_size": size, "total_count": len(selected)},
            "request_id": _rid(request),
        },
    )


def _csv(value: str | None) -> set[str]:
    if not value:
        return set()
    if value.startswith("["):
        try:
            parsed = json_text.parse(value)
        except errors.InvalidParameter:
            parsed = None
        if isinstance(parsed, list):
            return {str(item) for item in parsed}
    return {part.strip() for part in value.split(",") if part.strip()}


def _labels(value: str | None) -> dict[str, str]:
    labels: dict[str, str] = {}
    for part in _csv(value):
        key, _, label_value = part.partition("=")
        labels[key] = label_value
    return labels
