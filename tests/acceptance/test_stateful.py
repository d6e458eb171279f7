"""Random sequences of operations against a real server, checked after every step.

A hypothesis ``RuleBasedStateMachine`` creates, scales, deletes, attaches, removes,
upgrades, pauses, resumes and cancels (and resets the emulator, and sends junk) on the
shared server of each backend. After every step it waits until no task is ``running``
(paused ones stay paused) and asserts:

- no answer is a 5xx, and every 4xx is an ACK error document with a code;
- a refused mutating call changed nothing: the world's and the tasks' rows are as before;
- the world holds together: every node has its instance, every instance in a pool has
  its pool, no node or pool outlives its cluster, one node per instance; a pool no paused
  task holds has as many instances as its desired size, each a node, and is ``active``;
- every task ends: at the end of each example paused tasks are resumed and all finish.

CI runs a few short examples per backend; ``make soak`` runs many long ones
(``CLUSTERTASKS_SOAK_EXAMPLES``, ``CLUSTERTASKS_SOAK_STEPS``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import httpx
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from tests.support import polling, signing
from tests.support.server import ServerProcess

EXAMPLES = int(os.environ.get("CLUSTERTASKS_SOAK_EXAMPLES", "3"))
STEPS = int(os.environ.get("CLUSTERTASKS_SOAK_STEPS", "8"))
TYPES = ["ecs.g7.large"]
VSWITCHES = ["vsw-hangzhou-h"]
VERSION = "1.32.1-aliyun.1"
ERROR_KEYS = {"code", "message", "requestId", "status"}
TERMINAL = {"success", "fail", "canceled"}
PICK_RANGE = 1 << 16
"""The index ``World._pick`` draws, taken modulo the rows there are."""
# Rows that say what the world and the tasks are; a refused call must leave them alone.
WORLD_TABLES = ("sim_clusters", "sim_nodepools", "sim_instances", "sim_nodes", "tasks")


def _pool_body(name: str, size: int) -> dict[str, Any]:
    return {
        "nodepool_info": {"name": name},
        "scaling_group": {"instance_types": TYPES, "vswitch_ids": VSWITCHES, "desired_size": size},
    }


class _Polite(httpx.Client):
    """A client that, throttled by the key's rate (``Throttling.User``), waits the
    ``x-acs-retry-after`` milliseconds the answer names and sends the request again, signed
    anew, as ACK's clients do: a long soak's calls and polls outrun the server's default
    rate per key, which is not what it tests."""

    def request(self, method: str, url: httpx.URL | str, **kwargs: Any) -> httpx.Response:
        while True:
            response = super().request(method, url, **kwargs)
            wait_ms = response.headers.get("x-acs-retry-after")
            if response.status_code != 429 or wait_ms is None:
                return response
            if response.json().get("code") != "Throttling.User":
                return response
            time.sleep(int(wait_ms) / 1000)


class World(RuleBasedStateMachine):
    server: ServerProcess

    def __init__(self) -> None:
        super().__init__()
        self.http = _Polite(
            base_url=self.server.url, auth=signing.auth(), trust_env=False, timeout=60
        )
        self.counter = 0
        self._ok(self.http.post("/_emulator/reset"))
        self.state = self._export()

    # -- plumbing ----------------------------------------------------------------------------

    def _check(self, response: httpx.Response) -> httpx.Response:
        assert response.status_code < 500, (response.request.url, response.text)
        if response.status_code >= 400:
            body = response.json()
            assert set(body) >= ERROR_KEYS, body
            assert body["code"], body
            assert body["status"] == response.status_code
        return response

    def _ok(self, response: httpx.Response) -> Any:
        self._check(response)
        assert response.status_code == 200, response.text
        return response.json()

    def _export(self) -> dict[str, list[dict[str, Any]]]:
        tables: dict[str, list[dict[str, Any]]] = self._ok(self.http.get("/_emulator/state"))[
            "tables"
        ]
        return tables

    def _settled(self) -> dict[str, list[dict[str, Any]]]:
        """The state once no task is running (paused ones stay as they are)."""
        return polling.until(
            "no task running",
            self._export,
            lambda tables: all(t["state"] != "running" for t in tables["tasks"]),
            interval=0.05,
        )

    def _mutate(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """A mutating call: refused, it must have changed nothing."""
        before = _world(self.state)
        response = self._check(self.http.request(method, path, **kwargs))
        if response.status_code >= 400:
            assert _world(self._export()) == before, (method, path, response.text)
        self.state = self._settled()
        return response

    def _clusters(self) -> list[dict[str, Any]]:
        return [c for c in self.state["sim_clusters"] if c["state"] != "deleted"]

    def _pools(self) -> list[dict[str, Any]]:
        live = {c["cluster_id"] for c in self._clusters()}
        return [
            p
            for p in self.state["sim_nodepools"]
            if p["cluster_id"] in live and p["deleted_us"] is None
        ]

    def _pick(
        self, data: st.DataObject, items: list[dict[str, Any]], fallback: dict[str, Any]
    ) -> Any:
        """One of ``items`` (``fallback`` when there are none). The choice is drawn the same
        way whatever the server's state: hypothesis replays a sequence of choices to shrink
        it, and a draw whose shape followed the rows (``sampled_from`` the rows, or no draw
        when there are none) would meet other rows on the replay and stop the soak as a
        flaky strategy."""
        index = data.draw(st.integers(0, PICK_RANGE))
        return items[index % len(items)] if items else fallback

    def _name(self) -> str:
        self.counter += 1
        return f"sm-{self.counter}"

    # -- rules -------------------------------------------------------------------------------

    @initialize()
    def a_cluster_to_start_with(self) -> None:
        body = {
            "name": "sm-start",
            "region_id": "cn-hangzhou",
            "vswitch_ids": VSWITCHES,
            "nodepools": [_pool_body("pool-start", 1)],
        }
        assert self._mutate("POST", "/clusters", json=body).status_code == 200

    @rule(size=st.integers(0, 2), pools=st.integers(0, 2), token=st.sampled_from([None, "a", "b"]))
    def create_cluster(self, size: int, pools: int, token: str | None) -> None:
        body: dict[str, Any] = {
            "name": "sm",
            "region_id": "cn-hangzhou",
            "kubernetes_version": VERSION,
            "vswitch_ids": VSWITCHES,
            "nodepools": [_pool_body(f"pool-{i}", size) for i in range(pools)],
        }
        if token:
            body["client_token"] = token
        self._mutate("POST", "/clusters", json=body)

    @rule(data=st.data(), size=st.integers(0, 2))
    def create_nodepool(self, data: st.DataObject, size: int) -> None:
        cluster = self._pick(data, self._clusters(), {"cluster_id": "c" + "0" * 32})
        path = f"/clusters/{cluster['cluster_id']}/nodepools"
        self._mutate("POST", path, json=_pool_body(self._name(), size))

    @rule(data=st.data(), count=st.integers(1, 2))
    def scale_nodepool(self, data: st.DataObject, count: int) -> None:
        pool = self._pick(data, self._pools(), {"cluster_id": "c1", "nodepool_id": "np1"})
        path = f"/clusters/{pool['cluster_id']}/nodepools/{pool['nodepool_id']}"
        self._mutate("POST", path, json={"count": count})

    @rule(data=st.data(), count=st.integers(1, 2))
    def scale_out_cluster(self, data: st.DataObject, count: int) -> None:
        cluster = self._pick(data, self._clusters(), {"cluster_id": "c1"})
        body = {"count": count, "worker_instance_types": TYPES}
        self._mutate("POST", f"/api/v2/clusters/{cluster['cluster_id']}", json=body)

    @rule(data=st.data(), force=st.booleans())
    def delete_nodepool(self, data: st.DataObject, force: bool) -> None:
        pool = self._pick(data, self._pools(), {"cluster_id": "c1", "nodepool_id": "np1"})
        path = f"/clusters/{pool['cluster_id']}/nodepools/{pool['nodepool_id']}"
        self._mutate("DELETE", path, params={"force": str(force).lower()})

    @rule(data=st.data(), release=st.booleans())
    def remove_nodes(self, data: st.DataObject, release: bool) -> None:
        nodes = [n for n in self.state["sim_nodes"] if n["nodepool_id"]]
        node = self._pick(
            data, nodes, {"cluster_id": "c1", "nodepool_id": "np1", "instance_id": "i-1"}
        )
        path = f"/clusters/{node['cluster_id']}/nodepools/{node['nodepool_id']}/nodes"
        query = {
            "instance_ids": f'["{node["instance_id"]}"]',
            "release_node": str(release).lower(),
            "drain_node": "true",
        }
        self._mutate("DELETE", path, params=query)

    @rule(data=st.data(), which=st.sampled_from(["free", "node", "missing"]))
    def attach(self, data: st.DataObject, which: str) -> None:
        pool = self._pick(data, self._pools(), {"cluster_id": "c1", "nodepool_id": "np1"})
        instance = "i-doesnotexist000000"
        if which == "free" and self._pools():
            made = self._ok(
                self.http.post("/_emulator/instances", json={"cluster_id": pool["cluster_id"]})
            )
            instance = made["instances"][0]["instance_id"]
            self.state = self._export()
        elif which == "node":
            instance = self._pick(data, self.state["sim_nodes"], {"instance_id": instance})[
                "instance_id"
            ]
        path = f"/clusters/{pool['cluster_id']}/nodepools/{pool['nodepool_id']}/attach"
        self._mutate("POST", path, json={"instances": [instance]})

    @rule(data=st.data())
    def upgrade_nodepool(self, data: st.DataObject) -> None:
        pool = self._pick(data, self._pools(), {"cluster_id": "c1", "nodepool_id": "np1"})
        path = f"/clusters/{pool['cluster_id']}/nodepools/{pool['nodepool_id']}/upgrade"
        self._mutate("POST", path, json={"kubernetes_version": VERSION})

    @rule(data=st.data(), action=st.sampled_from(["pause", "resume", "cancel"]))
    def control_task(self, data: st.DataObject, action: str) -> None:
        task = self._pick(data, self.state["tasks"], {"task_id": "T-5faa48fb31b6b8078d000006"})
        self._mutate("POST", f"/tasks/{task['task_id']}/{action}")

    @rule(data=st.data())
    def delete_cluster(self, data: st.DataObject) -> None:
        cluster = self._pick(data, self._clusters(), {"cluster_id": "c1"})
        self._mutate("DELETE", f"/clusters/{cluster['cluster_id']}")

    @rule(data=st.data(), junk=st.sampled_from([b"{", b"[]", b'{"count": "x"}', b"[" * 100]))
    def junk(self, data: st.DataObject, junk: bytes) -> None:
        pool = self._pick(data, self._pools(), {"cluster_id": "c1", "nodepool_id": "np1"})
        base = f"/clusters/{pool['cluster_id']}/nodepools"
        path = data.draw(st.sampled_from([base, f"{base}/{pool['nodepool_id']}", "/clusters"]))
        headers = {"Content-Type": "application/json"}
        response = self._mutate("POST", path, content=junk, headers=headers)
        assert 400 <= response.status_code < 500

    @rule()
    def reset(self) -> None:
        self._ok(self.http.post("/_emulator/reset"))
        self.state = self._export()
        assert not self._clusters()
        assert not self.state["tasks"]

    # -- what must always hold ---------------------------------------------------------------

    @invariant()
    def world_holds_together(self) -> None:
        _check_world(self.state)

    def teardown(self) -> None:
        try:
            for task in self.state["tasks"]:
                if task["state"] == "paused":
                    self._check(self.http.post(f"/tasks/{task['task_id']}/resume"))
            ended = polling.until(
                "every task ended",
                self._export,
                lambda tables: all(t["state"] in TERMINAL for t in tables["tasks"]),
                interval=0.05,
            )
            _check_world(ended)
        finally:
            self.http.close()


def _world(tables: Mapping[str, list[dict[str, Any]]]) -> dict[str, list[Any]]:
    def key(row: dict[str, Any]) -> str:
        return repr(sorted(row.items()))

    return {name: sorted(tables[name], key=key) for name in WORLD_TABLES}


def _check_world(tables: Mapping[str, list[dict[str, Any]]]) -> None:
    clusters = {c["cluster_id"]: c for c in tables["sim_clusters"]}
    live_clusters = {cid for cid, c in clusters.items() if c["state"] != "deleted"}
    pools = {p["nodepool_id"]: p for p in tables["sim_nodepools"] if p["deleted_us"] is None}
    instances = {i["instance_id"]: i for i in tables["sim_instances"] if i["status"] != "Released"}
    nodes = tables["sim_nodes"]
    assert len({n["instance_id"] for n in nodes}) == len(nodes), "two nodes on one instance"
    for node in nodes:
        instance = instances.get(node["instance_id"])
        assert instance is not None, f"node {node['node_name']} has no instance"
        assert instance["cluster_id"] == node["cluster_id"]
        assert node["cluster_id"] in live_clusters, f"node {node['node_name']} outlived its cluster"
        if node["nodepool_id"]:
            assert node["nodepool_id"] in pools, f"node {node['node_name']} has no pool"
            assert instance["nodepool_id"] == node["nodepool_id"]
    for instance in instances.values():
        if instance["nodepool_id"]:
            assert instance["nodepool_id"] in pools, f"{instance['instance_id']} has no pool"
    for pool in pools.values():
        assert pool["cluster_id"] in live_clusters, f"pool {pool['nodepool_id']} is orphaned"
    held = {
        t["cluster_id"] for t in tables["tasks"] if t["state"] not in TERMINAL
    }  # a paused task may hold a pool mid-change
    by_pool: dict[str, list[str]] = {}
    for instance in instances.values():
        by_pool.setdefault(instance["nodepool_id"], []).append(instance["instance_id"])
    noded = {n["instance_id"] for n in nodes}
    for pool in pools.values():
        if pool["cluster_id"] in held:
            continue
        members = by_pool.get(pool["nodepool_id"], [])
        assert pool["state"] == "active", pool
        assert pool["desired_size"] == len(members), (pool, members)
        assert all(m in noded for m in members), (pool, members)


def test_random_sequences_keep_the_world_whole(server: ServerProcess) -> None:
    machine = type("BoundWorld", (World,), {"server": server})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=EXAMPLES,
            stateful_step_count=STEPS,
            deadline=None,
            database=None,  # no example database written into the working tree
            suppress_health_check=list(HealthCheck),
        ),
    )
