"""Reset, export and import of the emulator's state, on SQLite and PostgreSQL.

The server is the real composition (``bootstrap.build``: store, simulated cloud, services,
local executor) in-process, driven over HTTP with signed requests.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from clustertasks import bootstrap, settings
from clustertasks.domain import access
from clustertasks.emulator import catalogue, snapshots
from clustertasks.storage import database as storage_database
from clustertasks.storage import store
from tests.support import databases, factories, polling, signing

REGION = "cn-hangzhou"
VSWITCH = "vsw-hangzhou-h"
INSTANCE_TYPE = "ecs.g7.large"
TERMINAL = ("success", "fail", "canceled")


def emptied() -> dict[str, int]:
    """Table sizes after a reset: nothing but the clock, which keeps its mode and time."""
    return {**dict.fromkeys(snapshots.table_names(), 0), "sim_clock": 1}


@contextlib.contextmanager
def serving(
    db_url: str, *, speed: float = 0.0, seed: int | None = 42
) -> Iterator[tuple[bootstrap.Runtime, TestClient]]:
    """The server as ``clustertasks serve`` builds it, with the executor running."""
    config = settings.Settings(
        storage=settings.StorageSettings(url=db_url),
        sim=settings.SimSettings(speed=speed, seed=seed),
        auth=signing.UNLIMITED,
    )
    runtime = bootstrap.build(config)
    try:
        signing.add_key(runtime.database)
        with TestClient(bootstrap.create_app(runtime), raise_server_exceptions=False) as client:
            client.auth = signing.auth()
            yield runtime, client
    finally:
        runtime.close()


def ok(response: Any) -> Any:
    """The JSON body of a 200 response (the test client's own response type)."""
    assert response.status_code == 200, response.text
    return response.json()


def wait_task(client: TestClient, task_id: str) -> dict[str, Any]:
    found: dict[str, Any] = polling.until(
        f"task {task_id} to end",
        lambda: ok(client.get(f"/tasks/{task_id}")),
        lambda body: body["state"] in TERMINAL,
        show=lambda body: body["state"],
    )
    return found


def create_cluster(client: TestClient, name: str = "demo", size: int = 2) -> tuple[str, str]:
    body = ok(
        client.post(
            "/clusters",
            json={
                "name": name,
                "region_id": REGION,
                "cluster_type": "ManagedKubernetes",
                "kubernetes_version": "1.32.1-aliyun.1",
                "vswitch_ids": [VSWITCH],
                "nodepools": [
                    {
                        "nodepool_info": {"name": "pool-a"},
                        "scaling_group": {
                            "instance_types": [INSTANCE_TYPE],
                            "desired_size": size,
                        },
                    }
                ],
            },
        )
    )
    return body["cluster_id"], body["task_id"]


def pool_of(client: TestClient, cluster_id: str) -> str:
    pools = ok(client.get(f"/clusters/{cluster_id}/nodepools"))["nodepools"]
    return str(pools[0]["nodepool_info"]["nodepool_id"])


def scale(client: TestClient, cluster_id: str, pool_id: str, count: int) -> dict[str, Any]:
    body = ok(client.post(f"/clusters/{cluster_id}/nodepools/{pool_id}", json={"count": count}))
    return wait_task(client, body["task_id"])


def nodes_of(client: TestClient, cluster_id: str) -> list[str]:
    nodes = ok(client.get(f"/clusters/{cluster_id}/nodes"))["nodes"]
    return sorted(f"{n['instance_id']} {n['node_name']}" for n in nodes)


def export(client: TestClient) -> dict[str, Any]:
    document: dict[str, Any] = ok(client.get("/_emulator/state"))
    return document


def without_time(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != "exported_at"}


def describe_bytes(client: TestClient, task_id: str) -> bytes:
    """DescribeTaskInfo's body as sent, with its request id (new on every call) masked."""
    return body_bytes(client, f"/tasks/{task_id}")


def body_bytes(client: TestClient, path: str) -> bytes:
    response = client.get(path)
    assert response.status_code == 200, response.text
    return response.content.replace(response.headers["x-acs-request-id"].encode(), b"<rid>")


def build_history(runtime: bootstrap.Runtime, client: TestClient) -> tuple[str, list[str]]:
    """A cluster with a pool, a scale-out, a failed scale-out, workloads, a free instance and
    a node fault; returns the cluster id and every task id."""
    cluster_id, created = create_cluster(client)
    assert wait_task(client, created)["state"] == "success"
    pool_id = pool_of(client, cluster_id)
    grown = scale(client, cluster_id, pool_id, 1)
    assert grown["state"] == "success"
    runtime.cloud.set_stock(INSTANCE_TYPE, catalogue.zone_of_vswitch(REGION, VSWITCH), 0)
    failed = scale(client, cluster_id, pool_id, 1)
    assert (failed["state"], failed["error"]["code"]) == ("fail", "InstanceCreateFailed")
    ok(
        client.post(
            f"/_emulator/clusters/{cluster_id}/workloads",
            json={
                "deployments": [{"name": "web", "replicas": 3}],
                "daemonsets": [{"name": "logger"}],
                "pdbs": [{"name": "web-pdb", "selector": {"app": "web"}, "minAvailable": 2}],
            },
        )
    )
    runtime.cloud.set_stock(INSTANCE_TYPE, catalogue.zone_of_vswitch(REGION, VSWITCH), 5)
    ok(client.post("/_emulator/instances", json={"cluster_id": cluster_id, "client_token": "x"}))
    node = nodes_of(client, cluster_id)[0].split(" ")[1]
    ok(
        client.post(
            f"/_emulator/clusters/{cluster_id}/nodes/{node}/faults", json={"action": "repair"}
        )
    )
    return cluster_id, [created, grown["task_id"], failed["task_id"]]


def table_sizes(db: storage_database.Database) -> dict[str, int]:
    dumped = snapshots.SnapshotStore(db.engine).dump()
    return {name: len(rows) for name, rows in dumped.items()}


# -- reset ----------------------------------------------------------------------------------------


def test_reset_empties_world_and_history_and_keeps_keys(db_url: str) -> None:
    with serving(db_url) as (runtime, client):
        cluster_id, task_ids = build_history(runtime, client)
        operator = signing.add_key(
            runtime.database, access.Role.OPERATOR, key_id="operator-ak", secret="s3"
        )
        before = table_sizes(runtime.database)
        for name in ("tasks", "task_events", "sim_clusters", "sim_nodes", "sim_pods", "sim_stock"):
            assert before[name] > 0, name
        audit_before = len(list(runtime.database.audit.entries(0, 10_000)))

        body = ok(client.post("/_emulator/reset"))

        assert body["request_id"]
        assert (body["tasks_canceled"], body["tasks_deleted"], body["clusters_deleted"]) == (
            0,
            3,
            1,
        )
        assert table_sizes(runtime.database) == emptied()
        listed = runtime.database.keys.keys()
        keys = {k.access_key_id: k for k in listed}
        assert set(keys) == {signing.KEY_ID, operator.access_key_id}
        assert keys["operator-ak"].role is access.Role.OPERATOR
        # The audit log keeps its history, the reset itself included.
        entries = list(runtime.database.audit.entries(0, 10_000))
        assert len(entries) == audit_before + 1
        assert entries[-1].action == "EmulatorReset"

        gone = client.get(f"/tasks/{task_ids[0]}")
        assert (gone.status_code, gone.json()["code"]) == (404, "ErrorTaskNotFound")
        assert ok(client.get("/api/v1/clusters"))["clusters"] == []
        assert client.get(f"/clusters/{cluster_id}").status_code == 404


def test_reset_stops_a_running_task_and_then_it_is_gone(
    db_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    # At speed 1 the control plane takes minutes to come up: the task is running throughout.
    with serving(db_url, speed=1.0) as (runtime, client):
        executor = runtime.executor
        assert executor is not None
        cluster_id, task_id = create_cluster(client, size=1)
        polling.until(
            "the runner to reach CreateControlPlane",
            lambda: (
                task_id in executor.running_task_ids
                and ok(client.get(f"/tasks/{task_id}"))["current_stage"] == "CreateControlPlane"
            ),
        )

        body = ok(client.post("/_emulator/reset"))

        assert (body["tasks_canceled"], body["tasks_deleted"], body["clusters_deleted"]) == (
            1,
            1,
            1,
        )
        assert executor.running_task_ids == ()
        assert client.get(f"/tasks/{task_id}").status_code == 404
        assert client.get(f"/clusters/{cluster_id}").status_code == 404
        # The executor goes on: a new task gets a runner.
        _, again = create_cluster(client, name="again", size=1)
        polling.until("a runner for the new task", lambda: again in executor.running_task_ids)
        ok(client.post("/_emulator/reset"))
        assert executor.running_task_ids == ()
    # Stopped: nothing can write any more. Nothing came back after the reset.
    reopened = storage_database.Database.open(settings.StorageSettings(url=db_url))
    try:
        assert table_sizes(reopened) == emptied()
    finally:
        reopened.close()
    crashes = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert crashes == [], [r.getMessage() for r in crashes]


def test_after_a_reset_the_same_seed_gives_the_same_ids(db_url: str) -> None:
    def run(client: TestClient) -> list[str]:
        cluster_id, task_id = create_cluster(client)
        assert wait_task(client, task_id)["state"] == "success"
        pool_id = pool_of(client, cluster_id)
        grown = scale(client, cluster_id, pool_id, 1)
        assert grown["state"] == "success"
        return [cluster_id, task_id, pool_id, grown["task_id"], *nodes_of(client, cluster_id)]

    with serving(db_url, seed=7) as (_, client):
        fresh = run(client)
        ok(client.post("/_emulator/reset"))
        assert run(client) == fresh
        ok(client.post("/_emulator/reset"))
        assert run(client) == fresh


# -- export and import ----------------------------------------------------------------------------


def test_export_reset_import_round_trips_exactly(db_url: str) -> None:
    with serving(db_url) as (runtime, client):
        cluster_id, task_ids = build_history(runtime, client)
        exported = export(client)
        described = {task_id: describe_bytes(client, task_id) for task_id in task_ids}
        cluster = body_bytes(client, f"/clusters/{cluster_id}")
        assert exported["format"] == "clustertasks-state"
        assert exported["version"] == 1
        assert list(exported["tables"]) == snapshots.table_names()
        assert len(exported["tables"]["tasks"]) == 3
        assert all(len(exported["tables"][name]) > 0 for name in ("sim_fault_rules", "sim_pdbs"))
        # Every column, integers as integers, booleans as booleans.
        node = exported["tables"]["sim_nodes"][0]
        assert set(node) == {c.name for c in runtime_table("sim_nodes").columns}
        assert isinstance(node["created_us"], int)
        assert isinstance(node["schedulable"], bool)

        ok(client.post("/_emulator/reset"))
        assert client.get(f"/tasks/{task_ids[0]}").status_code == 404
        imported = ok(client.post("/_emulator/state", json=exported))

        assert imported["request_id"]
        assert imported["tasks_deleted"] == 0
        assert imported["imported"] == {
            name: len(rows) for name, rows in exported["tables"].items()
        }
        assert without_time(export(client)) == without_time(exported)
        for task_id in task_ids:
            assert describe_bytes(client, task_id) == described[task_id]
        assert body_bytes(client, f"/clusters/{cluster_id}") == cluster

        # The imported world works, and seeded ids continue after the imported ones.
        grown = scale(client, cluster_id, pool_of(client, cluster_id), 1)
        assert grown["state"] == "success"
        assert grown["task_id"] not in task_ids
        assert grown["task_id"] > max(task_ids)


@pytest.mark.postgres
def test_a_document_moves_between_backends(
    tmp_path: Any, all_databases: databases.Databases
) -> None:
    """Exported from SQLite, imported into PostgreSQL, exported again: the same document."""
    with serving(f"sqlite:///{tmp_path / 'from.db'}") as (runtime, client):
        _, task_ids = build_history(runtime, client)
        exported = export(client)
        described = {task_id: describe_bytes(client, task_id) for task_id in task_ids}
    target = all_databases.empty(databases.POSTGRES)
    try:
        with serving(target) as (_, client):
            ok(client.post("/_emulator/state", json=exported))
            assert without_time(export(client)) == without_time(exported)
            for task_id in task_ids:
                assert describe_bytes(client, task_id) == described[task_id]
    finally:
        all_databases.drop(target)


def runtime_table(name: str) -> Any:
    return next(t for t in snapshots.state_tables() if t.name == name)


def test_import_replaces_running_tasks_and_imported_ones_resume(db_url: str) -> None:
    with serving(db_url, speed=1.0) as (runtime, client):
        executor = runtime.executor
        assert executor is not None
        _, task_id = create_cluster(client, size=1)
        polling.until("a runner for the task", lambda: task_id in executor.running_task_ids)
        exported = export(client)
        assert [t["state"] for t in exported["tables"]["tasks"]] == ["running"]

        imported = ok(client.post("/_emulator/state", json=exported))

        assert (imported["tasks_canceled"], imported["tasks_deleted"]) == (1, 1)
        assert imported["imported"]["tasks"] == 1
        # The imported task is unfinished: the executor picks it up again, as after a restart.
        polling.until(
            "the imported task to run again", lambda: task_id in executor.running_task_ids
        )
        assert ok(client.get(f"/tasks/{task_id}"))["state"] == "running"


def test_a_document_without_some_tables_loads_them_empty(db_url: str) -> None:
    with serving(db_url) as (runtime, client):
        build_history(runtime, client)
        exported = export(client)
        tables = {"tasks": exported["tables"]["tasks"]}
        body = {"format": "clustertasks-state", "version": 1, "tables": tables}
        imported = ok(client.post("/_emulator/state", json=body))
        assert imported["imported"]["tasks"] == 3
        assert imported["imported"]["sim_clusters"] == 0
        sizes = table_sizes(runtime.database)
        assert sizes["tasks"] == 3
        assert sum(sizes.values()) - sizes["sim_clock"] == 3


def test_a_document_of_the_previous_version_with_node_faults_still_imports(db_url: str) -> None:
    """Before node faults were fault rules they had a table of their own, ``sim_faults``:
    an older export's rows become rules, failing the node's action just the same."""
    with serving(db_url) as (runtime, client):
        cluster_id, _ = build_history(runtime, client)
        node = nodes_of(client, cluster_id)[1].split(" ")[1]
        exported = export(client)
        tables = exported["tables"]
        # As the previous version exported it: no rule for the node fault, a sim_faults row.
        (made,) = [r for r in tables["sim_fault_rules"] if r["operation"] == "repair_node"]
        tables["sim_fault_rules"] = [r for r in tables["sim_fault_rules"] if r is not made]
        tables["sim_faults"] = [
            {
                "cluster_id": cluster_id,
                "node_name": made["node_name"],
                "action": "repair",
                "message": "the node stayed NotReady after the repair operations",
                "created_us": made["created_us"],
            },
            {
                "cluster_id": cluster_id,
                "node_name": node,
                "action": "upgrade",
                "message": "kubelet stuck",
                "created_us": made["created_us"] + 1,
            },
        ]
        imported = ok(client.post("/_emulator/state", json=exported))
        assert "sim_faults" not in imported["imported"]
        assert imported["imported"]["sim_fault_rules"] == 2
        rules = ok(client.get("/_emulator/faults"))["faults"]
        assert [(r["match"], r["effect"], r["count"], r["probability"]) for r in rules] == [
            (
                {"node_name": made["node_name"], "operation": "repair_node"},
                {"error_code": "NodeRepairFailed", "message": made["message"]},
                None,
                None,
            ),
            (
                {"node_name": node, "operation": "upgrade_node"},
                {"error_code": "NodeUpgradeFailed", "message": f"node {node}: kubelet stuck"},
                None,
                None,
            ),
        ]
        # New rules continue the seeded sequence without taking a converted rule's id.
        added = ok(client.post("/_emulator/faults", json={"effect": {"error_code": "X"}}))
        assert added["fault_id"] not in {r["fault_id"] for r in rules}
        # A row that is not a node fault names itself.
        tables["sim_faults"] = [{**tables["sim_faults"][0], "action": "reboot"}]
        refused = client.post("/_emulator/state", json=exported)
        assert refused.status_code == 400
        assert "tables.sim_faults[0].action" in refused.json()["message"]


# -- validation ----------------------------------------------------------------------------------

Mutation = Callable[[dict[str, Any]], Any]


def _set(table: str, column: str, value: Any, row: int = 0) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        document["tables"][table][row][column] = value

    return mutate


def _drop(table: str, column: str) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        del document["tables"][table][0][column]

    return mutate


def _tables(change: Callable[[dict[str, Any]], None]) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        change(document["tables"])

    return mutate


def _top(key: str, value: Any) -> Mutation:
    def mutate(document: dict[str, Any]) -> None:
        document[key] = value

    return mutate


def _orphan_stage(tables: dict[str, Any]) -> None:
    stage = dict(tables["task_stages"][0], task_id="T-000000000000000000000000")
    tables["task_stages"].append(stage)


BAD_DOCUMENTS: list[tuple[str, Mutation, str]] = [
    ("wrong format", _top("format", "other-state"), "parameter format is invalid"),
    ("wrong version", _top("version", 2), "parameter version is invalid"),
    ("boolean version", _top("version", True), "parameter version is invalid"),
    ("unknown field", _top("colour", "blue"), "parameter colour is invalid"),
    ("no tables", lambda d: d.pop("tables"), "parameter tables is invalid: is required"),
    ("tables not an object", _top("tables", []), "parameter tables is invalid"),
    ("unknown table", _tables(lambda t: t.update(nope=[])), "tables.nope is invalid"),
    ("a kept table", _tables(lambda t: t.update(access_keys=[])), "tables.access_keys"),
    ("rows not a list", _tables(lambda t: t.update(tasks={})), "tables.tasks is invalid"),
    ("row not an object", _tables(lambda t: t.update(task_events=[1])), "tables.task_events[0]"),
    ("unknown column", _set("tasks", "colour", "blue"), "tables.tasks[0].colour is invalid"),
    ("missing column", _drop("tasks", "task_type"), "tables.tasks[0].task_type is invalid"),
    ("string for integer", _set("tasks", "version", "7"), "tables.tasks[0].version is invalid"),
    ("boolean for integer", _set("tasks", "event_count", True), "tables.tasks[0].event_count"),
    ("integer out of range", _set("task_stages", "position", 1 << 40), "task_stages[0].position"),
    ("string too long", _set("tasks", "state", "x" * 17), "tables.tasks[0].state is invalid"),
    ("null not allowed", _set("tasks", "cluster_id", None), "tables.tasks[0].cluster_id"),
    ("string for boolean", _set("sim_nodes", "schedulable", "yes"), "sim_nodes[0].schedulable"),
    (
        "duplicate key",
        _tables(lambda t: t["tasks"].append(dict(t["tasks"][0]))),
        "tables.tasks is invalid: a row breaks a constraint",
    ),
    ("dangling reference", _tables(_orphan_stage), "tables.task_stages is invalid"),
    ("unknown task state", _set("tasks", "state", "bogus"), "cannot be read back: 'bogus'"),
    ("unknown stage state", _set("task_stages", "state", "done"), "cannot be read back: 'done'"),
    ("parameters not an object", _set("tasks", "parameters", [1]), "parameters must be a JSON"),
    ("unknown target type", _set("tasks", "target_type", "vm"), "target_type 'vm'"),
]


def test_bad_documents_are_refused_by_name_and_change_nothing(db_url: str) -> None:
    with serving(db_url) as (runtime, client):
        build_history(runtime, client)
        good = export(client)
        for label, mutate, expected in BAD_DOCUMENTS:
            bad = copy.deepcopy(good)
            mutate(bad)
            response = client.post("/_emulator/state", json=bad)
            assert response.status_code == 400, (label, response.text)
            error = response.json()
            assert error["code"] == "InvalidParameter", label
            assert expected in error["message"], (label, error["message"])
            assert set(error) == {"code", "message", "requestId", "status"}
        for label, raw in (
            ("not JSON", b"{"),
            ("NaN", b'{"format": NaN}'),
            ("empty", b""),
            ("a list", b"[]"),
        ):
            response = client.post(
                "/_emulator/state", content=raw, headers={"content-type": "application/json"}
            )
            assert response.status_code == 400, (label, response.text)
            assert "parameter body is invalid" in response.json()["message"], label
        assert without_time(export(client)) == without_time(good)


def test_import_and_reset_without_an_executor(api: TestClient, task_store: store.TaskStore) -> None:
    """``--no-executor``: nothing runs here; the executor lock keeps one from starting meanwhile."""
    view = factories.seed_task(task_store)
    task_id = view.task.task_id
    assert task_store.task_stamp(task_id) == store.Stamp(view.task.version, 0)
    exported = ok(api.get("/_emulator/state"))
    assert [t["task_id"] for t in exported["tables"]["tasks"]] == [task_id]
    body = ok(api.post("/_emulator/reset"))
    assert (body["tasks_canceled"], body["tasks_deleted"], body["clusters_deleted"]) == (1, 1, 0)
    assert api.get(f"/tasks/{task_id}").status_code == 404
    ok(api.post("/_emulator/state", json=exported))
    assert without_time(ok(api.get("/_emulator/state"))) == without_time(exported)
    assert json.loads(describe_bytes(api, task_id).decode())["state"] == "running"
    # The reset and the import each started a generation; a refused import starts none
    # (a duplicate row: refused inside the transaction that bumps it).
    assert task_store.task_stamp(task_id) == store.Stamp(view.task.version, 2)
    tasks = exported["tables"]["tasks"]
    twice = {**exported, "tables": {**exported["tables"], "tasks": tasks + tasks}}
    assert api.post("/_emulator/state", json=twice).status_code == 400
    assert task_store.task_stamp(task_id).generation == 2


def test_only_admin_keys_may_reset_or_import(
    api: TestClient, database: storage_database.Database, task_store: store.TaskStore
) -> None:
    signing.add_key(database, access.Role.OPERATOR, key_id="op-ak", secret="op-secret")
    factories.seed_task(task_store)
    before = ok(api.get("/_emulator/state"))
    operator = signing.auth("op-ak", "op-secret")
    for method, path in (("POST", "/_emulator/reset"), ("GET", "/_emulator/state")):
        denied = api.request(method, path, auth=operator)
        assert (denied.status_code, denied.json()["code"]) == (403, "Forbidden.RAM"), path
    denied = api.post("/_emulator/state", json=before, auth=operator)
    assert denied.status_code == 403
    assert without_time(ok(api.get("/_emulator/state"))) == without_time(before)
