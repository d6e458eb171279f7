"""The emulator's clock and fault rules over real HTTP, with the official SDK doing the ACK
calls against ``clustertasks serve`` (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import re
import time
from pathlib import Path
from typing import Any

import httpx
from alibabacloud_cs20151215 import models as cs_models
from alibabacloud_cs20151215.client import Client

from clustertasks.emulator import cloud as sim_cloud
from tests.acceptance import sdk
from tests.support import polling, signing
from tests.support.server import ServerProcess

OLD = "1.31.1-aliyun.1"
NEW = "1.32.1-aliyun.1"
NO_STOCK = "OperationDenied.NoStock"


# -- helpers ---------------------------------------------------------------------------------


def _call(server: ServerProcess, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(
        method, f"{server.url}{path}", auth=signing.auth(), trust_env=False, **kwargs
    )


def _emulator(server: ServerProcess, method: str, path: str, **kwargs: Any) -> Any:
    response = _call(server, method, path, **kwargs)
    assert response.status_code == 200, response.text
    return response.json()


def _clock(server: ServerProcess, **body: Any) -> Any:
    if body:
        return _emulator(server, "POST", "/_emulator/clock", json=body)
    return _emulator(server, "GET", "/_emulator/clock")


def _advance(server: ServerProcess, seconds: float) -> Any:
    return _emulator(server, "POST", "/_emulator/clock/advance", json={"seconds": seconds})


def _fault(server: ServerProcess, **rule: Any) -> Any:
    return _emulator(server, "POST", "/_emulator/faults", json=rule)


def _faults(server: ServerProcess) -> dict[str, Any]:
    listed = _emulator(server, "GET", "/_emulator/faults")["faults"]
    return {rule["fault_id"]: rule for rule in listed}


def _waiting(server: ServerProcess, count: int) -> None:
    polling.until(
        f"{count} simulated waits", lambda: _clock(server)["waiting"], lambda n: n == count
    )


def _pool(client: Client, cluster_id: str) -> str:
    pools = client.describe_cluster_node_pools(
        cluster_id, cs_models.DescribeClusterNodePoolsRequest()
    ).body.nodepools
    pool_id: str = pools[0].nodepool_info.nodepool_id
    return pool_id


def _cluster(client: Client, size: int = 1, version: str = NEW) -> tuple[str, str]:
    request = cs_models.CreateClusterRequest(
        name="emulated",
        region_id="cn-hangzhou",
        cluster_type="ManagedKubernetes",
        kubernetes_version=version,
        vswitch_ids=["vsw-hangzhou-h"],
        nodepools=[
            cs_models.Nodepool(
                nodepool_info=cs_models.NodepoolNodepoolInfo(name="pool-a"),
                scaling_group=cs_models.NodepoolScalingGroup(
                    instance_types=["ecs.g7.large"], desired_size=size
                ),
            )
        ],
    )
    body = client.create_cluster(request).body
    created = sdk.wait_task(client, body.task_id)
    assert created.state == "success", (created.error.code, created.error.message)
    return body.cluster_id, _pool(client, body.cluster_id)


def _scale(client: Client, cluster_id: str, pool_id: str, count: int) -> str:
    request = cs_models.ScaleClusterNodePoolRequest(count=count)
    task_id: str = client.scale_cluster_node_pool(cluster_id, pool_id, request).body.task_id
    return task_id


def _nodes(client: Client, cluster_id: str) -> list[Any]:
    request = cs_models.DescribeClusterNodesRequest(page_size="100")
    nodes: list[Any] = client.describe_cluster_nodes(cluster_id, request).body.nodes
    return nodes


def _instances(sim: sim_cloud.SimCloud, cluster_id: str) -> dict[str, str]:
    """ECS instance id → status, read from the database (not a poll of any task)."""
    return {i.instance_id: i.status for i in sim.list_instances(cluster_id)}


def _statuses(sim: sim_cloud.SimCloud, cluster_id: str, instance_ids: set[str]) -> list[str]:
    return sorted(s for i, s in _instances(sim, cluster_id).items() if i in instance_ids)


def _task_state(client: Client, cluster_id: str, task_id: str) -> str:
    """The task's state from DescribeClusterTasks, which is not a poll of the task."""
    listed = client.describe_cluster_tasks(
        cluster_id, cs_models.DescribeClusterTasksRequest()
    ).body.tasks
    state: str = next(t.state for t in listed if t.task_id == task_id)
    return state


