"""``clustertasks emulator``: the emulator's admin controls on a running server.

- ``reset``: empty the world and the task history (AccessKeys stay).
- ``state export [FILE]`` / ``state import FILE``: the whole state as one JSON document.
- ``clock show|set-mode|advance``: simulated time.
- ``faults add|list|delete|clear``: injected failures.

Every command is a client command (``command.client_command``): it takes the shared
options, finds its server and admin AccessKey as the others do (flags, ``CLUSTERTASKS_*``,
profile, credentials file), and reports errors as one line with exit status 4.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from clustertasks import errors, settings
from clustertasks.cli import client, command, output

app = typer.Typer(
    help="Control the emulator: reset, export and import its state, simulated time, faults.",
    no_args_is_help=True,
)
clock_app = typer.Typer(
    help="Simulated time: show it, change its mode, advance it.", no_args_is_help=True
)
faults_app = typer.Typer(
    help="Injected failures: add, list and delete (or clear) rules.", no_args_is_help=True
)
state_app = typer.Typer(
    help="The whole world and task history as one JSON document: export, import.",
    no_args_is_help=True,
)
app.add_typer(state_app, name="state")
app.add_typer(clock_app, name="clock")
app.add_typer(faults_app, name="faults")

STATE_TIMEOUT_SECONDS = 600.0
"""Per request, for reset, export and import: a whole world and task history may take a
while to stop, dump or load."""
STDIO = "-"
"""As FILE: standard input (``import``) or standard output (``export``)."""


# -- request bodies (pure: what each command sends) -------------------------------------------


def fault_rule(
    *,
    task_type: str | None = None,
    stage: str | None = None,
    instance_index: int | None = None,
    node_name: str | None = None,
    operation: str | None = None,
    error_code: str | None = None,
    message: str | None = None,
    latency_seconds: float | None = None,
    node_not_ready: bool = False,
    count: int | None = None,
    probability: float | None = None,
) -> dict[str, Any]:
    """The body of ``POST /_emulator/faults``; options not given are left out, so the
    server's defaults apply. Raises ``errors.ConfigurationError`` for a rule without effect."""
    if error_code is None and latency_seconds is None and not node_not_ready:
        raise errors.ConfigurationError(
            "a fault needs an effect: --error-code, --latency or --node-not-ready"
        )
    if message is not None and error_code is None:
        raise errors.ConfigurationError("--message goes with --error-code")
    match = _given(
        task_type=task_type,
        stage=stage,
        instance_index=instance_index,
        node_name=node_name,
        operation=operation,
    )
    effect = _given(
        error_code=error_code,
        message=message,
        latency_seconds=_number(latency_seconds) if latency_seconds is not None else None,
        node_not_ready=True if node_not_ready else None,
    )
    return {
        "match": match,
        "effect": effect,
        **_given(count=count, probability=probability),
    }


def clock_mode_body(mode: settings.ClockMode) -> dict[str, Any]:
    """The body of ``POST /_emulator/clock``."""
    return {"mode": mode.value}


def clock_advance_body(seconds: float) -> dict[str, Any]:
    """The body of ``POST /_emulator/clock/advance``."""
    if seconds <= 0:
        raise errors.ConfigurationError(f"advance by a positive number of seconds, not {seconds:g}")
    return {"seconds": _number(seconds)}


def _given(**values: Any) -> dict[str, Any]:
    return {name: value for name, value in values.items() if value is not None}


def _number(value: float) -> int | float:
    """3600.0 is sent as 3600: an integer where the value is whole."""
    return int(value) if float(value).is_integer() else float(value)


# -- reset, export, import --------------------------------------------------------------------


@command.client_command(app, "reset")
def reset(*, session: command.Session) -> None:
    """Empty the world and the task history; running tasks are stopped first. Keys stay."""
    body = _state_request(session, "POST", "EmulatorReset", "/_emulator/reset")
    session.emit(body, print_reset)


@command.client_command(state_app, "export")
def export(
    file: Annotated[
        Path | None,
        typer.Argument(
            help="Write the document here ('-' or none: standard output).", show_default=False
        ),
    ] = None,
    *,
    session: command.Session,
) -> None:
    """Save the whole state (world and task history) as one JSON document.

    The document is always JSON, whatever --output says: it is what 'emulator state
    import' reads. Written to a FILE, a summary line goes to standard error.
    """
    document = _state_request(session, "GET", "EmulatorExportState", "/_emulator/state")
    if file is None or str(file) == STDIO:
        output.print_json(document)
        return
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    try:
        file.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise errors.ConfigurationError(f"cannot write {file}: {exc.strerror}") from None
    output.err.print(
        f"exported {_sizes(document)} to {file}", markup=False, highlight=False, soft_wrap=True
    )


