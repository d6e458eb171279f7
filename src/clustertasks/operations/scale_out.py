"""Adding nodes to a node pool: the stages shared by every operation that grows a pool.

Parameters (normalised by the service): ``nodepool_id``, ``count`` (nodes to add) and
``desired_size`` (the pool's size once they are in); ``default_pool`` (a pool spec) when a
legacy ScaleOutCluster found no default pool: the task makes it, under ``nodepool_id``.

Stages, by name as they appear in ``stages[]``:

- ``Precheck``: the pool exists (made now for ``default_pool``); it becomes ``scaling``
  with its new desired size.
- ``CreateInstances``: launch ``count`` ECS instances, instance *n* under the idempotency key
  ``<task>/CreateInstances/<n>``, so a re-run launches nothing twice. Instance *n* is the
  task's instance number *n* in every provider call about it (fault rules'
  ``instance_index``; outputs ``instance_ids`` and ``instance_numbers`` side by side). A
  stock-out stops further launches; the instances already made go on to join, and the
  task fails at the end with ``InstanceCreateFailed`` naming the types and zones (or the
  code of the failure, e.g. an injected ``OperationDenied.NoStock``).
- ``JoinNodes``: each instance boots and joins as a ``Ready`` node; its ``task_result`` entry
  becomes ``success`` (or ``failed``, naming the node or instance).
- ``Finish``: the pool is ``active`` again, its desired size the number of nodes it really
  has; any failure recorded above fails the task now.

Compensation (after a cancel or a failure): release this task's instances that never
joined, and make the pool's desired size tell the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

from clustertasks import errors
from clustertasks.domain import specs, states
from clustertasks.operations import base, outcomes
from clustertasks.providers import base as providers

# Instances launched (or joined) at once: the whole request at realistic speeds would be
# fine too, but batches keep progress counters meaningful and the database calm.
CONCURRENCY = 20


def _pool(ctx: base.StageContext) -> str:
    return str(ctx.parameters["nodepool_id"])


async def precheck(ctx: base.StageContext) -> None:
    pool_id = _pool(ctx)
    if int(ctx.parameters["count"]) == 0:
        return
    if "default_pool" in ctx.parameters:
        await _create_default_pool(ctx, pool_id)
    pool = (await ctx.provider.describe(ctx.cluster_id, pool_id)).nodepool
    desired = int(ctx.parameters["desired_size"])
    if pool.state != "scaling" or pool.desired_size != desired:
        await ctx.provider.update_nodepool(
            ctx.cluster_id, pool_id, state="scaling", desired_size=desired
        )
    await ctx.emit(
        "NodePoolScaleOutStart",
        f"start to add {ctx.parameters['count']} nodes to node pool {pool_id}",
        action="start",
        once=True,
    )


async def _create_default_pool(ctx: base.StageContext, pool_id: str) -> None:
    """Legacy ScaleOutCluster on a cluster without a default pool: the task makes it (so a
    refused request makes nothing). Another default pool made since the request was
    accepted (by a task that ran in between) fails this one rather than make a second."""
    spec = specs.nodepool_spec(ctx.parameters["default_pool"])
    view = await ctx.provider.describe(ctx.cluster_id)
    other = [p for p in view.nodepools if p.spec.is_default and p.nodepool_id != pool_id]
    if other:
        raise errors.permanent(
            "ErrorDefaultNodePoolExists",
            f"the cluster {ctx.cluster_id} has had a default node pool "
            f"({other[0].nodepool_id}) since this request: scale that one out",
        )
    await ctx.provider.create_nodepool(ctx.key("pool"), ctx.cluster_id, pool_id, spec)


async def create_instances(ctx: base.StageContext) -> None:
    pool_id = _pool(ctx)
    count = int(ctx.parameters["count"])
    made: dict[int, str] = {}
    failure: errors.ClustertasksError | None = None

    async def launch(index: int) -> None:
        with providers.for_instance(index):
            instance = await ctx.provider.create_instance(ctx.key(index), ctx.cluster_id, pool_id)
        made[index] = instance.instance_id
        await ctx.set_result(instance.instance_id, states.ResultStatus.INITIAL)
        await ctx.emit(
            "InstanceCreated",
            f"instance {instance.instance_id} ({instance.instance_type}) created in "
            f"{instance.zone_id} for node pool {pool_id}",
            once=True,
        )

    for start in range(1, count + 1, CONCURRENCY):
        batch = range(start, min(count, start + CONCURRENCY - 1) + 1)
        outcomes = await asyncio.gather(*(launch(i) for i in batch), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, errors.PermanentError):
                failure = failure or outcome
            elif isinstance(outcome, BaseException):
                raise outcome  # temporary or unexpected: the engine retries the stage
        await ctx.progress(
            instances_total=count,
            instances_created=len(made),
            instance_ids=_ordered(made),
            instance_numbers=sorted(made),
        )
        await ctx.checkpoint()
        if failure is not None:
            break
    if failure is not None:
        await ctx.progress(
            instances_failed=count - len(made),
            failure={"code": failure.code, "message": failure.message},
        )
        await ctx.emit(
            "InstanceCreateFailed",
            f"{count - len(made)} of {count} instances for node pool {pool_id} could not be "
            f"created: {failure.message}",
            level=states.EventLevel.WARNING,
            once=True,
        )


def _ordered(made: dict[int, str]) -> list[str]:
    return [made[index] for index in sorted(made)]


def _instances(ctx: base.StageContext) -> Sequence[str]:
    ids: Any = ctx.outputs("CreateInstances").get("instance_ids", [])
    return [str(i) for i in ids]


def _numbers(ctx: base.StageContext) -> dict[str, int]:
    """Each created instance's number within the task (1 for the first one asked for)."""
    instances = _instances(ctx)
    found: Any = ctx.outputs("CreateInstances").get("instance_numbers")
    numbers = [int(n) for n in found] if found else range(1, len(instances) + 1)
    return dict(zip(instances, numbers, strict=False))


