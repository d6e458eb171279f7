"""Rolling upgrades: UpgradeClusterNodepool (``nodepool_upgrade``) and UpgradeCluster
(``cluster_upgrade``). Both pause, resume and cancel.

Parameters (normalised by the service): ``nodes`` (``[{node_name, instance_id,
nodepool_id}]``, in rollout order), ``kubernetes_version``, ``image_id``,
``runtime_version``, ``use_replace``, ``rolling_policy{max_parallelism, batch_interval
(minutes), max_failed_nodes, pause_policy}``, the drain extensions, and for a cluster
upgrade ``next_version`` and ``master_only``. ``task_result``: one entry per instance.

The rollout (stage ``UpgradeNodes``) takes the nodes ``max_parallelism`` at a time. Each
node of a batch, side by side: cordon → drain → upgrade (system disk replaced with
``use_replace``, in place otherwise) → ``Ready`` → uncordon. After each batch the counters
``nodes_total``, ``nodes_done``, ``nodes_failed``, ``batch``, ``batches_total`` are written
and the task checkpoints (``pause_policy`` pauses it here by itself), then waits
``batch_interval`` minutes of simulated time (``NotPause`` only). A node that fails is
uncordoned at its old version and reported (``task_result`` failed, Warning event); when
more than ``max_failed_nodes`` have failed the task fails, naming them.

A cancel takes effect at a checkpoint: the batches not started stay untouched, nodes of the
current batch that did not finish are made schedulable again (compensation). A pool's
``kubernetes_version`` changes only once every one of its nodes runs the new version.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Any

from clustertasks import errors
from clustertasks.domain import states
from clustertasks.operations import base, drain, outcomes
from clustertasks.providers import base as providers

ROLLOUT_TIMEOUT = 30 * 24 * 3600.0
"""Seconds: a rollout of hundreds of nodes at realistic speed, with pauses in between."""


def _nodes(ctx: base.StageContext) -> list[dict[str, str]]:
    found: Any = ctx.parameters.get("nodes", [])
    return [{k: str(v) for k, v in node.items()} for node in found]


def _rolling(ctx: base.StageContext) -> dict[str, Any]:
    found: Any = ctx.parameters.get("rolling_policy") or {}
    return dict(found)


def _target(ctx: base.StageContext) -> str:
    return str(ctx.parameters.get("kubernetes_version") or ctx.parameters.get("next_version"))


def _pools(ctx: base.StageContext) -> list[str]:
    pools = [str(ctx.parameters.get("nodepool_id") or "")]
    pools += [n["nodepool_id"] for n in _nodes(ctx)]
    return [p for p in dict.fromkeys(pools) if p]


async def precheck(ctx: base.StageContext) -> None:
    for pool_id in _pools(ctx):
        await ctx.provider.update_nodepool(ctx.cluster_id, pool_id, state="updating")
    for node in _nodes(ctx):
        if node["instance_id"] not in ctx.results():
            await ctx.set_result(node["instance_id"], states.ResultStatus.INITIAL)
    pool = ctx.parameters.get("nodepool_id")
    subject = f"node pool {pool}" if pool else f"cluster {ctx.cluster_id}"
    await ctx.emit(
        "NodePoolUpgradeStart" if pool else "ClusterUpgradeStart",
        f"start to upgrade {subject} to Kubernetes {_target(ctx)} ({len(_nodes(ctx))} nodes)",
        action="start",
        once=True,
    )


async def upgrade_control_plane(ctx: base.StageContext) -> None:
    version = _target(ctx)
    await ctx.provider.update_cluster(ctx.cluster_id, kubernetes_version=version)
    await ctx.emit(
        "ControlPlaneUpgraded",
        f"control plane of cluster {ctx.cluster_id} runs Kubernetes {version}",
        once=True,
    )


async def upgrade_nodes(ctx: base.StageContext) -> None:
    nodes = _nodes(ctx)
    rolling = _rolling(ctx)
    size = max(1, int(rolling.get("max_parallelism") or 1))
    batches = [nodes[i : i + size] for i in range(0, len(nodes), size)]
    max_failed = int(rolling.get("max_failed_nodes") or 0)
    interval_minutes = float(rolling.get("batch_interval") or 0)
    pause_policy = str(rolling.get("pause_policy") or "NotPause")
    failures = outcomes.stored(ctx.outputs())
    rules = drain.policy(ctx.parameters)
    # The n-th node of the request is the task's instance n in every call about it.
    numbers = {n["instance_id"]: i for i, n in enumerate(nodes, start=1)}

    def done() -> int:
        results = ctx.results()
        return sum(results.get(n["instance_id"]) is states.ResultStatus.SUCCESS for n in nodes)

    await ctx.progress(
        nodes_total=len(nodes),
        nodes_done=done(),
        nodes_failed=len(failures),
        batches_total=len(batches),
        batch=int(ctx.outputs().get("batch", 0)),
    )

    async def upgrade_one(node: dict[str, str]) -> None:
        name, instance_id = node["node_name"], node["instance_id"]
        try:
            with providers.for_instance(numbers[instance_id]):
                await drain.drain(ctx, name, rules)
                upgraded = await ctx.provider.upgrade_node(
                    ctx.cluster_id,
                    name,
                    kubernetes_version=_target(ctx),
                    image_id=str(ctx.parameters.get("image_id") or ""),
                    replace=bool(ctx.parameters.get("use_replace")),
                )
                await drain.uncordon(ctx, name)
        except (errors.PermanentError, errors.NotFound) as exc:
            with providers.for_instance(numbers[instance_id]):
                await drain.uncordon(ctx, name)
            await _node_failed(ctx, failures, node, exc)
            return
        await ctx.set_result(
            instance_id,
            states.ResultStatus.SUCCESS,
            reason="NodeUpgraded",
            message=f"node {name} (instance {instance_id}) upgraded to Kubernetes "
            f"{upgraded.kubelet_version} and schedulable again",
        )

    for number, batch in enumerate(batches, start=1):
        settled = (states.ResultStatus.SUCCESS, states.ResultStatus.FAILED)
        todo = [n for n in batch if ctx.results().get(n["instance_id"]) not in settled]
        if todo:
            await ctx.progress(batch=number, in_flight=[n["node_name"] for n in todo])
            # The whole batch is cordoned first: pods evicted from one of its nodes must not
            # land on another that is about to be drained.
            startable = []
            for node in todo:
                try:
                    with providers.for_instance(numbers[node["instance_id"]]):
                        await drain.cordon(ctx, node["node_name"])
                    startable.append(node)
                except errors.NotFound as exc:
                    await _node_failed(ctx, failures, node, exc)
            await outcomes.run_all(upgrade_one(node) for node in startable)
            await ctx.progress(
                nodes_done=done(),
                nodes_failed=len(failures),
                failures=dict(failures),
                in_flight=[],
            )
            await ctx.emit(
                "NodeBatchUpgraded",
                f"batch {number} of {len(batches)} done: {done()} of {len(nodes)} nodes "
                f"upgraded, {len(failures)} failed",
                once=True,
            )
            if len(failures) > max_failed:
                raise _too_many(failures, max_failed)
        await ctx.checkpoint(batch=number, batches=len(batches))
        if todo and number < len(batches) and pause_policy == "NotPause" and interval_minutes:
            await ctx.wait(interval_minutes * 60)


async def _node_failed(
    ctx: base.StageContext,
    failures: outcomes.Failures,
    node: dict[str, str],
    exc: errors.ClustertasksError,
) -> None:
    name, instance_id = node["node_name"], node["instance_id"]
    outcomes.record(failures, instance_id, exc)
    await ctx.set_result(
        instance_id,
        states.ResultStatus.FAILED,
        reason="NodeUpgradeFailed",
        message=f"node {name} (instance {instance_id}) not upgraded: {exc.code}: {exc.message}",
        level=states.EventLevel.WARNING,
    )


def _too_many(failures: outcomes.Failures, max_failed: int) -> errors.PermanentError:
    if max_failed == 0:
        return outcomes.error(failures, "nodes")  # fail on the first failure, as ACK does
    listed = "; ".join(f"{f['code']}: {f['message']}" for f in failures.values())
    return errors.TooManyFailedNodes(
        f"{len(failures)} nodes failed, more than max_failed_nodes {max_failed}: {listed}"
    )


async def finish(ctx: base.StageContext) -> None:
    """Pools whose every node runs the target version take it; all pools are active."""
    version = _target(ctx)
    await _settle(ctx, version)
    failed = len(outcomes.stored(ctx.outputs("UpgradeNodes")))
    pool = ctx.parameters.get("nodepool_id")
    subject = f"node pool {pool}" if pool else f"cluster {ctx.cluster_id}"
    if failed:
        await ctx.emit(
            "UpgradePartiallySucceeded",
            f"{subject}: {failed} of {len(_nodes(ctx))} nodes could not be upgraded to "
            f"{version} (within max_failed_nodes); see task_result",
            level=states.EventLevel.WARNING,
            action="finish",
            once=True,
        )
        return
    await ctx.emit(
        "NodePoolUpgradeSucceed" if pool else "ClusterUpgradeSucceed",
        f"{subject} upgraded to Kubernetes {version}",
        action="finish",
        once=True,
    )


async def _settle(ctx: base.StageContext, version: str) -> None:
    """Pools whose every node runs ``version`` take it; every pool, and a cluster shown
    ``upgrading``, serves again once the task has ended."""
    with contextlib.suppress(errors.NotFound):
        cluster = (await ctx.provider.describe(ctx.cluster_id)).cluster
        if cluster.state == "upgrading":
            await ctx.settle_cluster(state="running")
    for pool_id in _pools(ctx):
        with contextlib.suppress(errors.NotFound):
            nodes = (await ctx.provider.describe(ctx.cluster_id, pool_id)).nodes
            if nodes and all(n.kubelet_version == version for n in nodes):
                await ctx.provider.update_nodepool(
                    ctx.cluster_id, pool_id, kubernetes_version=version
                )
                await _settle_spec(ctx, pool_id)
            await ctx.settle_nodepool(pool_id, state="active")


async def _settle_spec(ctx: base.StageContext, pool_id: str) -> None:
    """New nodes of the pool boot the image and runtime its nodes were upgraded to."""
    image = str(ctx.parameters.get("image_id") or "")
    runtime = str(ctx.parameters.get("runtime_version") or "")
    if not image and not runtime:
        return
    pool = (await ctx.provider.describe(ctx.cluster_id, pool_id)).nodepool
    spec = dataclasses.replace(
        pool.spec,
        image_id=image or pool.spec.image_id,
        runtime_version=runtime or pool.spec.runtime_version,
    )
    await ctx.provider.update_nodepool(ctx.cluster_id, pool_id, spec=spec)


async def compensate(ctx: base.StageContext) -> None:
    """Nodes of the interrupted batch serve again; pools are active (and take the version
    only if every node got it)."""
    for name in ctx.outputs("UpgradeNodes").get("in_flight", []):
        await drain.uncordon(ctx, str(name))
    await _settle(ctx, _target(ctx))


NODEPOOL_UPGRADE = base.Operation(
    "nodepool_upgrade",
    [
        base.Stage("Precheck", precheck),
        base.Stage("UpgradeNodes", upgrade_nodes, timeout=ROLLOUT_TIMEOUT),
        base.Stage("Finish", finish),
    ],
    pausable=True,
    compensate=compensate,
)
CLUSTER_UPGRADE = base.Operation(
    "cluster_upgrade",
    [
        base.Stage("UpgradeControlPlane", upgrade_control_plane, timeout=3 * 3600.0),
        base.Stage("Precheck", precheck),
        base.Stage("UpgradeNodes", upgrade_nodes, timeout=ROLLOUT_TIMEOUT),
        base.Stage("Finish", finish),
    ],
    pausable=True,
    compensate=compensate,
)

OPERATIONS = (NODEPOOL_UPGRADE, CLUSTER_UPGRADE)
