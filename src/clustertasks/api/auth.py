"""Signed requests only: the gateway in front of every route but ``/healthz``.

Pure ASGI rather than a FastAPI dependency, for three reasons: the signature covers the raw,
still-encoded path and the exact body bytes, which only the ASGI scope and messages give;
an oversized body must be refused while it arrives, before it is read in full; and a refused
request must not reach a route at all. The body is buffered (at most ``max_body_bytes``) and
replayed to the application, which reads it as usual.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import anyio
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from clustertasks import errors
from clustertasks.api import admission
from clustertasks.api import errors as api_errors
from clustertasks.domain import access, signing
from clustertasks.observability import logs
from clustertasks.service import auth as auth_service

log = logging.getLogger("clustertasks.api")

STATE_PATH = "/_emulator/state"
"""Imports a state document, which may be far larger than any other request."""
UNAUTHENTICATED = frozenset({"/healthz", "/openapi.json"})
"""Liveness and documentation: nothing to protect, and probes and fuzzers need them."""
RETRY_AFTER_HEADER = "x-acs-retry-after"
MAX_HEADERS = 100
WAIT_THREADS = 2
"""Threads that check the signatures of long-polls and event streams where checks leave
the event loop (PostgreSQL; admission.py)."""
MAX_HEADER_BYTES = 32 * 1024
MAX_TARGET_BYTES = 32 * 1024
"""Path plus query; uvicorn refuses far longer request lines itself, the test client not."""
OPERATION_STATE = "clustertasks.operation"
"""Set in a scope's state: the operation its route names (None: no route matches)."""


class AuthMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        authenticator: auth_service.Authenticator,
        public: frozenset[str] = frozenset(),
    ) -> None:
        """``public``: paths answered without a signature beyond ``UNAUTHENTICATED``
        (``/metrics`` with ``serve --metrics-public``)."""
        self.app = app
        self.authenticator = authenticator
        self.unauthenticated = UNAUTHENTICATED | public
        self.max_body = authenticator.config.max_body_bytes
        self.max_state = max(authenticator.config.max_state_bytes, self.max_body)
        self._wait_limiter: anyio.CapacityLimiter | None = None

    def _wait_threads(self) -> anyio.CapacityLimiter:
        if self._wait_limiter is None:  # made on the event loop, at first use
            self._wait_limiter = anyio.CapacityLimiter(WAIT_THREADS)
        return self._wait_limiter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.unauthenticated:
            await self.app(scope, receive, send)
            return
        started_us = self.authenticator.now_us()
        key: access.AccessKey | None = None
        action: str | None = None
        try:
            _check_sizes(scope)
            body = await self._read_body(scope, receive)
            if body is None:
                return  # the client went away
            request = _http_request(scope, body)
            if self.authenticator.inline:
                key = await self.authenticator.authenticate_async(request)
            elif scope.get("state", {}).get(admission.WAIT_STATE):
                # Waits take their turn on threads of their own: however many arrive,
                # other requests find the shared threads (and the nonce store) free.
                key = await anyio.to_thread.run_sync(
                    self.authenticator.authenticate, request, limiter=self._wait_threads()
                )
            else:
                key = await run_in_threadpool(self.authenticator.authenticate, request)
            action = _action(scope)
            if action is not None:
                self.authenticator.authorize(key, action, scope["method"], scope["path"])
        except errors.ClustertasksError as exc:
            await _refuse(scope, receive, send, exc)
            if key is not None:  # known, then denied: worth an audit entry
                await self._audit(scope, started_us, key, action, _Outcome.of(exc))
            return
        except Exception as exc:  # a bug: an InternalError body, never a stack trace
            log.error("authenticating a request failed unexpectedly", exc_info=exc)
            await _refuse(scope, receive, send, errors.ClustertasksError())
            return
        scope.setdefault("state", {})["access_key_id"] = key.access_key_id
        logs.bind(access_key_id=key.access_key_id)
        if scope["method"] in access.READ_METHODS:
            await self.app(scope, _replay(body, receive), send)
            return
        outcome = _Outcome()
        try:
            await self.app(scope, _replay(body, receive), outcome.watching(send))
        finally:
            await self._audit(scope, started_us, key, action, outcome)

    async def _audit(
        self,
        scope: Scope,
        started_us: int,
        key: access.AccessKey,
        action: str | None,
        outcome: _Outcome,
    ) -> None:
        """Record a mutating request after it was answered; a failure here is logged, since
        the client already has its answer."""
        entry = access.AuditEntry(
            time_us=started_us,
            access_key_id=key.access_key_id,
            action=action or "",
            method=scope["method"],
            target=scope["path"],
            request_id=str(scope.get("state", {}).get("request_id", "")),
            status=outcome.status,
            outcome=outcome.code,
        )
        try:
            await run_in_threadpool(self.authenticator.audit, entry)
        except errors.ClustertasksError as exc:
            log.error("could not record request %s in the audit log: %s", entry.request_id, exc)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        limit = self.max_body
        if scope["method"] == "POST" and scope["path"] == STATE_PATH:
            limit = self.max_state  # a whole world and task history
        length = _header(scope, b"content-length")
        if length is not None:
            if not length.isdigit():
                raise errors.InvalidParameter("Content-Length", "must be a decimal integer")
            if int(length) > limit:
                raise _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            # A chunked body has no Content-Length: stop as soon as it passes the limit.
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


