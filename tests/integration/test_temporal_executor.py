"""What only the Temporal executor has: its workflows, and a reconciler that starts them.

The engine guarantees themselves run on both executors in test_engine.py.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest

from clustertasks import settings
from clustertasks.domain import states
from clustertasks.engine.temporal import client as temporal_client
from clustertasks.engine.temporal import load as temporal_load
from clustertasks.storage import database as storage_database
from tests.integration import test_engine
from tests.integration.test_engine import Harness, reasons, run, stage_states
from tests.support import databases, executors, polling
from tests.support import operations as ops


@pytest.fixture
def pg_database(all_databases: databases.Databases) -> Iterator[storage_database.Database]:
    url = all_databases.migrated(databases.POSTGRES)
    opened = storage_database.Database.open(settings.StorageSettings(url=url))
    try:
        yield opened
    finally:
        opened.close()
        all_databases.drop(url)


@pytest.fixture(autouse=True)
def _fresh_operations() -> Iterator[None]:
    ops.reset()
    yield
    ops.reset()


def _engine(temporal_address: str) -> executors.Choice:
    return executors.Choice(executors.TEMPORAL, temporal_address)


@pytest.mark.postgres
def test_cancelling_the_workflow_in_temporal_cancels_the_task_with_compensation(
    pg_database: storage_database.Database, temporal_address: str
) -> None:
    async def scenario(h: Harness) -> str:
        await h.start()
        task_id = h.submit("test_nap", seconds=60)
        await h.until(task_id, lambda v: v.stages[0].state is states.StageState.RUNNING)
        connection = await temporal_client.connect(
            settings.TemporalSettings(address=temporal_address)
        )
        await connection.get_workflow_handle(task_id).cancel()
        # Temporal tells a running activity of its cancellation in a heartbeat's answer.
        await h.until(task_id, lambda v: v.task.state is states.TaskState.CANCELED, timeout=60)
        return task_id

    task_id = run(pg_database, scenario, _engine(temporal_address))
    view = pg_database.tasks.describe_task(task_id)
    assert stage_states(view) == [("Nap", "canceled")]
    assert view.task.requested_action is None
    assert reasons(view).count("TaskCanceled") == 1
    assert ops.calls[f"{task_id}:compensate"] == 1


@pytest.mark.postgres
def test_a_committed_task_without_a_workflow_gets_one_and_only_one(
    pg_database: storage_database.Database, temporal_address: str
) -> None:
    """An API replica that died after the commit, before starting the workflow: the workers'
    reconciler starts it; a second start of the same task is refused (workflow id = task id)."""

    async def scenario(h: Harness) -> str:
        orphan = h.control.submit(  # before start(): no workflow is started for it
            "test_batches",
            cluster_id=test_engine.CLUSTER,
            target=test_engine.NP1,
            parameters={"ungated": True},
        ).task.task_id
        await h.start()  # the worker's first reconcile starts it
        await h.state(orphan, states.TaskState.SUCCESS)
        connection = await temporal_client.connect(
            settings.TemporalSettings(address=temporal_address)
        )
        workflows = temporal_client.Workflows(connection, h.task_queue)
        assert not await workflows.ensure_started(orphan)
        return orphan

    task_id = run(pg_database, scenario, _engine(temporal_address))
    view = pg_database.tasks.describe_task(task_id)
    assert view.task.state is states.TaskState.SUCCESS
    assert reasons(view).count("TaskStart") == 1
    assert ops.calls[f"{task_id}:batches"] == 1


def test_the_queue_load_counts_open_workflows_and_what_waits_for_a_worker(
    temporal_address: str,
) -> None:
    """What /metrics reports as the Temporal executor's running and backlog gauges."""
    config = settings.TemporalSettings(
        address=temporal_address, task_queue=f"load-{uuid.uuid4().hex}"
    )

    async def scenario() -> tuple[int, int]:
        temporal = await temporal_client.connect(config)
        queue_load = temporal_load.QueueLoad(config, every=0.05)
        assert queue_load.load() == (0, 0)
        # Three tasks' workflows on a queue no worker polls: open, and waiting.
        workflows = temporal_client.Workflows(temporal, config.task_queue)
        for index in range(3):
            assert await workflows.ensure_started(f"T-{index:024x}")
        stop = asyncio.Event()
        watching = asyncio.create_task(queue_load.watch(temporal, stop))
        try:
            return await polling.until_async(
                "the queue's load", queue_load.load, lambda load: load == (3, 3), timeout=30
            )
        finally:
            stop.set()
            await watching
            for index in range(3):
                await temporal.get_workflow_handle(f"T-{index:024x}").terminate()

    assert asyncio.run(scenario()) == (3, 3)
