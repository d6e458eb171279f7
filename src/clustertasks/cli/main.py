"""``clustertasks``: run the server, and talk to one.

Every option can also be set with the ``CLUSTERTASKS_*`` variable shown in ``--help``;
a flag wins over the variable, the variable over the default.
"""

from __future__ import annotations

import enum
import json
import sys
from typing import Annotated, Any

import typer
from rich.console import Console

from clustertasks import __version__, bootstrap, errors, settings
from clustertasks.cli import audit, client, emulator, keys, views

app = typer.Typer(
    name="clustertasks",
    help="ACK-compatible durable tasks for cluster operations, with a simulated ACK cloud.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
task_app = typer.Typer(help="Read tasks from a running server.", no_args_is_help=True)
db_app = typer.Typer(help="Administer the database directly.", no_args_is_help=True)
app.add_typer(task_app, name="task")
app.add_typer(db_app, name="db")
app.add_typer(keys.app, name="keys")
app.add_typer(audit.app, name="audit")
app.add_typer(emulator.app, name="emulator")

out = Console()
err = Console(stderr=True)

EXIT_FAILED = 1
EXIT_USAGE = 4

DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="CLUSTERTASKS_DB_URL",
        help="Database URL: sqlite:///path or postgresql://user:pass@host:port/db.",
    ),
]
EndpointOption = Annotated[
    str,
    typer.Option(envvar="CLUSTERTASKS_ENDPOINT", help="URL of the clustertasks server."),
]
AccessKeyIdOption = Annotated[
    str | None,
    typer.Option(
        envvar="CLUSTERTASKS_ACCESS_KEY_ID",
        help="AccessKey id to sign requests with (default: ./clustertasks.credentials).",
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


class SimClockMode(enum.StrEnum):
    realtime = "realtime"
    manual = "manual"
    per_poll = "per_poll"


class Output(enum.StrEnum):
    json = "json"
    xml = "xml"
    table = "table"


def _version(value: bool) -> None:
    if value:
        out.print(f"clustertasks {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    """clustertasks command line."""


@app.command()
def serve(
    host: Annotated[
        str, typer.Option(envvar="CLUSTERTASKS_HOST", help="Address to bind.")
    ] = settings.DEFAULT_HOST,
    port: Annotated[
        int, typer.Option(envvar="CLUSTERTASKS_PORT", min=0, max=65535, help="Port to listen on.")
    ] = settings.DEFAULT_PORT,
    db: DbOption = settings.DEFAULT_DB_URL,
    timezone: Annotated[
        str, typer.Option(envvar="CLUSTERTASKS_TIMEZONE", help="Time zone of wire timestamps.")
    ] = "UTC",
    log_level: Annotated[
        str, typer.Option(envvar="CLUSTERTASKS_LOG_LEVEL", help="debug, info, warning or error.")
    ] = "info",
    sim_speed: Annotated[
        float,
        typer.Option(
            envvar="CLUSTERTASKS_SIM_SPEED",
            min=0,
            help="Divide every simulated duration by this; 0 waits for nothing.",
        ),
    ] = 1.0,
    sim_seed: Annotated[
        int | None,
        typer.Option(envvar="CLUSTERTASKS_SIM_SEED", help="Make ids and choices repeatable."),
    ] = None,
    sim_clock: Annotated[
        SimClockMode | None,
        typer.Option(
            envvar="CLUSTERTASKS_SIM_CLOCK",
            help="Simulated clock at start: realtime (scaled by --sim-speed), manual "
            "(moved by POST /_emulator/clock/advance) or per_poll (each DescribeTaskInfo "
            "moves that task); default: what the database remembers, else realtime.",
            show_default=False,
        ),
    ] = None,
    executor: Annotated[
        bool,
        typer.Option(
            "--executor/--no-executor",
            envvar="CLUSTERTASKS_EXECUTOR",
            help="Run tasks in this server (--no-executor: API only).",
        ),
    ] = True,
    max_running_tasks: Annotated[
        int,
        typer.Option(
            envvar="CLUSTERTASKS_MAX_RUNNING_TASKS", min=1, help="Tasks run at once; others wait."
        ),
    ] = 64,
    auth: Annotated[
        keys.AuthMode,
        typer.Option(
            envvar="CLUSTERTASKS_AUTH",
            help="on: verify signatures; off: accept any (loopback only, local emulation).",
        ),
    ] = keys.AuthMode.on,
    rate_limit: Annotated[
        float,
        typer.Option(envvar="CLUSTERTASKS_RATE_LIMIT", min=0.001, help="Requests/s per AccessKey."),
    ] = 50.0,
    rate_burst: Annotated[
        int,
        typer.Option(envvar="CLUSTERTASKS_RATE_BURST", min=1, help="Burst above the rate."),
    ] = 100,
    access_key_id: Annotated[
        str | None,
        typer.Option(
            envvar="CLUSTERTASKS_ACCESS_KEY_ID",
            help="Create or update this admin AccessKey at start (with the secret).",
        ),
    ] = None,
    access_key_secret: Annotated[
        str | None,
        typer.Option(
            envvar="CLUSTERTASKS_ACCESS_KEY_SECRET",
            help="Secret of --access-key-id (prefer the variable: arguments show in ps).",
            show_default=False,
        ),
    ] = None,
    credentials_file: Annotated[
        str,
        typer.Option(
            envvar="CLUSTERTASKS_CREDENTIALS_FILE",
            help="Where the first AccessKey is saved when the database has none (mode 0600).",
        ),
    ] = "./clustertasks.credentials",
    sse_heartbeat: Annotated[
        float,
        typer.Option(
            envvar="CLUSTERTASKS_SSE_HEARTBEAT",
            min=0.001,
            max=3600,
            help="Seconds between keep-alive comments on an idle task event stream.",
        ),
    ] = 15.0,
) -> None:
    """Run the API server (SQLite in ./clustertasks.db by default) until SIGINT/SIGTERM."""
    config = _settings(
        lambda: settings.Settings(
            server=settings.ServerSettings(host=host, port=port, log_level=log_level),
            storage=settings.StorageSettings(url=db),
            wire=settings.WireSettings(timezone=timezone),
            sim=settings.SimSettings(
                speed=sim_speed,
                seed=sim_seed,
                clock=sim_clock.value if sim_clock is not None else None,
            ),
            engine=settings.EngineSettings(executor=executor, max_running_tasks=max_running_tasks),
            auth=settings.AuthSettings(
                enabled=auth is keys.AuthMode.on,
                rate_per_second=rate_limit,
                burst=rate_burst,
                access_key_id=access_key_id or None,
                access_key_secret=access_key_secret or None,
                credentials_file=credentials_file,
            ),
            live=settings.LiveSettings(heartbeat_seconds=sse_heartbeat),
        )
    )
    # soft_wrap: a log line (a path, a key) must stay whole, whatever the terminal's width.
    _guard(
        lambda: bootstrap.serve(
            config, announce=lambda line: err.print(line, highlight=False, soft_wrap=True)
        )
    )


@db_app.command("migrate")
def db_migrate(db: DbOption = settings.DEFAULT_DB_URL) -> None:
    """Create or upgrade the database schema (serve does this on start too)."""
    config = _settings(lambda: settings.Settings(storage=settings.StorageSettings(url=db)))
    _guard(lambda: bootstrap.migrate(config))
    err.print(f"database {bootstrap.redacted(db)} is up to date", highlight=False)


@task_app.command("get")
def task_get(
    task_id: Annotated[str, typer.Argument(help="The task id, e.g. T-5faa48fb31b6b8078d000006.")],
    endpoint: EndpointOption = "http://127.0.0.1:8080",
    output: Annotated[Output, typer.Option("--output", "-o", help="Output format.")] = Output.table,
    access_key_id: AccessKeyIdOption = None,
    access_key_secret: AccessKeySecretOption = None,
) -> None:
    """Show one task (DescribeTaskInfo)."""
    path = f"/tasks/{_quote(task_id)}"
    action = "DescribeTaskInfo"

    def run() -> None:
        signer = keys.signer(access_key_id, access_key_secret)
        with client.ApiClient(endpoint, signer) as api:
            if output is Output.xml:
                _print_text(api.get_text(action, path, {"format": "xml"}))
            elif output is Output.json:
                _print_json(api.get_json(action, path))
            else:
                views.print_task(out, api.get_json(action, path))

    _guard(run)


@task_app.command("list")
def task_list(
    cluster: Annotated[str, typer.Option("--cluster", "-c", help="The cluster id.")],
    endpoint: EndpointOption = "http://127.0.0.1:8080",
    state: Annotated[str | None, typer.Option(help="Only tasks in this state.")] = None,
    task_type: Annotated[str | None, typer.Option("--type", help="Only this task type.")] = None,
    page: Annotated[int, typer.Option(min=1, help="Page number.")] = 1,
    page_size: Annotated[int, typer.Option(min=1, max=100, help="Tasks per page.")] = 10,
    output: Annotated[Output, typer.Option("--output", "-o", help="Output format.")] = Output.table,
    access_key_id: AccessKeyIdOption = None,
    access_key_secret: AccessKeySecretOption = None,
) -> None:
    """List a cluster's tasks, newest first (DescribeClusterTasks)."""
    action = "DescribeClusterTasks"
    path = f"/clusters/{_quote(cluster)}/tasks"
    params: dict[str, Any] = {
        "page_number": page,
        "page_size": page_size,
        "state": state,
        "task_type": task_type,
    }

    def run() -> None:
        signer = keys.signer(access_key_id, access_key_secret)
        with client.ApiClient(endpoint, signer) as api:
            if output is Output.xml:
                params["format"] = "xml"
                _print_text(api.get_text(action, path, params))
            elif output is Output.json:
                _print_json(api.get_json(action, path, params))
            else:
                views.print_task_list(out, cluster, api.get_json(action, path, params))

    _guard(run)


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")


def _print_json(body: dict[str, Any]) -> None:
    _print_text(json.dumps(body, indent=2, ensure_ascii=False))


def _print_text(text: str) -> None:
    # Not through Rich: machine-readable output must not be wrapped or styled.
    sys.stdout.write(text.rstrip("\n") + "\n")


def _settings(build: Any) -> settings.Settings:
    try:
        config: settings.Settings = build()
    except errors.ConfigurationError as exc:
        err.print(f"[red]error[/red] {exc.code}: {exc.message}")
        raise typer.Exit(EXIT_USAGE) from None
    return config


def _guard(action: Any) -> None:
    """Run ``action``; print an error as one line with its code and exit non-zero."""
    try:
        action()
    except client.ConnectionFailed as exc:
        err.print(f"[red]error[/red] {exc.message}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    except client.ApiError as exc:
        err.print(
            f"[red]error[/red] {exc.code} (HTTP {exc.status}): {exc.message}", highlight=False
        )
        raise typer.Exit(EXIT_FAILED) from None
    except (errors.ConfigurationError, errors.ExecutorLocked) as exc:
        err.print(f"[red]error[/red] {exc.code}: {exc.message}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    except errors.ClustertasksError as exc:
        err.print(f"[red]error[/red] {exc.code}: {exc.message}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None


def main() -> None:
    app()
