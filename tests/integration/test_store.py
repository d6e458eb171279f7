"""The task store on real SQLite and PostgreSQL databases."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from clustertasks import errors
from clustertasks.domain import records, states
from clustertasks.storage import changes, schema, store
from clustertasks.storage import database as storage_database
from tests.support import factories

NOW = factories.BASE_US


def _task(task_id: str = "T-000000000000000000000001", cluster: str = "c1") -> records.Task:
    return records.Task(
        task_id=task_id,
        cluster_id=cluster,
        task_type="cluster_scaleout",
        state=states.TaskState.RUNNING,
        created_us=NOW,
        updated_us=NOW,
        target=records.Target(cluster),
        parameters={"count": 3, "nested": {"a": [1, "b", None, True]}},
    )


def test_a_new_task_lists_every_planned_stage_pending(task_store: store.TaskStore) -> None:
    task_store.submit_task(_task(), records.plan_stages(["A", "B", "C"]))
    view = task_store.describe_task("T-000000000000000000000001")
    assert [(s.name, s.state) for s in view.stages] == [
        ("A", states.StageState.PENDING),
        ("B", states.StageState.PENDING),
        ("C", states.StageState.PENDING),
    ]
    assert view.events == ()
    assert view.results == ()
    assert view.task.parameters == {"count": 3, "nested": {"a": [1, "b", None, True]}}
    assert view.task.version == 1


def test_duplicate_task_id_is_refused_and_changes_nothing(task_store: store.TaskStore) -> None:
    task_store.submit_task(_task(), records.plan_stages(["A"]))
    with pytest.raises(errors.DuplicateTask):
        task_store.submit_task(_task(cluster="other"), records.plan_stages(["X", "Y"]))
    view = task_store.describe_task("T-000000000000000000000001")
    assert view.task.cluster_id == "c1"
    assert [s.name for s in view.stages] == ["A"]


def test_unknown_task(task_store: store.TaskStore) -> None:
    with pytest.raises(errors.TaskNotFound) as caught:
        task_store.describe_task("T-ffffffffffffffffffffffff")
    assert caught.value.message == "the task T-ffffffffffffffffffffffff not found"
    with pytest.raises(errors.TaskNotFound):
        task_store.append_event(
            "T-nope",
            action="a",
            level=states.EventLevel.NORMAL,
            reason="R",
            message="m",
            now_us=NOW,
        )
    with pytest.raises(errors.TaskNotFound):
        task_store.set_result("T-nope", "i-1", states.ResultStatus.INITIAL, NOW)


def test_every_write_bumps_version_and_updated(task_store: store.TaskStore) -> None:
    task = _task()
    stage = records.plan_stages(["A"])[0]
    task_store.submit_task(task, [stage])
    v1 = task_store.get_task(task.task_id).version
    running = stage.with_state(task.task_id, states.StageState.RUNNING, NOW + 1)
    v2 = task_store.update_stage(task.task_id, running, NOW + 1)
    task_store.append_event(
        task.task_id,
        action="start",
        level=states.EventLevel.NORMAL,
        reason="AStart",
        message="m",
        now_us=NOW + 2,
    )
    task_store.set_result(task.task_id, "i-1", states.ResultStatus.INITIAL, NOW + 3)
    v3 = task_store.get_task(task.task_id).version
    assert v1 < v2 < v3
    assert v3 == v1 + 3
    assert task_store.get_task(task.task_id).updated_us == NOW + 3


def test_every_write_path_moves_the_version_read_alone(task_store: store.TaskStore) -> None:
    """The version is what ETags and waits rely on: each way of writing a task or one of
    its parts must change it, in the same transaction."""
    task = _task()
    stage = records.plan_stages(["A"])[0]
    task_store.submit_task(task, [stage])
    task_id = task.task_id
    note = records.EventNote("Made", "made i-2")
    writes: dict[str, Callable[[], object]] = {
        "update_task": lambda: task_store.update_task(task.with_current_stage("A", NOW)),
        "update_stage": lambda: task_store.update_stage(task_id, stage, NOW),
        "append_event": lambda: task_store.append_event(
            task_id,
            action="a",
            level=states.EventLevel.NORMAL,
            reason="R",
            message="m",
            now_us=NOW,
        ),
        "new result": lambda: task_store.set_result(
            task_id, "i-1", states.ResultStatus.INITIAL, NOW
        ),
        "changed result": lambda: task_store.set_result(
            task_id, "i-1", states.ResultStatus.SUCCESS, NOW
        ),
        "result with event": lambda: task_store.set_result(
            task_id, "i-2", states.ResultStatus.INITIAL, NOW, event=note
        ),
        "request pause": lambda: task_store.request_action(task_id, records.PAUSE, NOW),
        "pause": lambda: task_store.update_task(
            dataclasses.replace(
                task.with_state(states.TaskState.PAUSED, NOW), requested_action=None
            ),
            acted_on=records.PAUSE,
        ),
        "resume": lambda: task_store.resume(task_id, NOW),
        "request cancel": lambda: task_store.request_action(task_id, records.CANCEL, NOW),
        "batch": lambda: task_store.apply_batch([changes.UpdateStage(task_id, stage, NOW)]),
    }
    before = task_store.task_version(task_id)
    assert before == task_store.get_task(task_id).version
    for name, write in writes.items():
        write()
        after = task_store.task_version(task_id)
        assert after > before, name
        assert after == task_store.describe_task(task_id).task.version, name
        before = after
    stamps = task_store.task_stamps([task_id, "T-ffffffffffffffffffffffff"])
    assert stamps == {task_id: task_store.task_stamp(task_id)}
    assert stamps[task_id].version == before
    assert task_store.task_stamps([]) == {}
    with pytest.raises(errors.TaskNotFound):
        task_store.task_version("T-ffffffffffffffffffffffff")


def test_a_batch_commits_together_and_each_change_gets_its_own_outcome(
    task_store: store.TaskStore,
) -> None:
    task = _task()
    task_store.submit_task(task, records.plan_stages(["A"]))
    task_id = task.task_id
    moved = task.with_current_stage("A", NOW + 1)
    event = changes.AppendEvent(
        task_id, action="a", level=states.EventLevel.NORMAL, reason="R", message="m", now_us=NOW
    )
    together = task_store.apply_batch([changes.UpdateTask(moved), event, changes.ReadTask(task_id)])
    assert [o.error for o in together] == [None, None, None]
    version, appended, read = (o.value for o in together)
    assert isinstance(appended, records.Event)
    assert appended.seq == 1
    assert isinstance(read, records.Task)
    assert (read.current_stage, read.version) == ("A", task_store.task_version(task_id))
    assert version == read.version - 1

    # One change fails: the others are applied alone and keep their own outcomes.
    alone = task_store.apply_batch([event, changes.ReadTask("T-ffffffffffffffffffffffff"), event])
    assert isinstance(alone[1].error, errors.TaskNotFound)
    assert [o.value.seq for o in (alone[0], alone[2]) if isinstance(o.value, records.Event)] == [
        2,
        3,
    ]
    assert [e.seq for e in task_store.describe_task(task_id).events] == [1, 2, 3]


def _changes_for(first: str, second: str) -> list[changes.Change]:
    """Two tasks' writes interleaved as a busy executor's group commit would see them."""
    planned = records.plan_stages(["S1", "S2"])
    one, two = (s.with_state(first, states.StageState.RUNNING, NOW) for s in planned)

    def event(task_id: str, now_us: int) -> changes.AppendEvent:
        level = states.EventLevel.NORMAL
        return changes.AppendEvent(task_id, "a", level, "R", f"at {now_us}", now_us)

    return [
        changes.UpdateStage(first, one, NOW + 1),
        changes.UpdateTask(_task(first, first).with_current_stage("S1", NOW + 2)),
        changes.UpdateStage(second, one, NOW + 3),
        event(first, NOW + 4),
        changes.UpdateStage(
            first, one.with_state(first, states.StageState.SUCCESS, NOW + 5), NOW + 5
        ),
        changes.ReadTask(first),
        changes.UpdateStage(
            second, one.with_state(second, states.StageState.SUCCESS, NOW + 6), NOW + 6
        ),
        event(second, NOW + 7),
        event(second, NOW + 2),  # read the clock earlier than the one before it
        changes.UpdateStage(first, two, NOW + 8),
        changes.ReadView(first),  # sees the stage rows written so far
        changes.SetResult(second, "i-1", states.ResultStatus.INITIAL, NOW + 9),
        changes.UpdateStage(second, two, NOW + 10),
        changes.UpdateStage(first, dataclasses.replace(two, outputs={"done": 1}), NOW + 11),
        changes.UpdateStage(first, dataclasses.replace(two, outputs={"done": 2}), NOW + 12),
    ]


def test_a_batch_commits_and_returns_what_its_changes_would_one_by_one(
    task_store: store.TaskStore,
) -> None:
    """A group commit shares statements between its changes (version bumps folded, stage
    rows written together); the outcome must be exactly that of applying them in order."""
    grouped = ["T-00000000000000000000000a", "T-00000000000000000000000b"]
    alone = ["T-00000000000000000000000c", "T-00000000000000000000000d"]
    for task_id in grouped + alone:
        task_store.submit_task(_task(task_id, task_id), records.plan_stages(["S1", "S2"]))

    outcomes = task_store.apply_batch(_changes_for(*grouped))
    assert [o.error for o in outcomes] == [None] * len(outcomes)
    one_by_one = [task_store.apply(change) for change in _changes_for(*alone)]

    def same_ids(value: object) -> object:
        if isinstance(value, records.TaskView):
            return dataclasses.replace(value, task=same_task_ids(value.task))
        if isinstance(value, records.Task):
            return same_task_ids(value)
        return value

    def same_task_ids(task: records.Task) -> records.Task:
        return dataclasses.replace(task, task_id="x", cluster_id="x", target=records.Target("x"))

    assert [same_ids(o.value) for o in outcomes] == [same_ids(v) for v in one_by_one]
    for batched, single in zip(grouped, alone, strict=True):
        view, expected = task_store.describe_task(batched), task_store.describe_task(single)
        assert same_ids(view.task) == same_ids(expected.task)
        assert (view.stages, view.events, view.results) == (
            expected.stages,
            expected.events,
            expected.results,
        )
    events = task_store.describe_task(grouped[1]).events
    assert [e.timestamp_us for e in events] == [NOW + 7, NOW + 7]


def test_a_batch_with_a_stage_of_an_unknown_task_fails_only_that_change(
    task_store: store.TaskStore,
) -> None:
    task_store.submit_task(_task(), records.plan_stages(["A"]))
    stage = records.plan_stages(["A"])[0]
    before = task_store.task_version(_task().task_id)
    outcomes = task_store.apply_batch(
        [
            changes.UpdateStage("T-ffffffffffffffffffffffff", stage, NOW),
            changes.UpdateStage(
                _task().task_id, stage.with_state("t", states.StageState.RUNNING, NOW), NOW
            ),
        ]
    )
    assert isinstance(outcomes[0].error, errors.TaskNotFound)
    assert (outcomes[1].error, outcomes[1].value) == (None, before + 1)
    stored = task_store.describe_task(_task().task_id).stages[0]
    assert stored.state is states.StageState.RUNNING


def test_describe_task_can_leave_out_the_events_already_read(task_store: store.TaskStore) -> None:
    view = factories.seed_task(task_store)
    assert len(view.events) >= 2
    newest = task_store.describe_task(view.task.task_id, events_after=len(view.events) - 1)
    assert newest.events == (view.events[-1],)
    assert (newest.task, newest.stages, newest.results) == (view.task, view.stages, view.results)
    assert task_store.describe_task(view.task.task_id, events_after=len(view.events)).events == ()


def test_appending_an_event_writes_only_the_event(task_store: store.TaskStore) -> None:
    view = factories.seed_task(task_store)
    task_id = view.task.task_id
    before = task_store.describe_task(task_id)
    task_store.append_event(
        task_id,
        action="progress",
        level=states.EventLevel.NORMAL,
        reason="InstanceCreated",
        message="instance i-x created",
        now_us=NOW + 99_000_000,
    )
    after = task_store.describe_task(task_id)
    assert after.stages == before.stages
    assert after.results == before.results
    assert after.events[:-1] == before.events
    assert after.events[-1].seq == len(before.events) + 1
    unchanged = ("state", "parameters", "current_stage", "error", "target", "created_us")
    for name in unchanged:
        assert getattr(after.task, name) == getattr(before.task, name)
    assert after.task.version == before.task.version + 1


def test_events_are_numbered_without_gaps_under_concurrent_writers(
    task_store: store.TaskStore,
) -> None:
    task_store.submit_task(_task(), records.plan_stages(["A"]))
    failures: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(20):
                task_store.append_event(
                    "T-000000000000000000000001",
                    action="x",
                    level=states.EventLevel.NORMAL,
                    reason="Tick",
                    message=f"{n}-{i}",
                    now_us=NOW + i,
                )
        except BaseException as exc:  # collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    events = task_store.describe_task("T-000000000000000000000001").events
    assert [e.seq for e in events] == list(range(1, 81))
    assert sorted(e.message for e in events) == sorted(
        f"{n}-{i}" for n in range(4) for i in range(20)
    )


def test_results_keep_first_seen_order_and_legal_statuses(task_store: store.TaskStore) -> None:
    task_store.submit_task(_task(), [])
    task_id = "T-000000000000000000000001"
    for instance in ("i-3", "i-1", "i-2"):
        task_store.set_result(task_id, instance, states.ResultStatus.INITIAL, NOW)
    task_store.set_result(task_id, "i-1", states.ResultStatus.SUCCESS, NOW)
    task_store.set_result(task_id, "i-2", states.ResultStatus.FAILED, NOW)
    task_store.set_result(task_id, "i-2", states.ResultStatus.SUCCESS, NOW)
    with pytest.raises(errors.IllegalTransition):
        task_store.set_result(task_id, "i-1", states.ResultStatus.FAILED, NOW)
    results = task_store.describe_task(task_id).results
    assert [(r.data, r.status.value) for r in results] == [
        ("i-3", "initial"),
        ("i-1", "success"),
        ("i-2", "success"),
    ]


def test_a_result_and_its_event_commit_together_or_not_at_all(
    task_store: store.TaskStore,
) -> None:
    task_store.submit_task(_task(), [])
    task_id = "T-000000000000000000000001"
    done = records.EventNote(reason="NodeUpgraded", message="node n-1 upgraded")
    task_store.set_result(task_id, "i-1", states.ResultStatus.INITIAL, NOW)
    task_store.set_result(task_id, "i-1", states.ResultStatus.SUCCESS, NOW + 1, event=done)
    refused = records.EventNote(reason="NodeUpgradeFailed", message="n-1 failed")
    with pytest.raises(errors.IllegalTransition):
        task_store.set_result(task_id, "i-1", states.ResultStatus.FAILED, NOW + 2, event=refused)
    view = task_store.describe_task(task_id)
    assert [(r.data, r.status) for r in view.results] == [("i-1", states.ResultStatus.SUCCESS)]
    assert [(e.seq, e.reason, e.message) for e in view.events] == [
        (1, "NodeUpgraded", "node n-1 upgraded")
    ]


def test_update_task_writes_state_stage_and_error(task_store: store.TaskStore) -> None:
    task = _task()
    task_store.submit_task(task, records.plan_stages(["A"]))
    changed = dataclasses.replace(
        task.with_current_stage("A", NOW + 5)
        .with_error(records.TaskError("InstanceCreateFailed", "i-1 failed"), NOW + 5)
        .with_state(states.TaskState.FAIL, NOW + 5),
        outputs={"nodes_done": 2},
    )
    task_store.update_task(changed)
    got = task_store.get_task(task.task_id)
    assert got.state is states.TaskState.FAIL
    assert got.current_stage == "A"
    assert got.error == records.TaskError("InstanceCreateFailed", "i-1 failed")
    assert got.outputs == {"nodes_done": 2}
    assert got.updated_us == NOW + 5


def test_listing_filters_orders_and_pages(task_store: store.TaskStore) -> None:
    made = []
    for i in range(7):
        state = states.TaskState.SUCCESS if i % 2 else states.TaskState.RUNNING
        task_type = "cluster_scaleout" if i < 5 else "nodepool_upgrade"
        made.append(
            factories.seed_task(
                task_store,
                cluster_id="c-list",
                state=state,
                task_type=task_type,
                created_us=NOW + i * 10_000_000,
            ).task.task_id
        )
    factories.seed_task(task_store, cluster_id="c-other")
    newest_first = list(reversed(made))

    page = task_store.list_cluster_tasks(store.TaskQuery(cluster_id="c-list", limit=3))
    assert [t.task_id for t in page.tasks] == newest_first[:3]
    assert (page.total_count, page.has_more) == (7, True)

    last = task_store.list_cluster_tasks(store.TaskQuery(cluster_id="c-list", limit=3, offset=6))
    assert [t.task_id for t in last.tasks] == newest_first[6:]
    assert last.has_more is False

    after = page.tasks[-1]
    keyset = task_store.list_cluster_tasks(
        store.TaskQuery(cluster_id="c-list", limit=10, after=(after.created_us, after.task_id))
    )
    assert [t.task_id for t in keyset.tasks] == newest_first[3:]

    running = task_store.list_cluster_tasks(
        store.TaskQuery(cluster_id="c-list", limit=10, state="running")
    )
    assert running.total_count == 4
    assert all(t.state is states.TaskState.RUNNING for t in running.tasks)

    upgrades = task_store.list_cluster_tasks(
        store.TaskQuery(cluster_id="c-list", limit=10, task_type="nodepool_upgrade")
    )
    assert [t.task_id for t in upgrades.tasks] == newest_first[:2]


def test_deleting_a_task_removes_its_parts(task_store: store.TaskStore) -> None:
    view = factories.seed_task(task_store, state=states.TaskState.SUCCESS)
    engine = task_store._engine
    with engine.begin() as conn:
        conn.execute(sa.delete(schema.tasks).where(schema.tasks.c.task_id == view.task.task_id))
        for table in (schema.stages, schema.events, schema.results):
            left = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
            assert left == 0, table.name


@pytest.mark.parametrize("state", [states.TaskState.RUNNING, states.TaskState.FAIL])
def test_point_reads_describe_a_task_as_sqlalchemy_does(
    database: storage_database.Database, state: states.TaskState
) -> None:
    """On SQLite the read path's reads go straight to the driver: the same records, to the
    JSON columns' values and the events after a number."""
    error = records.TaskError("InstanceCreateFailed", "no stock") if state.terminal else None
    view = factories.seed_task(
        database.tasks,
        state=state,
        parameters={
            "count": 3,
            "labels": {"a": "é"},
            "ratio": 0.5,
            "none": None,
            "beyond_64_bits": 2**70,
            "below": -(2**63) - 1,
            "tiny": 1e-7,
        },
        error=error,
        # Listed in first-seen order, not by id: the one-statement read sorts its rows.
        instances=[f"i-{n:020d}" for n in (9, 3, 7, 1, 5)],
    )
    task_id = view.task.task_id
    through_sqlalchemy = store.TaskStore(database.engine)  # no point reads
    assert [r.data for r in database.tasks.describe_task(task_id).results] == [
        f"i-{n:020d}" for n in (9, 3, 7, 1, 5)
    ]
    assert database.tasks.describe_task_stamped(task_id) == (
        through_sqlalchemy.describe_task_stamped(task_id)
    )
    assert database.tasks.task_stamp(task_id) == through_sqlalchemy.task_stamp(task_id)
    assert database.tasks.describe_task(task_id) == through_sqlalchemy.describe_task(task_id)
    assert database.tasks.describe_task(task_id, events_after=1) == (
        through_sqlalchemy.describe_task(task_id, events_after=1)
    )
    assert database.tasks.task_version(task_id) == through_sqlalchemy.task_version(task_id)
    with pytest.raises(errors.TaskNotFound):
        database.tasks.describe_task("T-000000000000000000000000")


