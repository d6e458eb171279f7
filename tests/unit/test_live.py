"""The event stream's messages and positions, and resuming from any of them."""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import pytest

from clustertasks.domain import live, records, states, wire

T0 = 1_764_000_000_000_000
TASK_ID = "T-69248100f252e6b438269e0e"


def _timeline() -> list[records.TaskView]:
    """A task from submission to success, one committed write per view (versions 1, 2, …)."""
    task = records.Task(
        task_id=TASK_ID,
        cluster_id="c0123456789abcdef0123456789abcdef",
        task_type="nodepool_scaleout",
        state=states.TaskState.RUNNING,
        created_us=T0,
        updated_us=T0,
        target=records.Target("np1", "nodepool"),
    )
    stages = list(records.plan_stages(["Prepare", "CreateInstances", "Finish"]))
    events: list[records.Event] = []
    results: list[records.TaskResult] = []
    views = [records.TaskView(task, tuple(stages), (), ())]

    def commit(now: int) -> None:
        nonlocal task
        task = dataclasses.replace(task, version=task.version + 1, updated_us=now)
        views.append(records.TaskView(task, tuple(stages), tuple(events), tuple(results)))

    def event(reason: str, now: int) -> None:
        events.append(
            records.Event(len(events) + 1, "progress", states.EventLevel.NORMAL, reason, "m", now)
        )

    now = T0
    for position, name in enumerate(["Prepare", "CreateInstances", "Finish"]):
        now += 1_000_000
        stages[position] = stages[position].with_state(TASK_ID, states.StageState.RUNNING, now)
        task = task.with_current_stage(name, now)
        commit(now)
        event(f"{name}Start", now)
        commit(now)
        if name == "CreateInstances":
            for item in ("i-1", "i-2"):
                results.append(records.TaskResult(item))
                commit(now)
            for done, item in enumerate(("i-1", "i-2"), start=1):
                results[done - 1] = records.TaskResult(item, states.ResultStatus.SUCCESS)
                event("InstanceCreated", now)
                stages[position] = dataclasses.replace(
                    stages[position], outputs={"nodes_done": done, "nodes_total": 2}
                )
                commit(now)  # a result, an event and progress in one transaction
        now += 1_000_000
        stages[position] = stages[position].with_state(TASK_ID, states.StageState.SUCCESS, now)
        commit(now)
    event("TaskSucceed", now)
    task = task.with_state(states.TaskState.SUCCESS, now)
    commit(now)
    return views


class _Client:
    """What a client rebuilds from the messages it receives."""

    def __init__(self) -> None:
        self.document: dict[str, Any] = {}
        self.seqs: list[int] = []
        self.position: live.Position | None = None
        self.ended = False

    def receive(self, message: live.Message) -> None:
        data = copy.deepcopy(dict(message.data))
        if message.kind == live.SNAPSHOT:
            self.document = data
            self.seqs = list(range(1, len(data["events"]) + 1))
        elif message.kind == live.END:
            # What the client rebuilt must be what ``end`` says the task is.
            assert self.document == data
            self.ended = True
        elif message.kind == live.TASK:
            self.document.update(data)
        elif message.kind == live.STAGE:
            stages = self.document["stages"]
            index = next(i for i, s in enumerate(stages) if s["name"] == data["name"])
            stages[index] = data
        elif message.kind == live.RESULT:
            results = self.document["task_result"]
            known = [i for i, r in enumerate(results) if r["data"] == data["data"]]
            if known:
                results[known[0]] = data
            else:
                results.append(data)
        elif message.kind == live.EVENT:
            self.document["events"].append(data)
            self.seqs.append(message.position.seq)
        self.position = message.position


def _follow(views: list[records.TaskView]) -> list[tuple[live.Message, int]]:
    """A stream opened at ``views[0]`` that sees every later view; each message with the
    index of the view it was made from."""
    messages = [(m, 0) for m in live.opening(views[0], "UTC")]
    seen = messages[-1][0].position
    for index in range(1, len(views)):
        batch = live.changes(views[index - 1], views[index], seen, "UTC")
        batch += live.closing(views[index], live.last_seq(views[index], seen.seq), "UTC")
        if batch:
            seen = batch[-1].position
        messages += [(m, index) for m in batch]
    return messages


def test_position_round_trips_and_rejects_anything_else() -> None:
    assert str(live.Position(12, 3)) == "12.3"
    assert live.Position.parse("12.3") == live.Position(12, 3)
    assert live.Position.parse(" 0.0 ") == live.Position(0, 0)
    for bad in ("", "12", "12.", ".3", "a.b", "-1.2", "1.2.3", "1e3.1", "9" * 19 + ".1"):
        with pytest.raises(ValueError, match="version"):
            live.Position.parse(bad)


