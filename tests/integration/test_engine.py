"""The engine in-process on SQLite and PostgreSQL, with operations defined by the tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest

from clustertasks import errors, settings
from clustertasks.domain import records, states
from clustertasks.engine import executor, runner
from clustertasks.engine.temporal import client as temporal_client
from clustertasks.engine.temporal import worker as temporal_worker
from clustertasks.operations import base
from clustertasks.service import control
from clustertasks.storage import database as storage_database
from clustertasks.storage import store
from tests.support import executors, fake_cloud, polling
from tests.support import operations as ops

T = TypeVar("T")
CLUSTER = "c0123456789abcdef0123456789abcdef"
NP1 = records.Target("np1", "nodepool")
NP2 = records.Target("np2", "nodepool")
WHOLE = records.Target(CLUSTER, "cluster")


@pytest.fixture(autouse=True)
def _fresh_operations() -> Iterator[None]:
    ops.reset()
    yield
    ops.reset()


class Harness:
    """The task service and an executor of the kind asked for, on one database.

    ``temporal``: an in-process Temporal worker (the dev server the session started) on a
    task queue of its own, and the API replica's notifier as the service's ``notify``.
    """

    def __init__(
        self,
        db: storage_database.Database,
        engine: executors.Choice = executors.LOCAL_CHOICE,
    ) -> None:
        self.db = db
        self.store = db.tasks
        self.kind = engine.kind
        self.control = control.TaskControl(db.tasks, ops.REGISTRY, notify=self._wake)
        self.executor: executor.LocalExecutor | None = None
        self._temporal_address = engine.temporal_address
        self.task_queue = f"test-{uuid.uuid4().hex}"
        self._notifier: temporal_client.Notifier | None = None
        self._worker: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._activities: temporal_worker.StageActivities | None = None

    def wake(self, task_id: str) -> None:
        """What an API replica does when a task is submitted or changed by a request."""
        self._wake(task_id)

    def _wake(self, task_id: str) -> None:
        if self.executor is not None:
            self.executor.wake(task_id)
        if self._notifier is not None:
            self._notifier.notify(task_id)

    async def start(self) -> None:
        tuning = runner.EngineTuning(retry_delay_scale=0)
        if self.kind == executors.TEMPORAL:
            assert self._temporal_address is not None
            self._notifier = temporal_client.Notifier(
                self.store,
                settings.TemporalSettings(
                    address=self._temporal_address, task_queue=self.task_queue
                ),
            )
            temporal = await self._notifier.start()
            self._activities = temporal_worker.StageActivities(
                self.store, ops.REGISTRY, fake_cloud.FakeCloud(), tuning=tuning
            )
            worker = temporal_worker.TemporalWorker(
                temporal, self._activities, self.store, task_queue=self.task_queue
            )
            self._stopping = asyncio.Event()
            self._worker = asyncio.create_task(worker.run(self._stopping))
            return
        self.executor = executor.LocalExecutor(
            self.store,
            ops.REGISTRY,
            fake_cloud.FakeCloud(),
            lock=self.db.executor_lock(),
            tuning=tuning,
        )
        await self.executor.start()

    async def stop(self) -> None:
        if self.executor is not None:
            await self.executor.stop()
            self.executor = None
        if self._worker is not None:
            self._stopping.set()
            await self._worker
            self._worker = None
        if self._activities is not None:
            self._activities.close()
            self._activities = None

    def submit(self, task_type: str, target: records.Target = NP1, **params: Any) -> str:
        return self.control.submit(
            task_type, cluster_id=CLUSTER, target=target, parameters=params
        ).task.task_id

    def view(self, task_id: str) -> records.TaskView:
        return self.store.describe_task(task_id)

    async def until(
        self, task_id: str, predicate: Callable[[records.TaskView], bool], timeout: float = 20
    ) -> records.TaskView:
        """Bounded poll of the store until ``predicate`` holds."""
        return await polling.until_async(
            f"task {task_id}",
            lambda: self.view(task_id),
            predicate,
            timeout=timeout,
            interval=0.01,
            show=lambda view: f"{view.task.state}: {view}",
        )

    async def state(self, task_id: str, *wanted: states.TaskState) -> records.TaskView:
        return await self.until(task_id, lambda v: v.task.state in wanted)


def run(
    db: storage_database.Database,
    scenario: Callable[[Harness], Awaitable[T]],
    engine: executors.Choice = executors.LOCAL_CHOICE,
) -> T:
    async def main() -> T:
        harness = Harness(db, engine)
        try:
            return await scenario(harness)
        finally:
            await harness.stop()

    return asyncio.run(main())


def stage_states(view: records.TaskView) -> list[tuple[str, str]]:
    return [(s.name, s.state.value) for s in view.stages]


def reasons(view: records.TaskView) -> list[str]:
    return [e.reason for e in view.events]


def assert_events_unbroken(view: records.TaskView) -> None:
    assert [e.seq for e in view.events] == list(range(1, len(view.events) + 1))
    stamps = [e.timestamp_us for e in view.events]
    assert stamps == sorted(stamps)


def test_stages_run_in_order_with_counters_and_results(
    database: storage_database.Database, engine: executors.Choice, task_store: store.TaskStore
) -> None:
    async def scenario(h: Harness) -> records.TaskView:
        task_id = h.submit("test_steps")
        planned = h.view(task_id)
        assert stage_states(planned) == [
            ("Prepare", "pending"),
            ("CreateItems", "pending"),
            ("Finish", "pending"),
        ]
        await h.start()
        return await h.state(task_id, states.TaskState.SUCCESS)

    view = run(database, scenario, engine)
    assert stage_states(view) == [
        ("Prepare", "success"),
        ("CreateItems", "success"),
        ("Finish", "success"),
    ]
    starts = [s.start_us for s in view.stages]
    ends = [s.end_us for s in view.stages]
    assert all(isinstance(t, int) for t in starts + ends)
    assert starts == sorted(t for t in starts if t is not None)
    assert view.stages[1].outputs == {"nodes_done": 3, "nodes_total": 3}
    assert view.task.current_stage == "Finish"
    assert [(r.data, r.status.value) for r in view.results] == [
        ("i-1", "success"),
        ("i-2", "success"),
        ("i-3", "success"),
    ]
    assert reasons(view) == ["TaskStart", "PrepareDone", "FinishDone", "TaskSucceed"]
    assert view.task.error == records.TaskError()
    assert_events_unbroken(view)


def test_a_start_announced_before_a_crash_is_not_announced_again(
    database: storage_database.Database, engine: executors.Choice, task_store: store.TaskStore
) -> None:
    """A run that wrote the task's TaskStart and died before its first stage started (a
    kill -9 between the two commits) leaves no stage started; the next run starts the
    stages without announcing the task's start a second time."""

    async def scenario(h: Harness) -> records.TaskView:
        task_id = h.submit("test_steps")
        task_store.append_event(
            task_id,
            action="start",
            level=states.EventLevel.NORMAL,
            reason="TaskStart",
            message=f"test_steps task {task_id} started",
            now_us=h.view(task_id).task.created_us + 1,
        )
        assert not any(s.start_us for s in h.view(task_id).stages)
        await h.start()
        # On Temporal the workflow that wrote the event would still run; here it is started
        # anew (the reconciler leaves a task with events that changed lately to its own).
        h.wake(task_id)
        return await h.state(task_id, states.TaskState.SUCCESS)

    view = run(database, scenario, engine)
    assert reasons(view) == ["TaskStart", "PrepareDone", "FinishDone", "TaskSucceed"]
    assert_events_unbroken(view)


