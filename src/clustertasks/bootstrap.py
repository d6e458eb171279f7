"""Composition root: settings -> store -> cloud -> services -> engine -> app -> server."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import ipaddress
import json
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any

import uvicorn
import uvloop

from clustertasks import admin as admin_commands
from clustertasks import clock, errors, settings
from clustertasks.api import app as api_app
from clustertasks.api import documents as api_documents
from clustertasks.api import fastpath, protocol
from clustertasks.api import services as api_services
from clustertasks.console import app as console_app
from clustertasks.domain import access, ids
from clustertasks.domain import emulator as emulator_domain
from clustertasks.emulator import clock_store, controls, fault_store, simclock, world_store
from clustertasks.emulator import cloud as sim_cloud
from clustertasks.emulator import state as emulator_state
from clustertasks.engine import executor
from clustertasks.observability import logs, tracing
from clustertasks.observability import telemetry as observed
from clustertasks.operations import base as operations
from clustertasks.operations import catalog
from clustertasks.service import (
    addons,
    changes,
    cluster_settings,
    control,
    events,
    live,
    nodes,
    tasks,
)
from clustertasks.service import auth as auth_service
from clustertasks.service import cloud as cloud_service
from clustertasks.service import sessions as console_sessions
from clustertasks.storage import database

if TYPE_CHECKING:  # imported where used: temporalio is an optional extra
    from clustertasks.engine.temporal import client as temporal_client
    from clustertasks.engine.temporal import load as temporal_load

log = logging.getLogger("clustertasks")

TLS_CLOSE_GRACE_SECONDS = 1.0
WORKER_STOP_SECONDS = 15.0
"""How long a worker whose parent died may take to stop gracefully."""
LISTEN_BACKLOG = 2048
"""Connections the kernel queues before a worker accepts them (uvicorn's default)."""


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after a graceful shutdown, which makes the process
    die by that signal. A requested stop that completed is a success: exit status 0."""

    def __init__(self, config: uvicorn.Config, stopping: Callable[[], None]) -> None:
        super().__init__(config)
        self._stopping = stopping

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn waits for every open response before it stops; long-polls and event
        # streams would hold it for up to a minute, or for ever: end them first.
        self._stopping()
        stragglers = asyncio.create_task(self._abort_idle_tls())
        try:
            await super().shutdown(sockets)
        finally:
            stragglers.cancel()

    async def _abort_idle_tls(self) -> None:
        """An idle keep-alive connection that uvicorn closed is gone at once over plain
        HTTP; over TLS asyncio waits up to 30 s for the client's close_notify, which an
        idle client never sends. Drop those after a short grace (none has a request)."""
        await asyncio.sleep(TLS_CLOSE_GRACE_SECONDS)
        for connection in list(self.server_state.connections):
            transport = getattr(connection, "transport", None)
            if (
                isinstance(transport, asyncio.Transport)
                and transport.is_closing()
                and transport.get_extra_info("sslcontext") is not None
            ):
                transport.abort()


@dataclass
class Runtime:
    """Everything a running server is made of."""

    config: settings.Settings
    database: database.Database
    cloud: sim_cloud.SimCloud
    services: api_services.Services
    executor: executor.LocalExecutor | None
    authenticator: auth_service.Authenticator
    telemetry: observed.Telemetry
    notifier: temporal_client.Notifier | None = None
    """On an API replica of the Temporal executor: starts and pokes the tasks' workflows."""
    temporal_load: temporal_load.QueueLoad | None = None
    """On an API replica of the Temporal executor: the executor's gauges in /metrics."""

    def close(self) -> None:
        self.database.close()
        self.telemetry.close()


def build(config: settings.Settings, telemetry: observed.Telemetry | None = None) -> Runtime:
    """The whole object graph, in one pass from the bottom up; nothing is wired later.
    ``telemetry``: where metrics and spans go (tests collect spans in memory); by default
    a registry of the server's own, and OTLP export when ``config`` asks for it."""
    if telemetry is None:
        telemetry = observed.Telemetry(
            tracing=tracing.Tracing.from_environment()
            if config.observability.tracing
            else tracing.Tracing.off()
        )
    db = database.Database.open(
        config.storage, on_transaction=telemetry.metrics.observe_transaction
    )
    try:
        time = clock.SystemClock()
        id_generator: ids.IdGenerator = ids.IdGenerator()
        if config.sim.seed is not None:
            id_generator = ids.SeededIds(config.sim.seed, emulator_state.issued_ids(db))
        registry = catalog.registry()
        hub = changes.ChangeHub(db.tasks, config.live)
        fault_rules = _fault_rules(db, registry, time, id_generator, hub)
        # The world's records carry simulated time; tasks keep the wall clock's.
        sim_time = simclock.SimClock.open(
            clock_store.ClockStore(db.engine), speed=config.sim.speed, mode=_clock_mode(config)
        )
        telemetry.metrics.watch_tasks(db.tasks.count_by_type_and_state)
        cloud = sim_cloud.SimCloud(
            world_store.WorldStore(db.engine),
            config.sim,
            sim_time,
            sim_clock=sim_time,
            report=fault_rules.report,
        )
        runner = None
        if config.engine.executor:
            runner = executor.LocalExecutor(
                db.tasks,
                registry,
                # Stages reach the cloud through this: a span and a duration per call.
                observed.traced(cloud, telemetry),
                lock=db.executor_lock(),
                time=time,
                max_running_tasks=config.engine.max_running_tasks,
                on_commit=hub.notify,
                telemetry=telemetry.tasks("local"),
            )
            runner.claim()
            telemetry.metrics.watch_executor("local", runner.load)
        telemetry.metrics.watch_watchers(hub.watching)
        notifier = None
        queue_load = None
        if config.engine.temporal is not None:
            from clustertasks.engine.temporal import client as temporal_client
            from clustertasks.engine.temporal import load as temporal_load

            notifier = temporal_client.Notifier(db.tasks, config.engine.temporal, time=time)
            queue_load = temporal_load.QueueLoad(config.engine.temporal)
            telemetry.metrics.watch_executor("temporal", queue_load.load)
        services = build_services(
            db,
            registry,
            cloud,
            time=time,
            id_generator=id_generator,
            hub=hub,
            fault_rules=fault_rules,
            executor=runner,
            notify=notifier.notify if notifier is not None else None,
            halt=notifier.halted if notifier is not None else None,
            realtime_clock_only=TEMPORAL_CLOCK if notifier is not None else None,
        )
        authenticator = auth_service.Authenticator(db.keys, config.auth, time, db.audit)
    except BaseException:
        db.close()
        raise
    return Runtime(
        config, db, cloud, services, runner, authenticator, telemetry, notifier, queue_load
    )


def _fault_rules(
    db: database.Database,
    registry: operations.Registry,
    time: clock.Clock,
    id_generator: ids.IdGenerator,
    hub: changes.ChangeHub,
) -> controls.FaultRules:
    """The emulator's fault rules; a firing is told to whoever follows the task it hit."""
    return controls.FaultRules(
        fault_store.FaultStore(db.engine),
        db.tasks,
        registry,
        time=time,
        id_generator=id_generator,
        on_report=hub.notify,
    )


TEMPORAL_CLOCK = (
    "under the Temporal executor the simulated clock runs in realtime mode only: its waits "
    "are in the worker processes, which this server can neither advance nor poll"
)


def _clock_mode(config: settings.Settings) -> str | None:
    """The clock mode to open with (None: the stored one). Under the Temporal executor,
    realtime whatever was stored: a manual or per_poll clock would hold the workers' waits
    for ever."""
    if config.engine.temporal is None:
        return config.sim.clock
    if config.sim.clock not in (None, emulator_domain.REALTIME):
        raise errors.ConfigurationError(f"--sim-clock {config.sim.clock}: {TEMPORAL_CLOCK}")
    return emulator_domain.REALTIME


def build_services(
    db: database.Database,
    registry: operations.Registry,
    cloud: sim_cloud.SimCloud,
    *,
    time: clock.Clock | None = None,
    id_generator: ids.IdGenerator | None = None,
    hub: changes.ChangeHub | None = None,
    fault_rules: controls.FaultRules | None = None,
    executor: executor.LocalExecutor | None = None,
    notify: control.Notify | None = None,
    halt: emulator_state.Halt | None = None,
    realtime_clock_only: str | None = None,
) -> api_services.Services:
    """The services the routes use, on ``db``. Without ``executor`` tasks are stored and
    stay put (an API-only server, or a test that runs them itself). ``notify`` and
    ``halt``: another executor's (Temporal's) in place of the local one's.
    ``realtime_clock_only``: the clock's mode may not change, and this says why."""
    time = time or clock.SystemClock()
    id_generator = id_generator or ids.IdGenerator()
    hub = hub or changes.ChangeHub(db.tasks)
    fault_rules = fault_rules or _fault_rules(db, registry, time, id_generator, hub)
    task_control = control.TaskControl(
        db.tasks,
        registry,
        time=time,
        id_generator=id_generator,
        notify=notify or (executor.wake if executor is not None else control.no_executor),
        on_commit=hub.notify,
    )
    clouds = cloud_service.CloudService(cloud, task_control, id_generator)
    emulator_clock = controls.ClockControls(cloud, realtime_only=realtime_clock_only)
    kept = api_documents.Documents()
    return api_services.Services(
        tasks=tasks.TaskService(db.tasks, polled=cloud.task_polled),
        control=task_control,
        cloud=clouds,
        nodes=nodes.NodeService(cloud, task_control, clouds),
        cluster_settings=cluster_settings.ClusterSettings(cloud, task_control, clouds, time),
        addons=addons.AddonService(cloud, task_control, clouds, db.tasks),
        events=events.EventService(db.tasks, clouds),
        changes=hub,
        live=live.LiveTasks(db.tasks, hub),
        emulator=api_services.EmulatorServices(
            clock=emulator_clock,
            faults=fault_rules,
            world=controls.WorldControls(cloud, fault_rules),
            state=emulator_state.EmulatorState(
                db,
                time=time,
                id_generator=id_generator,
                halt=halt or (executor.halted if executor is not None else None),
                # A reset or an imported state brings the clock and the seeded draws back,
                # and with them ids and versions that named other documents.
                after_change=[emulator_clock.reload, kept.clear],
            ),
        ),
        database=db,
        documents=kept,
    )


def create_app(runtime: Runtime) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        if runtime.executor is not None:
            await runtime.executor.start()
        # Commits of other processes (replicas, workers) wake this one's long-polls at once.
        listener = runtime.database.listen_for_task_changes(runtime.services.changes.notify)
        worker: asyncio.Task[None] | None = None
        watching: asyncio.Task[None] | None = None
        stop_worker = asyncio.Event()
        temporal = runtime.config.engine.temporal
        if runtime.notifier is not None and temporal is not None:
            connection = await runtime.notifier.start()
            if runtime.temporal_load is not None:
                watching = asyncio.create_task(runtime.temporal_load.watch(connection, stop_worker))
            if temporal.dev:
                worker = asyncio.create_task(_in_process_worker(runtime, connection, stop_worker))
        try:
            yield
        finally:
            if runtime.executor is not None:
                # Running tasks stop where they stand and continue at the next start.
                await runtime.executor.stop()
            if runtime.notifier is not None:
                await runtime.notifier.settle()
            stop_worker.set()
            if worker is not None:
                await worker
            if watching is not None:
                await watching
            if listener is not None:
                await asyncio.to_thread(listener.stop)

    api = api_app.create_app(
        runtime.services,
        runtime.config.wire,
        lifespan=lifespan,
        authenticator=runtime.authenticator,
        telemetry=runtime.telemetry,
        metrics_public=runtime.config.observability.metrics_public,
    )
    # The web console signs in with the same AccessKeys and writes to the same audit log.
    db = runtime.database
    sessions = console_sessions.ConsoleSessions(
        db.keys, db.sessions, runtime.config.auth, clock.SystemClock(), db.audit
    )
    registry = catalog.registry()
    console = console_app.Console(runtime.services, sessions, registry, runtime.config.wire)
    # The hot read (DescribeTaskInfo) skips FastAPI's router; everything else goes to it.
    return console_app.Mount(fastpath.FastPath(api), console.app())


async def _in_process_worker(runtime: Runtime, connection: Any, stop: asyncio.Event) -> None:
    from clustertasks.engine.temporal import worker as temporal_worker

    temporal = runtime.config.engine.temporal
    assert temporal is not None
    await temporal_worker.work(
        temporal,
        runtime.database.tasks,
        catalog.registry(),
        runtime.cloud,
        stop,
        max_running_stages=runtime.config.engine.max_running_tasks,
        on_commit=runtime.services.changes.notify,
        temporal=connection,
        telemetry=runtime.telemetry.tasks(temporal_worker.EXECUTOR),
        reconcile_turn=runtime.database.turn_lock(temporal_worker.RECONCILE_TURN),
    )


def serve(config: settings.Settings, announce: Callable[[str], None] = print) -> None:
    """Run the API and the executor until SIGINT or SIGTERM, then close cleanly."""
    _refuse_open_auth_off(config)
    with _temporal_dev(config, announce) as config:
        _serve(config, announce)


@contextlib.contextmanager
def _temporal_dev(
    config: settings.Settings, announce: Callable[[str], None]
) -> Iterator[settings.Settings]:
    """With ``--temporal-dev``: a Temporal dev server beside this process, for a trial."""
    temporal = config.engine.temporal
    if temporal is None or not temporal.dev:
        yield config
        return
    from clustertasks.engine.temporal import devserver

    with devserver.DevServer() as server:
        announce(f"started a Temporal dev server on {server.address} (state in memory)")
        yield dataclasses.replace(
            config,
            engine=dataclasses.replace(
                config.engine, temporal=dataclasses.replace(temporal, address=server.address)
            ),
        )


def _serve(config: settings.Settings, announce: Callable[[str], None]) -> None:
    if config.server.workers > 1:
        _serve_workers(config, announce)
        return
    runtime = build(config)
    try:
        _provision_keys(runtime, announce)
        announce(_listening(config, runtime))
        announce(_console_line(config))
        _run_server(config, runtime)
    finally:
        runtime.close()


def _run_server(
    config: settings.Settings, runtime: Runtime, sockets: list[socket.socket] | None = None
) -> None:
    server = _Server(
        uvicorn.Config(
            create_app(runtime),
            host=config.server.host,
            port=config.server.port,
            log_level=config.server.log_level,
            log_config=logs.config(config.observability.log_format, config.server.log_level),
            access_log=config.server.log_level == "debug",
            server_header=False,
            proxy_headers=False,
            lifespan="on",
            http=protocol.guarded(config.server.read_timeout_seconds),
            loop="uvloop",
            timeout_keep_alive=max(1, round(config.server.keep_alive_seconds)),
            ssl_certfile=config.server.tls_cert,
            ssl_keyfile=config.server.tls_key,
        ),
        stopping=runtime.services.changes.close,
    )
    server.run(sockets=sockets)


def _listening(config: settings.Settings, runtime: Runtime) -> str:
    mode = "running tasks" if config.engine.executor else "API only, no executor"
    temporal = config.engine.temporal
    if temporal is not None:
        mode = (
            f"Temporal executor at {temporal.address}, namespace {temporal.namespace}, "
            f"task queue {temporal.task_queue}"
            + ("; a worker in this process" if temporal.dev else "; API replica")
        )
    if config.server.workers > 1:
        mode += f"; {config.server.workers} API worker processes"
    return (
        f"clustertasks listening on {config.server.scheme}://"
        f"{config.server.host}:{config.server.port} "
        f"(database {redacted(config.storage.url)}; {mode}; sim speed {config.sim.speed:g}, "
        f"clock {runtime.cloud.sim_clock.mode})"
    )


def _console_line(config: settings.Settings) -> str:
    return (
        f"web console at {config.server.scheme}://{config.server.host}:"
        f"{config.server.port}{console_app.PREFIX}"
        + ("" if config.auth.enabled else " (open to anyone who reaches it: --auth off)")
    )


def _serve_workers(config: settings.Settings, announce: Callable[[str], None]) -> None:
    """``--workers N``: N processes accept on one listening socket (the kernel spreads the
    connections); the first runs the executor as configured, the others serve the API
    only. This process provisions the keys, binds the socket, and stops the workers on
    SIGINT/SIGTERM; if one of them ends by itself, it stops the others and fails."""
    if config.engine.temporal is not None:
        raise errors.ConfigurationError(
            "--workers above 1 runs the local executor or none; for Temporal, run API "
            "replicas (serve --executor temporal) side by side instead"
        )
    api_only = dataclasses.replace(config.engine, executor=False)
    runtime = build(dataclasses.replace(config, engine=api_only))
    try:
        if runtime.cloud.sim_clock.mode != emulator_domain.REALTIME:
            raise errors.ConfigurationError(
                f"the {runtime.cloud.sim_clock.mode} simulated clock moves waits in the process "
                "that receives the call, and --workers spreads the calls: use one worker"
            )
        if config.sim.seed is not None:
            raise errors.ConfigurationError(
                "--sim-seed would make every worker draw the same ids: use one worker"
            )
        _provision_keys(runtime, announce)
        listening = _listening(config, runtime)
    finally:
        runtime.close()
    host = config.server.host
    try:
        sock = socket.create_server(
            (host, config.server.port),
            family=socket.AF_INET6 if ":" in host else socket.AF_INET,
            backlog=LISTEN_BACKLOG,
        )
    except OSError as exc:
        raise errors.ConfigurationError(
            f"cannot listen on {host}:{config.server.port}: {exc}"
        ) from exc
    sock.set_inheritable(True)
    spawn = multiprocessing.get_context("spawn")
    children = []
    for index in range(config.server.workers):
        engine = config.engine if index == 0 else api_only
        child = spawn.Process(
            target=_worker_process,
            args=(dataclasses.replace(config, engine=engine), sock),
            name=f"clustertasks-api-{index}",
        )
        child.start()
        children.append(child)
    sock.close()
    announce(listening)
    announce(_console_line(config))
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda _sig, _frame: stop.set())
    failed = None
    while not stop.is_set():
        ended = [child for child in children if not child.is_alive()]
        if ended:
            failed = ended[0]
            break
        stop.wait(0.2)
    for child in children:
        if child.is_alive() and child.pid is not None:
            os.kill(child.pid, signal.SIGTERM)
    for child in children:
        child.join(30)
        if child.is_alive():
            child.kill()
            child.join()
    if failed is not None:
        raise errors.ConfigurationError(
            f"API worker {failed.name} ended with status {failed.exitcode}; stopped the others"
        )
    # A worker told to stop before its server had started dies by the signal itself.
    bad = [child for child in children if child.exitcode not in (0, None, -signal.SIGTERM)]
    if bad:
        raise errors.ConfigurationError(
            f"API worker {bad[0].name} stopped with status {bad[0].exitcode}"
        )


