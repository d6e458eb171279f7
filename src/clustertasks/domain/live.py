"""Following a task: the messages of its event stream, and where a client stands in it.

A stream is a sequence of messages, each one change as DescribeTaskInfo shows it: the
task's top-level fields (``task``), one stage (``stage``), one event (``event``), one
resource result (``result``); a ``snapshot`` (the whole document) opens a new stream and
an ``end`` (the whole document again) closes it once the task has finished.

Every message carries a :class:`Position`, ``<version>.<seq>``: the task version the
client has fully seen and the last event it has received. Messages derived from one change
come in a batch; all but the last carry the version from *before* the change, so a client
cut off inside a batch resumes with an older version and is sent the current state again,
never less. Events are append-only and numbered, so resuming sends exactly those after
``seq``: none lost, none twice.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from clustertasks.domain import records, wire

SNAPSHOT = "snapshot"
TASK = "task"
STAGE = "stage"
EVENT = "event"
RESULT = "result"
END = "end"

_POSITION = re.compile(r"([0-9]{1,18})\.([0-9]{1,18})")
_LISTS = ("stages", "events", "task_result")
# The fields whose change is worth a ``task`` message; ``updated`` changes with every write
# and would make one of every change.
_TASK_FIELDS = ("state", "current_stage", "error", "outputs")


@dataclass(frozen=True, slots=True)
class Position:
    """How far a client has followed a task: its version, and the last event's number."""

    version: int
    seq: int

    def __str__(self) -> str:
        return f"{self.version}.{self.seq}"

    @classmethod
    def parse(cls, text: str) -> Position:
        """``<version>.<seq>``, two non-negative integers; ValueError for anything else."""
        found = _POSITION.fullmatch(text.strip())
        if found is None:
            raise ValueError(f"must be <version>.<event seq> as sent in an id, got {text!r}")
        return cls(int(found.group(1)), int(found.group(2)))

    @classmethod
    def of(cls, view: records.TaskView, seq: int) -> Position:
        return cls(view.task.version, seq)


@dataclass(frozen=True, slots=True)
class Message:
    kind: str
    data: Mapping[str, Any]
    position: Position


def last_seq(view: records.TaskView, seen: int = 0) -> int:
    """The number of the newest event in ``view`` (or ``seen`` when it holds none newer)."""
    return max(seen, view.events[-1].seq) if view.events else seen


def task_fields(view: records.TaskView, tz: str) -> dict[str, Any]:
    """DescribeTaskInfo's top-level fields, without the lists."""
    document = wire.task_document(records.TaskView(view.task), tz)
    for key in _LISTS:
        del document[key]
    return document


def opening(view: records.TaskView, tz: str) -> list[Message]:
    """What a new stream starts with: the whole document (and ``end`` if it is final)."""
    position = Position.of(view, last_seq(view))
    messages = [Message(SNAPSHOT, wire.task_document(view, tz), position)]
    return messages + closing(view, position.seq, tz)


def check_resumable(view: records.TaskView, client: Position) -> None:
    """ValueError when ``client`` is ahead of the task: not a position of this task."""
    newest = last_seq(view)
    if client.version > view.task.version or client.seq > newest:
        raise ValueError(
            f"is ahead of the task (version {view.task.version}, last event {newest}): "
            f"not an id this task's stream sent"
        )


def resumed(view: records.TaskView, client: Position, tz: str) -> list[Message]:
    """What a client resuming at ``client`` has not seen, then ``end`` if the task is final.

    The current task, every stage and every result when anything changed since (the
    client's copy of them is unknown); the events after ``client.seq`` in any case.
    """
    check_resumable(view, client)
    changed = client.version < view.task.version
    batch: list[tuple[str, Mapping[str, Any], int | None]] = []
    if changed:
        document = wire.task_document(view, tz)
        batch += [(STAGE, stage, None) for stage in document["stages"]]
        batch += [(RESULT, result, None) for result in document["task_result"]]
    batch += _new_events(view, client.seq, tz)
    if changed:
        batch.append((TASK, task_fields(view, tz), None))
    return _positioned(batch, client, view) + closing(view, last_seq(view, client.seq), tz)


def changes(
    before: records.TaskView, after: records.TaskView, seen: Position, tz: str
) -> list[Message]:
    """What changed from ``before`` (what the client has, up to ``seen``) to ``after``.

    Stages and results that differ, events after ``seen.seq`` in order, then the task's
    fields if its state, current stage, error or outputs changed.
    """
    old = wire.task_document(records.TaskView(before.task, before.stages, (), before.results), tz)
    new = wire.task_document(records.TaskView(after.task, after.stages, (), after.results), tz)
    batch: list[tuple[str, Mapping[str, Any], int | None]] = []
    old_stages: Sequence[Mapping[str, Any]] = old["stages"]
    for index, stage in enumerate(new["stages"]):
        if index >= len(old_stages) or old_stages[index] != stage:
            batch.append((STAGE, stage, None))
    old_results = {result["data"]: result for result in old["task_result"]}
    for result in new["task_result"]:
        if old_results.get(result["data"]) != result:
            batch.append((RESULT, result, None))
    batch += _new_events(after, seen.seq, tz)
    if any(old[key] != new[key] for key in _TASK_FIELDS):
        batch.append((TASK, task_fields(after, tz), None))
    return _positioned(batch, seen, after)


def closing(view: records.TaskView, seq: int, tz: str) -> list[Message]:
    """``end`` with the whole document once the task has finished; nothing before."""
    if not view.task.state.terminal:
        return []
    return [Message(END, wire.task_document(view, tz), Position(view.task.version, seq))]


def _new_events(
    view: records.TaskView, after: int, tz: str
) -> list[tuple[str, Mapping[str, Any], int | None]]:
    fresh = [event for event in view.events if event.seq > after]
    documents = wire.task_document(records.TaskView(view.task, (), fresh, ()), tz)["events"]
    return [(EVENT, doc, event.seq) for event, doc in zip(fresh, documents, strict=True)]


def _positioned(
    batch: Sequence[tuple[str, Mapping[str, Any], int | None]],
    seen: Position,
    after: records.TaskView,
) -> list[Message]:
    """Number a batch: the last message carries ``after``'s version, the others ``seen``'s."""
    messages: list[Message] = []
    seq = seen.seq
    for index, (kind, data, event_seq) in enumerate(batch):
        if event_seq is not None:
            seq = event_seq
        version = after.task.version if index == len(batch) - 1 else seen.version
        messages.append(Message(kind, data, Position(version, seq)))
    return messages
