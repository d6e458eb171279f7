"""The emulator's clock and fault rules on SQLite and PostgreSQL: the admin routes
in-process, the stores, and rules applied to the simulated cloud's actions."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from clustertasks import errors, settings
from clustertasks.domain import access, emulator
from clustertasks.emulator import clock_store as sim_clock
from clustertasks.emulator import cloud, simclock
from clustertasks.emulator import fault_store as fault_storage
from clustertasks.emulator import world_store as world_storage
from clustertasks.providers import base
from clustertasks.storage import database as storage_database
from clustertasks.storage import schema
from tests.integration import test_sim_cloud as sim_support
from tests.support import signing

run = sim_support.run
HOUR = 3600 * 1_000_000


def _add(api: TestClient, **rule: Any) -> Any:
    response = api.post("/_emulator/faults", json=rule)
    assert response.status_code == 200, response.text
    return response.json()


# -- the routes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"effect": {"error_code": "X"}, "when": 1}, "when"),
        ({"match": {"instance": 3}, "effect": {"error_code": "X"}}, "match.instance"),
        ({"match": {"operation": "boot"}, "effect": {"error_code": "X"}}, "match.operation"),
        ({"match": {"task_type": "scale"}, "effect": {"error_code": "X"}}, "match.task_type"),
        ({"match": {"stage": "Launch"}, "effect": {"error_code": "X"}}, "match.stage"),
        (
            {
                "match": {"task_type": "nodepool_repair", "stage": "JoinNodes"},
                "effect": {"error_code": "X"},
            },
            "match.stage",
        ),
        ({"match": {"instance_index": 0}, "effect": {"error_code": "X"}}, "match.instance_index"),
        (
            {"match": {"instance_index": "third"}, "effect": {"error_code": "X"}},
            "match.instance_index",
        ),
        ({"match": {"node_name": 7}, "effect": {"error_code": "X"}}, "match.node_name"),
        ({"match": []}, "match"),
        ({"match": {}}, "effect"),
        ({"effect": {}}, "effect"),
        ({"effect": {"latency_seconds": 0}}, "effect"),
        ({"effect": {"error_code": ""}}, "effect.error_code"),
        ({"effect": {"error_code": "no stock!"}}, "effect.error_code"),
        ({"effect": {"error_code": 42}}, "effect.error_code"),
        ({"effect": {"message": "boom"}}, "effect.message"),
        ({"effect": {"latency_seconds": -1}}, "effect.latency_seconds"),
        ({"effect": {"latency_seconds": "soon"}}, "effect.latency_seconds"),
        ({"effect": {"node_not_ready": "maybe"}}, "effect.node_not_ready"),
        ({"effect": {"colour": "red"}}, "effect.colour"),
        (
            {"match": {"operation": "create_instance"}, "effect": {"node_not_ready": True}},
            "effect.node_not_ready",
        ),
        ({"effect": {"error_code": "X"}, "probability": 1.5}, "probability"),
        ({"effect": {"error_code": "X"}, "probability": -0.1}, "probability"),
        ({"effect": {"error_code": "X"}, "count": 0}, "count"),
        ({"effect": {"error_code": "X"}, "count": 2.5}, "count"),
    ],
)
def test_an_invalid_rule_is_refused_naming_the_field_and_nothing_is_stored(
    api: TestClient, body: dict[str, Any], field: str
) -> None:
    response = api.post("/_emulator/faults", json=body)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["code"] == "InvalidParameter"
    assert f"The parameter {field} is invalid" in answer["message"]
    assert answer["requestId"] == response.headers["x-acs-request-id"]
    assert api.get("/_emulator/faults").json()["faults"] == []


def test_rules_are_added_listed_and_removed(api: TestClient) -> None:
    once = _add(
        api,
        match={"task_type": "cluster_scaleout", "stage": "CreateInstances", "instance_index": 3},
        effect={"error_code": "OperationDenied.NoStock", "message": "sold out"},
    )
    assert once["match"] == {
        "task_type": "cluster_scaleout",
        "stage": "CreateInstances",
        "instance_index": 3,
    }
    assert once["effect"] == {"error_code": "OperationDenied.NoStock", "message": "sold out"}
    assert (once["count"], once["remaining"], once["probability"], once["hits"]) == (1, 1, None, 0)
    sometimes = _add(
        api,
        match={"operation": "upgrade_node", "node_name": "cn-hangzhou.192.168.0.3"},
        effect={"latency_seconds": 1.5, "node_not_ready": True},
        probability=0.25,
    )
    assert (sometimes["count"], sometimes["probability"]) == (None, 0.25)
    assert sometimes["effect"] == {"latency_seconds": 1.5, "node_not_ready": True}
    assert (
        _add(api, match={"stage": "Compensate"}, effect={"error_code": "X"}, count=4)["count"] == 4
    )

    listed = api.get("/_emulator/faults").json()
    ids = [rule["fault_id"] for rule in listed["faults"]]
    assert ids[:2] == [once["fault_id"], sometimes["fault_id"]]
    assert len(set(ids)) == 3
    assert listed["request_id"]

    assert (
        api.delete(f"/_emulator/faults/{once['fault_id']}").json()["fault_id"] == once["fault_id"]
    )
    again = api.delete(f"/_emulator/faults/{once['fault_id']}")
    assert again.status_code == 404
    assert again.json()["code"] == "ErrorFaultNotFound"
    assert once["fault_id"] in again.json()["message"]
    assert api.delete("/_emulator/faults/F-not..a..rule").status_code == 404
    assert api.delete("/_emulator/faults").json()["removed"] == 2
    assert api.get("/_emulator/faults").json()["faults"] == []


# The in-process app's clock lives in memory: past the signature check (its key, its nonce,
# on both backends in every other API test) no route here reaches the database.
@pytest.mark.one_backend
def test_the_clock_routes(api: TestClient) -> None:
    shown = api.get("/_emulator/clock").json()
    assert (shown["mode"], shown["speed"], shown["waiting"]) == ("realtime", 0.0, 0)
    assert shown["now"].endswith("Z")
    assert shown["request_id"]

    refused = api.post("/_emulator/clock/advance", json={"seconds": 5})
    assert (refused.status_code, refused.json()["code"]) == (409, "IncorrectClockMode")

    for body, field in (
        ({"mode": "sometimes"}, "mode"),
        ({}, "mode"),
        ({"mode": "manual", "speed": -1}, "speed"),
        ({"mode": "manual", "pace": 2}, "pace"),
    ):
        bad = api.post("/_emulator/clock", json=body)
        assert bad.status_code == 400, body
        assert f"The parameter {field} is invalid" in bad.json()["message"]
    assert api.get("/_emulator/clock").json()["mode"] == "realtime"

    manual = api.post("/_emulator/clock", json={"mode": "manual", "speed": 2}).json()
    assert (manual["mode"], manual["speed"]) == ("manual", 2.0)
    advances: list[tuple[dict[str, Any], str]] = [
        ({"seconds": -1}, "seconds"),
        ({}, "seconds"),
        ({"secs": 1}, "secs"),
    ]
    for advance, field in advances:
        bad = api.post("/_emulator/clock/advance", json=advance)
        assert bad.status_code == 400, advance
        assert f"The parameter {field} is invalid" in bad.json()["message"]
    assert api.get("/_emulator/clock").json()["now"] == manual["now"]
    moved = api.post("/_emulator/clock/advance", json={"seconds": 90.5}).json()
    assert _us(moved["now"]) - _us(manual["now"]) == 90_500_000


def _us(iso: str) -> int:
    parsed = dt.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)
    return int(parsed.timestamp()) * 1_000_000 + parsed.microsecond


# -- the stores --------------------------------------------------------------------------------


def _rule(fault_id: str, count: int | None) -> emulator.FaultRule:
    return emulator.FaultRule(
        fault_id=fault_id,
        match=emulator.FaultMatch(operation="create_instance"),
        effect=emulator.FaultEffect(error_code="OperationDenied.NoStock"),
        count=count,
        remaining=count,
        probability=None,
        hits=0,
        created_us=1,
    )


def test_a_rules_count_is_taken_atomically_by_racing_threads(
    database: storage_database.Database,
) -> None:
    faults = fault_storage.FaultStore(database.engine)
    faults.add(_rule("F-limited", 5))
    faults.add(_rule("F-unlimited", None))
    barrier = threading.Barrier(8)
    taken: list[bool] = []
    lock = threading.Lock()

    def race() -> None:
        barrier.wait()
        for _ in range(5):
            got = faults.take("F-limited")
            faults.take("F-unlimited")
            with lock:
                taken.append(got)

    threads = [threading.Thread(target=race) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert taken.count(True) == 5
    assert len(taken) == 40
    limited, unlimited = faults.rules()
    assert (limited.hits, limited.remaining) == (5, 0)
    assert (unlimited.hits, unlimited.remaining) == (40, None)
    assert [r.fault_id for r in faults.armed()] == ["F-unlimited"]
    assert faults.remove("F-unlimited", 2)
    assert not faults.take("F-unlimited")
    assert faults.count_all() == 2  # removed rules still count for the seeded ids


def test_the_clock_is_remembered_across_opens(database: storage_database.Database) -> None:
    clocks = sim_clock.ClockStore(database.engine)
    first = simclock.SimClock.open(clocks, speed=0)
    assert first.mode == "realtime"
    first.set_mode("manual")
    moved = first.advance(3600).now_us

    again = simclock.SimClock.open(clocks, speed=5)
    assert (again.mode, again.speed, again.simulated_us()) == ("manual", 5, moved)
    told = simclock.SimClock.open(clocks, speed=1, mode="per_poll")
    assert (told.mode, told.simulated_us()) == ("per_poll", moved)
    running = simclock.SimClock.open(clocks, speed=1, mode="realtime")
    assert running.simulated_us() >= moved
    stored = clocks.load()
    assert stored is not None
    assert (stored.mode, stored.speed) == ("realtime", 1)


# -- rules applied to the cloud's actions --------------------------------------------------------


@pytest.fixture
def engine(db_url: str) -> Iterator[sa.Engine]:
    opened = sim_support._engine(db_url)
    try:
        yield opened
    finally:
        opened.dispose()


def _call(stage: str = "UpgradeNodes", index: int | None = None) -> base.TaskCall:
    return base.TaskCall("T-1", "nodepool_upgrade", stage, index)


def test_an_injected_error_fails_the_action_as_a_real_failure_and_is_reported(
    engine: sa.Engine,
) -> None:
    reported: list[tuple[str, str, str]] = []
    sim = sim_support._sim(engine, report=lambda *event: reported.append(event))
    cluster, pool = run(sim_support._cluster_with_pool(sim))
    nodes = [
        run(sim_support._node_for(sim, f"n{i}", cluster.cluster_id, pool.nodepool_id)).node_name
        for i in range(2)
    ]
    faults = fault_storage.FaultStore(engine)
    faults.add(
        emulator.FaultRule(
            fault_id="F-upgrade",
            match=emulator.FaultMatch(operation="upgrade_node", node_name=nodes[1]),
            effect=emulator.FaultEffect(
                error_code="NodeUpgradeFailed", message="kubelet crashed", node_not_ready=True
            ),
            count=None,
            remaining=None,
            probability=None,
            hits=0,
            created_us=1,
        )
    )

    async def upgrade(name: str, call: base.TaskCall | None) -> Any:
        if call is None:
            return await sim.upgrade_node(cluster.cluster_id, name, kubernetes_version="1.33.1")
        with base.calling_as(call):
            return await sim.upgrade_node(cluster.cluster_id, name, kubernetes_version="1.33.1")

    # Outside a task, and on another node, the rule does not apply.
    assert run(upgrade(nodes[0], _call())).kubelet_version == "1.33.1"
    with pytest.raises(errors.NodeUpgradeFailed) as caught:
        run(upgrade(nodes[1], _call(index=2)))
    assert (caught.value.code, caught.value.message) == ("NodeUpgradeFailed", "kubelet crashed")
    assert sim.get_node(cluster.cluster_id, nodes[1]).node_status == "NotReady"
    assert reported == [
        (
            "T-1",
            "FaultInjected",
            f"fault F-upgrade injected: upgrade_node #2 on node {nodes[1]} left node "
            f"{nodes[1]} NotReady",
        ),
        (
            "T-1",
            "FaultInjected",
            f"fault F-upgrade injected: upgrade_node #2 on node {nodes[1]} failed with "
            "NodeUpgradeFailed: kubelet crashed",
        ),
    ]
    assert faults.get("F-upgrade") is not None
    assert faults.rules()[0].hits == 1


@pytest.mark.parametrize(
    ("code", "kind"),
    [
        ("OperationDenied.NoStock", errors.InstanceCreateFailed),
        ("TemporarilyUnavailable", errors.TemporaryError),
        ("QuotaExceeded.Instance", errors.PermanentError),
    ],
)
def test_an_injected_code_raises_the_class_of_a_real_failure(
    engine: sa.Engine, code: str, kind: type[errors.ClustertasksError]
) -> None:
    sim = sim_support._sim(engine)
    cluster, pool = run(sim_support._cluster_with_pool(sim))
    fault_storage.FaultStore(engine).add(
        emulator.FaultRule(
            fault_id="F-launch",
            match=emulator.FaultMatch(stage="CreateInstances", instance_index=1),
            effect=emulator.FaultEffect(error_code=code),
            count=1,
            remaining=1,
            probability=None,
            hits=0,
            created_us=1,
        )
    )

    async def launch(key: str) -> Any:
        call = base.TaskCall("T-9", "cluster_scaleout", "CreateInstances")
        with base.calling_as(call), base.for_instance(1):
            return await sim.create_instance(key, cluster.cluster_id, pool.nodepool_id)

    with pytest.raises(kind) as caught:
        run(launch("T-9/CreateInstances/1"))
    assert caught.value.code == code
    assert "create_instance #1 failed with" in caught.value.message
    assert sim.list_instances(cluster.cluster_id) == []
    # Spent: the same launch now goes through.
    assert run(launch("T-9/CreateInstances/1")).status == "Pending"


def test_world_timestamps_follow_a_manual_clock(engine: sa.Engine) -> None:
    clock = simclock.SimClock.open(sim_clock.ClockStore(engine), speed=0, mode="manual")
    sim = cloud.SimCloud(
        world_storage.WorldStore(engine), settings.SimSettings(speed=0), clock, sim_clock=clock
    )
    start = clock.simulated_us()
    clock.advance(24 * 3600)
    cluster, pool = run(sim_support._cluster_with_pool(sim))
    # Waits of no task do not wait for a manual clock: the node is up at once.
    node = run(sim_support._node_for(sim, "n1", cluster.cluster_id, pool.nodepool_id))
    assert cluster.created_us >= start + 24 * HOUR
    assert node.created_us > cluster.created_us
    assert node.created_us < start + 25 * HOUR  # nothing else moved the clock
    assert node.node_status == "Ready"


def test_a_task_wait_on_a_manual_clock_needs_an_advance(engine: sa.Engine) -> None:
    clock = simclock.SimClock.open(sim_clock.ClockStore(engine), speed=1, mode="manual")
    sim = cloud.SimCloud(
        world_storage.WorldStore(engine), settings.SimSettings(speed=1), clock, sim_clock=clock
    )

    async def scenario() -> None:
        with base.calling_as(_call()):
            waiting = asyncio.ensure_future(sim.wait(30))
        for _ in range(20):
            await asyncio.sleep(0)
        assert clock.view().waiting == 1
        clock.advance(29)
        for _ in range(20):
            await asyncio.sleep(0)
        assert not waiting.done()
        clock.advance(1)
        await asyncio.wait_for(waiting, 30)
        assert clock.view().waiting == 0

    run(scenario())


def test_a_reload_takes_a_clock_written_under_it(database: storage_database.Database) -> None:
    clocks = sim_clock.ClockStore(database.engine)
    sim = simclock.SimClock.open(clocks, speed=0, mode="manual")
    imported = emulator.ClockState("per_poll", 3.0, sim_us=42 * HOUR, real_us=0)
    clocks.save(imported)  # as a state import writes it
    sim.reload()
    assert (sim.mode, sim.speed, sim.simulated_us()) == ("per_poll", 3.0, 42 * HOUR)
    with database.engine.begin() as conn:  # as a reset empties the table
        conn.execute(sa.delete(schema.sim_clock))
    sim.reload()
    assert (sim.mode, sim.simulated_us()) == ("per_poll", 42 * HOUR)
    assert clocks.load() is not None  # stored again


def test_only_an_admin_key_may_use_the_controls(
    api: TestClient, database: storage_database.Database
) -> None:
    signing.add_key(database, access.Role.OPERATOR, "ops-ak", "ops-secret")
    operator = signing.auth("ops-ak", "ops-secret")
    for method, path, body in (
        ("GET", "/_emulator/clock", None),
        ("POST", "/_emulator/clock", {"mode": "manual"}),
        ("POST", "/_emulator/faults", {"effect": {"error_code": "X"}}),
        ("DELETE", "/_emulator/faults", None),
    ):
        refused = api.request(method, path, json=body, auth=operator)
        assert refused.status_code == 403, (method, path)
        assert refused.json()["code"] == "Forbidden.RAM"
    assert api.get("/_emulator/clock").json()["mode"] == "realtime"
    assert api.get("/_emulator/faults").json()["faults"] == []
