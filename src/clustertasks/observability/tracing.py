"""OpenTelemetry traces: one span per API request, task run, stage attempt and cloud call.

A task outlives the request that submitted it, so the request's context is stored with the
task as a W3C ``traceparent`` (``current_traceparent`` at submission) and every run of the
task starts its span as a child of it (``Tracing.span(..., parent=...)``): one trace goes
from the API request through every stage to the cloud calls, across restarts, and across
processes once another executor runs the stages. A client's own ``traceparent`` header makes
the request span a child of the client's span.

Off unless an OTLP endpoint is configured (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``): then ``Tracing.off()`` makes no span object at all.
Tests hand in an exporter of their own (the SDK's ``InMemorySpanExporter``).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk import resources
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace import export
from opentelemetry.trace import propagation
from opentelemetry.trace.propagation import tracecontext

from clustertasks import __version__

SERVICE_NAME = "clustertasks"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
Attributes = Mapping[str, str | int | float | bool]

_PROPAGATOR = tracecontext.TraceContextTextMapPropagator()
SpanKind = trace.SpanKind


def configured(environ: Mapping[str, str] | None = None) -> bool:
    """True when the environment names an OTLP endpoint to export spans to."""
    environ = os.environ if environ is None else environ
    return any(environ.get(name) for name in ENDPOINT_VARIABLES)


class Tracing:
    """Makes the spans of one server; ``enabled`` False makes none."""

    def __init__(self, provider: sdk_trace.TracerProvider | None) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer("clustertasks", __version__) if provider else None

    @classmethod
    def off(cls) -> Tracing:
        return cls(None)

    @classmethod
    def from_environment(cls) -> Tracing:
        """OTLP over HTTP when an endpoint is set (the exporter reads the standard
        ``OTEL_EXPORTER_OTLP_*`` variables itself), otherwise off."""
        if not configured():
            return cls.off()
        # Imported here: a server that exports nothing never loads the exporter.
        from opentelemetry.exporter.otlp.proto.http import trace_exporter

        return cls.exporting(export.BatchSpanProcessor(trace_exporter.OTLPSpanExporter()))

    @classmethod
    def exporting(cls, processor: sdk_trace.SpanProcessor) -> Tracing:
        """Spans handed to ``processor`` (tests: a ``SimpleSpanProcessor`` on an in-memory
        exporter)."""
        resource = resources.Resource.create({resources.SERVICE_NAME: SERVICE_NAME})
        provider = sdk_trace.TracerProvider(resource=resource)
        provider.add_span_processor(processor)
        return cls(provider)

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    @contextlib.contextmanager
    def span(
        self,
        name: str,
        *,
        kind: trace.SpanKind = trace.SpanKind.INTERNAL,
        parent: str | None = None,
        headers: Mapping[str, str] | None = None,
        attributes: Attributes | None = None,
    ) -> Iterator[trace.Span | None]:
        """A span around the block, current inside it; None when tracing is off.

        Its parent is the span current here, or the one named by ``parent`` (a stored
        ``traceparent``) or by the W3C headers in ``headers``. An exception escaping the
        block is recorded and marks the span as an error.
        """
        if self._tracer is None:
            yield None
            return
        ctx: otel_context.Context | None = None
        if parent:
            ctx = _PROPAGATOR.extract({"traceparent": parent})
        elif headers is not None:
            ctx = _PROPAGATOR.extract(headers)
        with self._tracer.start_as_current_span(
            name, context=ctx, kind=kind, attributes=attributes
        ) as span:
            yield span

    def shutdown(self) -> None:
        """Export what is still buffered, then stop."""
        if self._provider is not None:
            self._provider.shutdown()


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the span current here, to store with a task; None when
    there is none (tracing off, or no request around)."""
    span_context = trace.get_current_span().get_span_context()
    if not span_context.is_valid:
        return None
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, propagation.set_span_in_context(trace.get_current_span()))
    return carrier.get("traceparent")


def current_span() -> trace.Span | None:
    """The span current here, when one records."""
    span = trace.get_current_span()
    return span if span.is_recording() else None


def annotate(**attributes: Any) -> None:
    """Set attributes on the span current here (nothing when there is none)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes({k: v for k, v in attributes.items() if v is not None})


def mark_error(span: trace.Span | None, code: str, message: str) -> None:
    """Mark ``span`` as failed with our error ``code``."""
    if span is None:
        return
    span.set_attribute("error.code", code)
    span.set_status(trace.Status(trace.StatusCode.ERROR, f"{code}: {message}"))
