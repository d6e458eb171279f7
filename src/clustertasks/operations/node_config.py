"""``nodepool_node_config`` — ModifyNodePoolNodeConfig: kubelet, OS and containerd settings.

Parameters (normalised by the service): ``nodepool_id``, ``spec`` (the pool's spec with the
new ``node_config``), ``nodes`` (``[{node_name, instance_id, nodepool_id}]``, the nodes to
roll) and ``max_parallelism`` (nodes per batch, from ``rolling_policy``).

Stages:

- ``UpdateNodePool``: the pool is ``updating`` and keeps the new settings (new nodes get
  them).
- ``ApplyNodeConfig``: the nodes take the settings batch by batch, each restarting its
  kubelet (simulated seconds); ``task_result`` has one entry per node's instance. A
  checkpoint follows each batch, so the task can be paused between batches.
- ``Finish``: the pool is ``active`` again.

Compensation (cancel or failure): the pool is ``active``; the nodes already rolled keep the
new settings, as on ACK.
"""

from __future__ import annotations

from typing import Any

from clustertasks import errors
from clustertasks.domain import specs, states
from clustertasks.operations import base

KUBELET_RESTART_SECONDS = 15.0


def _nodes(ctx: base.StageContext) -> list[dict[str, str]]:
    found: Any = ctx.parameters.get("nodes", [])
    return [{k: str(v) for k, v in node.items()} for node in found]


async def update_nodepool(ctx: base.StageContext) -> None:
    pool_id = str(ctx.parameters["nodepool_id"])
    spec = specs.nodepool_spec(ctx.parameters["spec"])
    await ctx.provider.update_nodepool(ctx.cluster_id, pool_id, state="updating", spec=spec)
    await ctx.emit(
        "NodePoolConfigUpdated", f"node configuration of node pool {pool_id} updated", once=True
    )


async def apply_node_config(ctx: base.StageContext) -> None:
    nodes = _nodes(ctx)
    size = max(1, int(ctx.parameters.get("max_parallelism", 1)))
    batches = [nodes[i : i + size] for i in range(0, len(nodes), size)]
    done = ctx.results()
    await ctx.progress(nodes_total=len(nodes), batches_total=len(batches))
    for number, batch in enumerate(batches, start=1):
        todo = [n for n in batch if done.get(n["instance_id"]) != states.ResultStatus.SUCCESS]
        if not todo:
            continue
        for node in todo:
            await ctx.set_result(node["instance_id"], states.ResultStatus.INITIAL)
        # The kubelets of a batch restart together.
        await ctx.wait(KUBELET_RESTART_SECONDS)
        for node in todo:
            await ctx.set_result(
                node["instance_id"],
                states.ResultStatus.SUCCESS,
                reason="NodeConfigApplied",
                message=f"node {node['node_name']} restarted its kubelet with the new "
                "configuration",
            )
        finished = sum(
            1 for n in nodes if ctx.results().get(n["instance_id"]) == states.ResultStatus.SUCCESS
        )
        await ctx.progress(nodes_done=finished, batch=number)
        await ctx.checkpoint(batch=number, batches=len(batches))


async def finish(ctx: base.StageContext) -> None:
    pool_id = str(ctx.parameters["nodepool_id"])
    await ctx.settle_nodepool(pool_id, state="active")


async def reactivate(ctx: base.StageContext) -> None:
    try:
        await finish(ctx)
    except errors.NotFound:
        return


NODE_CONFIG = base.Operation(
    "nodepool_node_config",
    [
        base.Stage("UpdateNodePool", update_nodepool),
        base.Stage("ApplyNodeConfig", apply_node_config, timeout=24 * 3600.0),
        base.Stage("Finish", finish),
    ],
    pausable=True,
    compensate=reactivate,
)

OPERATIONS = (NODE_CONFIG,)
