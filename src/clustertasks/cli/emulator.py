"""``clustertasks emulator``: the emulator's admin controls on a running server.

- ``reset``: empty the world and the task history (AccessKeys stay).
- ``export [FILE]`` / ``import FILE``: the whole state as one JSON document.
- ``clock``: show simulated time; ``clock set-mode``, ``clock advance``.
- ``faults add|list|delete``: injected failures.

Every command signs its requests with an admin AccessKey (flags, ``CLUSTERTASKS_ACCESS_KEY_*``
or the credentials file ``serve`` wrote), like the other client commands.
"""

from __future__ import annotations

import enum
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

import typer
from rich.console import Console
from rich.table import Table

from clustertasks import errors
from clustertasks.cli import client, config

app = typer.Typer(
    help="Control the emulator: reset, export and import its state, simulated time, faults.",
    no_args_is_help=True,
)
clock_app = typer.Typer(
    help="Simulated time: show it (no subcommand), change its mode, advance it.",
    invoke_without_command=True,
)
faults_app = typer.Typer(
    help="Injected failures: add, list and delete rules.", no_args_is_help=True
)
app.add_typer(clock_app, name="clock")
app.add_typer(faults_app, name="faults")

out = Console()
err = Console(stderr=True)

EXIT_FAILED = 1
EXIT_USAGE = 4
DEFAULT_ENDPOINT = "http://127.0.0.1:8080"
# A whole world and task history may take a while to dump or load.
STATE_TIMEOUT_SECONDS = 600.0

EndpointOption = Annotated[
    str,
    typer.Option(envvar="CLUSTERTASKS_ENDPOINT", help="URL of the clustertasks server."),
]
AccessKeyIdOption = Annotated[
    str | None,
    typer.Option(
        envvar="CLUSTERTASKS_ACCESS_KEY_ID",
        help="Admin AccessKey id to sign requests with (default: ./clustertasks.credentials).",
    ),
]
AccessKeySecretOption = Annotated[
    str | None,
    typer.Option(
        envvar="CLUSTERTASKS_ACCESS_KEY_SECRET",
        help="AccessKey secret to sign requests with.",
        show_default=False,
    ),
]


class Output(enum.StrEnum):
    table = "table"
    json = "json"


OutputOption = Annotated[Output, typer.Option("--output", "-o", help="table, or json for scripts.")]


class ClockMode(enum.StrEnum):
    realtime = "realtime"
    manual = "manual"
    per_poll = "per_poll"


@dataclass(frozen=True, slots=True)
class Server:
    """Where to send requests and the key to sign them with."""

    endpoint: str
    access_key_id: str | None
    access_key_secret: str | None

    def connect(self, timeout: float = 30.0) -> client.ApiClient:
        flags = config.ClientFlags(self.endpoint, self.access_key_id, self.access_key_secret)
        found = config.load(flags)
        signer = None
        if found.access_key_id and found.access_key_secret:
            signer = client.SigningAuth(found.access_key_id, found.access_key_secret)
        return client.ApiClient(found.endpoint, signer, timeout=timeout)


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


def clock_mode_body(mode: ClockMode) -> dict[str, Any]:
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


