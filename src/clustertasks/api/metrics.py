"""``GET /metrics``: the server's figures in Prometheus' text format.

Signed like any other route (``DescribeMetrics``, allowed to read-only keys), unless the
server runs with ``--metrics-public``. A plain ``def``: the task counts are read from the
database at scrape time, in a worker thread, never on the event loop.
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from clustertasks.observability import metrics as observed_metrics
from clustertasks.observability import telemetry

router = APIRouter(tags=["observability"])

PATH = "/metrics"


@router.get(PATH, operation_id="DescribeMetrics", summary="Metrics in Prometheus' text format")
def describe_metrics(request: Request) -> Response:
    reporting: telemetry.Telemetry = request.app.state.telemetry
    return Response(reporting.metrics.render(), media_type=observed_metrics.CONTENT_TYPE)
