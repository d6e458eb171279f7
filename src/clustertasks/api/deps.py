"""What a route takes from the application: the services and the wire settings."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from clustertasks import settings
from clustertasks.api import services as api_services


def services(request: Request) -> api_services.Services:
    found: api_services.Services = request.app.state.services
    return found


T = TypeVar("T")


async def short_call(request: Request, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a short, blocking store call: right here on a local SQLite file, in a thread
    where the database is across a network."""
    if services(request).inline:
        return fn(*args, **kwargs)
    return await run_in_threadpool(functools.partial(fn, *args, **kwargs))


def timezone(request: Request) -> str:
    wire: settings.WireSettings = request.app.state.wire_settings
    return wire.timezone
