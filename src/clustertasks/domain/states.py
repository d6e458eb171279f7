"""Task and stage states, and the one table that says which changes are legal.

Nothing else in clustertasks decides whether a state may change: every change goes
through :func:`check_task_transition` or :func:`check_stage_transition`.
"""

from __future__ import annotations

import enum

from clustertasks import errors


class TaskState(enum.StrEnum):
    RUNNING = "running"
    PAUSED = "paused"
    SUCCESS = "success"
    FAIL = "fail"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_TASK_STATES


TERMINAL_TASK_STATES = frozenset({TaskState.SUCCESS, TaskState.FAIL, TaskState.CANCELED})

TASK_TRANSITIONS: dict[TaskState, frozenset[TaskState]] = {
    TaskState.RUNNING: frozenset(
        {TaskState.PAUSED, TaskState.SUCCESS, TaskState.FAIL, TaskState.CANCELED}
    ),
    TaskState.PAUSED: frozenset({TaskState.RUNNING, TaskState.CANCELED, TaskState.FAIL}),
    TaskState.SUCCESS: frozenset(),
    TaskState.FAIL: frozenset(),
    TaskState.CANCELED: frozenset(),
}


class StageState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCESS = "success"
    FAIL = "fail"
    SKIPPED = "skipped"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STAGE_STATES


TERMINAL_STAGE_STATES = frozenset(
    {StageState.SUCCESS, StageState.FAIL, StageState.SKIPPED, StageState.CANCELED}
)

STAGE_TRANSITIONS: dict[StageState, frozenset[StageState]] = {
    StageState.PENDING: frozenset({StageState.RUNNING, StageState.SKIPPED, StageState.CANCELED}),
    StageState.RUNNING: frozenset({StageState.SUCCESS, StageState.FAIL, StageState.CANCELED}),
    StageState.SUCCESS: frozenset(),
    StageState.FAIL: frozenset(),
    StageState.SKIPPED: frozenset(),
    StageState.CANCELED: frozenset(),
}


class ResultStatus(enum.StrEnum):
    """Per-resource outcome in ``task_result[].status``."""

    INITIAL = "initial"
    SUCCESS = "success"
    FAILED = "failed"


RESULT_TRANSITIONS: dict[ResultStatus, frozenset[ResultStatus]] = {
    ResultStatus.INITIAL: frozenset({ResultStatus.SUCCESS, ResultStatus.FAILED}),
    # A resource that failed may be retried by a later attempt of the same stage.
    ResultStatus.FAILED: frozenset({ResultStatus.SUCCESS}),
    ResultStatus.SUCCESS: frozenset(),
}


class EventLevel(enum.StrEnum):
    NORMAL = "Normal"
    WARNING = "Warning"


def check_task_transition(task_id: str, current: TaskState, target: TaskState) -> None:
    """Raise :class:`errors.IllegalTransition` unless ``current -> target`` is legal."""
    if target not in TASK_TRANSITIONS[current]:
        raise errors.IllegalTransition(task_id, current.value, target.value)


def check_stage_transition(
    task_id: str, stage: str, current: StageState, target: StageState
) -> None:
    """Raise :class:`errors.IllegalTransition` unless the stage may go ``current -> target``."""
    if target not in STAGE_TRANSITIONS[current]:
        raise errors.IllegalTransition(f"{task_id} stage {stage}", current.value, target.value)


def check_result_transition(
    task_id: str, data: str, current: ResultStatus, target: ResultStatus
) -> None:
    """Raise unless a resource result may go ``current -> target`` (same status is a no-op)."""
    if target != current and target not in RESULT_TRANSITIONS[current]:
        raise errors.IllegalTransition(f"{task_id} result {data}", current.value, target.value)
