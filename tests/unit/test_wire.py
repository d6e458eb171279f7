from __future__ import annotations

from clustertasks.domain import records, states, wire

CREATED = 1_604_995_324_000_000


def _view() -> records.TaskView:
    task = records.Task(
        task_id="T-5faa48fb31b6b8078d000006",
        cluster_id="c78592bfe92244365b3c3ad47f1de0000",
        task_type="nodepool_upgrade",
        state=states.TaskState.RUNNING,
        created_us=CREATED,
        updated_us=CREATED + 62_000_000,
        target=records.Target(id="np1", type="nodepool"),
        parameters={"count": 2},
        current_stage="DrainNodes",
    )
    stages = [
        records.Stage(0, "Precheck", states.StageState.SUCCESS, CREATED, CREATED + 1_000_000, "ok"),
        records.Stage(
            1,
            "DrainNodes",
            states.StageState.RUNNING,
            CREATED + 1_000_000,
            outputs={"nodes_total": 4, "nodes_done": 1},
        ),
        records.Stage(2, "Finish"),
    ]
    events = [
        records.Event(
            1, "start", states.EventLevel.NORMAL, "NodePoolUpgradeStart", "start", CREATED
        ),
    ]
    results = [records.TaskResult("i-1", states.ResultStatus.INITIAL)]
    return records.TaskView(task, stages, events, results)


def test_task_document_has_every_key_with_ack_types() -> None:
    doc = wire.task_document(_view())
    assert set(doc) == {
        "task_id",
        "cluster_id",
        "task_type",
        "state",
        "created",
        "updated",
        "current_stage",
        "target",
        "parameters",
        "stages",
        "events",
        "task_result",
        "error",
        "outputs",
    }
    assert doc["created"] == "2020-11-10T08:02:04+00:00"
    assert doc["updated"] == "2020-11-10T08:03:06+00:00"
    assert doc["target"] == {"id": "np1", "type": "nodepool"}
    assert doc["error"] == {"code": "", "message": ""}
    assert doc["parameters"] == {"count": 2}
    assert doc["outputs"] == {}
    assert [s["name"] for s in doc["stages"]] == ["Precheck", "DrainNodes", "Finish"]
    assert doc["stages"][0] == {
        "state": "success",
        "start_time": "2020-11-10 08:02:04",
        "end_time": "2020-11-10 08:02:05",
        "message": "ok",
        "outputs": {},
        "name": "Precheck",
    }
    assert doc["stages"][1]["end_time"] == ""
    assert doc["stages"][1]["outputs"] == {"nodes_total": 4, "nodes_done": 1}
    assert doc["stages"][2]["start_time"] == ""
    assert doc["events"] == [
        {
            "action": "start",
            "level": "Normal",
            "reason": "NodePoolUpgradeStart",
            "message": "start",
            "source": "ACK",
            "timestamp": "1604995324000",
        }
    ]
    assert doc["task_result"] == [{"data": "i-1", "status": "initial"}]


def test_summary_has_exactly_the_list_keys() -> None:
    summary = wire.task_summary(_view().task, "Asia/Shanghai")
    assert summary == {
        "task_id": "T-5faa48fb31b6b8078d000006",
        "task_type": "nodepool_upgrade",
        "state": "running",
        "created": "2020-11-10T16:02:04+08:00",
        "updated": "2020-11-10T16:03:06+08:00",
        "error": {"code": "", "message": ""},
    }


def test_records_change_state_only_through_the_table() -> None:
    import pytest

    from clustertasks import errors

    task = _view().task
    paused = task.with_state(states.TaskState.PAUSED, CREATED + 5)
    assert paused.state is states.TaskState.PAUSED
    assert paused.updated_us == CREATED + 5
    assert task.state is states.TaskState.RUNNING
    done = task.with_state(states.TaskState.SUCCESS, CREATED + 6)
    with pytest.raises(errors.IllegalTransition):
        done.with_state(states.TaskState.RUNNING, CREATED + 7)

    stage = records.Stage(0, "A")
    running = stage.with_state(task.task_id, states.StageState.RUNNING, 10)
    finished = running.with_state(task.task_id, states.StageState.SUCCESS, 20, "done")
    assert (finished.start_us, finished.end_us, finished.message) == (10, 20, "done")
    with pytest.raises(errors.IllegalTransition):
        stage.with_state(task.task_id, states.StageState.SUCCESS, 10)


def test_planned_stages_are_pending_in_order_and_unique() -> None:
    import pytest

    planned = records.plan_stages(["A", "B", "C"])
    assert [(s.position, s.name, s.state.value) for s in planned] == [
        (0, "A", "pending"),
        (1, "B", "pending"),
        (2, "C", "pending"),
    ]
    with pytest.raises(ValueError, match="unique"):
        records.plan_stages(["A", "A"])
