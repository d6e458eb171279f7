"""Rich renderings of the server's documents for the terminal (``--output table``).

Values from the server are shown as plain text, never read as Rich markup: a message with
brackets in it stays as it is.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

STATE_STYLE = {
    "running": "cyan",
    "paused": "yellow",
    "success": "green",
    "fail": "red",
    "failed": "red",
    "canceled": "magenta",
    "pending": "dim",
    "skipped": "dim",
    "active": "green",
    "Ready": "green",
    "NotReady": "red",
}
SUBMITTED_KEYS = ("cluster_id", "nodepool_id", "task_id")
"""What a mutating command prints, one ``key value`` line each, in this order."""
WHOLE_COLUMNS = frozenset(
    {
        "task_id",
        "cluster_id",
        "nodepool_id",
        "instance_id",
        "node_name",
        "resource",
        "task_type",
        "state",
        "status",
        "level",
        "reason",
    }
)
"""Ids (one copies them) and single words: never cut or folded; the other columns give way."""


def state_text(value: str) -> Text:
    return Text(value, style=STATE_STYLE.get(value, ""))


def _text(value: Any) -> Text:
    return Text("" if value is None else str(value))


def _print_rows(
    console: Console, title: str, columns: Sequence[str], rows: Sequence[Sequence[Text]]
) -> None:
    table = Table(title=title, title_justify="left")
    for index, column in enumerate(columns):
        if column in WHOLE_COLUMNS:
            widest = max([len(column), *(row[index].cell_len for row in rows)])
            table.add_column(column, no_wrap=True, min_width=widest)
        else:
            table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _line(console: Console, text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


# -- tasks ---------------------------------------------------------------------------------------


def print_task(console: Console, task: dict[str, Any]) -> None:
    console.print(
        Text.assemble(
            (str(task.get("task_id", "")), "bold"),
            f"  {task.get('task_type', '')}  ",
            state_text(str(task.get("state", ""))),
        )
    )
    target = task.get("target") or {}
    _line(
        console,
        f"cluster {task.get('cluster_id', '')}  target {target.get('type', '')} "
        f"{target.get('id', '')}  created {task.get('created', '')}  "
        f"updated {task.get('updated', '')}",
    )
    error = task.get("error") or {}
    if error.get("code") or error.get("message"):
        console.print(Text(f"error {error.get('code', '')}: {error.get('message', '')}", "red"))

    stage_rows = []
    for index, stage in enumerate(task.get("stages") or [], start=1):
        outputs = stage.get("outputs") or {}
        stage_rows.append(
            [
                Text(str(index)),
                _text(stage.get("name", "")),
                state_text(str(stage.get("state", ""))),
                _text(stage.get("start_time", "")),
                _text(stage.get("end_time", "")),
                _text(", ".join(f"{k}={v}" for k, v in outputs.items())),
                _text(stage.get("message", "")),
            ]
        )
    _print_rows(
        console,
        "stages",
        ("#", "name", "state", "start", "end", "progress", "message"),
        stage_rows,
    )

    results = task.get("task_result") or []
    if results:
        _print_rows(
            console,
            "task_result",
            ("resource", "status"),
            [[_text(r.get("data", "")), state_text(str(r.get("status", "")))] for r in results],
        )

    events = task.get("events") or []
    if events:
        event_rows = []
        for event in events:
            level = str(event.get("level", ""))
            event_rows.append(
                [
                    _text(event.get("timestamp", "")),
                    Text(level, style="yellow" if level == "Warning" else ""),
                    _text(event.get("reason", "")),
                    _text(event.get("message", "")),
                ]
            )
        _print_rows(console, "events", ("timestamp", "level", "reason", "message"), event_rows)


def print_task_list(console: Console, body: dict[str, Any]) -> None:
    page = body.get("page_info") or {}
    rows = []
    for task in body.get("tasks") or []:
        error = task.get("error") or {}
        rows.append(
            [
                _text(task.get("task_id", "")),
                _text(task.get("task_type", "")),
                state_text(str(task.get("state", ""))),
                _text(task.get("created", "")),
                _text(task.get("updated", "")),
                _text(error.get("code", "")),
            ]
        )
    _print_rows(
        console,
        f"tasks — page {page.get('page_number', '')}, {page.get('total_count', 0)} in all",
        ("task_id", "task_type", "state", "created", "updated", "error"),
        rows,
    )
    if body.get("next_token"):
        _line(console, f"more: --page {int(page.get('page_number', 1)) + 1}")


def print_submitted(console: Console, body: dict[str, Any]) -> None:
    """The ids a mutating request answered with, ``key value`` per line (easy to cut)."""
    for key in SUBMITTED_KEYS:
        if body.get(key):
            _line(console, f"{key:<12} {body[key]}")


# -- clusters ------------------------------------------------------------------------------------


def print_cluster_list(console: Console, body: dict[str, Any]) -> None:
    page = body.get("page_info") or {}
    rows = [
        [
            _text(cluster.get("cluster_id")),
            _text(cluster.get("name")),
            state_text(str(cluster.get("state", ""))),
            _text(cluster.get("region_id")),
            _text(cluster.get("current_version")),
            _text(cluster.get("size")),
            _text(cluster.get("created")),
        ]
        for cluster in body.get("clusters") or []
    ]
    _print_rows(
        console,
        f"clusters — page {page.get('page_number', '')}, {page.get('total_count', 0)} in all",
        ("cluster_id", "name", "state", "region", "version", "size", "created"),
        rows,
    )


def print_cluster(console: Console, cluster: dict[str, Any]) -> None:
    table = Table(show_header=False, box=None)
    table.add_column(style="bold")
    table.add_column()
    for key in (
        "cluster_id",
        "name",
        "state",
        "region_id",
        "cluster_type",
        "cluster_spec",
        "current_version",
        "size",
        "vpc_id",
        "vswitch_ids",
        "container_cidr",
        "service_cidr",
        "deletion_protection",
        "created",
        "updated",
    ):
        value = cluster.get(key, "")
        shown = ", ".join(map(str, value)) if isinstance(value, list) else value
        table.add_row(key, state_text(str(shown)) if key == "state" else _text(shown))
    console.print(table)


# -- node pools and nodes ------------------------------------------------------------------------


def _pool_row(pool: dict[str, Any]) -> list[Text]:
    info = pool.get("nodepool_info") or {}
    group = pool.get("scaling_group") or {}
    status = pool.get("status") or {}
    return [
        _text(info.get("nodepool_id")),
        _text(info.get("name")),
        state_text(str(status.get("state", ""))),
        _text(group.get("desired_size")),
        _text(f"{status.get('healthy_nodes', 0)}/{status.get('total_nodes', 0)}"),
        _text(", ".join(group.get("instance_types") or [])),
    ]


_POOL_COLUMNS = ("nodepool_id", "name", "state", "desired", "healthy/total", "instance types")


def print_nodepool_list(console: Console, body: dict[str, Any]) -> None:
    pools = body.get("nodepools") or []
    _print_rows(console, f"node pools — {len(pools)}", _POOL_COLUMNS, [_pool_row(p) for p in pools])


def print_nodepool(console: Console, pool: dict[str, Any]) -> None:
    _print_rows(console, "node pool", _POOL_COLUMNS, [_pool_row(pool)])
    kube = pool.get("kubernetes_config") or {}
    labels = ", ".join(f"{x.get('key')}={x.get('value')}" for x in kube.get("labels") or [])
    taints = ", ".join(
        f"{x.get('key')}={x.get('value')}:{x.get('effect')}" for x in kube.get("taints") or []
    )
    group = pool.get("scaling_group") or {}
    _line(console, f"vswitch_ids  {', '.join(group.get('vswitch_ids') or [])}")
    _line(console, f"labels       {labels}")
    _line(console, f"taints       {taints}")


def print_nodes(console: Console, body: dict[str, Any]) -> None:
    page = body.get("page") or {}
    rows = [
        [
            _text(node.get("node_name")),
            _text(node.get("instance_id")),
            state_text(str(node.get("node_status", ""))),
            _text(node.get("state")),
            _text(node.get("nodepool_id")),
            _text(node.get("instance_type")),
            _text(", ".join(node.get("ip_address") or [])),
        ]
        for node in body.get("nodes") or []
    ]
    _print_rows(
        console,
        f"nodes — page {page.get('page_number', '')}, {page.get('total_count', 0)} in all",
        ("node_name", "instance_id", "status", "state", "nodepool_id", "type", "ip"),
        rows,
    )
