"""Traces: the whole server (``bootstrap.build``) in-process, its spans collected by the
OpenTelemetry SDK's in-memory exporter, and the tree of one scale-out asserted: the client's
span → the API request → the task's run → each stage attempt → the cloud calls, the task
id on every span below the request that created it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from clustertasks import bootstrap, settings
from clustertasks.admin import key_admin
from clustertasks.observability import telemetry, tracing
from tests.support import polling, signing

CLIENT_TRACE = "0af7651916cd43dd8448eb211c80319c"
CLIENT_SPAN = "b7ad6b7169203331"
SCALE_OUT_STAGES = ["Precheck", "CreateInstances", "JoinNodes", "Finish"]
Traced = tuple[TestClient, InMemorySpanExporter, bootstrap.Runtime]


@pytest.fixture
def traced(db_url: str) -> Iterator[Traced]:
    spans = InMemorySpanExporter()
    reporting = telemetry.Telemetry(tracing=tracing.Tracing.exporting(SimpleSpanProcessor(spans)))
    config = settings.Settings(
        storage=settings.StorageSettings(url=db_url),
        sim=settings.SimSettings(speed=0),
        auth=signing.UNLIMITED,
    )
    runtime = bootstrap.build(config, telemetry=reporting)
    try:
        key_admin(runtime.database).ensure_admin(signing.KEY_ID, signing.SECRET)
        with TestClient(bootstrap.create_app(runtime), raise_server_exceptions=False) as client:
            client.auth = signing.auth()
            yield client, spans, runtime
    finally:
        runtime.close()


def _wait(client: TestClient, task_id: str) -> dict[str, Any]:
    body: dict[str, Any] = polling.until(
        f"task {task_id}",
        lambda: client.get(f"/tasks/{task_id}").json(),
        lambda body: body["state"] in ("success", "fail", "canceled"),
        timeout=60,
        interval=0.02,
        show=lambda body: body["state"],
    )
    return body


def _id(span: ReadableSpan) -> int:
    return span.context.span_id if span.context else 0


def _parent(span: ReadableSpan) -> int:
    """The span id of ``span``'s parent; 0 when it has none."""
    return span.parent.span_id if span.parent else 0


def _attr(span: ReadableSpan, name: str) -> Any:
    return (span.attributes or {}).get(name)


def test_one_trace_from_the_client_through_every_stage_to_the_cloud(
    traced: Traced,
) -> None:
    client, exporter, runtime = traced
    created = client.post(
        "/clusters",
        json={
            "name": "traced",
            "region_id": "cn-hangzhou",
            "cluster_type": "ManagedKubernetes",
            "kubernetes_version": "1.32.1-aliyun.1",
            "vswitch_ids": ["vsw-hangzhou-h"],
            "nodepools": [
                {
                    "nodepool_info": {"name": "pool-a"},
                    "scaling_group": {"instance_types": ["ecs.g7.large"], "desired_size": 1},
                }
            ],
        },
    ).json()
    assert _wait(client, created["task_id"])["state"] == "success"
    cluster_id = created["cluster_id"]
    pools = client.get(f"/clusters/{cluster_id}/nodepools").json()["nodepools"]
    pool_id = pools[0]["nodepool_info"]["nodepool_id"]
    # JoinNodes fails once for now, and is retried.
    fault = client.post(
        "/_emulator/faults",
        json={
            "match": {"task_type": "cluster_scaleout", "stage": "JoinNodes"},
            "effect": {"error_code": "TemporarilyUnavailable"},
            "count": 1,
        },
    )
    assert fault.status_code == 200, fault.text
    exporter.clear()

    scaled = client.post(
        f"/clusters/{cluster_id}/nodepools/{pool_id}",
        json={"count": 2},
        headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"},
    )
    assert scaled.status_code < 300, scaled.text
    task_id = scaled.json()["task_id"]
    assert _wait(client, task_id)["state"] == "success"

    spans = exporter.get_finished_spans()
    in_trace = [s for s in spans if s.context and f"{s.context.trace_id:032x}" == CLIENT_TRACE]
    by_id = {s.context.span_id: s for s in in_trace if s.context}
    # The request: a child of the client's span, knowing the task it created.
    (request,) = [s for s in in_trace if s.name == "ACK ScaleClusterNodePool"]
    assert f"{_parent(request):016x}" == CLIENT_SPAN
    assert _attr(request, "clustertasks.task_id") == task_id
    assert _attr(request, "clustertasks.access_key_id") == signing.KEY_ID
    # Stored with the task, so any later run (after a restart too) continues this trace.
    stored = runtime.database.tasks.describe_task(task_id).task.trace_parent
    assert stored == f"00-{CLIENT_TRACE}-{request.context.span_id:016x}-01"
    # The task's run: a child of the request, though it ran after the response.
    (run,) = [s for s in in_trace if s.name == "task cluster_scaleout"]
    assert _parent(run) == _id(request)
    # Each stage attempt, in order, under the run: JoinNodes twice.
    stages = sorted(
        (s for s in in_trace if s.name.startswith("stage ")), key=lambda s: s.start_time or 0
    )
    attempts = [(_attr(s, "clustertasks.stage"), _attr(s, "clustertasks.attempt")) for s in stages]
    assert attempts == [
        ("Precheck", 1),
        ("CreateInstances", 1),
        ("JoinNodes", 1),
        ("JoinNodes", 2),
        ("Finish", 1),
    ]
    assert all(_parent(s) == _id(run) for s in stages)
    outcomes = [_attr(s, "clustertasks.outcome") for s in stages]
    assert outcomes == ["success", "success", "retry", "success", "success"]
    assert _attr(stages[2], "error.code") == "TemporarilyUnavailable"
    assert stages[2].status.status_code == StatusCode.ERROR
    assert stages[3].status.status_code != StatusCode.ERROR
    # The cloud calls, each under the stage attempt that made it; the one the fault hit failed.
    calls = [s for s in in_trace if s.name.startswith("cloud ")]
    assert calls
    failed = [c for c in calls if _attr(c, "error.code") == "TemporarilyUnavailable"]
    assert len(failed) == 1
    assert _parent(failed[0]) == _id(stages[2])
    stage_ids = {s.context.span_id for s in stages}
    for call in calls:
        assert _parent(call) in stage_ids, call.name
        parent_stage = by_id[_parent(call)]
        assert _attr(call, "clustertasks.stage") == _attr(parent_stage, "clustertasks.stage")
    # The task id on every span from the run down.
    assert all(_attr(s, "clustertasks.task_id") == task_id for s in [run, *stages, *calls])


@pytest.mark.one_backend
def test_tracing_off_makes_no_span() -> None:
    """Off (the default), ``Tracing.span`` yields None and there is no context to store."""
    off = tracing.Tracing.off()
    with off.span("anything") as span:
        assert span is None
        assert tracing.current_traceparent() is None
