"""DescribeTaskInfo and DescribeClusterTasks over HTTP, on both backends."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree

import pytest
from fastapi.testclient import TestClient

from clustertasks.domain import states, wire
from clustertasks.storage import store
from tests.support import factories

CLUSTER = "c0123456789abcdef0123456789abcdef"


def _request_id_matches(response: Any, body: dict[str, Any]) -> None:
    rid = response.headers["x-acs-request-id"]
    assert len(rid) == 36
    assert body["requestId"] == rid


@pytest.mark.parametrize("state", list(states.TaskState))
def test_describe_task_info_is_the_stored_task_exactly(
    api: TestClient, task_store: store.TaskStore, state: states.TaskState
) -> None:
    view = factories.seed_task(task_store, state=state)
    response = api.get(f"/tasks/{view.task.task_id}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    _request_id_matches(response, body)
    del body["requestId"]
    assert body == wire.task_document(task_store.describe_task(view.task.task_id))
    assert body["state"] == state.value
    assert body["task_id"] == view.task.task_id
    assert [s["name"] for s in body["stages"]] == ["Precheck", "CreateInstances", "JoinNodes"]
    assert [e["reason"] for e in body["events"]][:2] == ["PrecheckStart", "CreateInstancesStart"]
    for key in (
        "task_id",
        "cluster_id",
        "task_type",
        "state",
        "created",
        "updated",
        "current_stage",
    ):
        assert isinstance(body[key], str), key
    for event in body["events"]:
        assert event["timestamp"].isdigit()
    if state is states.TaskState.FAIL:
        assert body["error"]["code"] == "InstanceCreateFailed"
        assert [r["status"] for r in body["task_result"]] == ["success", "failed"]
    elif state is states.TaskState.RUNNING:
        assert body["error"] == {"code": "", "message": ""}
        assert body["stages"][1]["outputs"] == {"nodes_total": 2, "nodes_done": 1}
        assert [s["state"] for s in body["stages"]] == ["success", "running", "pending"]


def _xml_to_dict(element: ElementTree.Element, lists: set[str]) -> Any:
    if len(element) == 0:
        return element.text or ""
    result: dict[str, Any] = {}
    for child in element:
        value = _xml_to_dict(child, lists)
        if child.tag in lists:
            result.setdefault(child.tag, []).append(value)
        else:
            result[child.tag] = value
    return result


def _normalise(value: Any) -> Any:
    """JSON values as XML text carries them: scalars as strings, an empty map as an empty
    element, an empty list as no element at all."""
    if isinstance(value, dict):
        if not value:
            return ""
        return {k: _normalise(v) for k, v in value.items() if v != []}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    return "" if value is None else str(value)


@pytest.mark.parametrize("how", ["accept", "query"])
def test_xml_carries_the_same_values_as_json(
    api: TestClient, task_store: store.TaskStore, how: str
) -> None:
    view = factories.seed_task(task_store, state=states.TaskState.RUNNING)
    path = f"/tasks/{view.task.task_id}"
    as_json = api.get(path).json()
    if how == "accept":
        response = api.get(path, headers={"Accept": "application/xml"})
    else:
        response = api.get(path, params={"format": "xml"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xml")
    root = ElementTree.fromstring(response.content)
    assert root.tag == "DescribeTaskInfoResponse"
    as_xml = _xml_to_dict(root, {"stages", "events", "task_result"})
    del as_json["requestId"]
    as_xml.pop("requestId")
    assert as_xml == _normalise(as_json)


def test_list_xml_repeats_items(api: TestClient, task_store: store.TaskStore) -> None:
    for i in range(3):
        factories.seed_task(task_store, cluster_id=CLUSTER, created_us=factories.BASE_US + i)
    response = api.get(f"/clusters/{CLUSTER}/tasks", params={"format": "xml"})
    root = ElementTree.fromstring(response.content)
    assert root.tag == "DescribeClusterTasksResponse"
    assert len(root.findall("tasks")) == 3
    assert root.findtext("page_info/total_count") == "3"
    assert root.findtext("requestId") == response.headers["x-acs-request-id"]


def _seed_cluster(task_store: store.TaskStore, n: int) -> list[str]:
    made = [
        factories.seed_task(
            task_store,
            cluster_id=CLUSTER,
            created_us=factories.BASE_US + i * 1_000_000,
            state=states.TaskState.SUCCESS if i % 3 == 0 else states.TaskState.RUNNING,
            task_type="nodepool_upgrade" if i % 4 == 0 else "cluster_scaleout",
        ).task.task_id
        for i in range(n)
    ]
    return list(reversed(made))


def test_describe_cluster_tasks_pages_newest_first(
    api: TestClient, task_store: store.TaskStore
) -> None:
    newest_first = _seed_cluster(task_store, 25)
    factories.seed_task(task_store, cluster_id="c-someone-else")

    first = api.get(f"/clusters/{CLUSTER}/tasks")
    body = first.json()
    _request_id_matches(first, body)
    assert set(body) == {"tasks", "page_info", "next_token", "requestId"}
    assert body["page_info"] == {"page_number": 1, "page_size": 10, "total_count": 25}
    assert [t["task_id"] for t in body["tasks"]] == newest_first[:10]
    for item in body["tasks"]:
        assert set(item) == {"task_id", "task_type", "state", "created", "updated", "error"}

    third = api.get(f"/clusters/{CLUSTER}/tasks", params={"page_number": 3, "page_size": 10})
    assert [t["task_id"] for t in third.json()["tasks"]] == newest_first[20:]
    assert third.json()["next_token"] == ""

    beyond = api.get(f"/clusters/{CLUSTER}/tasks", params={"page_number": 9})
    assert beyond.json()["tasks"] == []
    assert beyond.json()["page_info"]["total_count"] == 25

    big = api.get(f"/clusters/{CLUSTER}/tasks", params={"page_size": 100})
    assert len(big.json()["tasks"]) == 25


def test_token_paging_visits_every_task_once(api: TestClient, task_store: store.TaskStore) -> None:
    newest_first = _seed_cluster(task_store, 23)
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params: dict[str, Any] = {"max_results": 5}
        if token:
            params["next_token"] = token
        body = api.get(f"/clusters/{CLUSTER}/tasks", params=params).json()
        pages += 1
        assert body["page_info"]["page_number"] == pages
        assert body["page_info"]["page_size"] == 5
        seen += [t["task_id"] for t in body["tasks"]]
        token = body["next_token"]
        if not token:
            break
    assert pages == 5
    assert seen == newest_first


def test_page_then_token_continues_where_the_page_ended(
    api: TestClient, task_store: store.TaskStore
) -> None:
    newest_first = _seed_cluster(task_store, 12)
    page = api.get(f"/clusters/{CLUSTER}/tasks", params={"page_size": 4}).json()
    rest = api.get(
        f"/clusters/{CLUSTER}/tasks", params={"next_token": page["next_token"], "page_size": 100}
    ).json()
    assert [t["task_id"] for t in page["tasks"] + rest["tasks"]] == newest_first


def test_filters(api: TestClient, task_store: store.TaskStore) -> None:
    _seed_cluster(task_store, 12)
    success = api.get(f"/clusters/{CLUSTER}/tasks", params={"state": "success"}).json()
    assert success["page_info"]["total_count"] == 4
    assert {t["state"] for t in success["tasks"]} == {"success"}
    upgrades = api.get(
        f"/clusters/{CLUSTER}/tasks", params={"task_type": "nodepool_upgrade", "page_size": 50}
    ).json()
    assert upgrades["page_info"]["total_count"] == 3
    assert {t["task_type"] for t in upgrades["tasks"]} == {"nodepool_upgrade"}
    both = api.get(
        f"/clusters/{CLUSTER}/tasks",
        params={"task_type": "nodepool_upgrade", "state": "SUCCESS"},
    ).json()
    assert both["page_info"]["total_count"] == 1


def test_unknown_cluster_has_no_tasks(api: TestClient) -> None:
    body = api.get("/clusters/c-unknown/tasks").json()
    assert body["tasks"] == []
    assert body["page_info"]["total_count"] == 0