def _stage(server: ServerProcess, task_id: str, name: str) -> dict[str, Any]:
    raw = _emulator(server, "GET", f"/tasks/{task_id}")
    found: dict[str, Any] = next(s for s in raw["stages"] if s["name"] == name)
    return found


def _injected(task: Any) -> list[str]:
    return [e.message for e in task.events if e.reason == "FaultInjected"]


# -- the scenario: a stock-out of the third instance -------------------------------------


def test_a_no_stock_fault_on_the_third_instance_fails_it_like_a_real_stock_out(
    seeded_server: ServerProcess,
) -> None:
    client = sdk.client(seeded_server)
    cluster_id, pool_id = _cluster(client)
    rule = _fault(
        seeded_server,
        match={"task_type": "cluster_scaleout", "instance_index": 3},
        effect={"error_code": NO_STOCK},
        count=1,
    )
    fault_id = rule["fault_id"]
    assert re.fullmatch(r"F-[0-9a-f]{16}", fault_id)
    assert rule["match"] == {"task_type": "cluster_scaleout", "instance_index": 3}
    assert (rule["count"], rule["remaining"], rule["hits"], rule["probability"]) == (1, 1, 0, None)
    assert rule["request_id"]

    task = sdk.wait_task(client, _scale(client, cluster_id, pool_id, 5))
    # As for a real stock-out: the other four instances were made and joined, the task
    # fails at the end with the stock-out's code.
    assert task.state == "fail"
    assert task.error.code == NO_STOCK
    assert [r.status for r in task.task_result] == ["success"] * 4
    created = _stage(seeded_server, task.task_id, "CreateInstances")["outputs"]
    assert created["instance_numbers"] == [1, 2, 4, 5]
    assert (created["instances_created"], created["instances_failed"]) == (4, 1)
    assert created["failure"]["code"] == NO_STOCK
    [injected] = _injected(task)
    assert f"fault {fault_id} injected: create_instance #3 failed with {NO_STOCK}" in injected
    warning = next(e for e in task.events if e.reason == "FaultInjected")
    assert warning.level == "Warning"
    assert "1 of 5 instances" in next(
        e.message for e in task.events if e.reason == "InstanceCreateFailed"
    )
    assert len([n for n in _nodes(client, cluster_id) if n.node_status == "Ready"]) == 5

    spent = _faults(seeded_server)[fault_id]
    assert (spent["hits"], spent["remaining"]) == (1, 0)

    # Spent: the next scale-out is not touched.
    again = sdk.wait_task(client, _scale(client, cluster_id, pool_id, 3))
    assert again.state == "success", again.error.message
    assert _injected(again) == []
    assert _faults(seeded_server)[fault_id]["hits"] == 1
    assert len(_nodes(client, cluster_id)) == 8


def test_a_count_is_shared_by_concurrent_launches(server: ServerProcess) -> None:
    """Eight instances are launched at once; a rule allowing two firings fires twice."""
    client = sdk.client(server)
    cluster_id, pool_id = _cluster(client)
    fault_id = _fault(
        server,
        match={"operation": "create_instance"},
        effect={"error_code": NO_STOCK, "message": "no g7 left"},
        count=2,
    )["fault_id"]
    task = sdk.wait_task(client, _scale(client, cluster_id, pool_id, 8))
    assert (task.state, task.error.code, task.error.message) == ("fail", NO_STOCK, "no g7 left")
    assert len(task.task_result) == 6
    assert len(_injected(task)) == 2
    assert (_faults(server)[fault_id]["hits"], _faults(server)[fault_id]["remaining"]) == (2, 0)


# -- the manual clock ----------------------------------------------------------------------------


