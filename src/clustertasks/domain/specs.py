"""Cluster and node-pool specs as JSON: how a task's parameters and the simulated world's
rows keep them, and the one decoder both read them back with.

A spec written by an older version may lack fields (they take their defaults) and one
written by a newer version may have fields this one does not know (they are ignored): a
stored task or world outlives the version that wrote it. What is not an object at all is a
``TypeError``: that is a bug, not data to tolerate.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from clustertasks.domain import world


def to_json(spec: world.NodePoolSpec | world.ClusterSpec) -> dict[str, Any]:
    return dataclasses.asdict(spec)


def nodepool_spec(data: Any) -> world.NodePoolSpec:
    values = known(world.NodePoolSpec, _object(data, "node pool spec"))
    values["instance_types"] = tuple(values.get("instance_types", ()))
    values["vswitch_ids"] = tuple(values.get("vswitch_ids", ()))
    values["labels"] = labels(values.get("labels", ()))
    values["taints"] = taints(values.get("taints", ()))
    values["extra"] = dict(values.get("extra", {}))
    return world.NodePoolSpec(**values)


def cluster_spec(data: Any) -> world.ClusterSpec:
    values = known(world.ClusterSpec, _object(data, "cluster spec"))
    values["vswitch_ids"] = tuple(values.get("vswitch_ids", ()))
    values["tags"] = labels(values.get("tags", ()))
    values["extra"] = dict(values.get("extra", {}))
    return world.ClusterSpec(**values)


def labels(data: Iterable[Mapping[str, Any]]) -> tuple[world.Label, ...]:
    return tuple(world.Label(**known(world.Label, item)) for item in data)


def taints(data: Iterable[Mapping[str, Any]]) -> tuple[world.Taint, ...]:
    return tuple(world.Taint(**known(world.Taint, item)) for item in data)


def known(cls: type[Any], data: Mapping[Any, Any]) -> dict[str, Any]:
    """The stored values the record ``cls`` has a field for."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in data.items() if k in names}


def _object(data: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise TypeError(f"{what} must be an object, got {type(data).__name__}")
    return data
