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
# Control-plane components whose logs ACK can ship (UpdateControlPlaneLog).
CONTROL_PLANE_COMPONENTS = (
    "apiserver",
    "kcm",
    "scheduler",
    "ccm",
    "controlplane-events",
    "alb",
    "ack-goatscaler",
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


def control_plane_log(
    body: Mapping[str, Any], stored: Mapping[str, Any], prefix: str = ""
) -> dict[str, Any]:
    """Control-plane logging as UpdateControlPlaneLog (``log_ttl``, ``log_project``,
    ``components``) or CreateCluster (``prefix`` ``controlplane_``) sends it; what is not
    sent keeps its ``stored`` value."""
    config = dict(stored)
    ttl_key, project_key, components_key = (
        f"{prefix}log_ttl",
        f"{prefix}log_project",
        f"{prefix}log_components" if prefix else "components",
    )
    if body.get(ttl_key) is not None:
        ttl = params.text(body, ttl_key, max_length=8)
        if not ttl.isdigit() or not 1 <= int(ttl) <= 3650:
            raise errors.InvalidParameter(ttl_key, "must be a number of days from 1 to 3650")
        config["log_ttl"] = ttl
    if body.get(project_key) is not None:
        config["log_project"] = params.text(body, project_key, max_length=128)
    if body.get(components_key) is not None:
        components = params.text_list(body, components_key, max_items=20)
        unknown = [c for c in components if c not in CONTROL_PLANE_COMPONENTS]
        if unknown:
            raise errors.InvalidParameter(
                components_key,
                f"unknown component {unknown[0]!r}; known: {', '.join(CONTROL_PLANE_COMPONENTS)}",
            )
        config["components"] = list(dict.fromkeys(components))
    if body.get("aliuid") is not None and not prefix:
        config["aliuid"] = params.text(body, "aliuid", max_length=64)
    return config


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
