"""What a task leaves its cluster and pools in: the stages' ``settles`` outputs, in order,
then the compensation's; the latest for each resource, a deletion for good."""

from __future__ import annotations

from typing import Any

from clustertasks.domain import records, states
from clustertasks.engine import context

CLUSTER = "c" + "1" * 32


def _state(*outputs: dict[str, Any]) -> context.RunState:
    task = records.Task(
        task_id="T-1",
        cluster_id=CLUSTER,
        task_type="test",
        state=states.TaskState.RUNNING,
        created_us=1,
        updated_us=1,
        target=records.Target(CLUSTER, "cluster"),
    )
    stages = tuple(
        records.Stage(position=i, name=f"S{i}", outputs=found) for i, found in enumerate(outputs)
    )
    return context.RunState(records.TaskView(task=task, stages=stages, events=(), results=()))


def test_nothing_settled_leaves_nothing() -> None:
    assert _state({}, {"nodes_done": 2}).settles() == (None, {})


def test_later_stages_and_then_the_compensation_win() -> None:
    state = _state(
        {"settles": {"nodepools": {"np1": "active", "np2": "active"}}},
        {"settles": {"cluster": "running", "nodepools": {"np2": "failed"}}},
    )
    assert state.settles() == ("running", {"np1": "active", "np2": "failed"})
    state.compensation_settles = {"cluster": "failed", "nodepools": {"np1": "scaling"}}
    assert state.settles() == ("failed", {"np1": "scaling", "np2": "failed"})


def test_a_pool_settled_deleted_stays_deleted() -> None:
    state = _state({"settles": {"nodepools": {"np1": context.DELETED}}})
    state.compensation_settles = {"nodepools": {"np1": "active"}}
    assert state.settles() == (None, {"np1": context.DELETED})
