"""One server's metrics and tracing, and the hooks the engine and the cloud calls report to.

The engine sees only :class:`TaskTelemetry` (a task run, a stage attempt, a retry, an end
state); the cloud provider is wrapped by :func:`traced`. Neither imports this package's
third-party libraries, and both work unchanged with telemetry that records nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from clustertasks import errors
from clustertasks.observability import logs, metrics, tracing

T = TypeVar("T")

log = logging.getLogger("clustertasks.engine")


@dataclasses.dataclass(frozen=True, slots=True)
class Telemetry:
    """What one server reports: its metrics registry and its tracer."""

    metrics: metrics.Metrics = dataclasses.field(default_factory=metrics.Metrics)
    tracing: tracing.Tracing = dataclasses.field(default_factory=tracing.Tracing.off)

    def tasks(self, executor: str = "local") -> TaskTelemetry:
        return TaskTelemetry(self, executor)

    def close(self) -> None:
        self.tracing.shutdown()


class TaskTelemetry:
    """The engine's hooks: a span per task run and per stage attempt, the stage histograms,
    retries, timeouts and end states, and the log fields of the task and stage."""

    def __init__(self, telemetry: Telemetry, executor: str) -> None:
        self._metrics = telemetry.metrics
        self._tracing = telemetry.tracing
        self.executor = executor

    @contextlib.contextmanager
    def task_run(self, task_id: str, task_type: str, trace_parent: str | None) -> Iterator[None]:
        """Around one run of a task, from wherever it stands to its next stop; its span is a
        child of the request that submitted the task (``trace_parent``)."""
        with (
            logs.bound(task_id=task_id),
            self._tracing.span(
                f"task {task_type}",
                parent=trace_parent,
                attributes={
                    "clustertasks.task_id": task_id,
                    "clustertasks.task_type": task_type,
                    "clustertasks.executor": self.executor,
                },
            ),
        ):
            log.info("%s task %s runs", task_type, task_id)
            yield

    @contextlib.contextmanager
    def stage_attempt(
        self, task_id: str, task_type: str, stage: str, attempt: int
    ) -> Iterator[Callable[[str], None]]:
        """Around one attempt of a stage. The block gets a function to call with the
        attempt's outcome when it is not ``success`` (``retry``, ``fail``, ``timeout``,
        ``interrupted``); an exception escaping the block marks the span as failed."""
        outcome = ["success"]
        started = time.perf_counter()
        with (
            logs.bound(task_id=task_id, stage=stage),
            self._tracing.span(
                f"stage {stage}",
                attributes={
                    "clustertasks.task_id": task_id,
                    "clustertasks.task_type": task_type,
                    "clustertasks.stage": stage,
                    "clustertasks.attempt": attempt,
                },
            ) as span,
        ):
            try:
                yield functools.partial(_set, outcome)
            except errors.ClustertasksError as exc:
                tracing.mark_error(span, exc.code, exc.message)
                raise
            except TimeoutError:
                tracing.mark_error(span, errors.StageTimeout.code, f"stage {stage} timed out")
                raise
            finally:
                seconds = time.perf_counter() - started
                if span is not None:
                    span.set_attribute("clustertasks.outcome", outcome[0])
                self._metrics.stage_duration.labels(task_type, stage, outcome[0]).observe(seconds)
                log.info("stage %s attempt %d: %s after %.3fs", stage, attempt, outcome[0], seconds)

    def retried(self, task_type: str, stage: str, code: str) -> None:
        """Inside :meth:`stage_attempt`: the attempt failed with ``code`` and will be retried."""
        self._metrics.stage_retries.labels(task_type, stage, code).inc()
        tracing.mark_error(tracing.current_span(), code, f"stage {stage} attempt failed; retried")

    def timed_out(self, task_type: str, stage: str) -> None:
        self._metrics.stage_timeouts.labels(task_type, stage).inc()

    def finished(self, task_type: str, state: str) -> None:
        self._metrics.tasks_finished.labels(task_type, state).inc()
        log.info("%s task ended: %s", task_type, state)
        tracing.annotate(**{"clustertasks.state": state})


def _set(box: list[str], value: str) -> None:
    box[0] = value


def traced(provider: T, telemetry: Telemetry) -> T:
    """``provider`` with a span and a duration per call of its ``async`` methods (the cloud
    port's actions); everything else passes through untouched."""
    return _Traced(provider, telemetry)  # type: ignore[return-value]


class _Traced:
    def __init__(self, provider: Any, telemetry: Telemetry) -> None:
        self._provider = provider
        self._metrics = telemetry.metrics
        self._tracing = telemetry.tracing
        self._wrapped: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._provider, name)
        if name.startswith("_") or not inspect.iscoroutinefunction(attribute):
            return attribute
        wrapped = self._wrapped.get(name)
        if wrapped is None:
            wrapped = self._wrapped[name] = self._wrap(name, attribute)
        return wrapped

    def _wrap(self, name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        histogram = self._metrics.cloud_calls

        @functools.wraps(method)
        async def call(*args: Any, **kwargs: Any) -> Any:
            bound = logs.current()
            started = time.perf_counter()
            outcome = "ok"
            with self._tracing.span(
                f"cloud {name}",
                kind=tracing.SpanKind.CLIENT,
                attributes={
                    "clustertasks.task_id": bound.get("task_id", ""),
                    "clustertasks.stage": bound.get("stage", ""),
                    "clustertasks.cloud_operation": name,
                },
            ) as span:
                try:
                    return await method(*args, **kwargs)
                except errors.ClustertasksError as exc:
                    outcome = exc.code
                    tracing.mark_error(span, exc.code, exc.message)
                    raise
                except BaseException as exc:
                    outcome = type(exc).__name__
                    raise
                finally:
                    histogram.labels(name, outcome).observe(time.perf_counter() - started)

        return call
