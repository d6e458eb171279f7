"""Every error in ACK's format, naming what is wrong; no input produces a 500."""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree

import pytest
from fastapi.testclient import TestClient

from clustertasks.storage import database as storage_database
from clustertasks.storage import store
from tests.support import factories

CLUSTER = "c0123456789abcdef0123456789abcdef"


def _error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    # The gateway's own errors (an unknown API, for one) add its PascalCase keys.
    assert set(body) - {"Code", "Message", "RequestId", "HostId", "Recommend"} == {
        "code",
        "message",
        "requestId",
        "status",
    }
    assert body["code"] == code
    assert body["status"] == status
    assert body["requestId"] == response.headers["x-acs-request-id"]
    assert "Traceback" not in response.text
    return body


def test_unknown_task_is_404_error_task_not_found(api: TestClient) -> None:
    body = _error(api.get("/tasks/T-5faa48fb31b6b8078d000006"), 404, "ErrorTaskNotFound")
    assert body["message"] == "the task T-5faa48fb31b6b8078d000006 not found"


def test_unknown_task_in_xml(api: TestClient) -> None:
    response = api.get("/tasks/T-404", headers={"Accept": "application/xml"})
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/xml")
    root = ElementTree.fromstring(response.content)
    assert root.tag == "Error"
    assert root.findtext("Code") == "ErrorTaskNotFound"
    assert root.findtext("Message") == "the task T-404 not found"
    assert root.findtext("RequestId") == response.headers["x-acs-request-id"]


# Refused before any query; the signature check (its key, its nonce) runs on both backends
# in every other API test.
@pytest.mark.one_backend
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"page_size": "0"}, "page_size"),
        ({"page_size": "1000"}, "page_size"),
        ({"page_size": "-3"}, "page_size"),
        ({"page_size": "ten"}, "page_size"),
        ({"page_number": "0"}, "page_number"),
        ({"page_number": "abc"}, "page_number"),
        ({"page_number": "1.5"}, "page_number"),
        ({"max_results": "0"}, "max_results"),
        ({"max_results": "101"}, "max_results"),
        ({"next_token": "not-a-token"}, "next_token"),
        ({"next_token": "eyJ2IjoxfQ"}, "next_token"),
        ({"next_token": "%%%"}, "next_token"),
        ({"state": "sleeping"}, "state"),
        ({"task_type": "x" * 65}, "task_type"),
        ({"format": "yaml"}, "format"),
    ],
)
def test_malformed_list_parameters_are_named(
    api: TestClient, params: dict[str, str], field: str
) -> None:
    body = _error(api.get(f"/clusters/{CLUSTER}/tasks", params=params), 400, "InvalidParameter")
    assert f"parameter {field} " in body["message"]


def test_token_from_another_listing_is_refused(
    api: TestClient, task_store: store.TaskStore
) -> None:
    for i in range(3):
        factories.seed_task(task_store, cluster_id=CLUSTER, created_us=factories.BASE_US + i)
    token = api.get(f"/clusters/{CLUSTER}/tasks", params={"max_results": 1}).json()["next_token"]
    assert token
    body = _error(
        api.get(f"/clusters/{CLUSTER}/tasks", params={"next_token": token, "state": "fail"}),
        400,
        "InvalidParameter",
    )
    assert "next_token" in body["message"]
    _error(
        api.get("/clusters/c-other/tasks", params={"next_token": token}), 400, "InvalidParameter"
    )


# Refused before any query; the signature check (its key, its nonce) runs on both backends
# in every other API test.
@pytest.mark.one_backend
def test_unknown_route_and_method(api: TestClient) -> None:
    body = _error(api.get("/no/such/api"), 404, "InvalidApi.NotFound")
    assert "/no/such/api" in body["message"]
    body = _error(api.put("/tasks/T-1"), 405, "UnsupportedHTTPMethod")
    assert "PUT" in body["message"]


# Refused before any query; the signature check (its key, its nonce) runs on both backends
# in every other API test.
@pytest.mark.one_backend
def test_empty_task_id_names_the_field(api: TestClient) -> None:
    body = _error(api.get("/tasks/"), 400, "InvalidParameter")
    assert "task_id" in body["message"]