@command.client_command(state_app, "import")
def import_state(
    file: Annotated[
        Path,
        typer.Argument(
            help="A document written by 'emulator state export' ('-': standard input).",
            show_default=False,
        ),
    ],
    *,
    session: command.Session,
) -> None:
    """Replace the whole state by an exported document; running tasks are stopped first."""
    document = _read_document(file)
    body = _state_request(session, "POST", "EmulatorImportState", "/_emulator/state", document)
    session.emit(body, print_imported)


def _state_request(
    session: command.Session, method: str, action: str, path: str, document: Any = None
) -> dict[str, Any]:
    """``ApiClient.call`` with the slow routes' timeout."""
    response = session.api.request(
        method, action, path, json=document, timeout=STATE_TIMEOUT_SECONDS
    )
    return client.document(response) if response.content else {}


def _read_document(file: Path) -> Any:
    try:
        text = sys.stdin.read() if str(file) == STDIO else file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.ConfigurationError(f"cannot read {file}: {exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise errors.ConfigurationError(f"{file} is not a JSON document: {exc}") from None


def _sizes(document: dict[str, Any]) -> str:
    tables = document.get("tables") or {}
    tasks = len(tables.get("tasks") or [])
    return f"{tasks} tasks and {len(tables.get('sim_clusters') or [])} clusters"


# -- clock ------------------------------------------------------------------------------------


@command.client_command(clock_app, "show")
def clock_show(*, session: command.Session) -> None:
    """Show simulated time: its mode, speed, current instant and pending waits."""
    body = session.api.call("GET", "EmulatorDescribeClock", "/_emulator/clock")
    session.emit(body, print_clock)


@command.client_command(clock_app, "set-mode")
def clock_set_mode(
    mode: Annotated[
        settings.ClockMode, typer.Argument(help="realtime, manual or per_poll.", show_default=False)
    ],
    *,
    session: command.Session,
) -> None:
    """Change how simulated time passes.

    realtime: it runs (scaled by the server's --sim-speed); manual: only 'clock advance'
    moves it; per_poll: each DescribeTaskInfo of a task moves that task one step.
    """
    body = session.api.call(
        "POST", "EmulatorSetClock", "/_emulator/clock", json=clock_mode_body(mode)
    )
    session.emit(body, print_clock)


@command.client_command(clock_app, "advance")
def clock_advance(
    seconds: Annotated[
        float, typer.Argument(help="Simulated seconds to move forward.", show_default=False)
    ],
    *,
    session: command.Session,
) -> None:
    """Move simulated time forward (manual mode only); tasks waiting on it continue."""
    body = clock_advance_body(seconds)
    answer = session.api.call("POST", "EmulatorAdvanceClock", "/_emulator/clock/advance", json=body)
    session.emit(answer, print_clock)


# -- faults -----------------------------------------------------------------------------------


@command.client_command(faults_app, "add")
def faults_add(
    task_type: Annotated[
        str | None,
        typer.Option(help="Only tasks of this type, e.g. cluster_scaleout.", show_default=False),
    ] = None,
    stage: Annotated[
        str | None, typer.Option(help="Only this stage, e.g. CreateInstances.", show_default=False)
    ] = None,
    instance_index: Annotated[
        int | None,
        typer.Option(
            min=1, help="Only the N-th instance of the task (1-based).", show_default=False
        ),
    ] = None,
    node_name: Annotated[
        str | None, typer.Option(help="Only this node.", show_default=False)
    ] = None,
    operation: Annotated[
        str | None,
        typer.Option(help="Only this operation of the simulated cloud.", show_default=False),
    ] = None,
    error_code: Annotated[
        str | None,
        typer.Option(help="Fail with this code, e.g. OperationDenied.NoStock.", show_default=False),
    ] = None,
    message: Annotated[
        str | None, typer.Option(help="The failure's message.", show_default=False)
    ] = None,
    latency: Annotated[
        float | None,
        typer.Option(min=0, help="Add this many simulated seconds.", show_default=False),
    ] = None,
    node_not_ready: Annotated[
        bool, typer.Option("--node-not-ready", help="The node goes NotReady.")
    ] = False,
    count: Annotated[
        int | None,
        typer.Option(min=1, help="Apply at most N times (default: always).", show_default=False),
    ] = None,
    probability: Annotated[
        float | None,
        typer.Option(
            min=0, max=1, help="Apply with this probability (0..1; default: 1).", show_default=False
        ),
    ] = None,
    *,
    session: command.Session,
) -> None:
    """Add a fault rule: what it matches (any of the match options) and its effect."""
    rule = fault_rule(
        task_type=task_type,
        stage=stage,
        instance_index=instance_index,
        node_name=node_name,
        operation=operation,
        error_code=error_code,
        message=message,
        latency_seconds=latency,
        node_not_ready=node_not_ready,
        count=count,
        probability=probability,
    )
    made = session.api.call("POST", "EmulatorAddFaultRule", "/_emulator/faults", json=rule)
    session.emit(made, print_fault_added)


@command.client_command(faults_app, "list")
def faults_list(*, session: command.Session) -> None:
    """List the fault rules with how often each has struck."""
    body = session.api.call("GET", "EmulatorListFaultRules", "/_emulator/faults")
    session.emit(body, print_faults)


@command.client_command(faults_app, "delete")
def faults_delete(
    fault_id: Annotated[
        str | None, typer.Argument(help="The rule to delete.", show_default=False)
    ] = None,
    every: Annotated[bool, typer.Option("--all", help="Delete every rule.")] = False,
    *,
    session: command.Session,
) -> None:
    """Delete one fault rule by id, or all of them with --all."""
    if (fault_id is None) == (not every):
        raise errors.ConfigurationError("name one fault id, or --all (not both)")
    if every:
        body = session.api.call("DELETE", "EmulatorDeleteFaultRules", "/_emulator/faults")
    else:
        path = f"/_emulator/faults/{client.segment(fault_id or '')}"
        body = session.api.call("DELETE", "EmulatorDeleteFaultRule", path)
    session.emit(body, print_fault_deleted)


@command.client_command(faults_app, "clear")
def faults_clear(*, session: command.Session) -> None:
    """Delete every fault rule (the same as 'faults delete --all')."""
    body = session.api.call("DELETE", "EmulatorDeleteFaultRules", "/_emulator/faults")
    session.emit(body, print_fault_deleted)


# -- tables (--output table) ------------------------------------------------------------------
# Values from the server are plain text (``Text``, ``markup=False``), never Rich markup.


def _line(console: Console, text: str) -> None:
    console.print(text, markup=False, highlight=False, soft_wrap=True)


def _text(value: Any) -> Text:
    return Text("" if value is None else str(value))


def _removed(body: dict[str, Any]) -> str:
    return (
        f"{body.get('tasks_canceled', 0)} unfinished tasks stopped, "
        f"{body.get('tasks_deleted', 0)} tasks and {body.get('clusters_deleted', 0)} "
        "clusters deleted"
    )


def print_reset(console: Console, body: dict[str, Any]) -> None:
    _line(console, f"reset: {_removed(body)}")


def print_imported(console: Console, body: dict[str, Any]) -> None:
    imported = body.get("imported") or {}
    rows = sum(n for n in imported.values() if isinstance(n, int))
    _line(
        console,
        f"imported {imported.get('tasks', 0)} tasks and {imported.get('sim_clusters', 0)} "
        f"clusters ({rows} rows); replaced: {_removed(body)}",
    )


def print_clock(console: Console, body: dict[str, Any]) -> None:
    _line(
        console,
        f"mode {body.get('mode', '')}  speed {body.get('speed', '')}  "
        f"now {body.get('now', '')}  waiting {body.get('waiting', '')}",
    )


def print_faults(console: Console, body: dict[str, Any]) -> None:
    faults = [f for f in body.get("faults") or [] if isinstance(f, dict)]
    _fault_table(console, f"fault rules — {len(faults)}", faults)


def print_fault_added(console: Console, fault: dict[str, Any]) -> None:
    _fault_table(console, f"fault {fault.get('fault_id', '')} added", [fault])


def print_fault_deleted(console: Console, body: dict[str, Any]) -> None:
    if "removed" in body:
        _line(console, f"{body.get('removed')} fault rules deleted")
    else:
        _line(console, f"fault {body.get('fault_id', '')} deleted")


def _fault_table(console: Console, title: str, faults: list[dict[str, Any]]) -> None:
    table = Table(title=Text(title), title_justify="left")
    # The id is what one copies: never cut it short; match and effect give way.
    widest = max([len("fault_id"), *(len(str(f.get("fault_id", ""))) for f in faults)])
    table.add_column("fault_id", no_wrap=True, min_width=widest)
    table.add_column("match", overflow="fold")
    table.add_column("effect", overflow="fold")
    for name in ("count", "remaining", "probability", "hits"):
        table.add_column(name, no_wrap=True)
    for fault in faults:
        table.add_row(
            _text(fault.get("fault_id")),
            _text(_pairs(fault.get("match"))),
            _text(_pairs(fault.get("effect"))),
            _text(fault.get("count")),
            _text(fault.get("remaining")),
            _text(fault.get("probability")),
            _text(fault.get("hits")),
        )
    console.print(table)


def _pairs(value: Any) -> str:
    if not isinstance(value, dict):
        return "" if value is None else str(value)
    return " ".join(f"{k}={v}" for k, v in value.items() if v not in (None, "", False))
