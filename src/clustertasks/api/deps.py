"""What a route takes from the application: the services and the wire settings."""

from __future__ import annotations

from fastapi import Request

from clustertasks import settings
from clustertasks.api import services as api_services


def services(request: Request) -> api_services.Services:
    found: api_services.Services = request.app.state.services
    return found


def timezone(request: Request) -> str:
    wire: settings.WireSettings = request.app.state.wire_settings
    return wire.timezone
