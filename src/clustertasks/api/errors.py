"""From our error tree to ACK's error responses: one status table, one body shape.

Body: ``{"code", "message", "requestId", "status"}`` (XML ``<Error>`` with ``Code``,
``Message``, ``RequestId`` when XML was asked for); the gateway's own errors add its
``RequestId``, ``HostId``, ``Code``, ``Message`` and ``Recommend``. Never a stack trace.
"""

from __future__ import annotations

import logging
import random
import uuid
from urllib.parse import quote

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from clustertasks import errors
from clustertasks.api import render, xml

log = logging.getLogger("clustertasks.api")

REQUEST_ID_HEADER = "x-acs-request-id"

# Every class of the error tree, each mapped on purpose (tests/unit/test_error_statuses.py
# walks the tree and fails on a class missing here). A class outside the tree's module is
# looked up through its bases, nearest first.
STATUS: dict[type[errors.ClustertasksError], int] = {
    # the request is wrong
    errors.InvalidParameter: 400,
    errors.ClusterNameTaken: 400,
    errors.TaskNotSupported: 400,
    errors.QuotaExceeded: 400,
    errors.ResourceInUse: 400,
    errors.ClusterStateError: 400,
    errors.ClusterNameTaken: 400,
    errors.RequestTooLarge: 413,
    errors.ApiNotFound: 404,
    errors.MethodNotAllowed: 405,
    # the gateway: who is calling, may they, how often
    errors.AuthenticationError: 400,
    errors.IncompleteSignature: 400,
    errors.InvalidSignatureMethod: 400,
    errors.SignatureDoesNotMatch: 400,
    errors.AccessKeyNotFound: 404,
    errors.AccessKeyInactive: 400,
    errors.InvalidTimeStampFormat: 400,
    errors.TimeStampExpired: 400,
    errors.SignatureNonceUsed: 400,
    errors.Forbidden: 403,
    # the web console's sign-in and forms
    errors.SignInFailed: 401,
    errors.SignInRequired: 401,
    errors.CsrfTokenInvalid: 403,
    errors.Throttled: 429,
    errors.TooManyWaits: 429,
    # missing resources
    errors.NotFound: 404,
    errors.TaskNotFound: 404,
    errors.FaultNotFound: 404,
    errors.ClusterNotFound: 404,
    errors.NodePoolNotFound: 404,
    errors.NodeNotFound: 404,
    errors.AddonNotFound: 404,
    # the state does not allow it
    errors.Conflict: 409,
    errors.IllegalTransition: 409,
    errors.TaskConflict: 409,
    errors.IdempotentParameterMismatch: 409,
    errors.ClockNotManual: 409,
    errors.DuplicateTask: 409,
    errors.RowConflict: 409,
    # a cloud refused or failed an action a request asked for directly (they usually end a
    # task instead): the client's request cannot succeed as it is, so 400, never 5xx,
    # which clients such as Terraform retry until their timeout
    errors.PermanentError: 400,
    errors.StageTimeout: 400,
    errors.InstanceCreateFailed: 400,
    errors.NoStock: 400,
    errors.InstanceBootFailed: 400,
    errors.NodeJoinFailed: 400,
    errors.DrainTimeout: 400,
    errors.NodeUpgradeFailed: 400,
    errors.NodeRepairFailed: 400,
    errors.InstanceNotFound: 400,
    errors.InstanceNotFree: 400,
    errors.TooManyFailedNodes: 400,
    # ours, not the client's: try again later, or a fault of the server
    errors.TemporaryError: 503,
    errors.StorageUnavailable: 503,
    errors.Busy: 503,
    errors.ExecutorLocked: 503,
    errors.ConfigurationError: 500,
    errors.StorageError: 500,
    errors.ClustertasksError: 500,
}

GATEWAY_ERRORS: tuple[type[errors.ClustertasksError], ...] = (
    errors.AuthenticationError,
    errors.Forbidden,
    errors.Throttled,
    errors.ApiNotFound,
    errors.MethodNotAllowed,
    errors.RequestTooLarge,
)
"""Raised in front of the service, where ACK's API gateway answers: their bodies carry the
gateway's PascalCase keys too, which clients built on alibaba-cloud-sdk-go (the aliyun CLI)
read, beside the lowercase ones the Tea SDKs read."""
RECOMMEND_URL = "https://api.aliyun.com/troubleshoot?q={code}&product=CS&requestId={rid}"


def status_of(exc: errors.ClustertasksError) -> int:
    for cls in type(exc).__mro__:
        status = STATUS.get(cls)
        if status is not None:
            return status
    return 500


# Request ids need to be unique, not secret: a generator seeded once from the system's
# randomness (per process; each API worker process seeds its own). uuid4() reads
# os.urandom per call, a system call that also gives up the GIL, which under load cost more
# than the rest of a /healthz answer.
_request_ids = random.Random(uuid.uuid4().int)


_UUID4_CLEAR = ~((0xC000 << 48) | (0xF000 << 64))
_UUID4_SET = (0x8000 << 48) | (4 << 76)
"""The variant and version bits ``uuid.UUID(int=…, version=4)`` sets."""


def new_request_id() -> str:
    """An upper-case UUID version 4, as ACK's request ids are."""
    return uuid4_text(_request_ids.getrandbits(128))


def uuid4_text(bits: int) -> str:
    """``str(uuid.UUID(int=bits, version=4)).upper()``, without the UUID object (a third of
    the cost)."""
    text = "%032X" % ((bits & _UUID4_CLEAR) | _UUID4_SET)
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


def request_id(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    if rid is None:
        rid = new_request_id()
        request.state.request_id = rid
    return str(rid)


def error_response(
    request: Request, exc: errors.ClustertasksError, *, gateway: bool = False
) -> Response:
    """``gateway``: the gateway refused the request (also true of every class in
    ``GATEWAY_ERRORS``), so the JSON body carries both shapes."""
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
    payload: dict[str, object] = {
        "code": exc.code,
        "message": exc.message,
        "requestId": rid,
        "status": status,
    }
    if gateway or isinstance(exc, GATEWAY_ERRORS):
        payload.update(
            RequestId=rid,
            HostId=request.headers.get("host", ""),
            Code=exc.code,
            Message=exc.message,
            Recommend=RECOMMEND_URL.format(code=quote(exc.code), rid=rid),
        )
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
