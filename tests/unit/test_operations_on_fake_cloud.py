"""Real operations, run by the local executor on an SQLite file, against the in-memory
cloud port: what a task asks of the cloud and what it records, without a server."""

from __future__ import annotations

import asyncio
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from clustertasks import settings
from clustertasks.domain import records, states
from clustertasks.engine import executor, runner
from clustertasks.operations import catalog
from clustertasks.service import control
from clustertasks.storage import database as storage_database
from tests.support import fake_cloud

CLUSTER = "c" + "5" * 32
POOL = "np" + "6" * 32


@pytest.fixture
def db(tmp_path: pathlib.Path) -> Iterator[storage_database.Database]:
    url = f"sqlite:///{tmp_path / 'tasks.db'}"
    opened = storage_database.Database.open(settings.StorageSettings(url=url))
    try:
        yield opened
    finally:
        opened.close()


def _run(
    db: storage_database.Database,
    cloud: fake_cloud.FakeCloud,
    task_type: str,
    target: records.Target,
    parameters: dict[str, Any],
) -> records.TaskView:
    """Submit the task, let the local executor run it to its end, return what it shows."""
    registry = catalog.registry()
    submitted = control.TaskControl(db.tasks, registry).submit(
        task_type, cluster_id=CLUSTER, target=target, parameters=parameters
    )

    async def scenario() -> records.TaskView:
        engine = executor.LocalExecutor(
            db.tasks,
            registry,
            cloud,
            lock=db.executor_lock(),
            tuning=runner.EngineTuning(retry_delay_scale=0),
        )
        await engine.start()
        try:
            deadline = asyncio.get_running_loop().time() + 30
            while True:
                view = db.tasks.describe_task(submitted.task.task_id)
                if view.task.state.terminal:
                    return view
                assert asyncio.get_running_loop().time() < deadline, view
                await asyncio.sleep(0.01)
        finally:
            await engine.stop()

    return asyncio.run(scenario())


def _stages(view: records.TaskView) -> dict[str, states.StageState]:
    return {stage.name: stage.state for stage in view.stages}


def _reasons(view: records.TaskView) -> list[str]:
    return [event.reason for event in view.events]


def test_a_node_pool_scale_out_creates_joins_and_settles_the_pool(
    db: storage_database.Database,
) -> None:
    cloud = fake_cloud.FakeCloud()
    cloud.add_cluster(CLUSTER)
    cloud.add_nodepool(CLUSTER, POOL, nodes=1)

    view = _run(
        db,
        cloud,
        "cluster_scaleout",
        records.Target(POOL, "nodepool"),
        {"nodepool_id": POOL, "count": 2, "desired_size": 3},
    )

    assert view.task.state is states.TaskState.SUCCESS, view.task.error
    assert set(_stages(view).values()) == {states.StageState.SUCCESS}
    assert list(_stages(view)) == ["Precheck", "CreateInstances", "JoinNodes", "Finish"]
    created = next(stage for stage in view.stages if stage.name == "CreateInstances")
    made = [str(i) for i in created.outputs["instance_ids"]]
    assert len(made) == 2
    assert {r.data: r.status for r in view.results} == dict.fromkeys(
        made, states.ResultStatus.SUCCESS
    )
    assert {cloud.nodes[n].instance_id for n in cloud.nodes} >= set(made)
    assert all(cloud.instances[i].status == "Running" for i in made)
    pool = cloud.nodepools[POOL]
    assert (pool.state, pool.desired_size) == ("active", 3)
    reasons = _reasons(view)
    assert reasons.count("InstanceCreated") == 2
    assert reasons.count("NodeJoined") == 2
    assert reasons[-2:] == ["NodePoolScaleOutSucceed", "TaskSucceed"]
    # Each instance was asked for once, with a key of its own.
    keys = [action[1] for action in cloud.actions if action[0] == "create_instance"]
    assert len(keys) == len(set(keys)) == 2


def test_removing_a_node_cordons_drains_and_releases_it(
    db: storage_database.Database,
) -> None:
    cloud = fake_cloud.FakeCloud()
    cloud.add_cluster(CLUSTER)
    cloud.add_nodepool(CLUSTER, POOL, nodes=2)
    leaving, staying = sorted(cloud.nodes.values(), key=lambda n: n.created_us)
    cloud.add_pod(leaving.node_name, "web-0")
    cloud.add_pod(leaving.node_name, "logger-0", kind="DaemonSet")
    cloud.add_pod(staying.node_name, "web-1")
    entry = {
        "node_name": leaving.node_name,
        "instance_id": leaving.instance_id,
        "nodepool_id": POOL,
    }

    view = _run(
        db,
        cloud,
        "cluster_node_delete",
        records.Target(POOL, "nodepool"),
        {
            "nodepool_id": POOL,
            "nodes": [entry],
            "drain_node": True,
            "release_node": True,
            "concurrency": False,
        },
    )

    assert view.task.state is states.TaskState.SUCCESS, view.task.error
    assert _stages(view) == {
        "Precheck": states.StageState.SUCCESS,
        "DrainNodes": states.StageState.SUCCESS,
        "RemoveNodes": states.StageState.SUCCESS,
        "Finish": states.StageState.SUCCESS,
    }
    assert [(r.data, r.status) for r in view.results] == [
        (leaving.instance_id, states.ResultStatus.SUCCESS)
    ]
    # Cordoned before the drain; the DaemonSet pod was not evicted, only web-0.
    asked = [a for a in cloud.actions if a[0] in ("update_node", "evict_pod", "remove_node")]
    assert asked == [
        ("update_node", leaving.node_name, "False"),
        ("evict_pod", "web-0"),
        ("remove_node", leaving.instance_id, "release"),
    ]
    assert list(cloud.nodes) == [staying.node_name]
    assert cloud.instances[leaving.instance_id].status == "Released"
    assert sorted(cloud.pods) == ["web-1"]
    pool = cloud.nodepools[POOL]
    assert (pool.state, pool.desired_size) == ("active", 1)
    reasons = _reasons(view)
    for reason in ("NodeRemoveStart", "NodeCordoned", "PodEvicted", "NodeDrained"):
        assert reason in reasons
    assert reasons[-2:] == ["NodeRemoveSucceed", "TaskSucceed"]


def test_a_drain_blocked_by_a_budget_fails_and_uncordons_the_node(
    db: storage_database.Database,
) -> None:
    cloud = fake_cloud.FakeCloud()
    cloud.add_cluster(CLUSTER)
    cloud.add_nodepool(CLUSTER, POOL, nodes=1)
    (node,) = cloud.nodes.values()
    cloud.add_pod(node.node_name, "db-0")
    cloud.blocked["db-0"] = "db-pdb"
    entry = {"node_name": node.node_name, "instance_id": node.instance_id, "nodepool_id": POOL}

    view = _run(
        db,
        cloud,
        "cluster_node_delete",
        records.Target(POOL, "nodepool"),
        {
            "nodepool_id": POOL,
            "nodes": [entry],
            "drain_node": True,
            "release_node": True,
            "drain_timeout": 30,
            "on_drain_timeout": "fail",
        },
    )

    assert view.task.state is states.TaskState.FAIL
    assert view.task.error is not None
    assert [(r.data, r.status) for r in view.results] == [
        (node.instance_id, states.ResultStatus.FAILED)
    ]
    # It waited the cloud's time between eviction rounds, then gave the node back.
    assert cloud.waited >= 30
    assert cloud.nodes[node.node_name].schedulable
    assert "db-0" in cloud.pods
    assert "DrainBlockedByPDB" in _reasons(view)
