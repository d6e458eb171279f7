"""How an operation is declared: its task type, its ordered stages, what it supports.

A stage is an ``async`` function of one argument, the :class:`StageContext`. It reads and
changes the world only through ``ctx.provider``, with idempotency keys from ``ctx.key()``,
so the engine may run it again after a crash, a retry or a pause without doing anything
twice. It reports through the context, and every report is durable once it returns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from clustertasks.domain import states
from clustertasks.providers import base as providers


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter: attempt n waits up to ``initial * factor**n``."""

    max_attempts: int = 5
    initial_delay: float = 1.0
    factor: float = 2.0
    max_delay: float = 30.0


class StageContext(Protocol):
    """What a running stage may see and do."""

    task_id: str
    cluster_id: str
    stage: str
    parameters: Mapping[str, Any]
    provider: providers.CloudPort

    def key(self, *item: object) -> str:
        """Idempotency key for a provider call: task id + stage + item."""
        ...

    async def emit(
        self,
        reason: str,
        message: str,
        *,
        level: states.EventLevel = states.EventLevel.NORMAL,
        action: str = "progress",
        once: bool = False,
    ) -> None:
        """Append an event (messages name the resource: node, instance, pod, PDB).

        ``once``: skip it if the task already has an event with this reason and message
        (a stage re-run after a crash then does not repeat what it already reported).
        """
        ...

    async def set_result(
        self,
        data: str,
        status: states.ResultStatus,
        *,
        reason: str | None = None,
        message: str = "",
        level: states.EventLevel = states.EventLevel.NORMAL,
    ) -> None:
        """Record the outcome for one resource in ``task_result[]``.

        With ``reason``, the event reporting that outcome is committed together with it
        (once: not again if the task already has it), so a crash in between cannot leave
        a resource done without its event, or reported without being done.
        """
        ...

    async def progress(self, **counters: Any) -> None:
        """Merge named counters into this stage's ``outputs`` (e.g. nodes_done=3)."""
        ...

    def outputs(self, stage: str | None = None) -> Mapping[str, Any]:
        """This (or an earlier) stage's outputs as last written."""
        ...

    def results(self) -> Mapping[str, states.ResultStatus]:
        """Every resource recorded so far, in first-seen order."""
        ...

    async def settle_nodepool(
        self, nodepool_id: str, *, state: str, desired_size: int | None = None
    ) -> None:
        """The pool is left in ``state`` (a final one, e.g. ``active``) when the task ends.

        A cloud that offers it (``providers.base.SettlesWithTask``) gets the state written
        in the transaction that writes the task's final state, so no client reads it while
        the task still runs; the stage records it in its ``outputs`` (``settles``), so a
        re-run or a restart keeps it. Any other cloud gets it now. ``desired_size`` is
        written now either way. The last state recorded for a pool wins (the
        compensation's after the stages').
        """
        ...

    async def delete_nodepool(self, nodepool_id: str) -> None:
        """``provider.delete_nodepool`` (keyed by the stage), the pool gone once the task
        has ended (settled ``deleted``, as :meth:`settle_nodepool` settles a state)."""
        ...

    async def settle_cluster(self, *, state: str) -> None:
        """The cluster is left in ``state`` (e.g. ``running``) when the task ends; as
        :meth:`settle_nodepool`."""
        ...

    async def delete_cluster(self) -> None:
        """``provider.delete_cluster`` (keyed by the stage), the cluster gone once the task
        has ended (settled ``deleted``; later settles of the task leave it deleted)."""
        ...

    async def checkpoint(self, *, batch: int | None = None, batches: int | None = None) -> None:
        """Persist progress and honour a pause or cancel request here.

        Batched stages call it after each batch with ``batch`` (1-based) and ``batches``,
        which is where ``pause_policy`` makes the task pause by itself.
        """
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of wall-clock time, staying responsive to pause and cancel."""
        ...

    async def wait(self, seconds: float) -> None:
        """Wait ``seconds`` of the cloud's simulated time (``provider.wait``: scaled,
        advanced by hand or by polls), staying responsive to pause and cancel."""
        ...


StageFunction = Callable[[StageContext], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    run: StageFunction
    timeout: float = 3600.0
    """Seconds before the stage fails with ``StageTimeout``."""
    retry: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True, slots=True)
class Operation:
    task_type: str
    stages: Sequence[Stage]
    pausable: bool = False
    cancelable: bool = True
    compensate: StageFunction | None = None
    """Run after a cancel or a failure (e.g. release instances that never joined)."""

    def stage_names(self) -> list[str]:
        return [stage.name for stage in self.stages]


class Registry:
    """The operations a server can run, by task type."""

    def __init__(self, operations: Sequence[Operation] = ()) -> None:
        self._by_type: dict[str, Operation] = {}
        for operation in operations:
            self.add(operation)

    def add(self, operation: Operation) -> None:
        if operation.task_type in self._by_type:
            raise ValueError(f"task type {operation.task_type!r} registered twice")
        if len(set(operation.stage_names())) != len(operation.stages):
            raise ValueError(f"{operation.task_type}: stage names must be unique")
        self._by_type[operation.task_type] = operation

    def get(self, task_type: str) -> Operation | None:
        return self._by_type.get(task_type)

    def __contains__(self, task_type: object) -> bool:
        return task_type in self._by_type

    def task_types(self) -> list[str]:
        return sorted(self._by_type)
