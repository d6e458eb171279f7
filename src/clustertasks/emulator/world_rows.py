"""The simulated world's rows to records and back, shared by its stores."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from clustertasks.domain import specs, world


def plain(value: Any) -> Any:
    """Records and their sequences as JSON-ready dicts and lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def cluster_from_row(row: Mapping[Any, Any]) -> world.Cluster:
    values = specs.known(world.Cluster, row)
    return world.Cluster(
        **{**values, "spec": specs.cluster_spec(row["spec"]), "size": int(row["size"])}
    )


def nodepool_from_row(row: Mapping[Any, Any]) -> world.NodePool:
    return world.NodePool(
        **{**specs.known(world.NodePool, row), "spec": specs.nodepool_spec(row["spec"])}
    )


def instance_from_row(row: Mapping[Any, Any]) -> world.Instance:
    return world.Instance(**specs.known(world.Instance, row))


def node_from_row(row: Mapping[Any, Any]) -> world.Node:
    values = specs.known(world.Node, row)
    values.update(
        schedulable=bool(row["schedulable"]),
        labels=specs.labels(row["labels"]),
        taints=specs.taints(row["taints"]),
    )
    return world.Node(**values)