@pytest.mark.parametrize(
    "path",
    [
        "/tasks/%00",
        "/tasks/T-%00abc",
        "/tasks/" + "a" * 5000,
        "/tasks/%F0%9F%92%A5",
        "/tasks/%ff%fe",
        "/tasks/..%2F..%2Fetc",
        "/tasks/'%20OR%201=1--",
        "/clusters/%00/tasks",
        "/clusters/" + "c" * 3000 + "/tasks",
        "/clusters/c1/tasks?page_size=99999999999999999999999",
        "/clusters/c1/tasks?page_number=1e9",
        "/clusters/c1/tasks?state=%00",
        "/clusters/c1/tasks?task_type=%00",
        "/clusters/c1/tasks?next_token=" + "A" * 10000,
        "/clusters/c1/tasks?page_number=99999999999",
        "/tasks/T-1?format=%00",
    ],
)
def test_hostile_input_never_gets_a_500(api: TestClient, path: str) -> None:
    response = api.get(path)
    assert response.status_code < 500, (path, response.status_code, response.text)
    body = response.json()
    assert response.headers["x-acs-request-id"] == body["requestId"]
    if response.status_code >= 400:
        assert body["code"] in {"InvalidParameter", "ErrorTaskNotFound", "InvalidApi.NotFound"}
    else:
        assert body["tasks"] == []


def test_every_response_has_a_request_id(api: TestClient) -> None:
    ids = set()
    for path in ("/healthz", "/openapi.json", "/tasks/T-1", "/nope", f"/clusters/{CLUSTER}/tasks"):
        response = api.get(path)
        ids.add(response.headers["x-acs-request-id"])
    assert len(ids) == 5


def test_healthz_and_openapi(api: TestClient) -> None:
    health = api.get("/healthz")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    spec = api.get("/openapi.json").json()
    operations = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
    assert {"DescribeTaskInfo", "DescribeClusterTasks", "Healthz"} <= operations
    params = {
        p["name"]: p["schema"]
        for p in spec["paths"]["/clusters/{cluster_id}/tasks"]["get"]["parameters"]
    }
    assert {"page_number", "page_size", "max_results", "next_token", "state", "task_type"} <= set(
        params
    )


def test_a_database_failure_is_a_clean_503(
    api: TestClient, database: storage_database.Database
) -> None:
    # Close every connection and make new ones impossible: the store is gone.
    database.close()
    dbapi = database.engine.dialect.dbapi
    assert dbapi is not None

    def refuse() -> Any:
        raise dbapi.OperationalError("unable to connect")

    database.engine.pool._creator = refuse
    body = _error(api.get("/tasks/T-1"), 503, "ServiceUnavailable")
    assert "store" in body["message"]
    assert api.get("/healthz").status_code == 503


# Refused before any query.
@pytest.mark.one_backend
@pytest.mark.parametrize(
    ("method", "path", "raw"),
    [
        ("POST", "/clusters", b"[" * 10_000),
        ("POST", "/clusters", b'{"nodepools": ' + b"[" * 65 + b"]" * 65 + b"}"),
        ("POST", f"/clusters/{CLUSTER}/nodepools", b'{"a":' * 5_000 + b"1" + b"}" * 5_000),
        ("POST", "/_emulator/state", b"{" * 100_000),
    ],
)
def test_deeply_nested_json_is_refused(api: TestClient, method: str, path: str, raw: bytes) -> None:
    response = api.request(method, path, content=raw, headers={"Content-Type": "application/json"})
    body = _error(response, 400, "InvalidParameter")
    assert "body" in body["message"]
    assert "64 levels" in body["message"]


@pytest.mark.one_backend
def test_nesting_inside_strings_does_not_count(api: TestClient) -> None:
    text = "[" * 1000
    response = api.post("/clusters", json={"name": text, "region_id": "cn-hangzhou"})
    body = _error(response, 400, "InvalidParameter")
    assert "name" in body["message"]  # too long a name, not too deep a body


@pytest.mark.one_backend
def test_deep_lists_in_the_query_are_refused(api: TestClient) -> None:
    path = f"/clusters/{CLUSTER}/nodepools/np1/nodes?instance_ids=" + "[" * 5000
    response = api.delete(path)
    assert response.status_code < 500, response.text
    assert "Traceback" not in response.text
