"""Specs in task parameters: stored as JSON, rebuilt as records when a stage runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from clustertasks.domain import world


def to_json(spec: world.NodePoolSpec | world.ClusterSpec) -> dict[str, Any]:
    return dataclasses.asdict(spec)


def nodepool_spec(data: Any) -> world.NodePoolSpec:
    if not isinstance(data, Mapping):
        raise TypeError(f"node pool spec must be an object, got {type(data).__name__}")
    values = dict(data)
    values["labels"] = tuple(world.Label(**label) for label in values.get("labels", ()))
    values["taints"] = tuple(world.Taint(**taint) for taint in values.get("taints", ()))
    values["instance_types"] = tuple(values.get("instance_types", ()))
    values["vswitch_ids"] = tuple(values.get("vswitch_ids", ()))
    return world.NodePoolSpec(**values)


def cluster_spec(data: Any) -> world.ClusterSpec:
    if not isinstance(data, Mapping):
        raise TypeError(f"cluster spec must be an object, got {type(data).__name__}")
    values = dict(data)
    values["tags"] = tuple(world.Label(**tag) for tag in values.get("tags", ()))
    values["vswitch_ids"] = tuple(values.get("vswitch_ids", ()))
    return world.ClusterSpec(**values)