def test_begin_stages_reads_tasks_together_and_starts_only_what_may_start(
    task_store: store.TaskStore,
) -> None:
    plain, paused_on_request, finished = (
        _task(f"T-00000000000000000000000{n}", cluster=f"c{n}") for n in (1, 2, 3)
    )
    for task in (plain, paused_on_request, finished):
        task_store.submit_task(task, records.plan_stages(["A", "B"]))
    task_store.append_event(
        plain.task_id,
        action="start",
        level=states.EventLevel.NORMAL,
        reason="TaskStart",
        message="m",
        now_us=NOW,
    )
    task_store.request_action(paused_on_request.task_id, records.PAUSE, NOW)
    task_store.update_task(finished.with_state(states.TaskState.CANCELED, NOW))
    before = task_store.describe_task(plain.task_id)

    views = task_store.begin_stages(
        [
            store.StageStart(plain.task_id, "A", NOW + 5),
            store.StageStart(paused_on_request.task_id, "A", NOW + 5),
            store.StageStart(finished.task_id, "A", NOW + 5),
            store.StageStart("T-ffffffffffffffffffffffff", "A", NOW + 5),
        ]
    )

    assert set(views) == {plain.task_id, paused_on_request.task_id, finished.task_id}
    started = views[plain.task_id]
    assert started == task_store.describe_task(plain.task_id)  # as committed
    assert [(s.name, s.state, s.start_us) for s in started.stages] == [
        ("A", states.StageState.RUNNING, NOW + 5),
        ("B", states.StageState.PENDING, None),
    ]
    assert started.task.current_stage == "A"
    assert started.task.version > before.task.version
    assert [e.reason for e in started.events] == ["TaskStart"]
    for untouched in (paused_on_request.task_id, finished.task_id):
        assert views[untouched] == task_store.describe_task(untouched)
        assert [s.state for s in views[untouched].stages] == [states.StageState.PENDING] * 2
        assert views[untouched].task.current_stage == ""

    # A running stage is not started twice; a read alone writes nothing.
    again = task_store.begin_stages([store.StageStart(plain.task_id, "A", NOW + 9)])
    assert again[plain.task_id].stages[0].start_us == NOW + 5
    read = task_store.begin_stages([store.StageStart(plain.task_id, None, 0)])
    assert read[plain.task_id] == task_store.describe_task(plain.task_id)