def test_a_manual_clock_holds_an_upgrade_between_batches_until_advanced(
    server: ServerProcess, sim: sim_cloud.SimCloud
) -> None:
    client = sdk.client(server)
    cluster_id, pool_id = _cluster(client, 3, version=OLD)
    control = client.upgrade_cluster(
        cluster_id, cs_models.UpgradeClusterRequest(next_version=NEW, master_only=True)
    ).body
    assert sdk.wait_task(client, control.task_id).state == "success"
    first, second, third = sorted(sim.list_nodes(cluster_id), key=lambda n: n.created_us)

    assert _clock(server, mode="manual")["mode"] == "manual"
    task_id = client.upgrade_cluster_nodepool(
        cluster_id,
        pool_id,
        cs_models.UpgradeClusterNodepoolRequest(
            kubernetes_version=NEW,
            rolling_policy=cs_models.UpgradeClusterNodepoolRequestRollingPolicy(
                max_parallelism=1, batch_interval=1
            ),
        ),
    ).body.task_id

    def rollout() -> tuple[int, int]:
        outputs = _stage(server, task_id, "UpgradeNodes")["outputs"]
        return int(outputs.get("batch", 0)), int(outputs.get("nodes_done", 0))

    def status(name: str) -> str:
        return next(n.node_status for n in sim.list_nodes(cluster_id) if n.node_name == name)

    _waiting(server, 1)  # the first node's upgrade: 60 simulated seconds
    assert status(first.node_name) == "NotReady"
    _advance(server, 60)
    polling.until("the first batch done", rollout, lambda seen: seen == (1, 1))
    _waiting(server, 1)  # now the batch interval: one simulated minute

    _advance(server, 59)
    assert _clock(server)["waiting"] == 1
    assert rollout() == (1, 1)
    held = next(n for n in sim.list_nodes(cluster_id) if n.node_name == second.node_name)
    assert (held.kubelet_version, held.schedulable, held.node_status) == (OLD, True, "Ready")

    _advance(server, 1)  # crosses the interval: the second batch starts
    polling.until(
        "the second node upgrading", lambda: status(second.node_name), lambda s: s == "NotReady"
    )
    _waiting(server, 1)
    _advance(server, 60)
    polling.until("the second batch done", rollout, lambda seen: seen == (2, 2))
    _waiting(server, 1)  # the interval before the third batch

    # The interval wait stays interruptible: a pause takes effect without any advance.
    client.pause_task(task_id)
    assert sdk.wait_task(client, task_id, states=("paused",)).state == "paused"
    assert _clock(server)["waiting"] == 0
    assert status(third.node_name) == "Ready"
    client.resume_task(task_id)
    polling.until(
        "the third node upgrading", lambda: status(third.node_name), lambda s: s == "NotReady"
    )
    _waiting(server, 1)
    _advance(server, 60)
    task = sdk.wait_task(client, task_id)
    assert task.state == "success", task.error.message
    assert {n.kubelet_version for n in sim.list_nodes(cluster_id)} == {NEW}


def test_a_manual_clock_boots_instances_only_when_advanced_far_enough(
    server: ServerProcess, sim: sim_cloud.SimCloud
) -> None:
    client = sdk.client(server)
    cluster_id, pool_id = _cluster(client)
    before = set(_instances(sim, cluster_id))
    start = _clock(server, mode="manual")
    assert start["waiting"] == 0

    task_id = _scale(client, cluster_id, pool_id, 1)
    _waiting(server, 1)
    [new] = set(_instances(sim, cluster_id)) - before
    # Pending for 5 simulated seconds, Starting for 25, then 20 for the node to join.
    assert _advance(server, 4)["waiting"] == 1
    assert _statuses(sim, cluster_id, {new}) == ["Pending"]
    _advance(server, 1)
    polling.until(
        "Starting", lambda: _statuses(sim, cluster_id, {new}), lambda s: s == ["Starting"]
    )
    _waiting(server, 1)
    _advance(server, 24)
    assert _statuses(sim, cluster_id, {new}) == ["Starting"]
    _advance(server, 1)
    polling.until("Running", lambda: _statuses(sim, cluster_id, {new}), lambda s: s == ["Running"])
    _waiting(server, 1)
    assert _task_state(client, cluster_id, task_id) == "running"
    after = _advance(server, 20)
    assert sdk.wait_task(client, task_id).state == "success"
    assert _iso_us(after["now"]) - _iso_us(start["now"]) == 50_000_000
    assert _clock(server)["waiting"] == 0


def _iso_us(text: str) -> int:
    parsed = dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    return int(parsed.timestamp()) * 1_000_000 + parsed.microsecond


def test_advancing_a_clock_that_is_not_manual_is_refused(server: ServerProcess) -> None:
    before = _clock(server)
    assert (before["mode"], before["speed"]) == ("realtime", 0.0)
    refused = _call(server, "POST", "/_emulator/clock/advance", json={"seconds": 10})
    assert refused.status_code == 409
    assert refused.json()["code"] == "IncorrectClockMode"
    assert "realtime" in refused.json()["message"]
    assert _clock(server)["mode"] == "realtime"