def test_temporary_errors_are_retried_then_succeed(
    database: storage_database.Database, engine: executors.Choice, task_store: store.TaskStore
) -> None:
    async def scenario(h: Harness) -> records.TaskView:
        await h.start()
        task_id = h.submit("test_flaky", failures=2)
        return await h.state(task_id, states.TaskState.SUCCESS)

    view = run(database, scenario, engine)
    assert ops.calls[f"{view.task.task_id}:flaky"] == 3
    retries = [e for e in view.events if e.reason == "StageRetry"]
    assert len(retries) == 2
    assert all(e.level is states.EventLevel.WARNING for e in retries)
    assert "attempt 1 of 3" in retries[0].message
    assert "the API is busy" in retries[0].message


def test_an_unavailable_database_is_retried_not_fatal(
    database: storage_database.Database, engine: executors.Choice, task_store: store.TaskStore
) -> None:
    async def scenario(h: Harness) -> records.TaskView:
        await h.start()
        task_id = h.submit("test_blip")
        return await h.state(task_id, states.TaskState.SUCCESS)

    view = run(database, scenario, engine)
    assert ops.calls[f"{view.task.task_id}:blip"] == 3
    assert reasons(view).count("StageRetry") == 2


def test_retries_exhausted_fail_with_internal_error(
    database: storage_database.Database, engine: executors.Choice, task_store: store.TaskStore
) -> None:
    async def scenario(h: Harness) -> records.TaskView:
        await h.start()
        task_id = h.submit("test_broken")
        return await h.state(task_id, states.TaskState.FAIL)

    view = run(database, scenario, engine)
    task_id = view.task.task_id
    assert ops.calls[f"{task_id}:broken"] == 3
    assert view.task.error.code == "InternalError"
    assert "RuntimeError: disk on fire" in view.task.error.message
    assert stage_states(view) == [
        ("Prepare", "success"),
        ("Broken", "fail"),
        ("Finish", "skipped"),
    ]
    assert "disk on fire" in view.stages[1].message
    assert view.task.current_stage == "Broken"
    failed = [e for e in view.events if e.reason == "TaskFailed"]
    assert len(failed) == 1
    assert failed[0].level is states.EventLevel.WARNING
    assert ops.calls[f"{task_id}:compensate"] == 1
    assert reasons(view)[-1] == "Compensated"
    assert_events_unbroken(view)