def test_begin_stages_gives_each_task_its_own_stages_events_and_results(
    task_store: store.TaskStore,
) -> None:
    """The views of many tasks are read by one set of statements: each gets its own
    rows, whatever the count (the statements bind the ids up to a power of two)."""
    tasks = [_task(f"T-0000000000000000000000{n:02d}", cluster=f"c{n}") for n in range(1, 7)]
    for n, task in enumerate(tasks, 1):
        task_store.submit_task(task, records.plan_stages([f"S{n}", "Last"]))
        for seq in range(n):
            task_store.append_event(
                task.task_id,
                action="progress",
                level=states.EventLevel.NORMAL,
                reason="Progress",
                message=f"{task.task_id} {seq}",
                now_us=NOW + seq,
            )
        task_store.set_result(task.task_id, f"i-{n}", states.ResultStatus.INITIAL, NOW)
    before = {task.task_id: task_store.describe_task(task.task_id) for task in tasks}

    for count in (1, 2, 3, 5, 6):
        chosen = tasks[:count]
        views = task_store.begin_stages(
            [store.StageStart(task.task_id, None, 0) for task in chosen]
        )
        assert views == {task.task_id: before[task.task_id] for task in chosen}

    views = task_store.begin_stages(
        [
            *(store.StageStart(t.task_id, f"S{n}", NOW + 7) for n, t in enumerate(tasks, 1)),
            store.StageStart("T-ffffffffffffffffffffffff", "A", NOW + 7),
        ]
    )
    assert set(views) == {task.task_id for task in tasks}
    for n, task in enumerate(tasks, 1):
        view = views[task.task_id]
        assert view == task_store.describe_task(task.task_id)  # as committed
        assert view.task.version == before[task.task_id].task.version + 1
        assert view.task.current_stage == f"S{n}"
        assert [e.message for e in view.events] == [f"{task.task_id} {i}" for i in range(n)]
        assert [r.data for r in view.results] == [f"i-{n}"]