class _Outcome:
    """The status and error code a response was sent with, read as it goes out."""

    def __init__(self, status: int = 500, code: str = "InternalError") -> None:
        self.status = status
        self.code = code

    @classmethod
    def of(cls, exc: errors.ClustertasksError) -> _Outcome:
        return cls(api_errors.status_of(exc), exc.code)

    def watching(self, send: Send) -> Send:
        async def watched(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.status = int(message["status"])
                self.code = "" if self.status < 400 else f"HTTP{self.status}"
            elif message["type"] == "http.response.body" and self.code.startswith("HTTP"):
                self.code = _error_code(message.get("body", b"")) or self.code
            await send(message)

        return watched


def _error_code(body: bytes) -> str | None:
    """The ``code`` of an error body (JSON, or XML ``<Code>``); None when there is none."""
    try:
        document = json.loads(body)
    except ValueError:
        found = re.search(rb"<Code>([^<]{1,128})</Code>", body)
        return found.group(1).decode("utf-8", "replace") if found else None
    code = document.get("code") if isinstance(document, dict) else None
    return str(code) if code else None


def _too_large(limit: int) -> errors.RequestTooLarge:
    return errors.RequestTooLarge(f"The request body is larger than {limit} bytes.")


def _check_sizes(scope: Scope) -> None:
    headers = scope.get("headers", [])
    if len(headers) > MAX_HEADERS:
        raise errors.InvalidParameter("headers", f"more than {MAX_HEADERS} headers")
    if sum(len(name) + len(value) for name, value in headers) > MAX_HEADER_BYTES:
        raise errors.InvalidParameter("headers", f"larger than {MAX_HEADER_BYTES} bytes")
    target = len(scope.get("raw_path") or b"") + len(scope.get("query_string", b""))
    if target > MAX_TARGET_BYTES:
        raise errors.InvalidParameter("path", f"path and query exceed {MAX_TARGET_BYTES} bytes")


def _http_request(scope: Scope, body: bytes) -> signing.HttpRequest:
    # Latin-1 maps every byte to one character, so no header can fail to decode; a value
    # that is not what its client signed then simply fails the signature check.
    raw_path = scope.get("raw_path")
    path = raw_path.decode("latin-1") if raw_path else scope["path"]
    return signing.HttpRequest(
        method=scope["method"],
        path=path,
        query=scope.get("query_string", b"").decode("latin-1"),
        headers=tuple(
            (name.decode("latin-1").lower(), value.decode("latin-1"))
            for name, value in scope.get("headers", [])
        ),
        body=body,
    )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return str(value.decode("latin-1").strip())
    return None


def _action(scope: Scope) -> str | None:
    """The operation of the route this request will reach; None when none matches (the router
    then answers 404 or 405, which changes nothing). Found once per request, kept in its
    state (``OPERATION_STATE``) for the next asker; api/fastpath.py sets it beforehand."""
    state = scope.setdefault("state", {})
    if OPERATION_STATE in state:
        known: str | None = state[OPERATION_STATE]
        return known
    found: str | None = None
    for route in _operations(scope.get("app")):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            found = str(route.operation_id)
            break
    state[OPERATION_STATE] = found
    return found


def _operations(app: object) -> list[Any]:
    """Every route that names an operation, however deeply its router was included (FastAPI
    wraps included routers, so ``app.routes`` alone does not reach them)."""
    cached = getattr(getattr(app, "state", None), "auth_operations", None)
    if cached is not None:
        return list(cached)
    found: list[Any] = []
    pending: list[Any] = list(getattr(getattr(app, "router", None), "routes", ()))
    while pending:
        route = pending.pop(0)
        if getattr(route, "operation_id", None) and hasattr(route, "matches"):
            found.append(route)
        inner = getattr(route, "original_router", None) or route
        pending.extend(r for r in getattr(inner, "routes", ()) if r is not route)
    state = getattr(app, "state", None)
    if state is not None:
        state.auth_operations = found
    return found


def _replay(body: bytes, receive: Receive) -> Receive:
    return replaying({"type": "http.request", "body": body, "more_body": False}, receive)


def replaying(message: Message, receive: Receive) -> Receive:
    """``receive`` that first gives ``message`` (a request body read already) again."""
    given = False

    async def replayed() -> Message:
        nonlocal given
        if not given:
            given = True
            return message
        return await receive()

    return replayed


async def _refuse(
    scope: Scope, receive: Receive, send: Send, exc: errors.ClustertasksError
) -> None:
    response = api_errors.error_response(Request(scope), exc, gateway=True)
    if isinstance(exc, errors.Throttled):
        # Milliseconds: the official SDK's retry policy sleeps this many ms.
        response.headers[RETRY_AFTER_HEADER] = str(exc.retry_after_ms)
    if api_errors.status_of(exc) >= 500:
        log.error("request %s refused with %s", api_errors.request_id(Request(scope)), exc.code)
    await response(scope, receive, send)


# For the metrics middleware (api/observe.py): the same view of a request and its answer.
operation_of = _action
Outcome = _Outcome
# For api/fastpath.py: a refusal answered as this middleware answers it.
refuse = _refuse
