"""Immutable records of a task and its parts.

A record is loaded from the store into a frozen dataclass; a change produces a new record
through a ``with_…`` method, which consults the transition table in :mod:`states`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clustertasks.domain import states

JsonObject = Mapping[str, Any]

TARGET_TYPES = frozenset({"cluster", "nodepool"})
EVENT_SOURCE = "ACK"


@dataclass(frozen=True, slots=True)
class Target:
    id: str
    type: str = "cluster"


@dataclass(frozen=True, slots=True)
class TaskError:
    code: str = ""
    message: str = ""

    @property
    def empty(self) -> bool:
        return not self.code and not self.message


@dataclass(frozen=True, slots=True)
class Task:
    """The task row: everything except its stages, events and results."""

    task_id: str
    cluster_id: str
    task_type: str
    state: states.TaskState
    created_us: int
    updated_us: int
    target: Target
    parameters: JsonObject = field(default_factory=dict)
    current_stage: str = ""
    outputs: JsonObject = field(default_factory=dict)
    error: TaskError = field(default_factory=TaskError)
    client_token: str | None = None
    request_digest: str | None = None
    """With a ``client_token``: a digest of the normalised request, what a retry must match."""
    requested_action: str | None = None
    """``pause`` or ``cancel`` asked for by a client and not yet acted on."""
    version: int = 1
    """Bumped by the store on every change to the task or its parts."""
    trace_parent: str | None = None
    """The W3C ``traceparent`` of the request that submitted the task (None when it was not
    traced): each run of the task continues that trace."""

    def with_state(self, state: states.TaskState, now_us: int) -> Task:
        states.check_task_transition(self.task_id, self.state, state)
        return dataclasses.replace(self, state=state, updated_us=now_us)

    def with_error(self, error: TaskError, now_us: int) -> Task:
        return dataclasses.replace(self, error=error, updated_us=now_us)

    def with_current_stage(self, name: str, now_us: int) -> Task:
        return dataclasses.replace(self, current_stage=name, updated_us=now_us)


# What a client may ask of a running task; the engine acts on it at the next checkpoint.
PAUSE = "pause"
CANCEL = "cancel"


@dataclass(frozen=True, slots=True)
class Stage:
    position: int
    name: str
    state: states.StageState = states.StageState.PENDING
    start_us: int | None = None
    end_us: int | None = None
    message: str = ""
    outputs: JsonObject = field(default_factory=dict)

    def with_state(
        self, task_id: str, state: states.StageState, now_us: int, message: str | None = None
    ) -> Stage:
        states.check_stage_transition(task_id, self.name, self.state, state)
        start = self.start_us
        end = self.end_us
        if state is states.StageState.RUNNING:
            start = now_us
        elif state.terminal:
            end = now_us
        return dataclasses.replace(
            self,
            state=state,
            start_us=start,
            end_us=end,
            message=self.message if message is None else message,
        )


@dataclass(frozen=True, slots=True)
class Event:
    """One entry of the append-only event history. ``seq`` orders events within a task."""

    seq: int
    action: str
    level: states.EventLevel
    reason: str
    message: str
    timestamp_us: int
    source: str = EVENT_SOURCE


@dataclass(frozen=True, slots=True)
class EventNote:
    """An event still to be written (its ``seq`` and time come when it is committed)."""

    reason: str
    message: str
    level: states.EventLevel = states.EventLevel.NORMAL
    action: str = "progress"


@dataclass(frozen=True, slots=True)
class TaskResult:
    """What happened to one resource the task acts on (``data`` is e.g. an instance id)."""

    data: str
    status: states.ResultStatus = states.ResultStatus.INITIAL


@dataclass(frozen=True, slots=True)
class TaskView:
    """A task with everything DescribeTaskInfo shows."""

    task: Task
    stages: Sequence[Stage] = ()
    events: Sequence[Event] = ()
    results: Sequence[TaskResult] = ()


def plan_stages(names: Sequence[str]) -> tuple[Stage, ...]:
    """Every planned stage, in order, all ``pending``."""
    if len(set(names)) != len(names):
        raise ValueError(f"stage names must be unique: {list(names)}")
    return tuple(Stage(position=i, name=name) for i, name in enumerate(names))