def test_stage_starts_and_changes_commit_together_each_with_its_own_outcome(
    task_store: store.TaskStore,
) -> None:
    """A worker's activities begin and end at once: their starts and changes share one
    transaction, and each gets what it would have had alone."""
    starting, ending, other = (
        _task(f"T-00000000000000000000000{n}", cluster=f"c{n}") for n in (1, 2, 3)
    )
    for task in (starting, ending, other):
        task_store.submit_task(task, records.plan_stages(["A", "B"]))
    running = task_store.begin_stages([store.StageStart(ending.task_id, "A", NOW)])
    stage = running[ending.task_id].stages[0]
    version = running[ending.task_id].task.version
    done = changes.UpdateStage(
        ending.task_id,
        stage.with_state(ending.task_id, states.StageState.SUCCESS, NOW + 1),
        NOW + 1,
    )
    event = changes.AppendEvent(ending.task_id, "a", states.EventLevel.NORMAL, "R", "m", NOW + 1)

    views, outcomes = task_store.begin_stages_and_apply(
        [store.StageStart(starting.task_id, "A", NOW + 2), store.StageStart("T-fff", "A", 0)],
        [done, event],
    )

    assert set(views) == {starting.task_id}
    assert views[starting.task_id] == task_store.describe_task(starting.task_id)
    assert views[starting.task_id].stages[0].state is states.StageState.RUNNING
    assert [o.error for o in outcomes] == [None, None]
    assert outcomes[0].value == version + 1
    assert isinstance(outcomes[1].value, records.Event)
    assert outcomes[1].value.seq == 1
    ended = task_store.describe_task(ending.task_id)
    assert ended.stages[0].state is states.StageState.SUCCESS
    assert ended.task.version == version + 2

    # A change that fails: every start and every other change still gets its own outcome.
    views, outcomes = task_store.begin_stages_and_apply(
        [store.StageStart(other.task_id, "A", NOW + 3)],
        [changes.ReadTask("T-ffffffffffffffffffffffff"), event],
    )
    assert views[other.task_id] == task_store.describe_task(other.task_id)
    assert views[other.task_id].stages[0].state is states.StageState.RUNNING
    assert isinstance(outcomes[0].error, errors.TaskNotFound)
    assert isinstance(outcomes[1].value, records.Event)
    assert outcomes[1].value.seq == 2
    assert [e.seq for e in task_store.describe_task(ending.task_id).events] == [1, 2]


