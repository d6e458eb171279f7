"""Composition root: settings -> store -> cloud -> services -> engine -> app -> server."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from types import FrameType
from typing import Any

import uvicorn

from clustertasks import clock, settings
from clustertasks.api import app as api_app
from clustertasks.domain import ids
from clustertasks.engine import executor
from clustertasks.operations import catalog
from clustertasks.providers.sim import cloud as sim_cloud
from clustertasks.service import container
from clustertasks.storage import store

log = logging.getLogger("clustertasks")


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after a graceful shutdown, which makes the process
    die by that signal. A requested stop that completed is a success: exit status 0."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


@dataclass
class Runtime:
    """Everything a running server is made of."""

    config: settings.Settings
    task_store: store.TaskStore
    cloud: sim_cloud.SimCloud
    services: container.Services
    executor: executor.LocalExecutor | None

    def close(self) -> None:
        self.task_store.close()


def build(config: settings.Settings) -> Runtime:
    task_store = store.TaskStore.open(config.storage)
    try:
        time = clock.SystemClock()
        world_store = task_store.world_store()
        id_generator: ids.IdGenerator = ids.IdGenerator()
        if config.sim.seed is not None:
            issued = {"task": task_store.count_tasks(), **world_store.count_all()}
            id_generator = ids.SeededIds(config.sim.seed, issued)
        cloud = sim_cloud.SimCloud(world_store, config.sim, time)
        registry = catalog.registry()
        services = container.Services.build(
            task_store, registry, cloud, time=time, id_generator=id_generator
        )
        runner = None
        if config.engine.executor:
            runner = executor.LocalExecutor(
                task_store,
                registry,
                cloud,
                time=time,
                max_running_tasks=config.engine.max_running_tasks,
            )
            runner.claim()
            services.control.notify = runner.wake
    except BaseException:
        task_store.close()
        raise
    return Runtime(config, task_store, cloud, services, runner)


def create_app(runtime: Runtime) -> Any:
    @contextlib.asynccontextmanager
    async def lifespan(_app: Any) -> AsyncIterator[None]:
        if runtime.executor is not None:
            await runtime.executor.start()
        try:
            yield
        finally:
            if runtime.executor is not None:
                # Running tasks stop where they stand and continue at the next start.
                await runtime.executor.stop()

    return api_app.create_app(runtime.services, runtime.config.wire, lifespan=lifespan)


def serve(config: settings.Settings, announce: Callable[[str], None] = print) -> None:
    """Run the API and the executor until SIGINT or SIGTERM, then close cleanly."""
    runtime = build(config)
    try:
        server = _Server(
            uvicorn.Config(
                create_app(runtime),
                host=config.server.host,
                port=config.server.port,
                log_level=config.server.log_level,
                access_log=config.server.log_level == "debug",
                server_header=False,
                proxy_headers=False,
                lifespan="on",
            )
        )
        mode = "running tasks" if runtime.executor is not None else "API only, no executor"
        announce(
            f"clustertasks listening on http://{config.server.host}:{config.server.port} "
            f"(database {redacted(config.storage.url)}; {mode}; sim speed {config.sim.speed:g})"
        )
        server.run()
    finally:
        runtime.close()


def migrate(config: settings.Settings) -> None:
    store.TaskStore.open(config.storage).close()


def redacted(url: str) -> str:
    """The URL without its password, for logs."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"
