"""Liveness for load balancers and scripts; needs no signature."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from clustertasks import __version__
from clustertasks.api import deps, render

router = APIRouter(tags=["health"])


@router.get(
    "/healthz", operation_id="Healthz", summary="Whether the server and its database answer"
)
async def healthz(request: Request) -> Response:
    ok = await deps.short_call(request, deps.services(request).healthy)
    body = {"status": "ok" if ok else "unavailable", "database": ok, "version": __version__}
    return Response(render.dumps(body), 200 if ok else 503, media_type=render.JSON_TYPE)