@pytest.mark.parametrize("grouped", [True, False], ids=["batch", "alone"])
def test_an_update_tasks_also_commits_with_it_or_not_at_all(
    task_store: store.TaskStore, grouped: bool
) -> None:
    """``UpdateTask.also`` (the states a task leaves its cloud in) runs in the transaction
    of the task's write: both commit, or neither."""
    task = _task()
    task_store.submit_task(task, records.plan_stages(["A"]))
    ended = task.with_state(states.TaskState.SUCCESS, NOW + 1)
    seen: list[str] = []

    def refuse(conn: sa.Connection) -> None:
        # The task's end, not committed yet, is visible here: the same transaction.
        where = schema.tasks.c.task_id == task.task_id
        seen.append(conn.execute(sa.select(schema.tasks.c.state).where(where)).scalar_one())
        raise errors.InvalidParameter("state", "the cloud refused it")

    def apply(change: changes.UpdateTask) -> changes.BatchOutcome:
        if grouped:
            return task_store.apply_batch([change])[0]
        try:
            return changes.BatchOutcome(value=task_store.apply(change))
        except errors.InvalidParameter as exc:
            return changes.BatchOutcome(error=exc)

    refused = apply(changes.UpdateTask(ended, also=refuse))
    assert isinstance(refused.error, errors.InvalidParameter)
    assert set(seen) == {"success"}  # a batch that fails is applied again change by change
    assert task_store.get_task(task.task_id).state is states.TaskState.RUNNING

    written: list[str] = []
    done = apply(changes.UpdateTask(ended, also=lambda conn: written.append("yes")))
    assert done.error is None
    assert written == ["yes"]
    assert task_store.get_task(task.task_id).state is states.TaskState.SUCCESS