@app.command("reset")
def reset(
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    access_key_id: AccessKeyIdOption = None,
    access_key_secret: AccessKeySecretOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Empty the world and the task history; running tasks are stopped first. Keys stay."""
    server = Server(endpoint, access_key_id, access_key_secret)

    def run() -> None:
        with server.connect(STATE_TIMEOUT_SECONDS) as api:
            body = api.call("POST", "EmulatorReset", "/_emulator/reset")
        if output is Output.json:
            _print_json(body)
            return
        out.print(f"reset: {_removed(body)}", highlight=False)

    _guard(run)


@app.command("export")
def export(
    file: Annotated[
        Path | None, typer.Argument(help="Write the document here (default: standard output).")
    ] = None,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    access_key_id: AccessKeyIdOption = None,
    access_key_secret: AccessKeySecretOption = None,
) -> None:
    """Save the whole state (world and task history) as one JSON document."""
    server = Server(endpoint, access_key_id, access_key_secret)

    def run() -> None:
        with server.connect(STATE_TIMEOUT_SECONDS) as api:
            document = api.call("GET", "EmulatorExportState", "/_emulator/state")
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        if file is None:
            sys.stdout.write(text)
            sys.stdout.flush()
            return
        try:
            file.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise errors.ConfigurationError(f"cannot write {file}: {exc.strerror}") from None
        err.print(f"exported {_sizes(document)} to {file}", highlight=False)

    _guard(run)


@app.command("import")
def import_state(
    file: Annotated[
        Path, typer.Argument(help="A document written by 'emulator export' ('-': stdin).")
    ],
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    access_key_id: AccessKeyIdOption = None,
    access_key_secret: AccessKeySecretOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Replace the whole state by an exported document; running tasks are stopped first."""
    server = Server(endpoint, access_key_id, access_key_secret)

    def run() -> None:
        document = _read_document(file)
        with server.connect(STATE_TIMEOUT_SECONDS) as api:
            body = api.call("POST", "EmulatorImportState", "/_emulator/state", json=document)
        if output is Output.json:
            _print_json(body)
            return
        imported = body.get("imported") or {}
        out.print(
            f"imported {imported.get('tasks', 0)} tasks and {imported.get('sim_clusters', 0)} "
            f"clusters ({sum(imported.values())} rows); replaced: {_removed(body)}",
            highlight=False,
        )

    _guard(run)


def _read_document(file: Path) -> Any:
    try:
        text = sys.stdin.read() if str(file) == "-" else file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise errors.ConfigurationError(f"cannot read {file}: {exc}") from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise errors.ConfigurationError(f"{file} is not a JSON document: {exc}") from None


def _removed(body: dict[str, Any]) -> str:
    return (
        f"{body.get('tasks_canceled', 0)} unfinished tasks stopped, "
        f"{body.get('tasks_deleted', 0)} tasks and {body.get('clusters_deleted', 0)} "
        "clusters deleted"
    )


def _sizes(document: dict[str, Any]) -> str:
    tables = document.get("tables") or {}
    tasks = len(tables.get("tasks", []))
    return f"{tasks} tasks and {len(tables.get('sim_clusters', []))} clusters"


# -- clock ------------------------------------------------------------------------------------


@clock_app.callback()
def clock(
    ctx: typer.Context,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    access_key_id: AccessKeyIdOption = None,
    access_key_secret: AccessKeySecretOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Show simulated time: its mode, speed and current instant."""
    ctx.obj = Server(endpoint, access_key_id, access_key_secret)
    if ctx.invoked_subcommand is not None:
        return

    def run() -> None:
        with ctx.obj.connect() as api:
            _print_clock(api.call("GET", "EmulatorDescribeClock", "/_emulator/clock"), output)

    _guard(run)


@clock_app.command("set-mode")
def clock_set_mode(
    ctx: typer.Context,
    mode: Annotated[ClockMode, typer.Argument(help="realtime, manual or per_poll.")],
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    access_key_id: AccessKeyIdOption = None,
    access_key_secret: AccessKeySecretOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Change how simulated time passes.

    realtime: it runs (scaled by --sim-speed); manual: only 'clock advance' moves it;
    per_poll: each DescribeTaskInfo of a task moves that task one step.
    """
    server = _inherited(ctx, endpoint, access_key_id, access_key_secret)

    def run() -> None:
        with server.connect() as api:
            body = api.call(
                "POST", "EmulatorSetClock", "/_emulator/clock", json=clock_mode_body(mode)
            )
        _print_clock(body, output)

    _guard(run)


@clock_app.command("advance")
def clock_advance(
    ctx: typer.Context,
    seconds: Annotated[float, typer.Argument(help="Simulated seconds to move forward.")],
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    access_key_id: AccessKeyIdOption = None,
    access_key_secret: AccessKeySecretOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Move simulated time forward (manual mode); tasks waiting on it continue."""
    server = _inherited(ctx, endpoint, access_key_id, access_key_secret)

    def run() -> None:
        body = clock_advance_body(seconds)
        with server.connect() as api:
            answer = api.call("POST", "EmulatorAdvanceClock", "/_emulator/clock/advance", json=body)
        _print_clock(answer, output)

    _guard(run)


def _print_clock(body: dict[str, Any], output: Output) -> None:
    if output is Output.json:
        _print_json(body)
        return
    out.print(
        f"mode {body.get('mode', '')}  speed {body.get('speed', '')}  now {body.get('now', '')}",
        highlight=False,
    )


def _inherited(
    ctx: typer.Context, endpoint: str, access_key_id: str | None, access_key_secret: str | None
) -> Server:
    """This command's server, taking what was given to ``clock`` itself (``emulator clock
    --endpoint URL advance 60``) unless the command was given its own on the command line."""
    parent = ctx.obj if isinstance(ctx.obj, Server) else None
    if parent is None:
        return Server(endpoint, access_key_id, access_key_secret)

    def own(name: str) -> bool:
        # By name: the enum's class depends on which click Typer runs on.
        return getattr(ctx.get_parameter_source(name), "name", None) == "COMMANDLINE"

    return Server(
        endpoint if own("endpoint") else parent.endpoint,
        access_key_id if own("access_key_id") else parent.access_key_id,
        access_key_secret if own("access_key_secret") else parent.access_key_secret,
    )


# -- faults -----------------------------------------------------------------------------------


@faults_app.command("add")
def faults_add(
    task_type: Annotated[
        str | None, typer.Option(help="Only tasks of this type, e.g. cluster_scaleout.")
    ] = None,
    stage: Annotated[
        str | None, typer.Option(help="Only this stage, e.g. CreateInstances.")
    ] = None,
    instance_index: Annotated[
        int | None, typer.Option(min=1, help="Only the N-th instance of the task (1-based).")
    ] = None,
    node_name: Annotated[str | None, typer.Option(help="Only this node.")] = None,
    operation: Annotated[
        str | None, typer.Option(help="Only this operation of the simulated cloud.")
    ] = None,
    error_code: Annotated[
        str | None, typer.Option(help="Fail with this code, e.g. OperationDenied.NoStock.")
    ] = None,
    message: Annotated[str | None, typer.Option(help="The failure's message.")] = None,
    latency: Annotated[
        float | None, typer.Option(min=0, help="Add this many simulated seconds.")
    ] = None,
    node_not_ready: Annotated[
        bool, typer.Option("--node-not-ready", help="The node goes NotReady.")
    ] = False,
    count: Annotated[int | None, typer.Option(min=1, help="Apply at most N times.")] = None,
    probability: Annotated[
        float | None, typer.Option(min=0, max=1, help="Apply with this probability (0..1).")
    ] = None,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    access_key_id: AccessKeyIdOption = None,
    access_key_secret: AccessKeySecretOption = None,
    output: OutputOption = Output.table,
) -> None:
    """Add a fault rule: what it matches (any of the match options) and its effect."""
    server = Server(endpoint, access_key_id, access_key_secret)

    def run() -> None:
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
        with server.connect() as api:
            made = api.call("POST", "EmulatorAddFaultRule", "/_emulator/faults", json=rule)
        if output is Output.json:
            _print_json(made)
            return
        out.print(f"fault {made.get('fault_id', '')} added", highlight=False)
        _print_faults([made])

    _guard(run)


@faults_app.command("list")
def faults_list(
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    access_key_id: AccessKeyIdOption = None,
    access_key_secret: AccessKeySecretOption = None,
    output: OutputOption = Output.table,
) -> None:
    """List the fault rules with how often each has struck."""
    server = Server(endpoint, access_key_id, access_key_secret)

    def run() -> None:
        with server.connect() as api:
            body = api.call("GET", "EmulatorListFaultRules", "/_emulator/faults")
        if output is Output.json:
            _print_json(body)
            return
        _print_faults(list(body.get("faults") or []))

    _guard(run)


@faults_app.command("delete")
def faults_delete(
    fault_id: Annotated[str | None, typer.Argument(help="The rule to delete.")] = None,
    every: Annotated[bool, typer.Option("--all", help="Delete every rule.")] = False,
    endpoint: EndpointOption = DEFAULT_ENDPOINT,
    access_key_id: AccessKeyIdOption = None,
    access_key_secret: AccessKeySecretOption = None,
) -> None:
    """Delete one fault rule by id, or all of them with --all."""
    server = Server(endpoint, access_key_id, access_key_secret)

    def run() -> None:
        if (fault_id is None) == (not every):
            raise errors.ConfigurationError("name one fault id, or --all (not both)")
        path = "/_emulator/faults"
        if not every:
            path += "/" + quote(fault_id or "", safe="")
        with server.connect() as api:
            api.call("DELETE", "EmulatorDeleteFaultRules", path)
        err.print("every fault deleted" if every else f"fault {fault_id} deleted", highlight=False)

    _guard(run)


def _print_faults(faults: list[dict[str, Any]]) -> None:
    table = Table()
    table.add_column("fault id", no_wrap=True)
    table.add_column("match", overflow="fold")
    table.add_column("effect", overflow="fold")
    table.add_column("count", no_wrap=True)
    table.add_column("probability", no_wrap=True)
    table.add_column("hits", no_wrap=True)
    for fault in faults:
        table.add_row(
            str(fault.get("fault_id", "")),
            _pairs(fault.get("match")),
            _pairs(fault.get("effect")),
            _shown(fault.get("count")),
            _shown(fault.get("probability")),
            _shown(fault.get("hits")),
        )
    out.print(table)


def _pairs(value: Any) -> str:
    if not isinstance(value, dict):
        return _shown(value)
    return " ".join(f"{k}={v}" for k, v in value.items() if v not in (None, "", False))


def _shown(value: Any) -> str:
    return "" if value is None else str(value)


# -- plumbing ---------------------------------------------------------------------------------


def _print_json(body: Any) -> None:
    # Not through Rich: machine-readable output must not be wrapped or styled.
    sys.stdout.write(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def _guard(action: Callable[[], None]) -> None:
    """Run ``action``; print an error as one line with its code and exit non-zero."""
    try:
        action()
    except client.ConnectionFailed as exc:
        err.print(f"[red]error[/red] {exc.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None
    except client.ApiError as exc:
        err.print(
            f"[red]error[/red] {exc.code} (HTTP {exc.status}): {exc.message}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_FAILED) from None
    except errors.ConfigurationError as exc:
        err.print(f"[red]error[/red] {exc.code}: {exc.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_USAGE) from None
    except errors.ClustertasksError as exc:
        err.print(f"[red]error[/red] {exc.code}: {exc.message}", highlight=False, soft_wrap=True)
        raise typer.Exit(EXIT_FAILED) from None
