"""Retrying CreateCluster with its ``client_token``: the same task, however many race."""

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


def test_a_retry_with_the_token_gets_the_first_task(read_server: ServerProcess) -> None:
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

    # Without a token, the same body is a second cluster.
    assert _post(read_server, "/clusters", _body()).status_code == 200
    assert len(_clusters(read_server)) == 2


def test_racing_retries_make_one_task_and_get_one_answer(read_server: ServerProcess) -> None:
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


def test_modify_cluster_retried_with_its_token(server: ServerProcess) -> None:
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
