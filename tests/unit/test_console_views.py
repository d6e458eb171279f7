"""What the console's task page draws: the stage timeline, the progress bars from the
stages' counters, and the controls a task's state allows."""

from __future__ import annotations

import dataclasses

from clustertasks.console import views
from clustertasks.domain import records, states

S = 1_000_000
BEGIN = 1_764_000_000 * S


def _view(state: states.TaskState, *stages: records.Stage) -> records.TaskView:
    task = records.Task(
        task_id="T-6b11f2ed6c0f2313334ed34a",
        cluster_id="c0123456789abcdef0123456789abcdef",
        task_type="nodepool_upgrade",
        state=state,
        created_us=BEGIN,
        updated_us=BEGIN + 100 * S,
        target=records.Target("np0123456789abcdef0123456789abcdef", "nodepool"),
    )
    return records.TaskView(task, stages)


def _stage(position: int, state: str, start: int | None, end: int | None) -> records.Stage:
    return records.Stage(
        position,
        f"Stage{position}",
        states.StageState(state),
        None if start is None else BEGIN + start * S,
        None if end is None else BEGIN + end * S,
    )


def test_a_running_tasks_timeline_runs_to_now_and_its_running_stage_reaches_it() -> None:
    view = _view(
        states.TaskState.RUNNING,
        _stage(0, "success", 0, 10),
        _stage(1, "running", 10, None),
        _stage(2, "pending", None, None),
    )
    begin, end, bars = views.timeline(view, BEGIN + 40 * S, "UTC")
    assert (begin, end) == (BEGIN, BEGIN + 40 * S)
    assert [(bar.left, bar.width) for bar in bars] == [(0.0, 25.0), (25.0, 75.0), (0.0, 0.0)]
    assert bars[0].start == "2025-11-24 16:00:00"
    assert bars[0].end == "2025-11-24 16:00:10"
    assert bars[2].start == ""
    # Later, the running bar has grown; the finished one is a smaller share of the span.
    _, _, later = views.timeline(view, BEGIN + 80 * S, "UTC")
    assert [(bar.left, bar.width) for bar in later[:2]] == [(0.0, 12.5), (12.5, 87.5)]


def test_a_finished_tasks_timeline_ends_with_it_and_instant_stages_still_show() -> None:
    view = _view(
        states.TaskState.SUCCESS,
        _stage(0, "success", 0, 0),
        _stage(1, "success", 0, 50),
        _stage(2, "success", 50, 50),
    )
    _, end, bars = views.timeline(view, BEGIN + 999 * S, "UTC")
    assert end == BEGIN + 100 * S  # the task's last update, not now
    assert [(bar.left, bar.width) for bar in bars] == [
        (0.0, views.MIN_BAR_PERCENT),
        (0.0, 50.0),
        (50.0, views.MIN_BAR_PERCENT),
    ]


def test_counters_pair_done_with_total_and_batch_with_batches_total() -> None:
    outputs = {
        "nodes_total": 40,
        "nodes_done": 12,
        "batch": 3,
        "batches_total": 10,
        "in_flight": ["a"],
        "failed_total": 2,  # no failed_done: not a progress bar
        "weird_total": True,
        "weird_done": 1,
    }
    found = views.counters(outputs)
    assert [(c.label, c.done, c.total, c.percent) for c in found] == [
        ("nodes", 12, 40, 30.0),
        ("batches", 3, 10, 30.0),
    ]
    assert views.Counter("empty", 0, 0).percent == 100.0


def test_controls_follow_the_state_the_type_and_a_pending_request() -> None:
    running = _view(states.TaskState.RUNNING).task
    paused = _view(states.TaskState.PAUSED).task
    done = _view(states.TaskState.SUCCESS).task
    asked = dataclasses.replace(running, requested_action=records.PAUSE)
    assert views.controls(running, True, True) == views.Controls(True, False, True)
    assert views.controls(paused, True, True) == views.Controls(False, True, True)
    assert views.controls(done, True, True) == views.Controls(False, False, False)
    assert views.controls(asked, True, True) == views.Controls(False, False, True)
    assert views.controls(running, False, False) == views.Controls(False, False, False)