def test_permanent_error_fails_at_once_naming_the_resource(
    database: storage_database.Database, engine: executors.Choice, task_store: store.TaskStore
) -> None:
    async def scenario(h: Harness) -> records.TaskView:
        await h.start()
        task_id = h.submit("test_no_stock")
        return await h.state(task_id, states.TaskState.FAIL)

    view = run(database, scenario, engine)
    assert view.task.error == records.TaskError(
        "InstanceCreateFailed", "no stock for ecs.g7.large in cn-hangzhou-h"
    )
    assert stage_states(view) == [("CreateInstances", "fail"), ("JoinNodes", "skipped")]
    assert "StageRetry" not in reasons(view)
    assert [(r.data, r.status.value) for r in view.results] == [
        ("i-good", "success"),
        ("i-bad", "failed"),
    ]
    assert ops.calls[f"{view.task.task_id}:compensate"] == 1


def test_stage_timeout(
    database: storage_database.Database, engine: executors.Choice, task_store: store.TaskStore
) -> None:
    async def scenario(h: Harness) -> records.TaskView:
        await h.start()
        task_id = h.submit("test_slow")
        return await h.state(task_id, states.TaskState.FAIL)

    view = run(database, scenario, engine)
    assert view.task.error.code == "StageTimeout"
    assert view.task.error.message == "stage Slow did not finish within 0.2s"
    assert stage_states(view) == [("Slow", "fail")]


def test_pause_then_resume_finishes_without_repeating_work(
    database: storage_database.Database, engine: executors.Choice, task_store: store.TaskStore
) -> None:
    async def scenario(h: Harness) -> records.TaskView:
        await h.start()
        task_id = h.submit("test_batches")
        await h.until(task_id, lambda v: v.stages[1].state is states.StageState.RUNNING)
        h.control.pause(task_id)
        assert h.view(task_id).task.state is states.TaskState.RUNNING  # until a checkpoint
        ops.gate(1).set()
        paused = await h.state(task_id, states.TaskState.PAUSED)
        assert [r.data for r in paused.results] == ["node-1"]
        assert paused.stages[1].state is states.StageState.RUNNING
        assert paused.task.requested_action is None
        assert "TaskPaused" in reasons(paused)
        ops.gate(2).set()
        ops.gate(3).set()
        await asyncio.sleep(0.1)
        assert h.view(task_id).task.state is states.TaskState.PAUSED  # stays paused
        resumed = h.control.resume(task_id)
        assert resumed.state is states.TaskState.RUNNING
        return await h.state(task_id, states.TaskState.SUCCESS)

    view = run(database, scenario, engine)
    assert [(r.data, r.status.value) for r in view.results] == [
        ("node-1", "success"),
        ("node-2", "success"),
        ("node-3", "success"),
    ]
    assert [e.message for e in view.events if e.reason == "BatchDone"] == [
        "node node-1 done (batch 1)",
        "node node-2 done (batch 2)",
        "node node-3 done (batch 3)",
    ]
    order = reasons(view)
    assert order.index("TaskPaused") < order.index("TaskResumed") < order.index("TaskSucceed")
    assert view.stages[1].outputs["nodes_done"] == 3
    assert_events_unbroken(view)


