"""Metrics and logs of a real ``clustertasks serve``: ``GET /metrics`` parsed with
``prometheus_client``'s parser before and after a scale-out, the gateway's refusals counted,
``--metrics-public`` and ``--log-format json``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from alibabacloud_cs20151215 import models as cs_models
from prometheus_client import parser

from tests.acceptance import sdk
from tests.support import executors, polling, signing
from tests.support import server as server_support
from tests.support.server import ServerProcess

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
SCALE_OUT_STAGES = ("Precheck", "CreateInstances", "JoinNodes", "Finish")
OBSERVED_ARGS = (
    *("--sim-speed", "0", "--metrics-public"),
    *("--log-format", "json", "--log-level", "debug"),
)


@pytest.fixture
def observed_server(
    shared_servers: server_support.SharedServers, backend: str
) -> Iterator[ServerProcess]:
    """``serve --metrics-public --log-format json --log-level debug``: everything logged,
    as JSON, and metrics a Prometheus without keys can scrape."""
    process = shared_servers.lease(backend, *OBSERVED_ARGS)
    sdk.close_connections()
    yield process
    assert process.running, f"the server exited during the test:\n{process.log()}"


def scrape(server: ServerProcess, *, signed: bool = True) -> Samples:
    response = httpx.get(
        f"{server.url}/metrics", trust_env=False, auth=signing.auth() if signed else None
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in parser.text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of ``name`` over the series whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


def scale_out(server: ServerProcess, count: int = 3) -> str:
    client = sdk.client(server)
    cluster_id, created = sdk.create_cluster(client, pool_size=1)
    assert created.state == "success", created.error.message
    pools = client.describe_cluster_node_pools(
        cluster_id, cs_models.DescribeClusterNodePoolsRequest()
    ).body.nodepools
    scale = client.scale_cluster_node_pool(
        cluster_id,
        pools[0].nodepool_info.nodepool_id,
        cs_models.ScaleClusterNodePoolRequest(count=count),
    )
    task = sdk.wait_task(client, scale.body.task_id)
    assert task.state == "success", task.error.message
    return str(scale.body.task_id)


def test_a_scale_out_moves_the_counters_and_histograms(server: ServerProcess) -> None:
    before = scrape(server)

    # JoinNodes fails once for now, and is retried.
    server.emulator(
        "POST",
        "EmulatorAddFaultRule",
        "/_emulator/faults",
        {
            "match": {"task_type": "cluster_scaleout", "stage": "JoinNodes"},
            "effect": {"error_code": "TemporarilyUnavailable"},
            "count": 1,
        },
    )
    scale_out(server)
    after = scrape(server)

    # Tasks by type and state, read from the database at scrape time (reset: only these).
    assert total(after, "clustertasks_tasks", task_type="cluster_scaleout", state="success") == 1
    assert total(after, "clustertasks_tasks", task_type="cluster_create", state="success") == 1
    assert total(after, "clustertasks_tasks", state="running") == 0
    # End states and one successful attempt of each stage.
    finished = "clustertasks_tasks_finished_total"
    assert moved(before, after, finished, task_type="cluster_scaleout", state="success") == 1
    assert moved(before, after, finished, task_type="cluster_scaleout", state="fail") == 0
    for stage in SCALE_OUT_STAGES:
        count = moved(
            before,
            after,
            "clustertasks_stage_duration_seconds_count",
            task_type="cluster_scaleout",
            stage=stage,
            outcome="success",
        )
        assert count == 1, stage
        inf = {"task_type": "cluster_scaleout", "stage": stage, "outcome": "success", "le": "+Inf"}
        assert moved(before, after, "clustertasks_stage_duration_seconds_bucket", **inf) == 1
    retries = "clustertasks_stage_retries_total"
    assert moved(before, after, retries) == 1
    assert moved(before, after, retries, stage="JoinNodes", code="TemporarilyUnavailable") == 1
    retried = {"task_type": "cluster_scaleout", "stage": "JoinNodes", "outcome": "retry"}
    assert moved(before, after, "clustertasks_stage_duration_seconds_count", **retried) == 1
    failed_calls = {"outcome": "TemporarilyUnavailable"}
    assert (
        moved(before, after, "clustertasks_cloud_call_duration_seconds_count", **failed_calls) == 1
    )
    assert moved(before, after, "clustertasks_stage_timeouts_total") == 0
    # The API: the scale request, under its operation and the key that signed it.
    scaled = moved(
        before,
        after,
        "clustertasks_api_requests_total",
        operation="ScaleClusterNodePool",
        code="",
        access_key_id=signing.KEY_ID,
    )
    assert scaled == 1
    assert (
        moved(
            before,
            after,
            "clustertasks_api_request_duration_seconds_count",
            operation="ScaleClusterNodePool",
        )
        == 1
    )
    assert moved(before, after, "clustertasks_api_requests_total", operation="DescribeTaskInfo") > 0
    # The cloud calls the stages made, and the database's transactions.
    assert moved(before, after, "clustertasks_cloud_call_duration_seconds_count") >= 3
    assert moved(before, after, "clustertasks_db_transaction_duration_seconds_count") > 0
    # The executor is idle again; gauges every executor reports under the same names.
    assert total(after, "clustertasks_executor_running_tasks", executor="local") == 0
    assert total(after, "clustertasks_executor_backlog_tasks", executor="local") == 0
    assert total(after, "clustertasks_open_watches") == 0


def test_metrics_need_a_signature_and_refusals_are_counted_by_reason(
    server: ServerProcess,
) -> None:
    before = scrape(server)

    unsigned = httpx.get(f"{server.url}/metrics", trust_env=False)
    forged = httpx.get(
        f"{server.url}/metrics", trust_env=False, auth=signing.auth(secret="not-the-secret")
    )

    assert unsigned.status_code in (400, 401, 403)
    assert unsigned.json()["code"] == "IncompleteSignature"
    assert "requestId" in unsigned.json()
    assert forged.status_code in (400, 401, 403)
    assert forged.json()["code"] == "SignatureDoesNotMatch"
    after = scrape(server)
    failures = "clustertasks_auth_failures_total"
    assert moved(before, after, failures, reason="IncompleteSignature") == 1
    assert moved(before, after, failures, reason="SignatureDoesNotMatch") == 1
    refused = moved(
        before,
        after,
        "clustertasks_api_requests_total",
        operation="DescribeMetrics",
        code="SignatureDoesNotMatch",
    )
    assert refused == 1


@pytest.mark.one_backend
def test_public_metrics_and_json_logs_with_ids_and_no_secret(
    observed_server: ServerProcess,
) -> None:
    """``--metrics-public`` serves /metrics unsigned; ``--log-format json`` writes one object
    per line, with the request, key, task and stage ids, and never a secret."""
    assert scrape(observed_server, signed=False)
    task_id = scale_out(observed_server)
    missing = httpx.get(
        f"{observed_server.url}/tasks/T-000000000000000000000000",
        trust_env=False,
        auth=signing.auth(),
    )
    assert missing.status_code == 404

    request_id = missing.headers["x-acs-request-id"]
    # The refusal's line is written once its answer has gone: the client may read first.
    records = polling.until(
        "the 404's log line",
        lambda: json_records(observed_server.log()),
        lambda records: any(
            r.get("request_id") == request_id and "ErrorTaskNotFound" in r["message"]
            for r in records
        ),
        timeout=10,
        interval=0.05,
        show=len,
    )
    assert records
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
    stage_lines = [r for r in records if r.get("task_id") == task_id and "stage" in r]
    assert {r["stage"] for r in stage_lines} >= set(SCALE_OUT_STAGES)
    refused = [r for r in records if r.get("request_id") == request_id]
    assert refused, "the 404 was not logged"
    assert all(r["access_key_id"] == signing.KEY_ID for r in refused)
    # The refusal's own line (with httptools the access log line carries the ids too).
    assert any("ErrorTaskNotFound" in r["message"] for r in refused)
    assert signing.SECRET not in observed_server.log()


def test_each_executor_reports_its_load_under_the_same_names(
    executor_server: ServerProcess, engine: executors.Choice
) -> None:
    client = sdk.client(executor_server)
    _, created = sdk.create_cluster(client, pool_size=1)
    assert created.state == "success", created.error.message
    # Idle again once the task's workflow has ended (Temporal's figures come every 5 s).
    polling.until(
        f"the {engine.kind} executor's gauges, idle",
        lambda: scrape(executor_server),
        lambda samples: (
            ("clustertasks_executor_running_tasks", frozenset({("executor", engine.kind)}))
            in samples
            and total(samples, "clustertasks_executor_running_tasks", executor=engine.kind) == 0
            and total(samples, "clustertasks_executor_backlog_tasks", executor=engine.kind) == 0
        ),
        timeout=30,
        interval=0.5,
    )


def json_records(log: str) -> list[dict[str, Any]]:
    """The JSON lines of a server's log, parsed."""
    return [json.loads(line) for line in log.splitlines() if line.startswith("{")]