# -- per poll -------------------------------------------------------------------------------------


def test_per_poll_a_scale_out_moves_only_as_describe_task_info_is_called(
    server: ServerProcess, sim: sim_cloud.SimCloud
) -> None:
    client = sdk.client(server)
    cluster_id, pool_id = _cluster(client)
    before = set(_instances(sim, cluster_id))
    assert _clock(server, mode="per_poll")["mode"] == "per_poll"

    task_id = _scale(client, cluster_id, pool_id, 5)
    _waiting(server, 5)  # each instance waits in Pending; nothing polls the task

    def new_statuses() -> list[str]:
        return sorted(s for i, s in _instances(sim, cluster_id).items() if i not in before)

    assert new_statuses() == ["Pending"] * 5
    assert _task_state(client, cluster_id, task_id) == "running"

    # One poll: one step for every instance.
    assert client.describe_task_info(task_id).body.state == "running"
    polling.until("one step", new_statuses, lambda s: s == ["Starting"] * 5)
    _waiting(server, 5)
    assert new_statuses() == ["Starting"] * 5

    polls = 1
    while client.describe_task_info(task_id).body.state == "running":
        polls += 1
        assert polls <= 100, "a per-poll scale-out of 5 must end within 100 polls"
        time.sleep(0.02)
    task = client.describe_task_info(task_id).body
    assert task.state == "success", task.error.message
    assert polls >= 3  # Starting → Running → joined: a step each
    assert new_statuses() == ["Running"] * 5


def test_per_poll_long_polls_and_conditional_reads_count_as_polls(
    server: ServerProcess, sim: sim_cloud.SimCloud
) -> None:
    """A client following the task with ``?wait=&since=`` (as ``clustertasks task watch``
    does) never reads the document while it waits: its reads must move the task all the
    same, or it would wait forever."""
    client = sdk.client(server)
    cluster_id, pool_id = _cluster(client)
    assert _clock(server, mode="per_poll")["mode"] == "per_poll"
    task_id = _scale(client, cluster_id, pool_id, 2)
    _waiting(server, 2)

    first = _call(server, "GET", f"/tasks/{task_id}")
    version = int(first.headers["x-clustertasks-task-version"])
    etag = first.headers["etag"]
    reads = 0
    state = first.json()["state"]
    while state == "running":
        reads += 1
        assert reads <= 100, "a per-poll scale-out of 2 must end within 100 long-polls"
        # Never a plain read: a long-poll that ends in 304 at its timeout, or a bare 304.
        path = f"/tasks/{task_id}?wait=1&since={version}" if reads % 2 else f"/tasks/{task_id}"
        answer = _call(server, "GET", path, headers={"if-none-match": etag})
        if answer.status_code == 304:
            continue
        version = int(answer.headers["x-clustertasks-task-version"])
        etag = answer.headers["etag"]
        state = answer.json()["state"]
    assert state == "success"


# -- latency and NotReady ---------------------------------------------------------------------


def test_latency_waits_on_the_clock_and_a_mode_switch_releases_it(
    server: ServerProcess, sim: sim_cloud.SimCloud
) -> None:
    client = sdk.client(server)
    cluster_id, pool_id = _cluster(client)
    fault_id = _fault(
        server,
        match={"task_type": "cluster_scaleout", "operation": "create_instance"},
        effect={"latency_seconds": 30},
    )["fault_id"]
    _clock(server, mode="manual")
    count = len(_instances(sim, cluster_id))

    task_id = _scale(client, cluster_id, pool_id, 1)
    _waiting(server, 1)
    assert _advance(server, 29)["waiting"] == 1
    assert len(_instances(sim, cluster_id)) == count  # still not launched
    _advance(server, 1)
    polling.until("launched", lambda: len(_instances(sim, cluster_id)), lambda n: n == count + 1)

    # Back to realtime at speed 0: every pending wait is over at once.
    assert _clock(server, mode="realtime")["mode"] == "realtime"
    task = sdk.wait_task(client, task_id)
    assert task.state == "success", task.error.message
    assert _injected(task) == [
        f"fault {fault_id} injected: create_instance #1 delayed by 30s of simulated time"
    ]
    assert _faults(server)[fault_id]["hits"] == 1