def test_a_stage_boundary_honours_a_pause(
    database: storage_database.Database, engine: executors.Choice, task_store: store.TaskStore
) -> None:
    async def scenario(h: Harness) -> records.TaskView:
        await h.start()
        task_id = h.submit("test_two_steps")
        await h.until(task_id, lambda v: v.stages[0].state is states.StageState.RUNNING)
        h.control.pause(task_id)
        ops.gate(1).set()
        paused = await h.state(task_id, states.TaskState.PAUSED)
        assert stage_states(paused) == [("Wait", "success"), ("Next", "pending")]
        h.control.resume(task_id)
        return await h.state(task_id, states.TaskState.SUCCESS)

    view = run(database, scenario, engine)
    assert stage_states(view) == [("Wait", "success"), ("Next", "success")]


def test_pause_then_cancel(
    database: storage_database.Database, engine: executors.Choice, task_store: store.TaskStore
) -> None:
    async def scenario(h: Harness) -> records.TaskView:
        await h.start()
        task_id = h.submit("test_batches")
        await h.until(task_id, lambda v: v.stages[1].state is states.StageState.RUNNING)
        h.control.pause(task_id)
        ops.gate(1).set()
        await h.state(task_id, states.TaskState.PAUSED)
        h.control.cancel(task_id)
        return await h.state(task_id, states.TaskState.CANCELED)

    view = run(database, scenario, engine)
    assert stage_states(view) == [
        ("Prepare", "success"),
        ("Upgrade", "canceled"),
        ("Finish", "canceled"),
    ]
    assert ops.calls[f"{view.task.task_id}:compensate"] == 1
    assert reasons(view)[-2:] == ["Compensated", "TaskCanceled"]
    assert view.task.requested_action is None


def test_cancel_while_running_takes_effect_at_once_in_a_wait(
    database: storage_database.Database,
    engine: executors.Choice,
    task_store: store.TaskStore,
) -> None:
    async def scenario(h: Harness) -> records.TaskView:
        await h.start()
        task_id = h.submit("test_nap", seconds=60)
        await h.until(task_id, lambda v: v.stages[0].state is states.StageState.RUNNING)
        h.control.cancel(task_id)
        return await h.state(task_id, states.TaskState.CANCELED)

    view = run(database, scenario, engine)
    assert stage_states(view) == [("Nap", "canceled")]
    assert ops.calls[f"{view.task.task_id}:compensate"] == 1


@pytest.mark.parametrize(
    ("policy", "pauses"), [("FirstBatch", [1]), ("EveryBatch", [1, 2]), ("NotPause", [])]
)
def test_pause_policy(
    database: storage_database.Database,
    engine: executors.Choice,
    task_store: store.TaskStore,
    policy: str,
    pauses: list[int],
) -> None:
    async def scenario(h: Harness) -> list[int]:
        await h.start()
        task_id = h.submit("test_batches", ungated=True, rolling_policy={"pause_policy": policy})
        seen: list[int] = []
        while True:
            view = await h.state(task_id, states.TaskState.PAUSED, states.TaskState.SUCCESS)
            if view.task.state is states.TaskState.SUCCESS:
                return seen
            seen.append(int(view.stages[1].outputs["paused_after_batch"]))
            h.control.resume(task_id)
            await h.state(task_id, states.TaskState.RUNNING, states.TaskState.SUCCESS)

    assert run(database, scenario, engine) == pauses


