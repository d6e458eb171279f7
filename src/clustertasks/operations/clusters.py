"""Cluster operations.

``cluster_create`` — CreateCluster: ``CreateControlPlane`` (the managed control plane comes
up; minutes at realistic speed), ``CreateNodePools`` (the pools asked for in
``nodepools[]``), ``CreateInstances`` and ``JoinNodes`` (their nodes, for every pool),
``Finish`` (the cluster is ``running``). A failure leaves the cluster ``failed``.

``cluster_update`` — ModifyCluster, UpdateControlPlaneLog, UpdateClusterAuditLogConfig,
UpdateKMSEncryption, MigrateCluster: ``UpdateCluster`` (the cluster is ``updating``, or
``migrating``, while its new settings are applied, then ``running``).

``cluster_delete`` — DeleteCluster: ``DeleteNodePools`` (every node removed, its instance
released, every pool deleted) then ``DeleteControlPlane`` (the cluster is ``deleted``).
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

from clustertasks import errors
from clustertasks.domain import specs, states, world
from clustertasks.operations import base
from clustertasks.providers import base as providers


def _pools(ctx: base.StageContext) -> list[dict[str, Any]]:
    pools: Any = ctx.parameters.get("nodepools", [])
    return [dict(pool) for pool in pools]


async def create_control_plane(ctx: base.StageContext) -> None:
    # The API registers the cluster right after accepting the task, but the executor may
    # get here first: registering is idempotent, whichever comes first makes the cluster.
    spec = specs.cluster_spec(ctx.parameters["spec"])
    await ctx.provider.create_cluster(ctx.key("cluster"), ctx.cluster_id, spec)
    await ctx.emit(
        "ClusterCreationStart",
        f"start to create cluster {ctx.cluster_id}",
        action="start",
        once=True,
    )
    cluster = await ctx.provider.provision_control_plane(ctx.key(), ctx.cluster_id)
    await ctx.emit(
        "ControlPlaneReady",
        f"control plane of cluster {ctx.cluster_id} is up (Kubernetes {cluster.current_version})",
        once=True,
    )


async def create_nodepools(ctx: base.StageContext) -> None:
    for pool in _pools(ctx):
        spec = specs.nodepool_spec(pool["spec"])
        pool_id = str(pool["nodepool_id"])
        await ctx.provider.create_nodepool(ctx.key(pool_id), ctx.cluster_id, pool_id, spec)
        await ctx.emit(
            "NodePoolCreated",
            f"node pool {pool['nodepool_id']} ({spec.name}) created",
            once=True,
        )


async def create_instances(ctx: base.StageContext) -> None:
    made: dict[str, list[str]] = {}
    total = sum(int(pool["count"]) for pool in _pools(ctx))
    created = 0
    for pool in _pools(ctx):
        pool_id = str(pool["nodepool_id"])
        await ctx.provider.update_nodepool(
            ctx.cluster_id, pool_id, state="scaling", desired_size=int(pool["count"])
        )
        ids: list[str] = []
        for index in range(1, int(pool["count"]) + 1):
            # Numbered across the pools, in the order the request lists them.
            with providers.for_instance(created + 1):
                instance = await ctx.provider.create_instance(
                    ctx.key(pool_id, index), ctx.cluster_id, pool_id
                )
            ids.append(instance.instance_id)
            created += 1
            await ctx.set_result(instance.instance_id, states.ResultStatus.INITIAL)
            await ctx.emit(
                "InstanceCreated",
                f"instance {instance.instance_id} ({instance.instance_type}) created in "
                f"{instance.zone_id} for node pool {pool_id}",
                once=True,
            )
        made[pool_id] = ids
        await ctx.progress(instances_total=total, instances_created=created, instances=made)
        await ctx.checkpoint()


async def join_nodes(ctx: base.StageContext) -> None:
    instances: Any = ctx.outputs("CreateInstances").get("instances", {})
    all_ids = [str(i) for ids in instances.values() for i in ids]
    results = ctx.results()
    done = sum(1 for i in all_ids if results.get(i) is states.ResultStatus.SUCCESS)
    await ctx.progress(nodes_total=len(all_ids), nodes_done=done)

    numbers = {instance_id: n for n, instance_id in enumerate(all_ids, start=1)}

    async def bring_up(instance_id: str) -> None:
        with providers.for_instance(numbers[instance_id]):
            await ctx.provider.wait_instance_running(instance_id)
            node = await ctx.provider.join_node(ctx.key(instance_id), instance_id)
        await ctx.set_result(
            instance_id,
            states.ResultStatus.SUCCESS,
            reason="NodeJoined",
            message=f"node {node.node_name} (instance {instance_id}) is Ready",
        )

    pending = [i for i in all_ids if results.get(i) is not states.ResultStatus.SUCCESS]
    await asyncio.gather(*(bring_up(i) for i in pending))
    await ctx.progress(nodes_done=len(all_ids))
    for pool_id in instances:
        await ctx.settle_nodepool(str(pool_id), state="active")


async def finish_create(ctx: base.StageContext) -> None:
    await ctx.settle_cluster(state="running")
    await ctx.emit(
        "ClusterCreationSucceed",
        f"cluster {ctx.cluster_id} is running",
        action="finish",
        once=True,
    )


async def mark_failed(ctx: base.StageContext) -> None:
    """A cluster whose creation stopped is ``failed``: visible, deletable, never 'running'."""
    try:
        await ctx.settle_cluster(state="failed")
    except errors.NotFound:
        return
    results = ctx.results()
    for instance_id, status in results.items():
        if status is not states.ResultStatus.SUCCESS:
            await ctx.provider.release_instance(ctx.key("release", instance_id), instance_id)
            await ctx.set_result(instance_id, states.ResultStatus.FAILED)


async def delete_nodepools(ctx: base.StageContext) -> None:
    await ctx.provider.update_cluster(ctx.cluster_id, state="deleting")
    view = await ctx.provider.describe(ctx.cluster_id)
    pools, instances = view.nodepools, view.instances
    await ctx.progress(nodepools_total=len(pools), instances_total=len(instances))
    for number, instance in enumerate(instances, start=1):
        await ctx.set_result(instance.instance_id, states.ResultStatus.INITIAL)
        with providers.for_instance(number):
            await ctx.provider.release_instance(ctx.key(instance.instance_id), instance.instance_id)
        await ctx.set_result(
            instance.instance_id,
            states.ResultStatus.SUCCESS,
            reason="InstanceReleased",
            message=f"instance {instance.instance_id} released",
        )
    for pool in pools:
        await ctx.provider.delete_nodepool(
            ctx.key(pool.nodepool_id), ctx.cluster_id, pool.nodepool_id
        )
        await ctx.emit("NodePoolDeleted", f"node pool {pool.nodepool_id} deleted", once=True)
    await ctx.checkpoint()


async def delete_control_plane(ctx: base.StageContext) -> None:
    await ctx.delete_cluster()
    await ctx.emit(
        "ClusterDeleted", f"cluster {ctx.cluster_id} deleted", action="finish", once=True
    )


async def delete_failed(ctx: base.StageContext) -> None:
    try:
        await ctx.settle_cluster(state="delete_failed")
    except errors.NotFound:
        return


# Spec parts ModifyCluster never changes, which other requests change at once (tags,
# resource protection) or other tasks own (add-ons, control-plane logging): kept as they
# are when the spec is written.
_NOT_MODIFIED = ("addons", "protected_resources", "control_plane_log", "audit_log", "encryption")


async def update_cluster(ctx: base.StageContext) -> None:
    """``spec``: ModifyCluster's whole new spec; ``extra``: settings set one by one
    (UpdateControlPlaneLog, UpdateClusterAuditLogConfig, UpdateKMSEncryption);
    ``cluster_spec``: MigrateCluster's edition; ``state``: what the cluster shows meanwhile
    (``updating``, or ``migrating``)."""
    asked = specs.cluster_spec(ctx.parameters["spec"]) if "spec" in ctx.parameters else None
    patch: Any = ctx.parameters.get("extra") or {}
    edition = str(ctx.parameters.get("cluster_spec") or "")
    during = str(ctx.parameters.get("state") or "updating")

    def apply(current: world.ClusterSpec) -> world.ClusterSpec:
        spec = current
        if asked is not None:
            kept = {key: current.extra[key] for key in _NOT_MODIFIED if key in current.extra}
            extra = {k: v for k, v in asked.extra.items() if k not in _NOT_MODIFIED}
            spec = dataclasses.replace(asked, tags=current.tags, extra={**extra, **kept})
        spec = dataclasses.replace(spec, extra={**spec.extra, **dict(patch)})
        return dataclasses.replace(spec, cluster_spec=edition) if edition else spec

    await ctx.provider.update_cluster(ctx.cluster_id, state=during)
    await ctx.provider.update_cluster(ctx.cluster_id, edit=apply)
    await ctx.settle_cluster(state="running")
    await ctx.emit("ClusterUpdated", f"settings of cluster {ctx.cluster_id} updated", once=True)


async def back_to_running(ctx: base.StageContext) -> None:
    try:
        await ctx.settle_cluster(state="running")
    except errors.NotFound:
        return


CREATE = base.Operation(
    "cluster_create",
    [
        base.Stage("CreateControlPlane", create_control_plane),
        base.Stage("CreateNodePools", create_nodepools),
        base.Stage("CreateInstances", create_instances),
        base.Stage("JoinNodes", join_nodes),
        base.Stage("Finish", finish_create),
    ],
    cancelable=False,
    compensate=mark_failed,
)
DELETE = base.Operation(
    "cluster_delete",
    [
        base.Stage("DeleteNodePools", delete_nodepools),
        base.Stage("DeleteControlPlane", delete_control_plane),
    ],
    cancelable=False,
    compensate=delete_failed,
)

UPDATE = base.Operation(
    "cluster_update",
    [base.Stage("UpdateCluster", update_cluster)],
    compensate=back_to_running,
)

OPERATIONS = (CREATE, DELETE, UPDATE)
