"""DescribeTaskInfo below the framework's routing: the hot read, same answer, fewer steps.

A poll of one task (``GET /tasks/{task_id}`` without ``wait``) is most of what a busy
server answers, and FastAPI's way to it cost more than the answer: the router matches the
path against every route, its request handler solves the route's parameters, and the
metrics middleware and the signature check each matched the route again to name the
operation. ``FastPath`` wraps the API application and knows such a request from its method
and path alone. Every other request (other paths and methods, ``HEAD``, long-polls, event
streams, lifespan) goes to the application unchanged.

Two ways down, one answer:

* the plain read — no query, no ``If-None-Match``, no XML asked for, no body, a signature
  that holds (or ``--auth off``), tracing off, store calls on the event loop (SQLite) — is
  answered by ``_Express``: the middlewares' work as plain calls in one coroutine, the
  headers read once, and the response sent as one ``http.response.start`` and one
  ``http.response.body`` with its headers built directly;
* anything else, and any request ``_Express`` finds unusual before it has changed
  anything (a refused signature, an unknown or disabled key, a stale date, a body…), goes
  to the very parts the application would use, in the same order — the server-error
  handler, the API's own middlewares (built from the application's list: request id,
  metrics, wait admission, signature check), the exception handlers and the route function
  ``tasks.describe_task_info`` — with the operation named in advance and without the
  router.

Once ``_Express`` spends something (a token of the key's rate, its nonce, a poll of the
task) it answers the request itself whatever happens, refusals and errors through the same
functions the middlewares and exception handlers use. tests/integration/test_fast_path.py
holds the two to the same bytes, metrics and log lines.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from starlette.middleware.errors import ServerErrorMiddleware
from starlette.middleware.exceptions import ExceptionMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from clustertasks import errors
from clustertasks.api import (
    admission,
    auth,
    conditional,
    documents,
    middleware,
    observe,
    protocol,
    render,
    tasks,
)
from clustertasks.api import errors as api_errors
from clustertasks.api import services as api_services
from clustertasks.domain import signing
from clustertasks.observability import logs
from clustertasks.service import auth as auth_service

log = logging.getLogger("clustertasks.api")

_CONTENT_TYPE = (b"content-type", render.JSON_TYPE.encode())
_REQUEST_ID = api_errors.REQUEST_ID_HEADER.encode()
_MIDDLEWARES = (
    middleware.RequestIdMiddleware,
    observe.ObserveMiddleware,
    admission.WaitAdmission,
    auth.AuthMiddleware,
)
"""The application's middlewares, outermost first, as ``_Express`` repeats them."""


