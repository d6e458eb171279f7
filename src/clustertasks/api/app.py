"""The ASGI application."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI

from clustertasks import __version__, settings
from clustertasks.api import (
    addons,
    admission,
    auth,
    cloud,
    cluster_settings,
    emulator,
    emulator_controls,
    emulator_state,
    errors,
    events,
    health,
    metrics,
    middleware,
    nodes,
    observe,
    streams,
    tasks,
)
from clustertasks.api import services as api_services
from clustertasks.observability import telemetry as observed
from clustertasks.service import auth as auth_service


def create_app(
    services: api_services.Services,
    wire: settings.WireSettings,
    lifespan: Any = None,
    *,
    authenticator: auth_service.Authenticator,
    telemetry: observed.Telemetry | None = None,
    metrics_public: bool = False,
) -> FastAPI:
    """The API; every route but /healthz and /openapi.json answers signed requests only
    (and /metrics too with ``metrics_public``)."""
    telemetry = telemetry or observed.Telemetry()
    app = FastAPI(
        lifespan=_ending_waits(services, lifespan),
        title="clustertasks",
        version=__version__,
        description=(
            "An Alibaba Cloud ACK-compatible task API (product CS, version 2015-12-15): "
            "DescribeTaskInfo, DescribeClusterTasks and the operations that create tasks."
        ),
        # ACK has no redirects: /tasks/ must not become a 307 to /tasks.
        redirect_slashes=False,
        docs_url=None,
        redoc_url=None,
    )
    app.state.services = services
    app.state.wire_settings = wire
    app.state.telemetry = telemetry
    app.state.documents = services.documents
    errors.install(app)
    # Added first, so it runs inside RequestIdMiddleware: refusals carry a request id too.
    app.add_middleware(
        auth.AuthMiddleware,
        authenticator=authenticator,
        public=frozenset({metrics.PATH}) if metrics_public else frozenset(),
    )
    # Outside the signature check: a wait over the caps is refused before any work.
    app.add_middleware(admission.WaitAdmission, config=services.changes.config)
    # Outside both: it sees the request id, and counts refused requests too.
    app.add_middleware(observe.ObserveMiddleware, telemetry=telemetry)
    app.add_middleware(middleware.RequestIdMiddleware)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(tasks.router)
    app.include_router(streams.router)
    app.include_router(cloud.router)
    app.include_router(nodes.router)
    app.include_router(cluster_settings.router)
    app.include_router(addons.router)
    app.include_router(events.router)
    app.include_router(emulator.router)
    app.include_router(emulator_controls.router)
    app.include_router(emulator_state.router)
    return app


def _ending_waits(services: api_services.Services, lifespan: Any) -> Any:
    """``lifespan``, then end whatever still waits for a task to change (long-polls, event
    streams): the application is going away."""

    @contextlib.asynccontextmanager
    async def wrapped(app: FastAPI) -> AsyncIterator[None]:
        try:
            if lifespan is None:
                yield
            else:
                async with lifespan(app):
                    yield
        finally:
            services.changes.close()

    return wrapped
