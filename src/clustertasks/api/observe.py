"""Each request measured, traced and logged: the API's one hook into ``observability``.

Pure ASGI, placed inside ``RequestIdMiddleware`` (the request id is known) and outside the
signature check (refused requests are counted too). The operation is the route's
``operation_id`` (``DescribeTaskInfo``…), never the raw path, so label values stay few.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from clustertasks import errors
from clustertasks.api import auth
from clustertasks.observability import logs, metrics, telemetry, tracing

log = logging.getLogger("clustertasks.api")

UNMATCHED = "Unmatched"
"""The operation of a request that reaches no route (a 404 or 405)."""

_AUTH_FAILURES = frozenset(
    {errors.AuthenticationError.code}
    | {cls.code for cls in errors.AuthenticationError.__subclasses__()}
    | {errors.Forbidden.code}
)
_THROTTLING = frozenset({errors.Throttled.code, errors.Busy.code})


class ObserveMiddleware:
    def __init__(self, app: ASGIApp, telemetry: telemetry.Telemetry) -> None:
        self.app = app
        self.metrics = telemetry.metrics
        self.tracing = telemetry.tracing
        self.in_flight = metrics.Children(self.metrics.api_in_flight)
        self._durations = metrics.Children(self.metrics.api_duration)
        self._answered = metrics.Children(self.metrics.api_requests)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        request_id = str(state.get("request_id", ""))
        operation = auth.operation_of(scope) or UNMATCHED
        outcome = auth.Outcome()
        in_flight = self.in_flight(operation)
        in_flight.inc()
        with (
            logs.bound(request_id=request_id, access_key_id=None, task_id=None, stage=None),
            self._span(scope, operation, request_id) as span,
        ):
            try:
                await self.app(scope, receive, outcome.watching(send))
            finally:
                in_flight.dec()
                key = str(state.get("access_key_id", ""))
                status, code = outcome.status, outcome.code
                self.answered(scope, operation, status, code, key, started)
                if span is not None:
                    task_id = scope.get("path_params", {}).get("task_id")
                    span.set_attribute("http.response.status_code", status)
                    if key:
                        span.set_attribute("clustertasks.access_key_id", key)
                    if task_id:
                        span.set_attribute("clustertasks.task_id", str(task_id))
                    if status >= 400:
                        tracing.mark_error(span, code, f"HTTP {status}")

    def answered(
        self, scope: Scope, operation: str, status: int, code: str, key: str, started: float
    ) -> None:
        """Count, time and log an answered request (``started``: its ``perf_counter()``);
        api/fastpath.py records its answers here too."""
        self._answered(operation, str(status), code, key).inc()
        seconds = time.perf_counter() - started
        self._durations(operation).observe(seconds)
        # Refusals and errors are worth a line; every answer is at debug.
        log.log(
            logging.INFO if status >= 400 else logging.DEBUG,
            "%s %s %s -> %d %s in %.3fs",
            operation,
            scope["method"],
            scope["path"],
            status,
            code,
            seconds,
        )
        if code in _AUTH_FAILURES:
            self.metrics.auth_failures.labels(code).inc()
        elif code in _THROTTLING:
            self.metrics.throttled.labels(code).inc()

    def _span(
        self, scope: Scope, operation: str, request_id: str
    ) -> contextlib.AbstractContextManager[Any]:
        """The request's span; none (and nothing read for it) when tracing is off."""
        if not self.tracing.enabled:
            return contextlib.nullcontext()
        return self.tracing.span(
            f"ACK {operation}",
            kind=tracing.SpanKind.SERVER,
            headers=_trace_headers(scope),
            attributes={
                "http.request.method": scope["method"],
                "url.path": scope["path"],
                "clustertasks.operation": operation,
                "clustertasks.request_id": request_id,
            },
        )


def _trace_headers(scope: Scope) -> dict[str, str]:
    """The W3C trace headers a client sent (``traceparent``, ``tracestate``)."""
    found: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        lowered = name.lower()
        if lowered in (b"traceparent", b"tracestate"):
            found[lowered.decode("latin-1")] = value.decode("latin-1")
    return found
