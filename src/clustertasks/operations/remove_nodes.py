"""Removing nodes: RemoveNodePoolNodes, DeleteClusterNodes and the shrink of
ModifyClusterNodePool's ``desired_size`` (task type ``cluster_node_delete``).

Parameters (normalised by the service): ``nodes`` (``[{node_name, instance_id,
nodepool_id}]``), ``drain_node``, ``release_node``, ``concurrency`` and the drain
extensions ``drain_timeout`` / ``on_drain_timeout`` (see ``operations/drain.py``).
``task_result``: one entry per instance.

Stages:

- ``Precheck``: the pools concerned are ``removing``.
- ``DrainNodes``: each node is cordoned and, with ``drain_node``, drained. A node whose drain
  times out (``on_drain_timeout=fail``) is uncordoned, kept, and fails with
  ``DrainTimeout``; the other nodes go on. One node at a time unless ``concurrency``.
- ``RemoveNodes``: each drained node leaves the cluster; its instance is released with
  ``release_node``, otherwise it stays running as a free ECS instance (attachable). Then
  every pool takes the desired size it really has (and is ``active`` from the task's end
  on), and a node that failed to drain fails the task, named in the error.
- ``Finish``: the success event.

ModifyClusterNodePool's shrink runs ``DrainNodes`` and ``RemoveNodes`` inside
``nodepool_update`` with ``drain_node`` and ``release_node`` set.

Compensation (cancel or failure): nodes cordoned and not removed become schedulable again.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

from clustertasks import errors
from clustertasks.domain import states
from clustertasks.operations import base, drain, outcomes
from clustertasks.providers import base as providers


def _nodes(ctx: base.StageContext) -> list[dict[str, str]]:
    found: Any = ctx.parameters.get("nodes", [])
    return [{k: str(v) for k, v in node.items()} for node in found]


def _numbers(ctx: base.StageContext) -> dict[str, int]:
    """The n-th node of the request is the task's instance n in every call about it."""
    return {n["instance_id"]: i for i, n in enumerate(_nodes(ctx), start=1)}


def _pools(ctx: base.StageContext) -> list[str]:
    return list(dict.fromkeys(n["nodepool_id"] for n in _nodes(ctx) if n["nodepool_id"]))


async def precheck(ctx: base.StageContext) -> None:
    for pool_id in _pools(ctx):
        await ctx.provider.update_nodepool(ctx.cluster_id, pool_id, state="removing")
    for node in _nodes(ctx):
        if node["instance_id"] not in ctx.results():
            await ctx.set_result(node["instance_id"], states.ResultStatus.INITIAL)
    names = ", ".join(n["node_name"] or n["instance_id"] for n in _nodes(ctx))
    await ctx.emit("NodeRemoveStart", f"start to remove nodes {names}", action="start", once=True)


async def drain_nodes(ctx: base.StageContext) -> None:
    rules = drain.policy(ctx.parameters)
    nodes = _nodes(ctx)
    failures = outcomes.stored(ctx.outputs())
    drained: list[str] = [str(i) for i in ctx.outputs().get("drained", [])]
    cordoned: list[str] = [str(n) for n in ctx.outputs().get("cordoned", [])]
    numbers = _numbers(ctx)
    await ctx.progress(nodes_total=len(nodes), nodes_drained=len(drained))

    # Every node is cordoned before any is drained, so that no evicted pod lands on a node
    # that is about to leave too.
    for node in nodes:
        name, instance_id = node["node_name"], node["instance_id"]
        if not name or instance_id in drained or instance_id in failures:
            continue
        if name not in cordoned:
            cordoned.append(name)
            await ctx.progress(cordoned=list(cordoned))
        # A node that left on its own has nothing to drain.
        with providers.for_instance(numbers[instance_id]), contextlib.suppress(errors.NotFound):
            await drain.cordon(ctx, name)

    async def take_out(node: dict[str, str]) -> None:
        name, instance_id = node["node_name"], node["instance_id"]
        if instance_id in drained or instance_id in failures:
            return
        if name:
            try:
                if ctx.parameters.get("drain_node"):
                    with providers.for_instance(numbers[instance_id]):
                        await drain.drain(ctx, name, rules)
            except errors.NotFound:
                pass  # the node left on its own: nothing to drain
            except errors.PermanentError as exc:
                with providers.for_instance(numbers[instance_id]):
                    await drain.uncordon(ctx, name)
                outcomes.record(failures, instance_id, exc)
                await ctx.set_result(
                    instance_id,
                    states.ResultStatus.FAILED,
                    reason="NodeDrainFailed",
                    message=f"node {name} (instance {instance_id}) kept: {exc.code}: {exc.message}",
                    level=states.EventLevel.WARNING,
                )
                return
        drained.append(instance_id)

    async def save() -> None:
        # Written by one caller at a time: concurrent merges of outputs could lose a key.
        await ctx.progress(
            drained=list(drained), nodes_drained=len(drained), failures=dict(failures)
        )

    if ctx.parameters.get("concurrency"):
        await outcomes.run_all(take_out(node) for node in nodes)
        await save()
    else:
        for node in nodes:
            await take_out(node)
            await save()
            await ctx.checkpoint()


