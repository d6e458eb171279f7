"""RepairClusterNodePool (task type ``nodepool_repair``): NotReady nodes back to Ready.

Parameters (normalised by the service): ``nodepool_id``, ``nodes`` (``[{node_name,
instance_id, nodepool_id}]``; every node of the pool when the request named none) and
``operations`` (``[{operation_id, args}]``, the repair operations to run).
``task_result``: one entry per instance.

Stages:

- ``RepairNodes``: node by node (checkpoint in between): a ``Ready`` node needs nothing
  and is reported so; a ``NotReady`` one gets the repair operations and is ``Ready``
  after them, or fails with ``NodeRepairFailed`` naming it. The other nodes go on.
- ``Finish``: the pool is ``active``; any node that failed fails the task, named.
"""

from __future__ import annotations

from typing import Any

from clustertasks import errors
from clustertasks.domain import states
from clustertasks.operations import base, outcomes
from clustertasks.providers import base as providers


def _nodes(ctx: base.StageContext) -> list[dict[str, str]]:
    found: Any = ctx.parameters.get("nodes", [])
    return [{k: str(v) for k, v in node.items()} for node in found]


def _operations(ctx: base.StageContext) -> str:
    found: Any = ctx.parameters.get("operations") or []
    return ", ".join(str(op["operation_id"]) for op in found) or "the default repairs"


async def repair_nodes(ctx: base.StageContext) -> None:
    pool_id = str(ctx.parameters["nodepool_id"])
    await ctx.provider.update_nodepool(ctx.cluster_id, pool_id, state="updating")
    nodes = _nodes(ctx)
    failures = outcomes.stored(ctx.outputs())
    for node in nodes:
        if node["instance_id"] not in ctx.results():
            await ctx.set_result(node["instance_id"], states.ResultStatus.INITIAL)
    settled = (states.ResultStatus.SUCCESS, states.ResultStatus.FAILED)

    def repaired() -> int:
        results = ctx.results()
        return sum(results.get(n["instance_id"]) is states.ResultStatus.SUCCESS for n in nodes)

    await ctx.progress(nodes_total=len(nodes), nodes_done=repaired())
    for number, node in enumerate(nodes, start=1):
        name, instance_id = node["node_name"], node["instance_id"]
        if ctx.results().get(instance_id) in settled:
            continue
        try:
            before = (await ctx.provider.describe_node(ctx.cluster_id, name)).node
            if before.node_status == "Ready":
                await ctx.emit("NodeHealthy", f"node {name} is Ready: nothing to repair", once=True)
            else:
                await ctx.emit(
                    "NodeRepairStart",
                    f"node {name} is {before.node_status}: running {_operations(ctx)}",
                    once=True,
                )
                with providers.for_instance(number):
                    await ctx.provider.repair_node(ctx.cluster_id, name)
                await ctx.emit("NodeRepaired", f"node {name} repaired and Ready", once=True)
        except (errors.PermanentError, errors.NotFound) as exc:
            failure = (
                exc
                if isinstance(exc, errors.PermanentError)
                else errors.NodeRepairFailed(f"node {name}: {exc.message}")
            )
            outcomes.record(failures, instance_id, failure)
            await ctx.set_result(
                instance_id,
                states.ResultStatus.FAILED,
                reason="NodeRepairFailed",
                message=f"node {name} (instance {instance_id}): {failure.message}",
                level=states.EventLevel.WARNING,
            )
        else:
            await ctx.set_result(instance_id, states.ResultStatus.SUCCESS)
        await ctx.progress(nodes_done=repaired(), nodes_failed=len(failures), failures=failures)
        await ctx.checkpoint()


async def finish(ctx: base.StageContext) -> None:
    await reactivate(ctx)
    failures = outcomes.stored(ctx.outputs("RepairNodes"))
    if failures:
        raise outcomes.error(failures, "nodes")
    await ctx.emit(
        "NodePoolRepairSucceed",
        f"node pool {ctx.parameters['nodepool_id']}: {len(_nodes(ctx))} nodes Ready",
        action="finish",
        once=True,
    )


async def reactivate(ctx: base.StageContext) -> None:
    try:
        pool_id = str(ctx.parameters["nodepool_id"])
        await ctx.settle_nodepool(pool_id, state="active")
    except errors.NotFound:
        return


REPAIR = base.Operation(
    "nodepool_repair",
    [base.Stage("RepairNodes", repair_nodes), base.Stage("Finish", finish)],
    pausable=True,
    compensate=reactivate,
)

OPERATIONS = (REPAIR,)
