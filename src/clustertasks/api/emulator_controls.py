"""The emulator's controls (admin only, like every ``/_emulator/`` route).

- ``GET /_emulator/clock``: ``{mode, speed, now, waiting}``; ``POST /_emulator/clock``
  ``{"mode", "speed"?}`` switches the mode; ``POST /_emulator/clock/advance``
  ``{"seconds"}`` moves a manual clock (409 ``IncorrectClockMode`` in the other modes).
- ``POST /_emulator/faults`` adds a fault rule and answers with it; ``GET`` lists them;
  ``DELETE /_emulator/faults/{fault_id}`` removes one, ``DELETE /_emulator/faults`` all.

See docs/emulator.md.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from clustertasks.api import body, deps, render
from clustertasks.api import errors as api_errors
from clustertasks.domain import emulator

router = APIRouter(prefix="/_emulator", tags=["emulator"])


def _clock(request: Request, operation: str, view: emulator.ClockView) -> Response:
    document: dict[str, Any] = emulator.clock_document(view)
    document["request_id"] = api_errors.request_id(request)
    return render.document(request, operation, document)


@router.get("/clock", operation_id="EmulatorDescribeClock")
def describe_clock(request: Request) -> Response:
    return _clock(request, "DescribeClock", deps.services(request).emulator.clock.view())


@router.post("/clock", operation_id="EmulatorSetClock")
async def set_clock(request: Request) -> Response:
    document = await body.json_object(request)
    view = await run_in_threadpool(deps.services(request).emulator.clock.set, document)
    return _clock(request, "SetClock", view)


@router.post("/clock/advance", operation_id="EmulatorAdvanceClock")
async def advance_clock(request: Request) -> Response:
    document = await body.json_object(request)
    view = await run_in_threadpool(deps.services(request).emulator.clock.advance, document)
    return _clock(request, "AdvanceClock", view)


@router.post("/faults", operation_id="EmulatorAddFaultRule")
async def add_fault(request: Request) -> Response:
    document = await body.json_object(request)
    rule = await run_in_threadpool(deps.services(request).emulator.faults.add, document)
    answer = {**emulator.fault_document(rule), "request_id": api_errors.request_id(request)}
    return render.document(request, "AddFaultRule", answer)


@router.get("/faults", operation_id="EmulatorListFaultRules")
def list_faults(request: Request) -> Response:
    rules = deps.services(request).emulator.faults.rules()
    answer = {
        "faults": [emulator.fault_document(rule) for rule in rules],
        "request_id": api_errors.request_id(request),
    }
    return render.document(request, "ListFaultRules", answer)


@router.delete("/faults/{fault_id}", operation_id="EmulatorDeleteFaultRule")
def delete_fault(request: Request, fault_id: str) -> Response:
    deps.services(request).emulator.faults.remove(fault_id)
    answer = {"fault_id": fault_id, "request_id": api_errors.request_id(request)}
    return render.document(request, "DeleteFaultRule", answer)


@router.delete("/faults", operation_id="EmulatorDeleteFaultRules")
def delete_faults(request: Request) -> Response:
    removed = deps.services(request).emulator.faults.clear()
    answer = {"removed": removed, "request_id": api_errors.request_id(request)}
    return render.document(request, "DeleteFaultRules", answer)