async def remove_nodes(ctx: base.StageContext) -> None:
    drained = [str(i) for i in ctx.outputs("DrainNodes").get("drained", [])]
    release = bool(ctx.parameters.get("release_node"))
    by_instance = {n["instance_id"]: n for n in _nodes(ctx)}
    done = [i for i in drained if ctx.results().get(i) is states.ResultStatus.SUCCESS]
    await ctx.progress(nodes_total=len(drained), nodes_removed=len(done))
    for instance_id in drained:
        if instance_id in done:
            continue
        name = by_instance[instance_id]["node_name"] or "(not joined)"
        with providers.for_instance(_numbers(ctx)[instance_id]):
            await ctx.provider.remove_node(
                ctx.key(instance_id), ctx.cluster_id, instance_id, release=release
            )
        fate = "released" if release else "kept running as a free ECS instance"
        await ctx.set_result(
            instance_id,
            states.ResultStatus.SUCCESS,
            reason="NodeRemoved",
            message=f"node {name} removed from the cluster; instance {instance_id} {fate}",
        )
        done.append(instance_id)
        await ctx.progress(nodes_removed=len(done))
        await ctx.checkpoint()
    await settle_pools(ctx, _pools(ctx))
    failures = outcomes.stored(ctx.outputs("DrainNodes"))
    if failures:
        raise outcomes.error(failures, "nodes")


async def finish(ctx: base.StageContext) -> None:
    await ctx.emit(
        "NodeRemoveSucceed",
        f"removed {len(_nodes(ctx))} nodes from cluster {ctx.cluster_id}",
        action="finish",
        once=True,
    )


async def settle_pools(ctx: base.StageContext, pool_ids: Sequence[str]) -> None:
    """Each pool has the desired size of the instances it really has, and is ``active``
    once the task has ended."""
    for pool_id in pool_ids:
        with contextlib.suppress(errors.NotFound):
            left = (await ctx.provider.describe(ctx.cluster_id, pool_id)).instances
            await ctx.settle_nodepool(pool_id, state="active", desired_size=len(left))


async def compensate(ctx: base.StageContext) -> None:
    """Cordoned nodes that were not removed serve again; the pools settle."""
    results = ctx.results()
    cordoned = {str(n) for n in ctx.outputs("DrainNodes").get("cordoned", [])}
    for node in _nodes(ctx):
        removed = results.get(node["instance_id"]) is states.ResultStatus.SUCCESS
        if node["node_name"] in cordoned and not removed:
            await drain.uncordon(ctx, node["node_name"])
    await settle_pools(ctx, _pools(ctx))


STAGES = (
    base.Stage("Precheck", precheck),
    # A blocked drain may wait drain_timeout of simulated time per node, one node after
    # another: far beyond the default stage timeout at realistic speed.
    base.Stage("DrainNodes", drain_nodes, timeout=7 * 24 * 3600.0),
    base.Stage("RemoveNodes", remove_nodes),
    base.Stage("Finish", finish),
)

REMOVE = base.Operation("cluster_node_delete", STAGES, pausable=True, compensate=compensate)

OPERATIONS = (REMOVE,)
