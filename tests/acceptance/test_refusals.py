"""A refused request leaves nothing behind; what is not free is not attached; no body can
make the server fail."""

from __future__ import annotations

from concurrent import futures
from typing import Any

import httpx

from tests.support import polling, signing
from tests.support.server import ServerProcess


def _call(server: ServerProcess, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method, f"{server.url}{path}", auth=signing.auth(), trust_env=False, timeout=60, **kwargs
    )


def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()


def _wait(server: ServerProcess, task_id: str) -> dict[str, Any]:
    found: dict[str, Any] = polling.until(
        f"task {task_id}",
        lambda: _ok(_call(server, "GET", f"/tasks/{task_id}")),
        lambda task: task["state"] in ("success", "fail", "canceled"),
        interval=0.05,
    )
    return found


def _cluster(server: ServerProcess, pools: list[dict[str, Any]]) -> str:
    made = _ok(
        _call(
            server,
            "POST",
            "/clusters",
            json={
                "name": "refusals",
                "region_id": "cn-hangzhou",
                "vswitch_ids": ["vsw-hangzhou-h"],
                "nodepools": pools,
            },
        )
    )
    assert _wait(server, made["task_id"])["state"] == "success"
    return str(made["cluster_id"])


def _pools(server: ServerProcess, cluster_id: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = _ok(_call(server, "GET", f"/clusters/{cluster_id}/nodepools"))[
        "nodepools"
    ]
    return found


def test_racing_legacy_scale_outs_make_one_default_pool(server: ServerProcess) -> None:
    cluster_id = _cluster(server, [])
    body = {"count": 1, "worker_instance_types": ["ecs.g7.large"]}
    with futures.ThreadPoolExecutor(12) as pool:
        answers = list(
            pool.map(
                lambda _: _call(server, "POST", f"/api/v2/clusters/{cluster_id}", json=body),
                range(24),
            )
        )
    accepted = [a.json() for a in answers if a.status_code == 200]
    refused = [a.json() for a in answers if a.status_code != 200]
    assert accepted, [a.text for a in answers]
    assert {r["code"] for r in refused} <= {"ErrorTaskConflict"}, refused
    for answer in accepted:
        assert _wait(server, answer["task_id"])["state"] in ("success", "fail")
    pools = _pools(server, cluster_id)
    assert [p["nodepool_info"]["name"] for p in pools] == ["default-nodepool"]
    assert pools[0]["status"]["total_nodes"] == len(accepted)

    # A refused call (count out of range) makes nothing either.
    refused_call = _call(
        server, "POST", f"/api/v2/clusters/{cluster_id}", json={"count": 10_000}
    ).json()
    assert refused_call["code"] == "InvalidParameter"
    assert len(_pools(server, cluster_id)) == 1


def test_a_node_of_the_pool_is_not_attached_again(server: ServerProcess) -> None:
    cluster_id = _cluster(
        server,
        [
            {
                "nodepool_info": {"name": "pool-a"},
                "scaling_group": {"instance_types": ["ecs.g7.large"], "desired_size": 0},
            }
        ],
    )
    pool_id = _pools(server, cluster_id)[0]["nodepool_info"]["nodepool_id"]
    made = _ok(_call(server, "POST", "/_emulator/instances", json={"cluster_id": cluster_id}))
    spare = made["instances"][0]["instance_id"]
    path = f"/clusters/{cluster_id}/nodepools/{pool_id}/attach"

    first = _wait(server, _ok(_call(server, "POST", path, json={"instances": [spare]}))["task_id"])
    assert first["state"] == "success", first["error"]
    # Known at request time: refused in ACK's format, naming the instance; no task.
    tasks = f"/clusters/{cluster_id}/tasks"
    before = _ok(_call(server, "GET", tasks))["page_info"]["total_count"]
    again = _call(server, "POST", path, json={"instances": [spare]})
    assert again.status_code == 400
    refusal = again.json()
    assert refusal["code"] == "InstanceNotFree"
    assert spare in refusal["message"]
    assert pool_id in refusal["message"]
    assert refusal["requestId"]
    assert _ok(_call(server, "GET", tasks))["page_info"]["total_count"] == before
    nodes = _ok(_call(server, "GET", f"/clusters/{cluster_id}/nodes"))["nodes"]
    assert [n["instance_id"] for n in nodes] == [spare]
    pool = _pools(server, cluster_id)[0]
    assert (pool["status"]["total_nodes"], pool["scaling_group"]["desired_size"]) == (1, 1)
