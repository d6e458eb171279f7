"""From our error tree to ACK's error responses: one status table, one body shape.

Body: ``{"code", "message", "requestId", "status"}`` (XML ``<Error>`` with ``Code``,
``Message``, ``RequestId`` when XML was asked for). Never a stack trace.
"""

from __future__ import annotations

import logging
import uuid

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from clustertasks import errors
from clustertasks.api import render, xml

log = logging.getLogger("clustertasks.api")

REQUEST_ID_HEADER = "x-acs-request-id"

# Most specific class first; the first match decides the status.
STATUS: tuple[tuple[type[errors.ClustertasksError], int], ...] = (
    (errors.InvalidParameter, 400),
    (errors.TaskNotSupported, 400),
    (errors.QuotaExceeded, 400),
    (errors.ResourceInUse, 400),
    (errors.AccessKeyNotFound, 404),
    (errors.AuthenticationError, 400),
    (errors.Forbidden, 403),
    (errors.Throttled, 429),
    (errors.RequestTooLarge, 413),
    (errors.ApiNotFound, 404),
    (errors.MethodNotAllowed, 405),
    (errors.NotFound, 404),
    (errors.Conflict, 409),
    (errors.StorageUnavailable, 503),
    (errors.Busy, 503),
    (errors.ClustertasksError, 500),
)


def status_of(exc: errors.ClustertasksError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def new_request_id() -> str:
    return str(uuid.uuid4()).upper()


def request_id(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    if rid is None:
        rid = new_request_id()
        request.state.request_id = rid
    return str(rid)


def error_response(request: Request, exc: errors.ClustertasksError) -> Response:
    status = status_of(exc)
    rid = request_id(request)
    headers = {REQUEST_ID_HEADER: rid}
    try:
        as_xml = render.wants_xml(request)
    except errors.InvalidParameter:
        as_xml = False
    if as_xml:
        body = xml.render("Error", {"Code": exc.code, "Message": exc.message, "RequestId": rid})
        # The SDK's XML error parser recognises exactly this content type.
        return Response(body, status, headers=headers, media_type="text/xml;charset=utf-8")
    payload = {"code": exc.code, "message": exc.message, "requestId": rid, "status": status}
    return Response(render.dumps(payload), status, headers=headers, media_type=render.JSON_TYPE)


async def _on_our_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, errors.ClustertasksError)
    if status_of(exc) >= 500:
        log.error("request %s failed: %s", request_id(request), exc, exc_info=exc)
    return error_response(request, exc)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    ours: errors.ClustertasksError
    if exc.status_code == 404:
        ours = errors.ApiNotFound(
            f"The specified API {request.method} {request.url.path} does not exist."
        )
    elif exc.status_code == 405:
        ours = errors.MethodNotAllowed(
            f"The HTTP method {request.method} is not supported for {request.url.path}."
        )
    else:
        ours = errors.InvalidParameter("request", str(exc.detail))
    return error_response(request, ours)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    location = [str(part) for part in first.get("loc", ()) if part not in ("query", "path")]
    field = ".".join(location) or "request"
    kind = str(first.get("type", ""))
    if kind.startswith(("int_", "float_")):
        problem = f"must be an integer, got {first.get('input')!r}"
    elif kind == "missing":
        problem = "is required"
    else:
        problem = str(first.get("msg", "is malformed"))
    return error_response(request, errors.InvalidParameter(field, problem))


async def _on_unexpected(request: Request, exc: Exception) -> Response:
    log.error("request %s failed unexpectedly", request_id(request), exc_info=exc)
    return error_response(request, errors.ClustertasksError())


def install(app: FastAPI) -> None:
    app.add_exception_handler(errors.ClustertasksError, _on_our_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected)
