"""Add-on routes as the official SDK calls them (what Terraform's ``alicloud_cs_kubernetes_addon``
sends): InstallClusterAddons, UpgradeClusterAddons, UnInstallClusterAddons, ModifyClusterAddon
(tasks), and the reads ListAddons, DescribeAddon, ListClusterAddonInstances,
GetClusterAddonInstance, DescribeClusterAddonInstance, DescribeClusterAddonsVersion,
DescribeClusterAddonsUpgradeStatus."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from clustertasks import errors
from clustertasks.api import body, deps, render
from clustertasks.api import errors as api_errors
from clustertasks.service import addons as addon_service
from clustertasks.service import submission

router = APIRouter(tags=["addons"])


def _addons(request: Request) -> addon_service.AddonService:
    return deps.services(request).addons


def _rid(request: Request) -> str:
    return api_errors.request_id(request)


def _task(request: Request, operation: str, done: submission.Submitted) -> Response:
    return render.document(
        request,
        operation,
        {"cluster_id": done.cluster_id, "task_id": done.task.task_id, "request_id": _rid(request)},
    )


@router.post("/clusters/{cluster_id}/components/install", operation_id="InstallClusterAddons")
async def install_cluster_addons(request: Request, cluster_id: str) -> Response:
    items = await body.json_value(request, [])
    done = await run_in_threadpool(_addons(request).install, cluster_id, items)
    return _task(request, "InstallClusterAddons", done)


@router.post("/clusters/{cluster_id}/components/upgrade", operation_id="UpgradeClusterAddons")
async def upgrade_cluster_addons(request: Request, cluster_id: str) -> Response:
    items = await body.json_value(request, [])
    done = await run_in_threadpool(_addons(request).upgrade, cluster_id, items)
    return _task(request, "UpgradeClusterAddons", done)


@router.post("/clusters/{cluster_id}/components/uninstall", operation_id="UnInstallClusterAddons")
async def uninstall_cluster_addons(request: Request, cluster_id: str) -> Response:
    items = await body.json_value(request, [])
    done = await run_in_threadpool(_addons(request).uninstall, cluster_id, items)
    return _task(request, "UnInstallClusterAddons", done)


@router.post(
    "/clusters/{cluster_id}/components/{component_id}/config", operation_id="ModifyClusterAddon"
)
async def modify_cluster_addon(request: Request, cluster_id: str, component_id: str) -> Response:
    document = await body.json_object(request)
    done = await run_in_threadpool(_addons(request).modify, cluster_id, component_id, document)
    # ACK answers with no task id (clients poll DescribeClusterAddonsUpgradeStatus); the
    # added keys are an extension the SDK ignores.
    return _task(request, "ModifyClusterAddon", done)


@router.get("/clusters/{cluster_id}/addon_instances", operation_id="ListClusterAddonInstances")
def list_cluster_addon_instances(request: Request, cluster_id: str) -> Response:
    items = _addons(request).instances(cluster_id)
    return render.document(
        request, "ListClusterAddonInstances", {"addons": items, "request_id": _rid(request)}
    )


@router.get(
    "/clusters/{cluster_id}/addon_instances/{instance_name}",
    operation_id="GetClusterAddonInstance",
)
def get_cluster_addon_instance(request: Request, cluster_id: str, instance_name: str) -> Response:
    answer = _addons(request).instance(cluster_id, instance_name)
    answer["logging"] = {"capable": False, "enabled": False, "log_project": "", "logstore": ""}
    return render.document(request, "GetClusterAddonInstance", answer)


@router.get(
    "/clusters/{cluster_id}/components/version", operation_id="DescribeClusterAddonsVersion"
)
def describe_cluster_addons_version(request: Request, cluster_id: str) -> Response:
    return render.document(
        request, "DescribeClusterAddonsVersion", _addons(request).versions(cluster_id)
    )


@router.get(
    "/clusters/{cluster_id}/components/upgradestatus",
    operation_id="DescribeClusterAddonsUpgradeStatus",
)
def describe_cluster_addons_upgrade_status(
    request: Request,
    cluster_id: str,
    component_ids: Annotated[
        str | None, Query(alias="componentIds", description="JSON array")
    ] = None,
) -> Response:
    names = _json_names(component_ids)
    return render.document(
        request,
        "DescribeClusterAddonsUpgradeStatus",
        _addons(request).upgrade_status(cluster_id, names),
    )


@router.get(
    "/clusters/{cluster_id}/components/{addon_name}/instance",
    operation_id="DescribeClusterAddonInstance",
)
def describe_cluster_addon_instance(request: Request, cluster_id: str, addon_name: str) -> Response:
    answer = _addons(request).instance(cluster_id, addon_name)
    return render.document(request, "DescribeClusterAddonInstance", answer)


@router.get("/addons", operation_id="ListAddons")
def list_addons(request: Request) -> Response:
    return render.document(
        request,
        "ListAddons",
        {"addons": _addons(request).list_addons(), "request_id": _rid(request)},
    )


@router.get("/addons/{addon_name}", operation_id="DescribeAddon")
def describe_addon(
    request: Request, addon_name: str, version: Annotated[str | None, Query()] = None
) -> Response:
    answer = _addons(request).describe_addon(addon_name, version or "")
    answer["request_id"] = _rid(request)
    return render.document(request, "DescribeAddon", answer)


def _json_names(value: str | None) -> list[str]:
    if not value:
        raise errors.InvalidParameter("componentIds", "is required")
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value.split(",")
    if not isinstance(parsed, list) or not all(isinstance(n, str) for n in parsed):
        raise errors.InvalidParameter("componentIds", "must be a JSON array of add-on names")
    return [name for name in parsed if name]
