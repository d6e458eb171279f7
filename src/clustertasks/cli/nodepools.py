"""``clustertasks nodepool``: node pools and the operations on their nodes."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from clustertasks.cli import client, command, views
from clustertasks.domain import rollout

app = typer.Typer(help="Create, change and operate node pools.", no_args_is_help=True)

ClusterArgument = Annotated[str, typer.Argument(help="The cluster id.", show_default=False)]
PoolArgument = Annotated[str, typer.Argument(help="The node pool id.", show_default=False)]
NodesOption = Annotated[
    list[str] | None,
    typer.Option("--node", help="A node name (repeat for more).", show_default=False),
]
InstanceTypesOption = Annotated[
    list[str] | None,
    typer.Option(
        "--instance-type", help="ECS instance type (repeat for more).", show_default=False
    ),
]
LabelsOption = Annotated[
    list[str] | None,
    typer.Option("--label", help="A node label KEY=VALUE (repeat for more).", show_default=False),
]


def _path(cluster_id: str, nodepool_id: str | None = None, tail: str = "") -> str:
    path = f"/clusters/{client.segment(cluster_id)}/nodepools"
    if nodepool_id is not None:
        path += f"/{client.segment(nodepool_id)}"
    return path + tail


def labels(values: list[str] | None) -> list[dict[str, str]]:
    """``KEY=VALUE`` items as ACK's ``[{"key", "value"}]``."""
    parsed = []
    for value in values or []:
        key, sep, label = value.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{value!r} is not KEY=VALUE", param_hint="'--label'")
        parsed.append({"key": key, "value": label})
    return parsed


def _flag(value: bool) -> str:
    # Booleans in ACK's query strings are spelled True and False.
    return "True" if value else "False"


@command.client_command(app, "create")
def create(
    cluster_id: ClusterArgument,
    name: Annotated[str, typer.Option(help="The pool's name.", show_default=False)],
    instance_type: InstanceTypesOption = None,
    count: Annotated[int, typer.Option(min=0, max=500, help="Nodes to create.")] = 0,
    vswitch: Annotated[
        list[str] | None,
        typer.Option(
            help="vSwitch id, repeat for more (default: the cluster's).", show_default=False
        ),
    ] = None,
    label: LabelsOption = None,
    wait: command.WaitOption = False,
    *,
    session: command.Session,
) -> None:
    """Create a node pool with COUNT nodes (CreateClusterNodePool); prints its id and task
    id."""
    body: dict[str, Any] = {
        "nodepool_info": {"name": name},
        "scaling_group": {
            "instance_types": list(instance_type or []),
            "vswitch_ids": list(vswitch or []),
            "desired_size": count,
        },
    }
    if label:
        body["kubernetes_config"] = {"labels": labels(label)}
    created = session.api.call("POST", "CreateClusterNodePool", _path(cluster_id), json=body)
    session.submitted(created, wait)


@command.client_command(app, "list")
def list_pools(
    cluster_id: ClusterArgument,
    name: Annotated[str | None, typer.Option(help="Only the pool of this name.")] = None,
    *,
    session: command.Session,
) -> None:
    """List a cluster's node pools (DescribeClusterNodePools)."""
    body = session.api.get_json(
        "DescribeClusterNodePools", _path(cluster_id), {"NodepoolName": name}
    )
    session.emit(body, views.print_nodepool_list)


@command.client_command(app, "get")
def get(
    cluster_id: ClusterArgument, nodepool_id: PoolArgument, *, session: command.Session
) -> None:
    """Show one node pool (DescribeClusterNodePoolDetail)."""
    body = session.api.get_json("DescribeClusterNodePoolDetail", _path(cluster_id, nodepool_id))
    session.emit(body, views.print_nodepool)


