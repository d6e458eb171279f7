"""Add-on use cases: the catalogue (ListAddons, DescribeAddon), a cluster's add-ons
(ListClusterAddonInstances, DescribeClusterAddonInstance, GetClusterAddonInstance,
DescribeClusterAddonsVersion, DescribeClusterAddonsUpgradeStatus), and the tasks that change
them (install, upgrade, uninstall, modify).

A request is checked whole before its task exists; the task marks each add-on it changes
(``installing``, ``upgrading``, ``deleting``, ``updating``) and then ``active``. Only the
task writes add-on records: a request and a running task never race on them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from clustertasks import errors
from clustertasks.domain import addons, params, records, world
from clustertasks.providers import inventory
from clustertasks.service import cloud, control, submission
from clustertasks.storage import store

_TASK_TYPES = {action: f"cluster_addon_{action}" for action in addons.ACTIONS}
# An add-on's last task, as DescribeClusterAddonsUpgradeStatus reports it.
_TASK_STATUS = {
    "running": "Running",
    "paused": "Paused",
    "success": "Success",
    "fail": "Failed",
    "canceled": "Canceled",
}
MAX_ADDONS = 20


class AddonService:
    def __init__(
        self,
        provider: inventory.Inventory,
        task_control: control.TaskControl,
        clouds: cloud.CloudService,
        tasks: store.TaskStore,
    ) -> None:
        self._cloud = provider
        self._control = task_control
        self._clouds = clouds
        self._tasks = tasks

    # -- the catalogue ---------------------------------------------------------------------

    def list_addons(self) -> list[dict[str, Any]]:
        return [_catalogue_item(info, info.latest) for info in addons.CATALOGUE]

    def describe_addon(self, name: str, version: str) -> dict[str, Any]:
        info = self._info(name)
        if version and version not in info.versions:
            raise errors.AddonNotFound(f"add-on {name} has no version {version}")
        current = version or info.latest
        return {
            **_catalogue_item(info, current),
            "newer_versions": [
                {"minimum_cluster_version": "", "upgradable": True, "version": newer}
                for newer in info.newer(current)
            ],
        }

    # -- a cluster's add-ons ---------------------------------------------------------------

    def instances(self, cluster_id: str) -> list[dict[str, str]]:
        found = addons.installed(self._clouds.cluster(cluster_id).spec.extra)
        return [
            {"name": name, "state": str(r["state"]), "version": str(r["version"])}
            for name, r in sorted(found.items())
        ]

    def instance(self, cluster_id: str, name: str) -> dict[str, Any]:
        cluster = self._clouds.cluster(cluster_id)
        record = addons.installed(cluster.spec.extra).get(name)
        if record is None:
            raise errors.AddonNotFound(f"add-on {name} is not installed in cluster {cluster_id}")
        return {
            "config": str(record.get("config", "")),
            "name": name,
            "state": str(record["state"]),
            "version": str(record["version"]),
        }

    def versions(self, cluster_id: str) -> dict[str, Any]:
        """DescribeClusterAddonsVersion: every add-on of the catalogue, by name."""
        found = addons.installed(self._clouds.cluster(cluster_id).spec.extra)
        out: dict[str, Any] = {}
        for info in addons.CATALOGUE:
            record = found.get(info.name)
            version = str(record["version"]) if record else ""
            newer = info.newer(version) if record else [info.latest]
            out[info.name] = {
                "component_name": info.name,
                "version": version,
                "next_version": newer[-1] if newer else "",
                "can_upgrade": bool(record) and bool(newer),
                "required": info.install_by_default,
                "changed": "",
                "message": "",
                "exist": record is not None,
                "policy": [],
                "ready_to_upgrade": "true" if record and newer else "false",
            }
        return out

    def upgrade_status(self, cluster_id: str, names: Sequence[str]) -> dict[str, Any]:
        """DescribeClusterAddonsUpgradeStatus: each named add-on and its last task."""
        found = addons.installed(self._clouds.cluster(cluster_id).spec.extra)
        out: dict[str, Any] = {}
        for name in names:
            record = found.get(name)
            if record is None:
                continue
            info = addons.find(name)
            newer = info.newer(str(record["version"])) if info else []
            task = self._last_task(cluster_id, name)
            status, message, task_id = "Success", "", ""
            if task is not None:
                status = _TASK_STATUS.get(task.state.value, "Running")
                message = task.error.message if task.error else ""
                task_id = task.task_id
            out[name] = {
                "addon_info": {"component_name": name, "version": str(record["version"])},
                "can_upgrade": bool(newer),
                "tasks": {"status": status, "message": message, "task_id": task_id},
            }
        return out

    def _last_task(self, cluster_id: str, name: str) -> records.Task | None:
        """The newest add-on task of the cluster that names ``name``."""
        newest: records.Task | None = None
        for task_type in _TASK_TYPES.values():
            query = store.TaskQuery(cluster_id=cluster_id, limit=20, task_type=task_type)
            for task in self._tasks.list_cluster_tasks(query).tasks:
                named = task.parameters.get("addons", [])
                if any(isinstance(i, Mapping) and i.get("name") == name for i in named):
                    if newest is None or task.created_us > newest.created_us:
                        newest = task
                    break
        return newest

    # -- changes ---------------------------------------------------------------------------

    def install(self, cluster_id: str, items: Any) -> submission.Submitted:
        cluster = self._running(cluster_id)
        found = addons.installed(cluster.spec.extra)
        wanted = []
        for index, item in enumerate(_objects(items, "body")):
            where = f"body[{index}]."
            name = params.text(item, "name", where, required=True)
            info = self._info(name, f"{where}name")
            if name in found:
                raise errors.InvalidParameter(
                    f"{where}name", f"add-on {name} is already installed in cluster {cluster_id}"
                )
            version = params.text(item, "version", where, default=info.latest)
            _known_version(info, version, f"{where}version")
            config = _config(item, "config", where)
            wanted.append({"name": name, "version": version, "config": config or ""})
        return self._submit(cluster, "install", wanted)

    def upgrade(self, cluster_id: str, items: Any) -> submission.Submitted:
        cluster = self._running(cluster_id)
        found = addons.installed(cluster.spec.extra)
        wanted = []
        for index, item in enumerate(_objects(items, "body")):
            where = f"body[{index}]."
            name = params.text(item, "component_name", where, required=True)
            record = self._installed(found, name, cluster_id)
            info = self._info(name, f"{where}component_name")
            version = params.text(item, "next_version", where, default=str(record["version"]))
            _known_version(info, version, f"{where}next_version")
            if version not in [str(record["version"]), *info.newer(str(record["version"]))]:
                raise errors.InvalidParameter(
                    f"{where}next_version",
                    f"{version} is older than the installed {record['version']}",
                )
            wanted.append(
                {"name": name, "version": version, "config": _config(item, "config", where)}
            )
        return self._submit(cluster, "upgrade", wanted)

    def uninstall(self, cluster_id: str, body: Any) -> submission.Submitted:
        cluster = self._running(cluster_id)
        found = addons.installed(cluster.spec.extra)
        items = body.get("addons") if isinstance(body, Mapping) else body
        wanted = []
        for index, item in enumerate(_objects(items, "addons")):
            where = f"addons[{index}]."
            name = params.text(item, "name", where, required=True)
            record = self._installed(found, name, cluster_id)
            params.boolean(item, "cleanup_cloud_resources", where)
            wanted.append({"name": name, "version": str(record["version"]), "config": None})
        return self._submit(cluster, "uninstall", wanted)

    def modify(self, cluster_id: str, name: str, body: Mapping[str, Any]) -> submission.Submitted:
        cluster = self._running(cluster_id)
        record = self._installed(addons.installed(cluster.spec.extra), name, cluster_id)
        config = _config(body, "config", "")
        if config is None:
            raise errors.InvalidParameter("config", "is required")
        wanted = [{"name": name, "version": str(record["version"]), "config": config}]
        return self._submit(cluster, "modify", wanted)

    def _submit(
        self, cluster: world.Cluster, action: str, wanted: list[dict[str, Any]]
    ) -> submission.Submitted:
        outcome = self._control.submit(
            _TASK_TYPES[action],
            cluster_id=cluster.cluster_id,
            target=records.Target(cluster.cluster_id, "cluster"),
            parameters={"addons": wanted},
        )
        return submission.Submitted(outcome.task, cluster_id=cluster.cluster_id)

    # -- plumbing --------------------------------------------------------------------------

    def _running(self, cluster_id: str) -> world.Cluster:
        cluster = self._clouds.cluster(cluster_id)
        if cluster.state not in ("running", "updating"):
            raise errors.ClusterStateError(
                f"cluster {cluster.cluster_id} is {cluster.state}: add-ons change only on a "
                "running cluster"
            )
        return cluster

    @staticmethod
    def _info(name: str, field: str = "") -> addons.AddonInfo:
        info = addons.find(name)
        if info is None:
            if field:
                raise errors.InvalidParameter(field, f"unknown add-on {name!r}")
            raise errors.AddonNotFound(f"add-on {name} was not found")
        return info

    @staticmethod
    def _installed(
        found: Mapping[str, dict[str, Any]], name: str, cluster_id: str
    ) -> dict[str, Any]:
        record = found.get(name)
        if record is None:
            raise errors.AddonNotFound(f"add-on {name} is not installed in cluster {cluster_id}")
        return record


def _catalogue_item(info: addons.AddonInfo, version: str) -> dict[str, Any]:
    return {
        "architecture": ["amd64", "arm64"],
        "category": info.category,
        "config_schema": info.config_schema,
        "install_by_default": info.install_by_default,
        "managed": info.managed,
        "name": info.name,
        "supported_actions": ["install", "upgrade", "uninstall", "modify"],
        "version": version,
    }


def _objects(items: Any, field: str) -> list[Mapping[str, Any]]:
    checked = params.object_list({field: items}, field, max_items=MAX_ADDONS)
    if not checked:
        raise errors.InvalidParameter(field, "name at least one add-on")
    return checked


def _known_version(info: addons.AddonInfo, version: str, field: str) -> None:
    if version not in info.versions:
        raise errors.InvalidParameter(
            field, f"add-on {info.name} has versions {', '.join(info.versions)}"
        )


def _config(item: Mapping[str, Any], key: str, where: str) -> str | None:
    """An add-on's config: a JSON object as text (None when not sent)."""
    text = params.text(item, key, where, max_length=65536)
    if item.get(key) is None:
        return None
    if text:
        try:
            parsed = json.loads(text)
        except ValueError:
            raise errors.InvalidParameter(f"{where}{key}", "must be a JSON object") from None
        if not isinstance(parsed, dict):
            raise errors.InvalidParameter(f"{where}{key}", "must be a JSON object")
    return text
