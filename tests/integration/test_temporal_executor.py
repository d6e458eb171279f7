"""What only the Temporal executor has: its workflows, and a reconciler that starts them.

The engine guarantees themselves run on both executors in test_engine.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError

from clustertasks import bootstrap, clock, errors, settings
from clustertasks.domain import records, states
from clustertasks.emulator import state as emulator_state
from clustertasks.engine.temporal import client as temporal_client
from clustertasks.engine.temporal import load as temporal_load
from clustertasks.engine.temporal import messages
from clustertasks.engine.temporal import worker as temporal_worker
from clustertasks.service import control
from clustertasks.storage import database as storage_database
from tests.integration import test_engine
from tests.integration.test_engine import Harness, reasons, run, stage_states
from tests.support import databases, executors, fake_cloud, polling
from tests.support import operations as ops


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
    reconciler starts it. A second start is refused while the task's workflow is open
    (workflow id = task id); one that comes after the task ended gets a workflow that finds
    it ended and completes, running nothing again."""

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
        # Started at this code's version: its path is in its input, no patch marker.
        history = await connection.get_workflow_handle(orphan).fetch_history()
        started = history.events[0].workflow_execution_started_event_attributes
        assert started.input.payloads[1].data == str(messages.VERSION).encode()
        assert not any(e.HasField("marker_recorded_event_attributes") for e in history.events)
        workflows = temporal_client.Workflows(connection, h.task_queue)
        napping = h.submit("test_nap", records.Target("np2", "nodepool"), seconds=600)
        await h.until(napping, lambda v: v.stages[0].state is states.StageState.RUNNING)
        assert not await workflows.ensure_started(napping)
        h.control.cancel(napping)
        await h.state(napping, states.TaskState.CANCELED)
        await asyncio.wait_for(connection.get_workflow_handle(orphan).result(), 30)
        before = h.view(orphan)
        assert await workflows.ensure_started(orphan)  # too late: the task has ended
        assert await asyncio.wait_for(connection.get_workflow_handle(orphan).result(), 30)
        assert h.view(orphan) == before
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


@pytest.mark.postgres
def test_the_emulator_reset_cancels_unfinished_tasks_first_or_refuses_naming_one(
    pg_database: storage_database.Database, temporal_address: str
) -> None:
    """What an API replica's reset does before it replaces the state (``Notifier.halted``)."""

    async def scenario(h: Harness) -> None:
        await h.start()
        napping = h.submit("test_nap", seconds=600)
        paused = h.submit("test_batches", records.Target("np2", "nodepool"))
        await h.until(napping, lambda v: v.stages[0].state is states.StageState.RUNNING)
        await h.until(paused, lambda v: v.stages[1].state is states.StageState.RUNNING)
        h.control.pause(paused)
        ops.gate(1).set()
        await h.state(paused, states.TaskState.PAUSED)
        assert h._notifier is not None
        async with h._notifier.halted():
            # Inside the block no stage runs: both ended as a CancelTask ends them.
            for task_id in (napping, paused):
                view = h.view(task_id)
                assert view.task.state is states.TaskState.CANCELED
                assert reasons(view)[-1] == "TaskCanceled"

        # A stage that never reaches a checkpoint cannot be stopped: refused, naming it.
        ops.gate(1).clear()
        stuck = h.submit("test_two_steps", records.Target("np3", "nodepool"))
        await h.until(stuck, lambda v: v.stages[0].state is states.StageState.RUNNING)
        with pytest.raises(errors.TaskConflict) as refused:
            async with h._notifier.halted(wait=0.5):
                raise AssertionError("the block ran with a stage running")
        assert refused.value.code == "ErrorTaskConflict"
        assert stuck in refused.value.message
        ops.gate(1).set()
        await h.state(stuck, states.TaskState.CANCELED)

    run(pg_database, scenario, _engine(temporal_address))


