"""The emulator's clean slate and snapshots (admin AccessKeys only, like all of ``/_emulator``).

- ``POST /_emulator/reset``: empty the world and the task history (unfinished tasks are
  stopped first); AccessKeys stay. Answers ``{"request_id", "tasks_canceled",
  "tasks_deleted", "clusters_deleted"}``.
- ``GET /_emulator/state``: the whole state as one JSON document, ``{"format":
  "clustertasks-state", "version": 1, "exported_at", "tables": {name: [row, …]}}``.
- ``POST /_emulator/state``: replace the state by such a document (reset first). Answers
  the reset's counts plus ``"imported": {table: rows}``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from clustertasks import errors
from clustertasks.api import deps, render
from clustertasks.api import errors as api_errors
from clustertasks.domain import json_text
from clustertasks.emulator import state as emulator_state

router = APIRouter(prefix="/_emulator", tags=["emulator"])


def _state(request: Request) -> emulator_state.EmulatorState:
    return deps.services(request).emulator.state


def _removed(outcome: emulator_state.ResetOutcome) -> dict[str, int]:
    return {
        "tasks_canceled": outcome.tasks_canceled,
        "tasks_deleted": outcome.tasks_deleted,
        "clusters_deleted": outcome.clusters_deleted,
    }


@router.post("/reset", operation_id="EmulatorReset")
async def reset(request: Request) -> Response:
    outcome = await _state(request).reset()
    return render.document(
        request, "Reset", {"request_id": api_errors.request_id(request), **_removed(outcome)}
    )


@router.get("/state", operation_id="EmulatorExportState")
async def export_state(request: Request) -> Response:
    if render.wants_xml(request):
        raise errors.InvalidParameter("format", "the state document is JSON only")
    document = await run_in_threadpool(_state(request).export)
    body = await run_in_threadpool(render.dumps, document)
    return Response(body, 200, media_type=render.JSON_TYPE)


@router.post("/state", operation_id="EmulatorImportState")
async def import_state(request: Request) -> Response:
    raw = await request.body()
    document = await run_in_threadpool(_parse, raw)
    outcome = await _state(request).restore(document)
    return render.document(
        request,
        "ImportState",
        {
            "request_id": api_errors.request_id(request),
            **_removed(outcome.removed),
            "imported": dict(outcome.imported),
        },
    )


def _parse(raw: bytes) -> Mapping[str, Any]:
    """The body as a JSON object; NaN and Infinity are not JSON and no column takes them."""

    def refuse(constant: str) -> Any:
        raise errors.InvalidParameter("body", f"is not valid JSON: {constant} is not allowed")

    if not raw.strip():
        raise errors.InvalidParameter("body", "must be a state document (it is empty)")
    value = json_text.parse(raw, parse_constant=refuse)
    if not isinstance(value, dict):
        raise errors.InvalidParameter("body", "must be a JSON object")
    return value