class FastPath:
    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._stack: ASGIApp | None = None
        self._express: _Express | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            task_id = describe_target(scope)
            if task_id is not None and not admission.is_wait(scope):
                # What Starlette's application and router would have put in the scope.
                scope["app"] = self.app
                scope["path_params"] = {"task_id": task_id}
                scope.setdefault("state", {})[auth.OPERATION_STATE] = tasks.DESCRIBE_TASK_INFO
                stack = self._stack or self._build()
                express = self._express
                if express is not None and express.usable():
                    taken = await express(scope, receive, send, task_id)
                    if taken is None:
                        return
                    receive = taken
                await stack(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _build(self) -> ASGIApp:
        """The application's middleware stack as Starlette builds it (at the first request,
        when every middleware and handler is in), with the route function in place of the
        router."""
        handlers = dict(self.app.exception_handlers)
        on_error = handlers.pop(Exception, None) or handlers.pop(500, None)
        stack: ASGIApp = ExceptionMiddleware(_describe, handlers=handlers)
        for cls, args, kwargs in reversed(self.app.user_middleware):
            stack = cls(stack, *args, **kwargs)
        self._stack = ServerErrorMiddleware(stack, handler=on_error)
        self._express = _Express.of(self.app, self._stack, handlers, on_error)
        return self._stack


def describe_target(scope: Scope) -> str | None:
    """The task id of a request FastAPI's router would hand to DescribeTaskInfo (its path
    is ``/tasks/`` and one non-empty segment), else None."""
    path: str = scope["path"]
    if scope.get("root_path") or not path.startswith(tasks.TASK_PREFIX):
        return None
    task_id = path[len(tasks.TASK_PREFIX) :]
    if not task_id or "/" in task_id:
        return None
    return task_id


async def _describe(scope: Scope, receive: Receive, send: Send) -> None:
    response = await tasks.describe_task_info(Request(scope, receive))
    await response(scope, receive, send)


Handler = Callable[[Request, Exception], Any]


class _Express:
    """A plain, signed DescribeTaskInfo answered in one coroutine: request id, metrics and
    access log (``ObserveMiddleware``), the signature, rate and nonce (``AuthMiddleware``),
    the route function's reads (``tasks.plain_document``) and the response."""

    def __init__(
        self,
        app: FastAPI,
        observer: observe.ObserveMiddleware,
        gate: auth.AuthMiddleware,
        handlers: dict[Any, Handler],
        on_error: Handler,
    ) -> None:
        self.observer = observer
        self.authenticator: auth_service.Authenticator = gate.authenticator
        self.services: api_services.Services = app.state.services
        self.kept: documents.Documents = app.state.documents
        self.tz: str = app.state.wire_settings.timezone
        self.handlers = handlers
        self.on_error = on_error
        self.in_flight = observer.in_flight(tasks.DESCRIBE_TASK_INFO)
        self.unauthenticated = gate.unauthenticated

    @classmethod
    def of(
        cls,
        app: FastAPI,
        stack: ASGIApp,
        handlers: dict[Any, Handler],
        on_error: Handler | None,
    ) -> _Express | None:
        """The express way of an application whose middlewares are exactly the API's own
        and which handles every error (None for any other: the stack alone answers)."""
        layers: list[Any] = []
        layer: Any = getattr(stack, "app", None)
        while layer is not None and not isinstance(layer, ExceptionMiddleware):
            layers.append(layer)
            layer = getattr(layer, "app", None)
        if tuple(type(found) for found in layers) != _MIDDLEWARES or on_error is None:
            return None
        return cls(app, layers[1], layers[3], handlers, on_error)

    def usable(self) -> bool:
        """Whether this server's requests may take the express way now: checks and reads
        on the event loop, and no span to make."""
        return (
            self.authenticator.inline and self.services.inline and not self.observer.tracing.enabled
        )

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, task_id: str
    ) -> Receive | None:
        """Answer the request; or, when it is not a plain signed read, change nothing and
        return the ``receive`` the application is to read it from."""
        if scope.get("query_string") or scope["path"] in self.unauthenticated:
            return receive
        request = _plain_request(scope)
        if request is None:
            return receive
        message = await receive()
        replay = auth.replaying(message, receive)
        if message["type"] != "http.request" or message.get("body") or message.get("more_body"):
            return replay
        try:
            checked = self.authenticator.verified(request, remembered=True)
            self.authenticator.authorize(
                checked.key, tasks.DESCRIBE_TASK_INFO, "GET", scope["path"]
            )
        except Exception:  # noqa: BLE001 - refused, or a fault: the application answers it
            return replay
        await self._answer(scope, receive, send, task_id, checked)
        return None

    async def _answer(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        task_id: str,
        checked: auth_service.Checked,
    ) -> None:
        state = scope["state"]
        rid = str(state.setdefault("request_id", api_errors.new_request_id()))
        started = time.perf_counter()
        self.in_flight.inc()
        bound = logs.enter_request(rid)
        outcome = auth.Outcome()
        unexpected: Exception | None = None
        try:
            try:
                key = await self.authenticator.admit(checked)
                if key is not checked.key:  # changed meanwhile: its role may have
                    self.authenticator.authorize(
                        key, tasks.DESCRIBE_TASK_INFO, "GET", scope["path"]
                    )
            except errors.ClustertasksError as exc:
                await auth.refuse(scope, receive, _watched(outcome, send, rid), exc)
                return
            except Exception as exc:  # a bug: an InternalError body, never a stack trace
                log.error("authenticating a request failed unexpectedly", exc_info=exc)
                await auth.refuse(
                    scope, receive, _watched(outcome, send, rid), errors.ClustertasksError()
                )
                return
            state["access_key_id"] = key.access_key_id
            logs.bind(access_key_id=key.access_key_id)
            try:
                document, stamp = tasks.plain_document(self.services, self.kept, task_id, self.tz)
            except Exception as exc:  # noqa: BLE001 - handled as the exception handlers do
                handler = _handler(self.handlers, exc)
                if handler is None:
                    unexpected = exc
                    return
                response = await handler(Request(scope, receive), exc)
                await response(scope, receive, _watched(outcome, send, rid))
                return
            body = documents.with_request_id(document, rid)
            headers = [
                (b"content-length", b"%d" % len(body)),
                _CONTENT_TYPE,
                (b"etag", conditional.etag(*tasks.stamp_tag(stamp, "json")).encode()),
                (b"x-clustertasks-task-version", b"%d" % stamp.version),
                (_REQUEST_ID, rid.encode()),
            ]
            outcome.status, outcome.code = 200, ""
            if not protocol.respond(send, 200, headers, body):
                await send({"type": "http.response.start", "status": 200, "headers": headers})
                await send({"type": "http.response.body", "body": body})
        finally:
            self.in_flight.dec()
            self.observer.answered(
                scope,
                tasks.DESCRIBE_TASK_INFO,
                outcome.status,
                outcome.code,
                str(state.get("access_key_id", "")),
                started,
            )
            logs.leave(bound)
        if unexpected is not None:
            # Starlette's server-error handler: answer with the 500 handler, raise again.
            response = await self.on_error(Request(scope), unexpected)
            await response(scope, receive, send)
            raise unexpected