def _stop_with_parent() -> None:
    """A worker whose parent died (kill -9) stops too, rather than keep serving the port
    unsupervised: gracefully, and at once if that takes too long."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    multiprocessing.connection.wait([parent.sentinel])
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(WORKER_STOP_SECONDS)
    os._exit(1)


def _stop_while_starting(_sig: int, _frame: FrameType | None) -> None:
    raise SystemExit(0)


def _worker_process(config: settings.Settings, sock: socket.socket) -> None:
    """One API worker of ``--workers``: this process's own object graph, serving ``sock``."""
    # Until the server takes the signals over: a stop while starting is a clean exit.
    signal.signal(signal.SIGTERM, _stop_while_starting)
    threading.Thread(target=_stop_with_parent, name="clustertasks-parent", daemon=True).start()
    runtime = build(config)
    try:
        _run_server(config, runtime, [sock])
    finally:
        runtime.close()


def work(config: settings.Settings, announce: Callable[[str], None] = print) -> None:
    """A Temporal worker: run the operations' stages until SIGINT or SIGTERM; no HTTP."""
    temporal = config.engine.temporal
    if temporal is None:
        raise errors.ConfigurationError("a worker needs Temporal settings")
    from clustertasks.engine.temporal import worker as temporal_worker

    runtime = build(
        dataclasses.replace(config, engine=dataclasses.replace(config.engine, executor=False))
    )

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        announce(
            f"clustertasks worker on Temporal {temporal.address}, namespace "
            f"{temporal.namespace}, task queue {temporal.task_queue} (database "
            f"{redacted(config.storage.url)}; sim speed {config.sim.speed:g})"
        )
        await temporal_worker.work(
            temporal,
            runtime.database.tasks,
            catalog.registry(),
            runtime.cloud,
            stop,
            max_running_stages=config.engine.max_running_tasks,
            telemetry=runtime.telemetry.tasks(temporal_worker.EXECUTOR),
            reconcile_turn=runtime.database.turn_lock(temporal_worker.RECONCILE_TURN),
        )

    # What is built by now (modules, the runtime) lives as long as the process: out of the
    # collector's way, so that its full collections, which the tasks' garbage sets off,
    # scan only what came after (in bench/engine.py's Temporal runs, 2 of the 22 ms of CPU
    # a worker spent per task).
    gc.freeze()
    try:
        # On uvloop, as the API server runs: the worker's loop hands every activity and
        # every batch of the task store's writes on, and uvloop's costs less CPU.
        uvloop.run(main())
    finally:
        runtime.close()


