"""Rich renderings of task documents for the terminal."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

STATE_STYLE = {
    "running": "cyan",
    "paused": "yellow",
    "success": "green",
    "fail": "red",
    "canceled": "magenta",
    "pending": "dim",
    "skipped": "dim",
}


def _state(value: str) -> str:
    style = STATE_STYLE.get(value, "")
    return f"[{style}]{value}[/{style}]" if style else value


def print_task(console: Console, task: dict[str, Any]) -> None:
    console.print(
        f"[bold]{task.get('task_id', '')}[/bold]  {task.get('task_type', '')}  "
        f"{_state(str(task.get('state', '')))}"
    )
    target = task.get("target") or {}
    console.print(
        f"cluster {task.get('cluster_id', '')}  target {target.get('type', '')} "
        f"{target.get('id', '')}  created {task.get('created', '')}  "
        f"updated {task.get('updated', '')}",
        highlight=False,
    )
    error = task.get("error") or {}
    if error.get("code") or error.get("message"):
        console.print(f"[red]error {error.get('code', '')}: {error.get('message', '')}[/red]")

    stages = Table(title="stages", title_justify="left")
    for column in ("#", "name", "state", "start", "end", "progress", "message"):
        stages.add_column(column)
    for index, stage in enumerate(task.get("stages") or [], start=1):
        outputs = stage.get("outputs") or {}
        progress = ", ".join(f"{k}={v}" for k, v in outputs.items())
        stages.add_row(
            str(index),
            str(stage.get("name", "")),
            _state(str(stage.get("state", ""))),
            str(stage.get("start_time", "")),
            str(stage.get("end_time", "")),
            progress,
            str(stage.get("message", "")),
        )
    console.print(stages)

    results = task.get("task_result") or []
    if results:
        table = Table(title="task_result", title_justify="left")
        table.add_column("resource")
        table.add_column("status")
        for result in results:
            table.add_row(str(result.get("data", "")), str(result.get("status", "")))
        console.print(table)

    events = task.get("events") or []
    if events:
        table = Table(title="events", title_justify="left")
        for column in ("timestamp", "level", "reason", "message"):
            table.add_column(column)
        for event in events:
            level = str(event.get("level", ""))
            table.add_row(
                str(event.get("timestamp", "")),
                f"[yellow]{level}[/yellow]" if level == "Warning" else level,
                str(event.get("reason", "")),
                str(event.get("message", "")),
            )
        console.print(table)


def print_task_list(console: Console, cluster_id: str, body: dict[str, Any]) -> None:
    page = body.get("page_info") or {}
    table = Table(
        title=(
            f"tasks of {cluster_id} — page {page.get('page_number', '')}, "
            f"{page.get('total_count', 0)} in all"
        ),
        title_justify="left",
    )
    for column in ("task_id", "task_type", "state", "created", "updated", "error"):
        table.add_column(column)
    for task in body.get("tasks") or []:
        error = task.get("error") or {}
        table.add_row(
            str(task.get("task_id", "")),
            str(task.get("task_type", "")),
            _state(str(task.get("state", ""))),
            str(task.get("created", "")),
            str(task.get("updated", "")),
            str(error.get("code", "")),
        )
    console.print(table)
    if body.get("next_token"):
        console.print(f"more: --page {int(page.get('page_number', 1)) + 1}", highlight=False)