def test_conflicts(database: storage_database.Database, task_store: store.TaskStore) -> None:
    h = Harness(database)  # no executor: tasks stay running
    first = h.submit("test_nap", NP1)
    with pytest.raises(errors.TaskConflict) as caught:
        h.submit("test_nap", NP1)
    assert first in caught.value.message
    assert caught.value.code == "ErrorTaskConflict"
    other_pool = h.submit("test_nap", NP2)
    with pytest.raises(errors.TaskConflict) as caught:
        h.submit("test_nap", WHOLE)
    assert first in caught.value.message or other_pool in caught.value.message
    listed = task_store.list_cluster_tasks(store.TaskQuery(cluster_id=CLUSTER, limit=10))
    assert listed.total_count == 2  # the refused submissions created nothing


def test_cluster_wide_task_excludes_every_other(
    database: storage_database.Database, task_store: store.TaskStore
) -> None:
    h = Harness(database)
    wide = h.submit("test_nap", WHOLE)
    for target in (NP1, NP2, WHOLE):
        with pytest.raises(errors.TaskConflict) as caught:
            h.submit("test_nap", target)
        assert wide in caught.value.message
    other = h.control.submit(
        "test_nap", cluster_id="c-other", target=records.Target("c-other"), parameters={}
    )
    assert other.created


def test_finished_tasks_no_longer_conflict(
    database: storage_database.Database, engine: executors.Choice, task_store: store.TaskStore
) -> None:
    async def scenario(h: Harness) -> str:
        await h.start()
        first = h.submit("test_steps")
        await h.state(first, states.TaskState.SUCCESS)
        second = h.submit("test_steps")
        await h.state(second, states.TaskState.SUCCESS)
        return second

    assert run(database, scenario, engine)


def test_client_token_replay_and_mismatch(
    database: storage_database.Database, task_store: store.TaskStore
) -> None:
    h = Harness(database)
    first = h.control.submit(
        "test_nap", cluster_id=CLUSTER, target=NP1, parameters={"seconds": 5}, client_token="tok-1"
    )
    again = h.control.submit(
        "test_nap", cluster_id=CLUSTER, target=NP1, parameters={"seconds": 5}, client_token="tok-1"
    )
    assert first.created
    assert not again.created
    assert again.task.task_id == first.task.task_id
    with pytest.raises(errors.IdempotentParameterMismatch) as caught:
        h.control.submit(
            "test_nap",
            cluster_id=CLUSTER,
            target=NP1,
            parameters={"seconds": 6},
            client_token="tok-1",
        )
    assert first.task.task_id in caught.value.message
    assert task_store.list_cluster_tasks(store.TaskQuery(CLUSTER, limit=10)).total_count == 1


def test_requests_the_state_does_not_allow(
    database: storage_database.Database, engine: executors.Choice, task_store: store.TaskStore
) -> None:
    async def scenario(h: Harness) -> None:
        await h.start()
        done = h.submit("test_batches", ungated=True)
        await h.state(done, states.TaskState.SUCCESS)
        for action in (h.control.pause, h.control.cancel, h.control.resume):
            with pytest.raises(errors.IllegalTransition) as caught:
                action(done)
            assert caught.value.code == "ErrorTaskState"
            assert "success" in caught.value.message

        running = h.submit("test_batches", NP2)
        await h.until(running, lambda v: v.stages[1].state is states.StageState.RUNNING)
        with pytest.raises(errors.IllegalTransition):
            h.control.resume(running)
        h.control.cancel(running)
        with pytest.raises(errors.IllegalTransition):
            h.control.pause(running)  # a cancel is already on its way
        ops.gate(1).set()
        await h.state(running, states.TaskState.CANCELED)

        with pytest.raises(errors.TaskNotSupported) as unsupported:
            h.control.pause(h.submit("test_nap", records.Target("np3", "nodepool")))
        assert unsupported.value.code == "ErrorTaskNotSupported"
        with pytest.raises(errors.TaskNotSupported):
            h.control.cancel(h.submit("test_uncancelable", records.Target("np4", "nodepool")))
        with pytest.raises(errors.TaskNotFound):
            h.control.pause("T-000000000000000000000000")

    run(database, scenario, engine)