@command.client_command(app, "scale")
def scale(
    cluster_id: ClusterArgument,
    nodepool_id: PoolArgument,
    count: Annotated[
        int | None, typer.Option(min=1, help="Add this many nodes.", show_default=False)
    ] = None,
    desired_size: Annotated[
        int | None,
        typer.Option(min=0, help="Grow the pool to this many nodes.", show_default=False),
    ] = None,
    wait: command.WaitOption = False,
    *,
    session: command.Session,
) -> None:
    """Add nodes to a pool (ScaleClusterNodePool): --count N more, or up to --desired-size N."""
    if (count is None) == (desired_size is None):
        raise typer.BadParameter(
            "give exactly one of --count and --desired-size", param_hint="'--count'"
        )
    body = {"count": count} if count is not None else {"desired_size": desired_size}
    submitted = session.api.call(
        "POST", "ScaleClusterNodePool", _path(cluster_id, nodepool_id), json=body
    )
    session.submitted(submitted, wait)


@command.client_command(app, "modify")
def modify(
    cluster_id: ClusterArgument,
    nodepool_id: PoolArgument,
    name: Annotated[str | None, typer.Option(help="New name.", show_default=False)] = None,
    desired_size: Annotated[
        int | None,
        typer.Option(min=0, help="Grow or shrink to this many nodes.", show_default=False),
    ] = None,
    instance_type: InstanceTypesOption = None,
    label: LabelsOption = None,
    update_nodes: Annotated[
        bool, typer.Option(help="Apply new labels to the existing nodes too.")
    ] = False,
    wait: command.WaitOption = False,
    *,
    session: command.Session,
) -> None:
    """Change a pool's name, size, instance types or labels (ModifyClusterNodePool)."""
    body: dict[str, Any] = {}
    if name is not None:
        body["nodepool_info"] = {"name": name}
    group: dict[str, Any] = {}
    if desired_size is not None:
        group["desired_size"] = desired_size
    if instance_type:
        group["instance_types"] = list(instance_type)
    if group:
        body["scaling_group"] = group
    if label:
        body["kubernetes_config"] = {"labels": labels(label)}
    if not body:
        raise typer.BadParameter(
            "nothing to change: give --name, --desired-size, --instance-type or --label"
        )
    if update_nodes:
        body["update_nodes"] = True
    submitted = session.api.call(
        "PUT", "ModifyClusterNodePool", _path(cluster_id, nodepool_id), json=body
    )
    session.submitted(submitted, wait)


@command.client_command(app, "upgrade")
def upgrade(
    cluster_id: ClusterArgument,
    nodepool_id: PoolArgument,
    version: Annotated[
        str | None,
        typer.Option(help="Kubernetes version to reach, e.g. 1.32.1-aliyun.1.", show_default=False),
    ] = None,
    max_parallelism: Annotated[
        int | None,
        typer.Option(min=1, max=10, help="Nodes upgraded at once, one batch (default: 10)."),
    ] = None,
    pause_policy: Annotated[
        rollout.PausePolicy | None,
        typer.Option(help="Pause after the first batch, after every batch, or never."),
    ] = None,
    max_failed_nodes: Annotated[
        int | None,
        typer.Option(min=0, help="Failed nodes tolerated before the rollout fails (default: 0)."),
    ] = None,
    batch_interval: Annotated[
        int | None,
        typer.Option(min=0, help="Minutes between batches (only with --pause-policy NotPause)."),
    ] = None,
    node: NodesOption = None,
    wait: command.WaitOption = False,
    *,
    session: command.Session,
) -> None:
    """Upgrade a pool's nodes, batch by batch (UpgradeClusterNodepool); all nodes unless
    --node names some."""
    rolling = {
        "max_parallelism": max_parallelism,
        "pause_policy": pause_policy.value if pause_policy else None,
        "max_failed_nodes": max_failed_nodes,
        "batch_interval": batch_interval,
    }
    body: dict[str, Any] = {
        "rolling_policy": {key: value for key, value in rolling.items() if value is not None}
    }
    if version:
        body["kubernetes_version"] = version
    if node:
        body["node_names"] = list(node)
    submitted = session.api.call(
        "POST", "UpgradeClusterNodepool", _path(cluster_id, nodepool_id, "/upgrade"), json=body
    )
    session.submitted(submitted, wait)


