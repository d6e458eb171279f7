"""``clustertasks cluster``: create, list, show and delete clusters."""

from __future__ import annotations

import re
from typing import Annotated, Any

import typer

from clustertasks.cli import client, command, views

app = typer.Typer(help="Create, list, show and delete clusters.", no_args_is_help=True)

ClusterArgument = Annotated[str, typer.Argument(help="The cluster id.", show_default=False)]
_POOL = re.compile(r"(?P<name>[^:]+):(?P<instance_type>[^:]+):(?P<count>\d{1,4})")


def pool_spec(value: str) -> dict[str, Any]:
    """``NAME:INSTANCE_TYPE:COUNT`` as a CreateCluster ``nodepools[]`` item."""
    found = _POOL.fullmatch(value.strip())
    if found is None:
        raise typer.BadParameter(
            f"{value!r} is not NAME:INSTANCE_TYPE:COUNT, e.g. pool-a:ecs.g7.large:2",
            param_hint="'--pool'",
        )
    return {
        "nodepool_info": {"name": found["name"]},
        "scaling_group": {
            "instance_types": [found["instance_type"]],
            "desired_size": int(found["count"]),
        },
    }


@command.client_command(app, "create")
def create(
    name: Annotated[str, typer.Option(help="The cluster's name.", show_default=False)],
    region: Annotated[str, typer.Option(help="Region id, e.g. cn-hangzhou.", show_default=False)],
    version: Annotated[
        str | None,
        typer.Option(help="Kubernetes version, e.g. 1.32.1-aliyun.1 (default: the server's)."),
    ] = None,
    pool: Annotated[
        list[str] | None,
        typer.Option(
            help="A node pool as NAME:INSTANCE_TYPE:COUNT, e.g. pool-a:ecs.g7.large:2 "
            "(repeat for more).",
            show_default=False,
        ),
    ] = None,
    vswitch: Annotated[
        list[str] | None,
        typer.Option(help="vSwitch id for the nodes (repeat for more).", show_default=False),
    ] = None,
    wait: command.WaitOption = False,
    *,
    session: command.Session,
) -> None:
    """Create a managed cluster, with node pools (CreateCluster); prints its cluster id and
    task id."""
    body: dict[str, Any] = {
        "name": name,
        "region_id": region,
        "cluster_type": "ManagedKubernetes",
        "vswitch_ids": list(vswitch or []),
        "nodepools": [pool_spec(item) for item in pool or []],
    }
    if version:
        body["kubernetes_version"] = version
    created = session.api.call("POST", "CreateCluster", "/clusters", json=body)
    session.submitted(created, wait)


@command.client_command(app, "list")
def list_clusters(
    name: Annotated[str | None, typer.Option(help="Only clusters of this name.")] = None,
    region: Annotated[str | None, typer.Option(help="Only clusters in this region.")] = None,
    page: Annotated[int, typer.Option(min=1, help="Page number.")] = 1,
    page_size: Annotated[int, typer.Option(min=1, max=100, help="Clusters per page.")] = 50,
    *,
    session: command.Session,
) -> None:
    """List clusters (DescribeClustersV1)."""
    params = {"name": name, "region_id": region, "page_number": page, "page_size": page_size}
    body = session.api.get_json("DescribeClustersV1", "/api/v1/clusters", params)
    session.emit(body, views.print_cluster_list)


@command.client_command(app, "get")
def get(cluster_id: ClusterArgument, *, session: command.Session) -> None:
    """Show one cluster (DescribeClusterDetail)."""
    body = session.api.get_json("DescribeClusterDetail", f"/clusters/{client.segment(cluster_id)}")
    session.emit(body, views.print_cluster)


@command.client_command(app, "delete")
def delete(
    cluster_id: ClusterArgument, wait: command.WaitOption = False, *, session: command.Session
) -> None:
    """Delete a cluster with its node pools and nodes (DeleteCluster)."""
    body = session.api.call("DELETE", "DeleteCluster", f"/clusters/{client.segment(cluster_id)}")
    session.submitted(body, wait)
