"""AttachInstancesToNodePool (task type ``cluster_attach``): free ECS instances join a pool.

Parameters (normalised by the service): ``nodepool_id``, ``instances`` (ECS ids),
``format_disk``, ``keep_instance_name``. ``task_result``: one entry per instance.

Stages:

- ``AttachInstances``: instance by instance (checkpoint in between): a free, running
  instance joins the pool as a ``Ready`` node with the pool's labels, taints and version.
  One that does not exist (``InstanceNotFound``), is in a cluster or pool already (this
  one included) or is not running (``InstanceNotFree``), or fails to join
  (``NodeJoinFailed``) fails on its own, named; the others go on.
- ``Finish``: the pool's desired size counts its nodes; any instance that failed fails the
  task, named.
"""

from __future__ import annotations

from typing import Any

from clustertasks import errors
from clustertasks.domain import states
from clustertasks.operations import base, outcomes, remove_nodes
from clustertasks.providers import base as providers


def _instances(ctx: base.StageContext) -> list[str]:
    found: Any = ctx.parameters.get("instances", [])
    return [str(i) for i in found]


async def attach_instances(ctx: base.StageContext) -> None:
    pool_id = str(ctx.parameters["nodepool_id"])
    await ctx.provider.update_nodepool(ctx.cluster_id, pool_id, state="scaling")
    instances = _instances(ctx)
    failures = outcomes.stored(ctx.outputs())
    for instance_id in instances:
        if instance_id not in ctx.results():
            await ctx.set_result(instance_id, states.ResultStatus.INITIAL)
    settled = (states.ResultStatus.SUCCESS, states.ResultStatus.FAILED)
    await ctx.progress(instances_total=len(instances))
    # Claiming is idempotent (a re-run after a crash finds its instance in the pool), so
    # the instances this task claimed are noted first: any other one already in the pool
    # is not free, however it got there.
    claimed: list[str] = [str(i) for i in ctx.outputs().get("instances_claimed", [])]
    view = await ctx.provider.describe(ctx.cluster_id, pool_id)
    in_pool = {i.instance_id for i in view.instances} - set(claimed)
    for number, instance_id in enumerate(instances, start=1):
        if ctx.results().get(instance_id) in settled:
            continue
        try:
            if instance_id in in_pool:
                raise errors.InstanceNotFree(
                    f"the instance {instance_id} is already a node of node pool {pool_id}"
                )
            if instance_id not in claimed:
                claimed.append(instance_id)
                await ctx.progress(instances_claimed=claimed)
            with providers.for_instance(number):
                node = await ctx.provider.attach_instance(
                    ctx.key(instance_id), ctx.cluster_id, pool_id, instance_id
                )
        except errors.PermanentError as exc:
            outcomes.record(failures, instance_id, exc)
            await ctx.set_result(
                instance_id,
                states.ResultStatus.FAILED,
                reason="InstanceAttachFailed",
                message=f"instance {instance_id} not attached: {exc.code}: {exc.message}",
                level=states.EventLevel.WARNING,
            )
        else:
            await ctx.set_result(
                instance_id,
                states.ResultStatus.SUCCESS,
                reason="InstanceAttached",
                message=f"instance {instance_id} joined node pool {pool_id} as node "
                f"{node.node_name} ({node.node_status})",
            )
        attached = sum(ctx.results().get(i) is states.ResultStatus.SUCCESS for i in instances)
        await ctx.progress(
            instances_attached=attached, instances_failed=len(failures), failures=failures
        )
        await ctx.checkpoint()


async def finish(ctx: base.StageContext) -> None:
    await settle(ctx)
    failures = outcomes.stored(ctx.outputs("AttachInstances"))
    if failures:
        raise outcomes.error(failures, "instances")
    await ctx.emit(
        "NodePoolAttachSucceed",
        f"{len(_instances(ctx))} instances attached to node pool {ctx.parameters['nodepool_id']}",
        action="finish",
        once=True,
    )


async def settle(ctx: base.StageContext) -> None:
    await remove_nodes.settle_pools(ctx, [str(ctx.parameters["nodepool_id"])])


ATTACH = base.Operation(
    "cluster_attach",
    [base.Stage("AttachInstances", attach_instances), base.Stage("Finish", finish)],
    pausable=True,
    compensate=settle,
)

OPERATIONS = (ATTACH,)
