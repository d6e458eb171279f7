"""The cluster settings CreateCluster and ModifyCluster accept that the simulation keeps and
echoes (``ClusterSpec.extra``) but does not act on: maintenance window, operation policy,
endpoints, security group, RRSA, certificate SANs, ..."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from clustertasks import errors
from clustertasks.domain import params

# Objects ACK applies to things the simulation does not have; merged key by key.
OBJECTS = (
    "maintenance_window",
    "operation_policy",
    "control_plane_config",
    "control_plane_endpoints_config",
    "system_events_logging",
)
FLAGS = (
    "api_server_eip",
    "instance_deletion_protection",
    "ingress_domain_rebinding",
    "enable_rrsa",
    "endpoint_public_access",
)
# Never kept, so never echoed.
SECRETS = frozenset({"login_password"})
TEXTS = ("api_server_eip_id", "ingress_loadbalancer_id", "security_group_id")


def kept(body: Mapping[str, Any], stored: Mapping[str, Any]) -> dict[str, Any]:
    """``stored`` with what ``body`` sets of the kept settings; each checked, a wrong one
    refused naming it."""
    extra = dict(stored)
    for key in OBJECTS:
        section = {k: v for k, v in params.obj(body, key).items() if k not in SECRETS}
        if section:
            extra[key] = merged(extra.get(key, {}), section)
    for key in FLAGS:
        if body.get(key) is not None:
            extra[key] = params.boolean(body, key)
    for key in TEXTS:
        if body.get(key) is not None:
            extra[key] = params.text(body, key)
    if body.get("access_control_list") is not None:
        extra["access_control_list"] = params.text_list(body, "access_control_list")
    sans = params.obj(body, "api_server_custom_cert_sans")
    if sans:
        extra["extra_sans"] = _sans(extra.get("extra_sans", []), sans)
    custom_san = params.text(body, "custom_san", max_length=4096)
    if custom_san:
        # CreateCluster's form: one comma-separated string.
        extra["extra_sans"] = [name.strip() for name in custom_san.split(",") if name.strip()]
    return extra


def merged(stored: Any, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Objects merged key by key; anything else sent replaces what was stored."""
    out = dict(stored) if isinstance(stored, Mapping) else {}
    for key, value in changes.items():
        old = out.get(key)
        both = isinstance(value, Mapping) and isinstance(old, Mapping)
        out[key] = merged(old, value) if both else value
    return out


def _sans(current: Sequence[str], body: Mapping[str, Any]) -> list[str]:
    path = "api_server_custom_cert_sans."
    names = params.text_list(body, "subject_alternative_names", path)
    action = params.text(body, "action", path, default="append")
    if action not in ("append", "overwrite"):
        raise errors.InvalidParameter(f"{path}action", "must be append or overwrite")
    if action == "overwrite":
        return names
    return list(dict.fromkeys([*current, *names]))