@pytest.mark.postgres
def test_a_task_an_emulator_import_brings_back_runs_again_to_its_end(
    pg_database: storage_database.Database, temporal_address: str
) -> None:
    """An import of a state in which a task was running: the halt cancels the task (its
    workflow completes), the import brings it back unfinished, and it gets a new workflow
    at once (workflow id = task id: a closed workflow may be followed by a new one), which
    runs it to its end as the exported state had it."""

    async def scenario(h: Harness) -> tuple[str, str, str]:
        await h.start()
        task_id = h.submit("test_nap", seconds=1)
        await h.until(task_id, lambda v: v.stages[0].state is states.StageState.RUNNING)
        assert h._notifier is not None
        temporal = await temporal_client.connect(
            settings.TemporalSettings(address=temporal_address)
        )
        first_run = (await temporal.get_workflow_handle(task_id).describe()).run_id
        emulator = emulator_state.EmulatorState(pg_database, halt=h._notifier.halted)
        exported = emulator.export()
        imported = await emulator.restore(exported)
        assert imported.removed.tasks_canceled == 1
        assert h.view(task_id).task.state is states.TaskState.RUNNING
        await h.until(task_id, lambda v: v.task.state is states.TaskState.SUCCESS)
        # The workflow completes just after the task's last commit.
        handle = temporal.get_workflow_handle(task_id)
        await asyncio.wait_for(handle.result(), 30)
        described = await handle.describe()
        assert described.status is WorkflowExecutionStatus.COMPLETED
        return task_id, first_run, str(described.run_id)

    task_id, first_run, last_run = run(pg_database, scenario, _engine(temporal_address))
    assert last_run != first_run
    view = pg_database.tasks.describe_task(task_id)
    assert stage_states(view) == [("Nap", "success")]
    assert reasons(view) == ["TaskStart", "TaskSucceed"]
    # Once: the halt cancelled the running task before the state was replaced.
    assert ops.calls[f"{task_id}:compensate"] == 1


def test_the_temporal_executor_keeps_the_simulated_clock_in_realtime(db_url: str) -> None:
    temporal = settings.EngineSettings(executor=False, temporal=settings.TemporalSettings())
    storage = settings.StorageSettings(url=db_url)
    with pytest.raises(errors.ConfigurationError) as refused:
        bootstrap.build(
            settings.Settings(
                storage=storage, engine=temporal, sim=settings.SimSettings(clock="manual")
            )
        )
    assert "--sim-clock manual" in refused.value.message
    assert "realtime" in refused.value.message

    runtime = bootstrap.build(settings.Settings(storage=storage, engine=temporal))
    try:
        clock = runtime.services.emulator.clock
        for mode in ("manual", "per_poll"):
            with pytest.raises(errors.InvalidParameter) as caught:
                clock.set({"mode": mode})
            assert caught.value.field == "mode"
            assert "must be realtime" in caught.value.message
        assert clock.view().mode == "realtime"
        assert clock.set({"mode": "realtime", "speed": 2}).speed == 2
    finally:
        runtime.close()


def test_one_worker_at_a_time_reconciles(database: storage_database.Database, backend: str) -> None:
    """The reconciler's turn lock: taken by one process, skipped by the others until freed
    (SQLite: one process per database file, always free)."""
    first, second = (database.turn_lock("test.turn") for _ in range(2))
    other_chore = database.turn_lock("test.other")
    try:
        assert first.try_acquire()
        assert second.try_acquire() is (backend == databases.SQLITE)
        assert other_chore.try_acquire()
        first.release()
        assert second.try_acquire()
    finally:
        for lock in (first, second, other_chore):
            lock.release()


