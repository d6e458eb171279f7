"""Retrying CreateCluster with its ``client_token``: the same task, however many race, run
once, on each executor (on Temporal: one workflow, whoever starts it)."""

from __future__ import annotations

from concurrent import futures
from typing import Any

import httpx

from tests.support import polling, signing
from tests.support.server import ServerProcess


def _body(name: str = "retried", size: int = 1, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "region_id": "cn-hangzhou",
        "vswitch_ids": ["vsw-hangzhou-h"],
        "nodepools": [
            {
                "nodepool_info": {"name": "pool-a"},
                "scaling_group": {"instance_types": ["ecs.g7.large"], "desired_size": size},
            }
        ],
        **extra,
    }


def _post(server: ServerProcess, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{server.url}{path}", json=body, auth=signing.auth(), trust_env=False, timeout=60
    )


def _clusters(server: ServerProcess) -> list[dict[str, Any]]:
    found = httpx.get(f"{server.url}/api/v1/clusters", auth=signing.auth(), trust_env=False).json()[
        "clusters"
    ]
    assert isinstance(found, list)
    return found


def _finished(server: ServerProcess, task_id: str) -> dict[str, Any]:
    document: dict[str, Any] = polling.until(
        f"task {task_id} ending",
        lambda: httpx.get(
            f"{server.url}/tasks/{task_id}", auth=signing.auth(), trust_env=False
        ).json(),
        lambda body: body["state"] in ("success", "fail", "canceled"),
        interval=0.05,
    )
    return document


def _ran_once(document: dict[str, Any]) -> None:
    assert document["state"] == "success", document["error"]
    reasons = [event["reason"] for event in document["events"]]
    assert reasons.count("TaskStart") == 1
    assert reasons.count("TaskSucceed") == 1


def test_a_retry_with_the_token_gets_the_first_task(executor_server: ServerProcess) -> None:
    read_server = executor_server
    first = _post(read_server, "/clusters", _body(client_token="retry-1"))
    assert first.status_code == 200, first.text
    # The same request again, its keys in another order: the same task and cluster.
    again = _post(
        read_server, "/clusters", dict(reversed(list(_body(client_token="retry-1").items())))
    )
    assert again.status_code == 200, again.text
    assert again.json()["task_id"] == first.json()["task_id"]
    assert again.json()["cluster_id"] == first.json()["cluster_id"]

    other = _post(read_server, "/clusters", _body(size=2, client_token="retry-1"))
    assert other.status_code == 409
    assert other.json()["code"] == "IdempotentParameterMismatch"
    assert first.json()["task_id"] in other.json()["message"]

    # Once the task has run, the retry still gets it, and nothing runs again.
    _ran_once(_finished(read_server, first.json()["task_id"]))
    late = _post(read_server, "/clusters", _body(client_token="retry-1"))
    assert late.json()["task_id"] == first.json()["task_id"]
    _ran_once(_finished(read_server, first.json()["task_id"]))

    # Without a token, the same body is a second cluster.
    assert _post(read_server, "/clusters", _body()).status_code == 200
    assert len(_clusters(read_server)) == 2


def test_racing_retries_make_one_task_and_get_one_answer(executor_server: ServerProcess) -> None:
    read_server = executor_server
    with futures.ThreadPoolExecutor(16) as pool:
        answers = list(
            pool.map(
                lambda _: _post(read_server, "/clusters", _body(client_token="race-1")),
                range(32),
            )
        )
    assert {a.status_code for a in answers} == {200}, [a.text for a in answers]
    assert len({(a.json()["task_id"], a.json()["cluster_id"]) for a in answers}) == 1
    clusters = _clusters(read_server)
    assert [c["cluster_id"] for c in clusters] == [answers[0].json()["cluster_id"]]
    _ran_once(_finished(read_server, answers[0].json()["task_id"]))


def test_modify_cluster_retried_with_its_token(executor_server: ServerProcess) -> None:
    server = executor_server
    made = _post(server, "/clusters", _body(size=0)).json()
    polling.until(
        "the cluster made",
        lambda: httpx.get(
            f"{server.url}/tasks/{made['task_id']}", auth=signing.auth(), trust_env=False
        ).json()["state"],
        lambda state: state == "success",
        interval=0.05,
    )
    path = f"{server.url}/api/v2/clusters/{made['cluster_id']}"

    def modify(body: dict[str, Any]) -> httpx.Response:
        return httpx.put(path, json=body, auth=signing.auth(), trust_env=False, timeout=60)

    first = modify({"cluster_name": "renamed", "client_token": "modify-1"})
    assert first.status_code == 200, first.text
    again = modify({"client_token": "modify-1", "cluster_name": "renamed"})
    assert again.status_code == 200, again.text
    assert again.json()["task_id"] == first.json()["task_id"]
    other = modify({"cluster_name": "other", "client_token": "modify-1"})
    assert other.status_code == 409
    assert other.json()["code"] == "IdempotentParameterMismatch"
    _ran_once(_finished(server, first.json()["task_id"]))
