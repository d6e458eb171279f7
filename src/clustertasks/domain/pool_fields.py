"""The parts of a node-pool request the simulation stores and echoes but does not act on.

CreateClusterNodePool and ModifyClusterNodePool accept far more than a simulated pool
needs (auto scaling, management, data disks, security groups, kubelet settings, ...).
Clients such as Terraform read every one of them back and plan a change for any that
differs, so each accepted field is kept (``NodePoolSpec.extra``) and echoed by
DescribeClusterNodePoolDetail. A field is checked against the type its default has in the
pool document, and a wrong type is refused naming it; fields the document does not know are
kept as sent. The fields the pool record owns (name, instance types, vSwitches, disks,
image, labels, taints, runtime, size) are parsed by the service and never kept twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from clustertasks import errors
from clustertasks.domain import world_wire

# Request-only keys: what to do, not what the pool is.
DIRECTIVES = frozenset({"count", "concurrency", "update_nodes"})
# Owned by the pool record (``world.NodePoolSpec``); a secret is not kept at all.
RECORD_FIELDS: Mapping[str, frozenset[str]] = {
    "kubernetes_config": frozenset(
        {"labels", "taints", "runtime", "runtime_version", "unschedulable"}
    ),
    "nodepool_info": frozenset({"name", "type", "nodepool_id", "created", "updated"}),
    "scaling_group": frozenset(
        {
            "desired_size",
            "image_id",
            "image_type",
            "instance_charge_type",
            "instance_types",
            "login_password",
            "scaling_group_id",
            "system_disk_category",
            "system_disk_size",
            "vswitch_ids",
        }
    ),
}


def sections(body: Mapping[str, Any], path: str = "") -> dict[str, Any]:
    """The request's storable fields, type-checked (``errors.InvalidParameter`` names the
    first wrong one) and normalised as ACK does."""
    defaults = world_wire.nodepool_section_defaults()
    kept: dict[str, Any] = {}
    for key, value in body.items():
        if key in DIRECTIVES or key not in defaults or value is None:
            continue
        checked = _checked(value, defaults[key], f"{path}{key}")
        if isinstance(checked, dict):
            for owned in RECORD_FIELDS.get(key, ()):
                checked.pop(owned, None)
        kept[key] = checked
    group = kept.get("scaling_group")
    if isinstance(group, dict):
        _normalise_security_groups(group)
    return kept


def node_config(
    kubelet: Mapping[str, Any], os_config: Mapping[str, Any], containerd: Mapping[str, Any]
) -> dict[str, Any]:
    """ModifyNodePoolNodeConfig's sections as the pool's ``node_config`` change, each
    checked under the name the request gives it."""
    defaults = world_wire.nodepool_section_defaults()["node_config"]
    config: dict[str, Any] = {}
    if kubelet:
        config["kubelet_configuration"] = _checked(
            kubelet, defaults["kubelet_configuration"], "kubelet_config"
        )
    if os_config:
        config["node_os_config"] = _checked(os_config, defaults["node_os_config"], "os_config")
    if containerd:
        config["containerd_config"] = dict(containerd)
    return {"node_config": config}


def merged(stored: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """ModifyClusterNodePool's rule: a field sent replaces the stored one, objects are
    merged key by key, lists are replaced whole."""
    out = dict(stored)
    for key, value in changes.items():
        old = out.get(key)
        if isinstance(value, Mapping) and isinstance(old, Mapping):
            out[key] = merged(old, value)
        else:
            out[key] = value
    group = out.get("scaling_group")
    if isinstance(group, dict) and isinstance(changes.get("scaling_group"), Mapping):
        _normalise_security_groups(group, changes["scaling_group"])
    return out


def _normalise_security_groups(
    group: dict[str, Any], sent: Mapping[str, Any] | None = None
) -> None:
    """ACK reports both the deprecated single group and the list: each filled from the
    other, the list winning when both were sent."""
    sent = group if sent is None else sent
    listed = group.get("security_group_ids")
    single = group.get("security_group_id")
    if "security_group_ids" in sent and listed:
        group["security_group_id"] = listed[0]
    elif single and "security_group_id" in sent:
        group["security_group_ids"] = [single]


def _checked(value: Any, default: Any, name: str) -> Any:
    if isinstance(default, bool):
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if not isinstance(value, bool):
            raise errors.InvalidParameter(name, f"must be true or false, got {value!r}")
        return value
    if isinstance(default, int):
        if isinstance(value, bool) or not isinstance(value, int):
            raise errors.InvalidParameter(name, f"must be an integer, got {value!r}")
        return value
    if isinstance(default, str):
        if not isinstance(value, str):
            raise errors.InvalidParameter(name, f"must be a string, got {value!r}")
        return value
    if isinstance(default, list):
        if not isinstance(value, list):
            raise errors.InvalidParameter(name, "must be a list")
        return list(value)
    if isinstance(default, dict):
        if not isinstance(value, Mapping):
            raise errors.InvalidParameter(name, "must be an object")
        out: dict[str, Any] = {}
        for key, item in value.items():
            if item is None:
                continue
            known = default.get(key)
            out[key] = (
                item if known is None or not default else _checked(item, known, f"{name}.{key}")
            )
        return out
    return value
