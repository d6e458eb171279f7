"""What the console's pages show of a task, worked out before a template sees it: the stage
timeline's geometry, the progress bars from the stages' counters, the controls a task
allows. Pure functions of the records; no I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeGuard

from clustertasks.domain import records, states, timefmt

MIN_BAR_PERCENT = 0.6
"""A stage that took no measurable time still shows as a sliver."""


@dataclass(frozen=True, slots=True)
class StageBar:
    name: str
    state: str
    start: str
    end: str
    start_us: int | None
    end_us: int | None
    left: float
    """Percent of the timeline where the bar starts."""
    width: float
    """Percent of the timeline it spans (the running stage's grows until it ends)."""
    message: str
    counters: Sequence[Counter]


@dataclass(frozen=True, slots=True)
class Counter:
    label: str
    done: int
    total: int

    @property
    def percent(self) -> float:
        return 100.0 if self.total <= 0 else min(100.0, 100.0 * self.done / self.total)


@dataclass(frozen=True, slots=True)
class Controls:
    pause: bool
    resume: bool
    cancel: bool


def timeline(view: records.TaskView, now_us: int, tz: str) -> tuple[int, int, list[StageBar]]:
    """The span the timeline covers (the task's creation to its end, or to now while it
    runs) and one bar per stage within it."""
    begin = view.task.created_us
    ended = [s.end_us for s in view.stages if s.end_us is not None]
    end = now_us if not view.task.state.terminal else max([view.task.updated_us, *ended])
    span = max(end - begin, 1)
    bars = []
    for stage in view.stages:
        left = width = 0.0
        if stage.start_us is not None:
            stop = stage.end_us if stage.end_us is not None else end
            left = _percent(stage.start_us - begin, span)
            width = max(MIN_BAR_PERCENT, _percent(stop - stage.start_us, span))
            width = min(width, 100.0 - left) if left < 100.0 else MIN_BAR_PERCENT
        bars.append(
            StageBar(
                name=stage.name,
                state=stage.state.value,
                start=timefmt.stage_time(stage.start_us, tz),
                end=timefmt.stage_time(stage.end_us, tz),
                start_us=stage.start_us,
                end_us=stage.end_us,
                left=left,
                width=width,
                message=stage.message,
                counters=counters(stage.outputs),
            )
        )
    return begin, end, bars


def counters(outputs: Mapping[str, Any]) -> list[Counter]:
    """Progress bars from a stage's named counters: ``X_done`` of ``X_total``, and
    ``batch`` of ``batches_total`` (docs/architecture.md, stage outputs)."""
    found = []
    for key, total in outputs.items():
        if not key.endswith("_total") or not _is_count(total):
            continue
        base = key.removesuffix("_total")
        done = outputs.get("batch" if base == "batches" else f"{base}_done")
        if _is_count(done):
            found.append(Counter(base.replace("_", " "), done, total))
    return found


def controls(task: records.Task, pausable: bool, cancelable: bool) -> Controls:
    """The buttons the task's state and type allow (the service checks again)."""
    running = task.state is states.TaskState.RUNNING
    paused = task.state is states.TaskState.PAUSED
    return Controls(
        pause=pausable and running and task.requested_action is None,
        resume=pausable and paused,
        cancel=cancelable and (running or paused) and task.requested_action != records.CANCEL,
    )


def _percent(part: int, whole: int) -> float:
    return round(max(0.0, min(100.0, 100.0 * part / whole)), 2)


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
