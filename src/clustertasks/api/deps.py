"""What a route takes from the application: the services and the wire settings."""

from __future__ import annotations

from fastapi import Request

from clustertasks import settings
from clustertasks.service import container


def services(request: Request) -> container.Services:
    found: container.Services = request.app.state.services
    return found


def timezone(request: Request) -> str:
    wire: settings.WireSettings = request.app.state.wire_settings
    return wire.timezone