def test_a_new_stream_opens_with_the_whole_document() -> None:
    views = _timeline()
    running = views[5]
    [snapshot] = live.opening(running, "UTC")
    assert snapshot.kind == live.SNAPSHOT
    assert snapshot.data == wire.task_document(running, "UTC")
    assert snapshot.position == live.Position(running.task.version, len(running.events))

    final = views[-1]
    opened = live.opening(final, "UTC")
    assert [m.kind for m in opened] == [live.SNAPSHOT, live.END]
    assert opened[1].data == wire.task_document(final, "UTC")
    assert opened[1].data["state"] == "success"


def test_a_change_is_one_message_per_part_numbered_by_version_and_event() -> None:
    views = _timeline()
    before = next(v for v in views if len(v.results) == 2 and len(v.events) == 2)
    after = views[views.index(before) + 1]  # result, event and progress together
    seen = live.Position(before.task.version, 2)
    batch = live.changes(before, after, seen, "UTC")
    assert [m.kind for m in batch] == [live.STAGE, live.RESULT, live.EVENT]
    assert batch[0].data["outputs"] == {"nodes_done": 1, "nodes_total": 2}
    assert batch[1].data == {"data": "i-1", "status": "success"}
    assert batch[2].data["reason"] == "InstanceCreated"
    # Cut off before the last message, a client resumes with the older version.
    assert [m.position for m in batch] == [
        live.Position(before.task.version, 2),
        live.Position(before.task.version, 2),
        live.Position(after.task.version, 3),
    ]
    # Only the state, current stage, error or outputs make a ``task`` message.
    seen = live.Position(views[-2].task.version, len(views[-2].events))
    final = live.changes(views[-2], views[-1], seen, "UTC")
    assert [m.kind for m in final] == [live.EVENT, live.TASK]
    assert final[-1].data["state"] == "success"
    assert "stages" not in final[-1].data
    assert "events" not in final[-1].data
    assert final[-1].data == {
        k: v
        for k, v in wire.task_document(views[-1], "UTC").items()
        if k not in ("stages", "events", "task_result")
    }


def test_every_event_arrives_once_in_order_and_the_stream_ends() -> None:
    views = _timeline()
    client = _Client()
    for message, _ in _follow(views):
        client.receive(message)
    final = wire.task_document(views[-1], "UTC")
    assert client.ended
    assert client.seqs == list(range(1, len(views[-1].events) + 1))
    assert client.document == final


@pytest.mark.parametrize("resume_at_view", [0, 3, 8, -1])
def test_resuming_after_any_message_loses_and_repeats_no_event(resume_at_view: int) -> None:
    """Cut the stream after each message in turn; reconnect when the task has reached
    ``views[resume_at_view]`` (or later): the rebuilt document is the task's, every event
    once."""
    views = _timeline()
    stream = _follow(views)
    for cut in range(len(stream) - 1):
        client = _Client()
        for message, _ in stream[: cut + 1]:
            client.receive(message)
        assert client.position is not None
        if client.ended:
            continue
        # The task has moved on at least to the view the last message came from.
        now = max(stream[cut][1], resume_at_view % len(views))
        rest = live.resumed(views[now], client.position, "UTC")
        seen = rest[-1].position if rest else client.position
        for message in rest:
            client.receive(message)
        for index in range(now + 1, len(views)):
            batch = live.changes(views[index - 1], views[index], seen, "UTC")
            batch += live.closing(views[index], live.last_seq(views[index], seen.seq), "UTC")
            for message in batch:
                client.receive(message)
                seen = message.position
        assert client.ended, cut
        assert client.seqs == list(range(1, len(views[-1].events) + 1)), cut
        assert client.document == wire.task_document(views[-1], "UTC"), cut


def test_resuming_where_nothing_changed_sends_nothing() -> None:
    views = _timeline()
    view = views[6]
    at = live.Position(view.task.version, len(view.events))
    assert live.resumed(view, at, "UTC") == []
    last = views[-1]
    ended = live.resumed(last, live.Position(last.task.version, len(last.events)), "UTC")
    assert [m.kind for m in ended] == [live.END]


def test_a_position_ahead_of_the_task_is_refused() -> None:
    view = _timeline()[4]
    with pytest.raises(ValueError, match="ahead of the task"):
        live.check_resumable(view, live.Position(view.task.version + 1, 0))
    with pytest.raises(ValueError, match="ahead of the task"):
        live.check_resumable(view, live.Position(1, len(view.events) + 1))
    live.check_resumable(view, live.Position(view.task.version, len(view.events)))
