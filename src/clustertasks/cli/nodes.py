"""``clustertasks node``: a cluster's nodes."""

from __future__ import annotations

import enum
from typing import Annotated

import typer

from clustertasks.cli import client, command, views

app = typer.Typer(help="List a cluster's nodes.", no_args_is_help=True)


class NodeState(enum.StrEnum):
    all = "all"
    running = "running"
    initial = "initial"
    removing = "removing"
    failed = "failed"


@command.client_command(app, "list")
def list_nodes(
    cluster_id: Annotated[str, typer.Argument(help="The cluster id.", show_default=False)],
    nodepool: Annotated[
        str | None, typer.Option(help="Only this node pool's nodes.", show_default=False)
    ] = None,
    state: Annotated[NodeState, typer.Option(help="Only nodes in this state.")] = NodeState.all,
    page: Annotated[int, typer.Option(min=1, help="Page number.")] = 1,
    page_size: Annotated[int, typer.Option(min=1, max=100, help="Nodes per page.")] = 100,
    *,
    session: command.Session,
) -> None:
    """List a cluster's nodes, with their instances (DescribeClusterNodes)."""
    # ACK spells this operation's paging keys in camelCase.
    params = {
        "nodepool_id": nodepool,
        "state": state.value,
        "pageNumber": str(page),
        "pageSize": str(page_size),
    }
    body = session.api.get_json(
        "DescribeClusterNodes", f"/clusters/{client.segment(cluster_id)}/nodes", params
    )
    session.emit(body, views.print_nodes)
