"""The official Alibaba Cloud SDK, unmodified, against a real ``clustertasks serve``."""

from __future__ import annotations

import pytest
from alibabacloud_cs20151215 import models as cs_models
from alibabacloud_tea_openapi.exceptions import ClientException

from clustertasks.domain import states, wire
from clustertasks.storage import store
from tests.acceptance import sdk
from tests.support import factories
from tests.support.server import ServerProcess

CLUSTER = "c0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize("signature", [None, "v2"], ids=["acs3", "roa-v2"])
def test_describe_task_info_reads_back_every_field(
    read_server: ServerProcess, seeding_store: store.TaskStore, signature: str | None
) -> None:
    view = factories.seed_task(seeding_store, cluster_id=CLUSTER, state=states.TaskState.FAIL)
    expected = wire.task_document(seeding_store.describe_task(view.task.task_id))

    response = sdk.client(read_server, signature).describe_task_info(view.task.task_id)

    assert response.status_code == 200
    assert response.headers["x-acs-request-id"]
    body = response.body
    assert body is not None
    assert body.task_id == view.task.task_id
    assert body.cluster_id == CLUSTER
    assert body.task_type == "cluster_scaleout"
    assert body.state == "fail"
    assert body.created == expected["created"]
    assert body.updated == expected["updated"]
    assert body.current_stage == "JoinNodes"
    assert (body.target.id, body.target.type) == (CLUSTER, "cluster")
    assert body.parameters == {"count": 2}
    assert body.outputs == {}
    assert (body.error.code, body.error.message) == (
        "InstanceCreateFailed",
        "i-bbbbbbbbbbbbbbbbbbbb failed",
    )
    assert [(s.state, s.start_time, s.end_time, s.message, s.outputs) for s in body.stages] == [
        (s["state"], s["start_time"], s["end_time"], s["message"], s["outputs"])
        for s in expected["stages"]
    ]
    assert [s.state for s in body.stages] == ["success", "success", "fail"]
    assert [
        (e.action, e.level, e.reason, e.message, e.source, e.timestamp) for e in body.events
    ] == [
        (e["action"], e["level"], e["reason"], e["message"], e["source"], e["timestamp"])
        for e in expected["events"]
    ]
    assert body.events[-1].level == "Warning"
    assert [(r.data, r.status) for r in body.task_result] == [
        ("i-aaaaaaaaaaaaaaaaaaaa", "success"),
        ("i-bbbbbbbbbbbbbbbbbbbb", "failed"),
    ]


@pytest.mark.parametrize("signature", [None, "v2"], ids=["acs3", "roa-v2"])
def test_unknown_task_raises_client_exception_404(
    read_server: ServerProcess, signature: str | None
) -> None:
    with pytest.raises(ClientException) as caught:
        sdk.client(read_server, signature).describe_task_info("T-5faa48fb31b6b8078d000006")
    error = caught.value
    assert error.status_code == 404
    assert error.code == "ErrorTaskNotFound"
    assert "the task T-5faa48fb31b6b8078d000006 not found" in error.message
    assert error.request_id not in ("", "None")


def test_describe_cluster_tasks_pages_and_tokens(
    read_server: ServerProcess, seeding_store: store.TaskStore
) -> None:
    made = [
        factories.seed_task(
            seeding_store, cluster_id=CLUSTER, created_us=factories.BASE_US + i * 1_000_000
        ).task.task_id
        for i in range(7)
    ]
    newest_first = list(reversed(made))
    client = sdk.client(read_server)

    page = client.describe_cluster_tasks(
        CLUSTER, cs_models.DescribeClusterTasksRequest(page_number=2, page_size=3)
    ).body
    assert [t.task_id for t in page.tasks] == newest_first[3:6]
    assert (page.page_info.page_number, page.page_info.page_size) == (2, 3)
    assert page.page_info.total_count == 7
    assert page.request_id
    assert page.tasks[0].state == "running"
    assert (page.tasks[0].error.code, page.tasks[0].error.message) == ("", "")

    seen: list[str] = []
    token = None
    while True:
        body = client.describe_cluster_tasks(
            CLUSTER, cs_models.DescribeClusterTasksRequest(max_results=2, next_token=token)
        ).body
        seen += [t.task_id for t in body.tasks]
        token = body.next_token
        if not token:
            break
    assert seen == newest_first

    with pytest.raises(ClientException) as caught:
        client.describe_cluster_tasks(
            CLUSTER, cs_models.DescribeClusterTasksRequest(page_size=1000)
        )
    assert caught.value.status_code == 400
    assert caught.value.code == "InvalidParameter"
    assert "page_size" in caught.value.message
