"""The changes the task store can group into one transaction (group commit).

Each touches one task, and a failure of one is its own (an unknown task, an illegal result
transition), so ``TaskStore.apply_batch`` can tell every change its own outcome. A read
(``ReadTask``) in a batch sees every commit before it and the batch's earlier changes.

What ``TaskStore.apply`` returns for each: ``UpdateTask`` and ``UpdateStage`` the task's new
version, ``AppendEvent`` the event as numbered, ``SetResult`` nothing, ``ReadTask`` the task,
``ReadView`` the task's view.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from clustertasks.domain import records, states

if TYPE_CHECKING:
    import sqlalchemy as sa

Also = Callable[["sa.Connection"], None]
"""Writes of another store made in the transaction of a change (e.g. the states a task
leaves its cluster and node pools in, written with the task's final state)."""


@dataclass(frozen=True, slots=True)
class UpdateTask:
    """Write the task row's mutable fields (state, current stage, outputs, error).

    ``acted_on``: the client request (pause, cancel) this change fulfils, forgotten in the
    same transaction — unless a different request has arrived meanwhile.

    ``also``: run in the same transaction, after the task row is written: a task that
    ends writes the states it leaves its cloud resources in this way, so no reader sees
    them before the task's end, and a crash keeps both or neither.
    """

    task: records.Task
    acted_on: str | None = None
    also: Also | None = None

    @property
    def task_id(self) -> str:
        return self.task.task_id


@dataclass(frozen=True, slots=True)
class UpdateStage:
    """Write one stage's state, times, message and outputs."""

    task_id: str
    stage: records.Stage
    now_us: int


@dataclass(frozen=True, slots=True)
class AppendEvent:
    """Append one event; events of a task are numbered 1, 2, 3… in commit order."""

    task_id: str
    action: str
    level: states.EventLevel
    reason: str
    message: str
    now_us: int
    source: str = records.EVENT_SOURCE


@dataclass(frozen=True, slots=True)
class SetResult:
    """Record what happened to one resource; a new resource is appended to the list.

    ``event``, when given, is appended in the same transaction: a crash leaves both or
    neither, so a stage re-run never skips the event of a resource already done.
    """

    task_id: str
    data: str
    status: states.ResultStatus
    now_us: int
    event: records.EventNote | None = None


@dataclass(frozen=True, slots=True)
class ReadTask:
    """Read the task row (a checkpoint's look for a pause or cancel request)."""

    task_id: str


@dataclass(frozen=True, slots=True)
class ReadView:
    """Read the whole task, with its stages, events and results (a runner's start)."""

    task_id: str


Write = UpdateTask | UpdateStage | AppendEvent | SetResult
Read = ReadTask | ReadView
Change = Write | Read

Applied = int | records.Event | records.Task | records.TaskView | None
"""What applying a change returns (see the module's docstring)."""


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one change of a batch returned, or the exception it raised."""

    value: Applied = None
    error: Exception | None = None


def written_tasks(changes: Iterable[Change]) -> set[str]:
    """The ids of the tasks that ``changes`` write to (reads left out)."""
    return {change.task_id for change in changes if not isinstance(change, ReadTask | ReadView)}
