"""Composition root: settings -> store -> services -> app -> server."""

from __future__ import annotations

import logging
from collections.abc import Callable
from types import FrameType

import uvicorn
from fastapi import FastAPI

from clustertasks import settings
from clustertasks.api import app as api_app
from clustertasks.service import container
from clustertasks.storage import store

log = logging.getLogger("clustertasks")


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM/SIGINT after a graceful shutdown, which makes the process
    die by that signal. A requested stop that completed is a success: exit status 0."""

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self._captured_signals.clear()


def build_services(config: settings.Settings) -> container.Services:
    return container.Services.build(store.TaskStore.open(config.storage))


def build_app(config: settings.Settings, services: container.Services) -> FastAPI:
    return api_app.create_app(services, config.wire)


def serve(config: settings.Settings, announce: Callable[[str], None] = print) -> None:
    """Run the API until SIGINT or SIGTERM, then close the database cleanly."""
    services = build_services(config)
    try:
        app = build_app(config, services)
        server = _Server(
            uvicorn.Config(
                app,
                host=config.server.host,
                port=config.server.port,
                log_level=config.server.log_level,
                access_log=config.server.log_level == "debug",
                server_header=False,
                proxy_headers=False,
                lifespan="off",
            )
        )
        announce(
            f"clustertasks listening on http://{config.server.host}:{config.server.port} "
            f"(database {redacted(config.storage.url)})"
        )
        server.run()
    finally:
        services.task_store.close()


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