@command.client_command(app, "remove-nodes")
def remove_nodes(
    cluster_id: ClusterArgument,
    nodepool_id: PoolArgument,
    node: NodesOption = None,
    instance: Annotated[
        list[str] | None,
        typer.Option(help="An ECS instance id (repeat for more).", show_default=False),
    ] = None,
    release: Annotated[
        bool, typer.Option(help="Release the ECS instances, or keep them running, free.")
    ] = True,
    drain: Annotated[bool, typer.Option(help="Evict the pods first, honouring PDBs.")] = True,
    wait: command.WaitOption = False,
    *,
    session: command.Session,
) -> None:
    """Remove nodes from a pool (RemoveNodePoolNodes), by --node name or --instance id."""
    params = {
        "nodes": json.dumps(list(node)) if node else None,
        "instance_ids": json.dumps(list(instance)) if instance else None,
        "drain_node": _flag(drain),
        "release_node": _flag(release),
    }
    submitted = session.api.call(
        "DELETE", "RemoveNodePoolNodes", _path(cluster_id, nodepool_id, "/nodes"), params=params
    )
    session.submitted(submitted, wait)


@command.client_command(app, "repair")
def repair(
    cluster_id: ClusterArgument,
    nodepool_id: PoolArgument,
    node: NodesOption = None,
    operation: Annotated[
        list[str] | None,
        typer.Option(
            help="A repair operation, e.g. restart.kubelet (repeat for more).", show_default=False
        ),
    ] = None,
    wait: command.WaitOption = False,
    *,
    session: command.Session,
) -> None:
    """Repair a pool's nodes (RepairClusterNodePool): all of them unless --node names some."""
    body: dict[str, Any] = {}
    if node:
        body["nodes"] = list(node)
    if operation:
        body["operations"] = [{"operation_id": item} for item in operation]
    submitted = session.api.call(
        "POST", "RepairClusterNodePool", _path(cluster_id, nodepool_id, "/repair"), json=body
    )
    session.submitted(submitted, wait)


@command.client_command(app, "attach")
def attach(
    cluster_id: ClusterArgument,
    nodepool_id: PoolArgument,
    instance: Annotated[
        list[str],
        typer.Option(help="A free ECS instance id (repeat for more).", show_default=False),
    ],
    format_disk: Annotated[bool, typer.Option(help="Format the data disk.")] = False,
    keep_instance_name: Annotated[bool, typer.Option(help="Keep the instance's name.")] = True,
    wait: command.WaitOption = False,
    *,
    session: command.Session,
) -> None:
    """Add existing ECS instances to a pool as nodes (AttachInstancesToNodePool)."""
    body = {
        "instances": list(instance),
        "format_disk": format_disk,
        "keep_instance_name": keep_instance_name,
    }
    submitted = session.api.call(
        "POST",
        "AttachInstancesToNodePool",
        _path(cluster_id, nodepool_id, "/attach"),
        json=body,
    )
    session.submitted(submitted, wait)


@command.client_command(app, "delete")
def delete(
    cluster_id: ClusterArgument,
    nodepool_id: PoolArgument,
    force: Annotated[
        bool, typer.Option(help="Delete the pool with its nodes (they are released).")
    ] = False,
    wait: command.WaitOption = False,
    *,
    session: command.Session,
) -> None:
    """Delete a node pool (DeleteClusterNodepool); without --force it must be empty."""
    submitted = session.api.call(
        "DELETE",
        "DeleteClusterNodepool",
        _path(cluster_id, nodepool_id),
        params={"force": _flag(force)},
    )
    session.submitted(submitted, wait)