def _handler(handlers: dict[Any, Handler], exc: Exception) -> Handler | None:
    """The exception handler Starlette's ``ExceptionMiddleware`` would pick."""
    for cls in type(exc).__mro__:
        if cls in handlers:
            return handlers[cls]
    return None


def _watched(outcome: auth.Outcome, send: Send, request_id: str) -> Send:
    """``send`` as the metrics middleware hands it on: the status and code noted, the
    request id added."""
    return outcome.watching(middleware.sending_id(send, request_id))


def _plain_request(scope: Scope) -> signing.HttpRequest | None:
    """The request to check the signature of, with its headers read once; None when a
    header asks for more than the plain read (``If-None-Match``, an XML ``Accept``, a
    body), is repeated, or the request passes a size limit (the signature check refuses
    it)."""
    headers: list[tuple[str, str]] = []
    values: dict[str, str] = {}
    size = 0
    for raw_name, raw_value in scope["headers"]:
        size += len(raw_name) + len(raw_value)
        name = raw_name.decode("latin-1").lower()
        value = raw_value.decode("latin-1")
        if name in _NOT_PLAIN:
            if name == "accept":
                if "xml" in value.lower():
                    return None
            elif name != "content-length" or value.strip() != "0":
                return None
        if name in values:
            return None  # a repeated header: the signature check's own way with it
        values[name] = value.strip()
        headers.append((name, value))
    if len(headers) > auth.MAX_HEADERS or size > auth.MAX_HEADER_BYTES:
        return None
    raw_path: bytes | None = scope.get("raw_path")
    if raw_path is not None and len(raw_path) > auth.MAX_TARGET_BYTES:
        return None
    path = raw_path.decode("latin-1") if raw_path else scope["path"]
    return signing.received("GET", path, "", tuple(headers), values)


_NOT_PLAIN = frozenset({"if-none-match", "accept", "content-length", "transfer-encoding"})
"""Headers whose presence (an XML ``Accept``; a ``Content-Length`` but 0) may change the
answer: such requests go down the application's way."""