def _refuse_open_auth_off(config: settings.Settings) -> None:
    if config.auth.enabled:
        return
    host = config.server.host
    try:
        loopback = host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise errors.ConfigurationError(
            f"--auth off accepts any signature; it is for local emulation only and refuses "
            f"to listen on {host}: bind to 127.0.0.1, ::1 or localhost"
        )


def _provision_keys(runtime: Runtime, announce: Callable[[str], None]) -> None:
    """The environment's admin key (CI), or a first key when the database has none."""
    auth = runtime.config.auth
    if not auth.enabled:
        announce(
            "authentication is OFF (--auth off): any well-formed signature is accepted, "
            "without checking it, its date or its nonce; for local emulation only"
        )
        return
    admin = admin_commands.key_admin(runtime.database)
    if auth.access_key_id is not None and auth.access_key_secret is not None:
        admin.ensure_admin(auth.access_key_id, auth.access_key_secret)
        announce(f"admin AccessKey {auth.access_key_id} set from CLUSTERTASKS_ACCESS_KEY_ID")
    first = admin.first_key()
    if first is None:
        return
    path = save_credentials(auth.credentials_file, first)
    # Printed once, here; the secret is never shown or logged again.
    announce("created the first AccessKey (role admin); its secret is shown this once:")
    announce(f"  access_key_id      {first.access_key_id}")
    announce(f"  access_key_secret  {first.secret}")
    announce(f"saved to {path} (mode 0600); make more with 'clustertasks keys create'")


def save_credentials(path: str, key: access.AccessKey) -> str:
    """Write the key to ``path``, readable by its owner only; returns the absolute path."""
    absolute = os.path.abspath(path)
    document = {
        "access_key_id": key.access_key_id,
        "access_key_secret": key.secret,
        "role": key.role.value,
    }
    try:
        # Created 0600 from the start, not chmod-ed after: no moment where others can read.
        fd = os.open(absolute, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file that already existed
        with os.fdopen(fd, "w") as file:
            json.dump(document, file, indent=2)
            file.write("\n")
    except OSError as exc:
        raise errors.ConfigurationError(
            f"cannot save the credentials to {absolute}: {exc}"
        ) from exc
    return absolute


def migrate(config: settings.Settings) -> None:
    database.Database.open(config.storage).close()


def redacted(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"