async def join_nodes(ctx: base.StageContext) -> None:
    instances = _instances(ctx)
    results = ctx.results()
    done = [i for i in instances if results.get(i) is states.ResultStatus.SUCCESS]
    failed: list[errors.ClustertasksError] = []
    numbers = _numbers(ctx)

    async def bring_up(instance_id: str) -> None:
        try:
            with providers.for_instance(numbers[instance_id]):
                await ctx.provider.wait_instance_running(instance_id)
                node = await ctx.provider.join_node(ctx.key(instance_id), instance_id)
        except errors.PermanentError as exc:
            failed.append(exc)
            await ctx.set_result(
                instance_id,
                states.ResultStatus.FAILED,
                reason="NodeJoinFailed",
                message=f"instance {instance_id}: {exc.message}",
                level=states.EventLevel.WARNING,
            )
            return
        await ctx.set_result(
            instance_id,
            states.ResultStatus.SUCCESS,
            reason="NodeJoined",
            message=f"node {node.node_name} (instance {instance_id}) joined the cluster and is "
            f"{node.node_status}",
        )
        done.append(instance_id)

    waiting = [i for i in instances if results.get(i) is not states.ResultStatus.SUCCESS]
    await ctx.progress(nodes_total=len(instances), nodes_done=len(done))
    for start in range(0, len(waiting), CONCURRENCY):
        batch = waiting[start : start + CONCURRENCY]
        await asyncio.gather(*(bring_up(i) for i in batch))
        await ctx.progress(nodes_done=len(done), nodes_failed=len(failed))
        await ctx.checkpoint()
    if failed:
        await ctx.progress(failure={"code": failed[0].code, "message": failed[0].message})


async def finish(ctx: base.StageContext) -> None:
    pool_id = _pool(ctx)
    await settle_pool(ctx)
    for stage in ("CreateInstances", "JoinNodes"):
        failure: Any = ctx.outputs(stage).get("failure")
        if failure:
            raise outcomes.rebuild(str(failure["code"]), str(failure["message"]))
    if int(ctx.parameters["count"]) == 0:
        return
    await ctx.emit(
        "NodePoolScaleOutSucceed",
        f"added {ctx.parameters['count']} nodes to node pool {pool_id}",
        action="finish",
        once=True,
    )


async def settle_pool(ctx: base.StageContext) -> None:
    """The pool has the size it really has, and is ``active`` once the task has ended."""
    pool_id = _pool(ctx)
    instances = (await ctx.provider.describe(ctx.cluster_id, pool_id)).instances
    await ctx.settle_nodepool(pool_id, state="active", desired_size=len(instances))


async def compensate(ctx: base.StageContext) -> None:
    """Release this task's instances that never joined; settle the pool."""
    results = ctx.results()
    for instance_id, number in _numbers(ctx).items():
        if results.get(instance_id) is not states.ResultStatus.SUCCESS:
            with providers.for_instance(number):
                await ctx.provider.release_instance(ctx.key("release", instance_id), instance_id)
            await ctx.set_result(
                instance_id,
                states.ResultStatus.FAILED,
                reason="InstanceReleased",
                message=f"instance {instance_id} released: it never joined the cluster",
            )
    with contextlib.suppress(errors.NotFound):  # the pool itself is gone: nothing to settle
        await settle_pool(ctx)


STAGES = (
    base.Stage("Precheck", precheck),
    base.Stage("CreateInstances", create_instances),
    base.Stage("JoinNodes", join_nodes),
    base.Stage("Finish", finish),
)
