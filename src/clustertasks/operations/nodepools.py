"""Node-pool operations: create, scale out, modify, delete.

``nodepool_create`` — CreateClusterNodePool: ``CreateNodePool`` then the scale-out stages
(``Precheck``, ``CreateInstances``, ``JoinNodes``, ``Finish``) for its desired size.
``cluster_scaleout`` — ScaleClusterNodePool and the legacy ScaleOutCluster: the scale-out
stages. ``nodepool_update`` — ModifyClusterNodePool: ``UpdateNodePool``, the scale-out
stages when the desired size grows, ``DrainNodes`` and ``RemoveNodes`` (from
``remove_nodes``) when it shrinks, then ``UpdateNodes`` (labels and taints pushed to the
existing nodes when ``update_nodes`` is true). ``nodepool_delete`` —
DeleteClusterNodepool: ``RemoveNodes`` then ``DeleteNodePool``.
"""

from __future__ import annotations

from clustertasks.domain import specs, states
from clustertasks.operations import base, scale_out
from clustertasks.operations import remove_nodes as node_removal
from clustertasks.providers import base as providers


async def create_nodepool(ctx: base.StageContext) -> None:
    spec = specs.nodepool_spec(ctx.parameters["spec"])
    pool_id = str(ctx.parameters["nodepool_id"])
    pool = await ctx.provider.create_nodepool(ctx.key(), ctx.cluster_id, pool_id, spec)
    await ctx.emit(
        "NodePoolCreated",
        f"node pool {pool.nodepool_id} ({spec.name}) created in cluster {ctx.cluster_id}",
        once=True,
    )


async def update_nodepool(ctx: base.StageContext) -> None:
    pool_id = str(ctx.parameters["nodepool_id"])
    spec = specs.nodepool_spec(ctx.parameters["spec"])
    await ctx.provider.update_nodepool(ctx.cluster_id, pool_id, spec=spec)
    await ctx.emit("NodePoolUpdated", f"node pool {pool_id} configuration updated", once=True)


async def update_nodes(ctx: base.StageContext) -> None:
    if not ctx.parameters.get("update_nodes"):
        await ctx.progress(nodes_total=0, nodes_done=0)
        return
    pool_id = str(ctx.parameters["nodepool_id"])
    spec = specs.nodepool_spec(ctx.parameters["spec"])
    nodes = (await ctx.provider.describe(ctx.cluster_id, pool_id)).nodes
    await ctx.progress(nodes_total=len(nodes), nodes_done=0)
    for done, node in enumerate(nodes, start=1):
        await ctx.provider.update_node(
            ctx.cluster_id, node.node_name, labels=spec.labels, taints=spec.taints
        )
        await ctx.emit(
            "NodeUpdated",
            f"labels and taints of node {node.node_name} updated",
            once=True,
        )
        await ctx.progress(nodes_done=done)
        await ctx.checkpoint()


async def settle_after_update(ctx: base.StageContext) -> None:
    if ctx.parameters.get("nodes"):
        await node_removal.compensate(ctx)
    if int(ctx.parameters.get("count", 0)) > 0:
        await scale_out.compensate(ctx)
    else:
        await scale_out.settle_pool(ctx)


async def remove_nodes(ctx: base.StageContext) -> None:
    pool_id = str(ctx.parameters["nodepool_id"])
    await ctx.provider.update_nodepool(ctx.cluster_id, pool_id, state="deleting")
    instances = (await ctx.provider.describe(ctx.cluster_id, pool_id)).instances
    await ctx.progress(nodes_total=len(instances), nodes_done=0)
    for released, instance in enumerate(instances, start=1):
        await ctx.set_result(instance.instance_id, states.ResultStatus.INITIAL)
        with providers.for_instance(released):
            await ctx.provider.release_instance(ctx.key(instance.instance_id), instance.instance_id)
        await ctx.set_result(
            instance.instance_id,
            states.ResultStatus.SUCCESS,
            reason="InstanceReleased",
            message=f"node of instance {instance.instance_id} removed and the instance released",
        )
        await ctx.progress(nodes_done=released)
    # Nodes removed by an earlier run of this stage are already gone from the list.
    await ctx.checkpoint()


async def delete_nodepool(ctx: base.StageContext) -> None:
    pool_id = str(ctx.parameters["nodepool_id"])
    await ctx.delete_nodepool(pool_id)
    await ctx.emit("NodePoolDeleted", f"node pool {pool_id} deleted", once=True)


async def reactivate(ctx: base.StageContext) -> None:
    """After a failed or canceled delete, the pool serves again."""
    pool_id = str(ctx.parameters["nodepool_id"])
    try:
        await ctx.settle_nodepool(pool_id, state="active")
    except Exception:  # noqa: BLE001 - the pool may be gone already
        return


CREATE = base.Operation(
    "nodepool_create",
    [base.Stage("CreateNodePool", create_nodepool), *scale_out.STAGES],
    compensate=scale_out.compensate,
)
SCALE_OUT = base.Operation(
    "cluster_scaleout", list(scale_out.STAGES), compensate=scale_out.compensate
)
UPDATE = base.Operation(
    "nodepool_update",
    [
        base.Stage("UpdateNodePool", update_nodepool),
        *scale_out.STAGES,
        # A shrink of desired_size: the newest nodes drained and released, as ESS does.
        base.Stage("DrainNodes", node_removal.drain_nodes, timeout=7 * 24 * 3600.0),
        base.Stage("RemoveNodes", node_removal.remove_nodes),
        base.Stage("UpdateNodes", update_nodes),
    ],
    compensate=settle_after_update,
)
DELETE = base.Operation(
    "nodepool_delete",
    [base.Stage("RemoveNodes", remove_nodes), base.Stage("DeleteNodePool", delete_nodepool)],
    compensate=reactivate,
)

OPERATIONS = (CREATE, SCALE_OUT, UPDATE, DELETE)
