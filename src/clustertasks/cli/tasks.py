"""``clustertasks task``: read, follow, cancel, pause and resume tasks."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from clustertasks.cli import client, command, output, views, watch

app = typer.Typer(help="Read, follow and control tasks.", no_args_is_help=True)

TaskArgument = Annotated[
    str, typer.Argument(help="The task id, e.g. T-5faa48fb31b6b8078d000006.", show_default=False)
]


def _path(task_id: str, action: str = "") -> str:
    return f"/tasks/{client.segment(task_id)}" + (f"/{action}" if action else "")


@command.client_command(app, "get", formats=output.TaskFormat)
def get(task_id: TaskArgument, *, session: command.Session) -> None:
    """Show one task: stages, results, events and error (DescribeTaskInfo)."""
    if session.output_format == output.TaskFormat.xml:
        text = session.api.get_text("DescribeTaskInfo", _path(task_id), {"format": "xml"})
        output.print_text(text)
        return
    session.emit(session.api.get_json("DescribeTaskInfo", _path(task_id)), views.print_task)


@command.client_command(app, "list", formats=output.TaskFormat)
def list_tasks(
    cluster: Annotated[
        str, typer.Option("--cluster", "-c", help="The cluster id.", show_default=False)
    ],
    state: Annotated[str | None, typer.Option(help="Only tasks in this state.")] = None,
    task_type: Annotated[str | None, typer.Option("--type", help="Only this task type.")] = None,
    page: Annotated[int, typer.Option(min=1, help="Page number.")] = 1,
    page_size: Annotated[int, typer.Option(min=1, max=100, help="Tasks per page.")] = 10,
    *,
    session: command.Session,
) -> None:
    """List a cluster's tasks, newest first (DescribeClusterTasks)."""
    action = "DescribeClusterTasks"
    path = f"/clusters/{client.segment(cluster)}/tasks"
    params: dict[str, Any] = {
        "page_number": page,
        "page_size": page_size,
        "state": state,
        "task_type": task_type,
    }
    if session.output_format == output.TaskFormat.xml:
        output.print_text(session.api.get_text(action, path, {**params, "format": "xml"}))
        return
    session.emit(session.api.get_json(action, path, params), views.print_task_list)


@command.client_command(app, "watch")
def watch_task(task_id: TaskArgument, *, session: command.Session) -> None:
    """Follow a task live until it ends or pauses.

    Exit status: 0 success, 1 fail, 2 canceled, 3 paused. With --output json or yaml the
    last document goes to stdout and progress lines to stderr.
    """
    session.follow(task_id)


def _control(session: command.Session, task_id: str, action: str, wait: bool) -> None:
    body = session.api.call("POST", f"{action.capitalize()}Task", _path(task_id, action))
    body.setdefault("task_id", task_id)
    if not wait:
        when = "now" if action == "resume" else "at the task's next checkpoint"
        output.err.print(
            f"{action} of {task_id} requested: it takes effect {when}.",
            highlight=False,
            markup=False,
        )
    # A paused task that is asked to cancel still reads paused until the engine acts on it.
    stop_states = watch.TERMINAL_STATES if action == "cancel" else watch.STOP_STATES
    session.submitted(body, wait, stop_states)


@command.client_command(app, "cancel")
def cancel(
    task_id: TaskArgument, wait: command.WaitOption = False, *, session: command.Session
) -> None:
    """Cancel a running or paused task (CancelTask); what it left half-done is undone."""
    _control(session, task_id, "cancel", wait)


@command.client_command(app, "pause")
def pause(
    task_id: TaskArgument, wait: command.WaitOption = False, *, session: command.Session
) -> None:
    """Pause a running task at its next checkpoint (PauseTask)."""
    _control(session, task_id, "pause", wait)


@command.client_command(app, "resume")
def resume(
    task_id: TaskArgument, wait: command.WaitOption = False, *, session: command.Session
) -> None:
    """Resume a paused task from where it stopped (ResumeTask)."""
    _control(session, task_id, "resume", wait)
