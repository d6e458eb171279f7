"""Cordon and drain a node with the Kubernetes Eviction API's semantics.

Shared by node removal, the rolling upgrades and anything else that takes a node out of
service. A drain evicts every pod on the node except DaemonSet pods (they belong to the
node). An eviction a PodDisruptionBudget refuses is retried every ``EVICTION_RETRY``
seconds of *simulated* time until ``drain_timeout`` simulated seconds have passed; the
retries are counted, not timed, so at ``--sim-speed 0`` a blocked drain still ends, after
the same number of rounds it would take at any speed. Then ``on_drain_timeout`` decides:
``fail`` raises ``errors.DrainTimeout`` naming the node, the pods and their budgets;
``force`` deletes the pods anyway, with a Warning event.

Parameters read (extensions; clients that do not send them get the defaults):
``drain_timeout`` (seconds, default 1800) and ``on_drain_timeout`` (``fail`` | ``force``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clustertasks import errors
from clustertasks.domain import states, workloads
from clustertasks.operations import base

EVICTION_RETRY = 5.0
"""Simulated seconds between eviction rounds (kubectl drain's retry interval)."""
DEFAULT_DRAIN_TIMEOUT = 1800
ON_TIMEOUT = ("fail", "force")


@dataclass(frozen=True, slots=True)
class DrainPolicy:
    timeout: float = DEFAULT_DRAIN_TIMEOUT
    on_timeout: str = "fail"

    @property
    def rounds(self) -> int:
        """Eviction rounds after the first one before the drain times out."""
        return max(0, math.ceil(self.timeout / EVICTION_RETRY))


def policy(parameters: Mapping[str, Any]) -> DrainPolicy:
    timeout: Any = parameters.get("drain_timeout", DEFAULT_DRAIN_TIMEOUT)
    on_timeout: Any = parameters.get("on_drain_timeout", "fail")
    return DrainPolicy(float(timeout), str(on_timeout))


async def cordon(ctx: base.StageContext, node_name: str) -> None:
    await ctx.provider.update_node(ctx.cluster_id, node_name, schedulable=False)
    await ctx.emit("NodeCordoned", f"node {node_name} cordoned (unschedulable)", once=True)


async def uncordon(ctx: base.StageContext, node_name: str) -> None:
    """Schedulable again; a node that has left the cluster is left alone."""
    try:
        await ctx.provider.update_node(ctx.cluster_id, node_name, schedulable=True)
    except errors.NotFound:
        return


async def drain(ctx: base.StageContext, node_name: str, rules: DrainPolicy) -> None:
    """Evict the node's pods (not DaemonSet ones). Returns once none is left; raises
    ``errors.DrainTimeout`` when budgets still refuse after the timeout (``fail``)."""
    blocked: list[tuple[str, str]] = []
    for round_number in range(rules.rounds + 1):
        if round_number:
            await ctx.wait(EVICTION_RETRY)
        blocked = await _evict_round(ctx, node_name, rules)
        if not blocked:
            await ctx.emit("NodeDrained", f"node {node_name} drained", once=True)
            return
    detail = ", ".join(f"pod {pod} blocked by PodDisruptionBudget {pdb}" for pod, pdb in blocked)
    if rules.on_timeout != "force":
        raise errors.DrainTimeout(
            f"drain of node {node_name} timed out after {rules.timeout:g}s: {detail}"
        )
    for pod, _ in blocked:
        await ctx.provider.evict_pod(ctx.cluster_id, pod, node_name, force=True)
    await ctx.emit(
        "DrainForced",
        f"drain of node {node_name} timed out after {rules.timeout:g}s; pods deleted "
        f"despite their PodDisruptionBudgets (on_drain_timeout=force): {detail}",
        level=states.EventLevel.WARNING,
        once=True,
    )


async def _evict_round(
    ctx: base.StageContext, node_name: str, rules: DrainPolicy
) -> list[tuple[str, str]]:
    """One eviction request per pod on the node; returns the (pod, budget) refusals."""
    try:
        pods = (await ctx.provider.describe_node(ctx.cluster_id, node_name)).pods
    except errors.NodeNotFound:
        pods = ()  # the node left meanwhile: its pods went with it
    blocked: list[tuple[str, str]] = []
    for pod in pods:
        if pod.kind == workloads.DAEMONSET:
            continue
        eviction = await ctx.provider.evict_pod(ctx.cluster_id, pod.name, node_name)
        if eviction.outcome == "blocked":
            blocked.append((pod.name, eviction.blocked_by))
            await ctx.emit(
                "DrainBlockedByPDB",
                f"eviction of pod {pod.name} from node {node_name} refused: "
                f"PodDisruptionBudget {eviction.blocked_by} allows no disruption now; "
                f"retrying every {EVICTION_RETRY:g}s for up to {rules.timeout:g}s",
                level=states.EventLevel.WARNING,
                once=True,
            )
        elif eviction.outcome == "evicted":
            where = (
                f"rescheduled on node {eviction.to_node}"
                if eviction.to_node
                else "Pending: no schedulable node has room"
            )
            await ctx.emit(
                "PodEvicted", f"pod {pod.name} evicted from node {node_name}, {where}", once=True
            )
    return blocked