def test_an_interrupted_executor_resumes_every_task(
    database: storage_database.Database, engine: executors.Choice, task_store: store.TaskStore
) -> None:
    """Stopping the executor mid-task leaves tasks running in the store; a new executor
    finishes them from their last commit (the process-level kill -9 test is in acceptance)."""

    async def scenario(h: Harness) -> list[records.TaskView]:
        await h.start()
        ids = [h.submit("test_batches", records.Target(f"np{i}", "nodepool")) for i in range(5)]
        for task_id in ids:
            await h.until(task_id, lambda v: v.stages[1].state is states.StageState.RUNNING)
        ops.gate(1).set()
        for task_id in ids:
            await h.until(task_id, lambda v: "BatchDone" in reasons(v))
        await h.stop()
        assert all(h.view(t).task.state is states.TaskState.RUNNING for t in ids)
        ops.gate(2).set()
        ops.gate(3).set()
        await h.start()
        return [await h.state(t, states.TaskState.SUCCESS) for t in ids]

    for view in run(database, scenario, engine):
        assert [(r.data, r.status.value) for r in view.results] == [
            ("node-1", "success"),
            ("node-2", "success"),
            ("node-3", "success"),
        ]
        assert [e.message for e in view.events if e.reason == "BatchDone"] == [
            "node node-1 done (batch 1)",
            "node node-2 done (batch 2)",
            "node node-3 done (batch 3)",
        ]
        assert reasons(view).count("TaskStart") == 1
        assert ops.calls[f"{view.task.task_id}:batches"] == 2  # re-run once after the stop
        assert_events_unbroken(view)


def test_only_one_executor_per_database(
    database: storage_database.Database, task_store: store.TaskStore
) -> None:
    async def scenario(h: Harness) -> None:
        await h.start()
        second = executor.LocalExecutor(
            task_store, ops.REGISTRY, fake_cloud.FakeCloud(), lock=database.executor_lock()
        )
        with pytest.raises(errors.ExecutorLocked) as caught:
            await second.start()
        assert "--no-executor" in caught.value.message
        await second.stop()
        await h.stop()
        third = executor.LocalExecutor(
            task_store, ops.REGISTRY, fake_cloud.FakeCloud(), lock=database.executor_lock()
        )
        await third.start()
        await third.stop()

    run(database, scenario)


def test_a_task_stored_by_another_version_of_its_operation_runs_this_ones_stages(
    database: storage_database.Database,
    task_store: store.TaskStore,
) -> None:
    """Stages the operation gained since the task was stored are added; stages it lost
    and that never started are skipped; this version's stages run in its order."""
    now = 1_700_000_000_000_000
    old = records.Task(
        task_id="T-000000000000000000000abc",
        cluster_id=CLUSTER,
        task_type="test_versioned",
        state=states.TaskState.RUNNING,
        created_us=now,
        updated_us=now,
        target=NP1,
    )
    task_store.submit_task(old, records.plan_stages(["A", "Gone", "C"]))
    versioned = base.Operation(
        "test_versioned", [base.Stage(name, ops.step) for name in ("A", "B", "C")]
    )

    async def scenario() -> records.TaskView:
        engine = executor.LocalExecutor(
            task_store,
            base.Registry([versioned]),
            fake_cloud.FakeCloud(),
            lock=database.executor_lock(),
        )
        await engine.start()
        try:
            harness = Harness(database)
            return await harness.state(old.task_id, states.TaskState.SUCCESS)
        finally:
            await engine.stop()

    view = asyncio.run(scenario())
    assert stage_states(view) == [
        ("A", "success"),
        ("Gone", "skipped"),
        ("C", "success"),
        ("B", "success"),
    ]
    assert [e.reason for e in view.events if e.reason.endswith("Done")] == [
        "ADone",
        "BDone",
        "CDone",
    ]
    updated = [e.message for e in view.events if e.reason == "TaskStagesUpdated"]
    assert updated == [
        f"task {old.task_id} continues with this version's test_versioned stages: "
        "added B; skipped Gone"
    ]
    assert_events_unbroken(view)
