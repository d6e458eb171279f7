"""kill -9 the server in the middle of twenty scale-outs; a restarted server finishes every
one of them, with nothing created twice and nothing lost.

On each executor: the local one (one ``serve`` runs the stages), and Temporal's (an API
replica and a ``worker`` on the session's dev server; both are killed, as when their machine
dies, and a new pair takes over the same task queue).
"""

from __future__ import annotations

import collections
import contextlib
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
from alibabacloud_cs20151215 import models as cs_models

from clustertasks import settings
from clustertasks.domain import states
from clustertasks.storage import database
from tests.acceptance import sdk
from tests.support import executors, polling, signing
from tests.support.server import ServerProcess
from tests.support.temporal import WorkerProcess

TASKS = 20
NODES = 3


def _events(server: ServerProcess, task_id: str) -> list[dict[str, str]]:
    body = httpx.get(f"{server.url}/tasks/{task_id}", trust_env=False, auth=signing.auth()).json()
    return list(body["events"])


def _started(server: ServerProcess, task_ids: list[str], enough: int) -> int:
    """How many tasks created an instance, counting no further than ``enough``."""
    started = 0
    for task_id in task_ids:
        if any(e["reason"] == "InstanceCreated" for e in _events(server, task_id)):
            started += 1
            if started >= enough:
                break
    return started


@contextlib.contextmanager
def _deployment(
    engine: executors.Choice, db_url: str, tmp_path: Path, queue: str, *args: str
) -> Iterator[tuple[ServerProcess, list[ServerProcess | WorkerProcess]]]:
    """The API and every process of the executor (what a kill -9 of the machine ends)."""
    if engine.kind == executors.LOCAL:
        with ServerProcess(db_url, tmp_path, *args) as alone:
            yield alone, [alone]
        return
    assert engine.temporal_address is not None
    temporal = ("--temporal-address", engine.temporal_address, "--task-queue", queue)
    worker = WorkerProcess(db_url, tmp_path, engine.temporal_address, queue, *args).launch()
    try:
        with ServerProcess(db_url, tmp_path, "--executor", "temporal", *temporal, *args) as api:
            worker.wait_ready()
            yield api, [api, worker]
        # Killed, or stopped cleanly.
        assert worker.stop() in (0, -signal.SIGKILL), worker.log()
    finally:
        worker.kill()


def test_kill_9_mid_flight_then_every_task_finishes(
    db_url: str, engine: executors.Choice, tmp_path: Path
) -> None:
    queue = f"crash-{uuid.uuid4().hex}"
    # Arrange the world quickly: a cluster with twenty empty pools.
    with ServerProcess(db_url, tmp_path, "--sim-speed", "0") as setup:
        client = sdk.client(setup)
        cluster_id, created = sdk.create_cluster(client, pool_size=0)
        assert created.state == "success"
        pool_ids = []
        for index in range(TASKS):
            pool = client.create_cluster_node_pool(
                cluster_id, sdk.pool_request(f"pool-{index}", 0)
            ).body
            assert sdk.wait_task(client, pool.task_id).state == "success"
            pool_ids.append(pool.nodepool_id)
        assert setup.stop() == 0

    # Realistic durations, five times faster: each scale-out takes seconds, long enough for
    # the kill to land while most are running even on a busy machine.
    with _deployment(engine, db_url, tmp_path, queue, "--sim-speed", "5") as (running, machine):
        client = sdk.client(running)
        task_ids = [
            client.scale_cluster_node_pool(
                cluster_id, pool_id, cs_models.ScaleClusterNodePoolRequest(count=NODES)
            ).body.task_id
            for pool_id in pool_ids
        ]
        polling.until(
            "scale-outs getting going (a few tasks that created an instance)",
            lambda: _started(running, task_ids, enough=3),
            lambda started: started >= 3,
            interval=0.05,
        )
        states_before = [client.describe_task_info(t).body.state for t in task_ids]
        for process in machine:
            process.kill()
    assert states_before.count("running") >= 1, "the kill came too late to prove anything"

    # A new server on the same database finishes every task.
    with _deployment(engine, db_url, tmp_path, queue, "--sim-speed", "0") as (restarted, _):
        client = sdk.client(restarted)
        finished = [sdk.wait_task(client, t, timeout=120) for t in task_ids]
        for task in finished:
            assert task.state == "success", (task.task_id, task.error.code, task.error.message)
            assert len(task.task_result) == NODES
            assert {r.status for r in task.task_result} == {"success"}
            assert len({r.data for r in task.task_result}) == NODES
            reasons = [e.reason for e in task.events]
            assert reasons.count("TaskStart") == 1
            assert reasons[-1] == "TaskSucceed"
            assert reasons.count("InstanceCreated") == NODES
            assert reasons.count("NodeJoined") == NODES
            stamps = [int(e.timestamp) for e in task.events]
            assert stamps == sorted(stamps)

        # The world: every pool has exactly its three nodes, nothing twice.
        nodes = client.describe_cluster_nodes(
            cluster_id, cs_models.DescribeClusterNodesRequest(page_size="100")
        ).body
        assert nodes.page.total_count == TASKS * NODES
        per_pool = collections.Counter(n.nodepool_id for n in nodes.nodes)
        assert per_pool == {pool_id: NODES for pool_id in pool_ids}
        assert {n.node_status for n in nodes.nodes} == {"Ready"}
        instance_ids = [n.instance_id for n in nodes.nodes]
        assert len(set(instance_ids)) == len(instance_ids)
        reported = {r.data for task in finished for r in task.task_result}
        assert reported == set(instance_ids)
        assert client.describe_cluster_detail(cluster_id).body.size == TASKS * NODES
        assert restarted.stop() == 0

    # Event history is unbroken: numbered 1..n with no gap in every task.
    db = database.Database.open(settings.StorageSettings(url=db_url))
    task_store = db.tasks
    try:
        for task_id in task_ids:
            events = task_store.describe_task(task_id).events
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            assert task_store.get_task(task_id).state is states.TaskState.SUCCESS
    finally:
        db.close()