def test_a_node_not_ready_fault_leaves_the_second_node_not_ready(server: ServerProcess) -> None:
    client = sdk.client(server)
    cluster_id, pool_id = _cluster(client)
    fault_id = _fault(
        server,
        match={"operation": "join_node", "instance_index": 2},
        effect={"node_not_ready": True},
    )["fault_id"]
    task = sdk.wait_task(client, _scale(client, cluster_id, pool_id, 3))
    assert task.state == "success", task.error.message
    created = _stage(server, task.task_id, "CreateInstances")["outputs"]
    second = created["instance_ids"][created["instance_numbers"].index(2)]
    by_instance = {n.instance_id: n for n in _nodes(client, cluster_id)}
    assert by_instance[second].node_status == "NotReady"
    others = [n.node_status for i, n in by_instance.items() if i != second]
    assert others == ["Ready"] * 3
    [injected] = _injected(task)
    assert injected == (
        f"fault {fault_id} injected: join_node #2 on node {by_instance[second].node_name} "
        f"left node {by_instance[second].node_name} NotReady"
    )

    # A repair brings it back, as for any NotReady node.
    repair = client.repair_cluster_node_pool(
        cluster_id, pool_id, cs_models.RepairClusterNodePoolRequest()
    ).body
    assert sdk.wait_task(client, repair.task_id).state == "success"
    assert {n.node_status for n in _nodes(client, cluster_id)} == {"Ready"}


# -- determinism and restarts -----------------------------------------------------------------


def _probability_run(tmp_path: Path, name: str) -> list[Any]:
    db = f"sqlite:///{tmp_path / name}"
    with ServerProcess(db, tmp_path, "--sim-speed", "0", "--sim-seed", "7") as server:
        client = sdk.client(server)
        cluster_id, pool_id = _cluster(client)
        rule = _fault(
            server,
            match={"task_type": "cluster_scaleout", "operation": "create_instance"},
            effect={"error_code": NO_STOCK},
            probability=0.5,
        )
        assert (rule["count"], rule["remaining"]) == (None, None)
        task = sdk.wait_task(client, _scale(client, cluster_id, pool_id, 12))
        created = _stage(server, task.task_id, "CreateInstances")["outputs"]
        hits = _faults(server)[rule["fault_id"]]["hits"]
        assert server.stop() == 0
    return [
        rule["fault_id"],
        task.task_id,
        task.state,
        task.error.code,
        hits,
        created["instance_numbers"],
        sorted(r.data for r in task.task_result),
        sorted(_injected(task)),
    ]


def test_probability_draws_repeat_with_the_same_seed(tmp_path: Path) -> None:
    first = _probability_run(tmp_path, "a.db")
    assert first == _probability_run(tmp_path, "b.db")
    hits = first[4]
    assert 0 < hits < 12  # some launches failed, some did not
    assert len(first[5]) == 12 - hits
    assert first[2:4] == ["fail", NO_STOCK]


def test_rules_and_the_clock_survive_a_restart(db_url: str, tmp_path: Path) -> None:
    with ServerProcess(db_url, tmp_path, "--sim-speed", "0") as first:
        _clock(first, mode="manual")
        moved = _advance(first, 3600)
        rule = _fault(
            first,
            match={"operation": "upgrade_node", "node_name": "cn-hangzhou.192.168.0.9"},
            effect={"error_code": "NodeUpgradeFailed", "message": "kubelet crashed"},
            count=3,
        )
        assert first.stop() == 0

    with ServerProcess(db_url, tmp_path, "--sim-speed", "0") as second:
        kept = _clock(second)
        assert (kept["mode"], kept["now"], kept["waiting"]) == ("manual", moved["now"], 0)
        listed = _faults(second)
        assert list(listed) == [rule["fault_id"]]
        assert listed[rule["fault_id"]] == {k: v for k, v in rule.items() if k != "request_id"}
        assert second.stop() == 0

    # An explicit --sim-clock wins over the remembered mode; time goes on from where it was.
    with ServerProcess(db_url, tmp_path, "--sim-speed", "0", "--sim-clock", "per_poll") as third:
        switched = _clock(third)
        assert (switched["mode"], switched["now"]) == ("per_poll", moved["now"])
        assert third.stop() == 0