@pytest.mark.postgres
@pytest.mark.parametrize("recheck", [0.0, 3600.0])
def test_the_reconciler_asks_again_about_a_task_with_a_workflow_only_after_the_recheck(
    pg_database: storage_database.Database, temporal_address: str, recheck: float
) -> None:
    """A pass starts what is missing; the next pass does not ask Temporal again about a task
    it saw with a workflow until ``recheck_seconds`` passed: a workflow terminated meanwhile
    gets a new one only then."""
    queue = f"test-{uuid.uuid4().hex}"
    task_id = (
        control.TaskControl(pg_database.tasks, ops.REGISTRY)
        .submit(
            "test_batches",
            cluster_id=test_engine.CLUSTER,
            target=test_engine.NP1,
            parameters={"ungated": True},
        )
        .task.task_id
    )

    async def scenario() -> tuple[temporal_worker.Reconciled, temporal_worker.Reconciled]:
        temporal = await temporal_client.connect(
            settings.TemporalSettings(address=temporal_address)
        )
        activities = temporal_worker.StageActivities(
            pg_database.tasks, ops.REGISTRY, fake_cloud.FakeCloud()
        )
        # Never run: no worker polls the queue, the workflows stay open.
        reconciler = temporal_worker.TemporalWorker(
            temporal, activities, pg_database.tasks, task_queue=queue, recheck_seconds=recheck
        )
        try:
            first = await reconciler.reconcile()
            await temporal.get_workflow_handle(task_id).terminate()
            return first, await reconciler.reconcile()
        finally:
            activities.close()
            with contextlib.suppress(RPCError):
                await temporal.get_workflow_handle(task_id).terminate()

    first, second = asyncio.run(scenario())
    assert first == temporal_worker.Reconciled(asked=1, started=1)
    expected = 1 if recheck == 0.0 else 0
    assert second == temporal_worker.Reconciled(asked=expected, started=expected)


@pytest.mark.postgres
def test_a_reconciler_leaves_alone_a_task_whose_workflow_runs_whoever_started_it(
    pg_database: storage_database.Database, temporal_address: str
) -> None:
    """Each worker reconciles in its turn, and a worker that has not seen a task yet asks
    Temporal about it only if no workflow has planned it lately: a task planned (its first
    event written) that changed within the recheck has a workflow that runs, whichever
    worker or replica started it. Without that, every worker would ask once about every
    running task, each ask refused."""
    queue = f"test-{uuid.uuid4().hex}"
    submitter = control.TaskControl(pg_database.tasks, ops.REGISTRY)
    planned, queued = (
        submitter.submit(
            "test_batches", cluster_id=test_engine.CLUSTER, target=target, parameters={}
        ).task.task_id
        for target in (test_engine.NP1, records.Target("np2", "nodepool"))
    )

    async def scenario() -> list[temporal_worker.Reconciled]:
        config = settings.TemporalSettings(address=temporal_address)
        temporal = await temporal_client.connect(config)
        activities = temporal_worker.StageActivities(
            pg_database.tasks, ops.REGISTRY, fake_cloud.FakeCloud()
        )

        async def reconciler(recheck: float) -> temporal_worker.TemporalWorker:
            # Never run: no worker polls the queue, the workflows stay open. A connection
            # each, as in a process of its own.
            return temporal_worker.TemporalWorker(
                await temporal_client.connect(config),
                activities,
                pg_database.tasks,
                task_queue=queue,
                recheck_seconds=recheck,
            )

        try:
            passes = [await (await reconciler(3600)).reconcile()]
            # What the planned task's workflow writes first, as its first activity would.
            pg_database.tasks.append_event(
                planned,
                action="start",
                level=states.EventLevel.NORMAL,
                reason="TaskStart",
                message=f"test_batches task {planned} started",
                now_us=clock.SystemClock().now_us(),
            )
            passes.append(await (await reconciler(3600)).reconcile())
            passes.append(await (await reconciler(0.0)).reconcile())
            return passes
        finally:
            activities.close()
            for task_id in (planned, queued):
                with contextlib.suppress(RPCError):
                    await temporal.get_workflow_handle(task_id).terminate()

    first, another, recheck_at_once = asyncio.run(scenario())
    assert first == temporal_worker.Reconciled(asked=2, started=2)
    assert another == temporal_worker.Reconciled(asked=1, started=0)
    assert recheck_at_once == temporal_worker.Reconciled(asked=2, started=0)
