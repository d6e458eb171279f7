"""What the cluster and node use cases share: the outcome of a submitted request, and how a
task's parameters name the nodes it acts on and how it drains them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clustertasks import errors
from clustertasks.domain import params, records, world
from clustertasks.providers import inventory

MAX_NODES = 500
MAX_DRAIN_TIMEOUT = 7 * 24 * 3600


@dataclass(frozen=True, slots=True)
class Submitted:
    task: records.Task
    cluster_id: str = ""
    nodepool_id: str = ""


def entry(node: world.Node | None, instance: world.Instance) -> dict[str, str]:
    """How a task's parameters name a node: its name ("" before it joined), its instance
    and its pool."""
    return {
        "node_name": node.node_name if node else "",
        "instance_id": instance.instance_id,
        "nodepool_id": instance.nodepool_id,
    }


def drain_options(source: Mapping[str, Any]) -> dict[str, Any]:
    """``drain_timeout`` (seconds) and ``on_drain_timeout`` (``fail`` | ``force``)."""
    timeout = params.integer(source, "drain_timeout", default=1800, low=0, high=MAX_DRAIN_TIMEOUT)
    on_timeout = params.text(source, "on_drain_timeout", default="fail")
    if on_timeout not in ("fail", "force"):
        raise errors.InvalidParameter("on_drain_timeout", "must be fail or force")
    return {"drain_timeout": timeout, "on_drain_timeout": on_timeout}


def newest_nodes(
    provider: inventory.Inventory, cluster_id: str, nodepool_id: str, keep: int
) -> list[dict[str, str]]:
    """The pool's instances beyond the ``keep`` oldest, newest first: what ESS removes when
    a scaling group shrinks."""
    instances = list(provider.list_instances(cluster_id, nodepool_id))
    by_instance = {n.instance_id: n for n in provider.list_nodes(cluster_id, nodepool_id)}
    return [entry(by_instance.get(i.instance_id), i) for i in reversed(instances[keep:])]
