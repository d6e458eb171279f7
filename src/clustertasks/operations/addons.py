"""Add-on tasks: ``cluster_addon_install`` (InstallClusterAddons), ``cluster_addon_upgrade``
(UpgradeClusterAddons), ``cluster_addon_uninstall`` (UnInstallClusterAddons) and
``cluster_addon_modify`` (ModifyClusterAddon).

Parameters (normalised by the service): ``addons`` (``[{name, version, config}]``: the
version and config each add-on ends with; ``config`` None keeps the one it has).
The one stage deploys the add-ons one after another: each is marked ``installing``,
``upgrading``, ``deleting`` or ``updating`` with this task's id, takes simulated seconds,
then is ``active`` (or removed), with a ``task_result`` entry per add-on.

Compensation (failure or cancel): an add-on this task did not finish is ``failed`` (or,
not yet installed, removed).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from clustertasks import errors
from clustertasks.domain import addons, states, world
from clustertasks.operations import base

DEPLOY_SECONDS = 20.0


def _items(ctx: base.StageContext) -> list[dict[str, Any]]:
    found: Any = ctx.parameters.get("addons", [])
    return [dict(item) for item in found]


async def _write(ctx: base.StageContext, change: dict[str, dict[str, Any] | None]) -> None:
    """Apply ``change`` (a record, or None to remove) to the cluster's add-ons, as one
    edit of the stored spec: a tag or another setting changed meanwhile is kept."""

    def apply(spec: world.ClusterSpec) -> world.ClusterSpec:
        current = addons.installed(spec.extra)
        for name, record in change.items():
            if record is None:
                current.pop(name, None)
            else:
                current[name] = record
        return dataclasses.replace(spec, extra={**spec.extra, "addons": current})

    await ctx.provider.update_cluster(ctx.cluster_id, edit=apply)


_UNDER_WAY = {
    "install": "installing",
    "upgrade": "upgrading",
    "uninstall": "deleting",
    "modify": "updating",
}


def _deployer(action: str, verb: str, reason: str) -> base.StageFunction:
    async def deploy(ctx: base.StageContext) -> None:
        items = _items(ctx)
        await ctx.progress(addons_total=len(items))
        for number, item in enumerate(items, start=1):
            name = str(item["name"])
            if ctx.results().get(name) == states.ResultStatus.SUCCESS:
                continue
            await ctx.set_result(name, states.ResultStatus.INITIAL)
            cluster = (await ctx.provider.describe(ctx.cluster_id)).cluster
            old = addons.installed(cluster.spec.extra).get(name, {})
            marked = {
                "name": name,
                "version": str(old.get("version", item["version"])),
                "config": str(old.get("config", item.get("config") or "")),
                "state": _UNDER_WAY[action],
                "task_id": ctx.task_id,
            }
            await _write(ctx, {name: marked})
            await ctx.wait(DEPLOY_SECONDS)
            config = item.get("config")
            record = {
                "name": name,
                "version": str(item["version"]),
                "config": str(old.get("config", "")) if config is None else str(config),
                "state": "active",
                "task_id": ctx.task_id,
            }
            await _write(ctx, {name: None if action == "uninstall" else record})
            await ctx.set_result(
                name,
                states.ResultStatus.SUCCESS,
                reason=reason,
                message=f"add-on {name} {item['version']} {verb} in cluster {ctx.cluster_id}",
            )
            await ctx.progress(addons_done=number)
            await ctx.checkpoint()

    return deploy


async def compensate(ctx: base.StageContext) -> None:
    try:
        cluster = (await ctx.provider.describe(ctx.cluster_id)).cluster
    except errors.NotFound:
        return
    current = addons.installed(cluster.spec.extra)
    change: dict[str, dict[str, Any] | None] = {}
    for item in _items(ctx):
        name = str(item["name"])
        record = current.get(name)
        if ctx.results().get(name) == states.ResultStatus.SUCCESS or record is None:
            continue
        if record.get("task_id") != ctx.task_id:
            continue
        change[name] = (
            None if record.get("state") == "installing" else {**record, "state": "failed"}
        )
    if change:
        await _write(ctx, change)


def _operation(task_type: str, stage: str, action: str, verb: str, reason: str) -> base.Operation:
    return base.Operation(
        task_type,
        [base.Stage(stage, _deployer(action, verb, reason), timeout=2 * 3600.0)],
        compensate=compensate,
    )


OPERATIONS = (
    _operation("cluster_addon_install", "InstallAddons", "install", "installed", "AddonInstalled"),
    _operation("cluster_addon_upgrade", "UpgradeAddons", "upgrade", "upgraded", "AddonUpgraded"),
    _operation(
        "cluster_addon_uninstall", "UninstallAddons", "uninstall", "uninstalled", "AddonUninstalled"
    ),
    _operation(
        "cluster_addon_modify", "ModifyAddonConfig", "modify", "reconfigured", "AddonModified"
    ),
)
