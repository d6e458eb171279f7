"""Fault rules of the emulator: validating, adding, listing and removing them, and writing
the events that report a firing to its task.

A rule is checked whole before it is stored: every match key must be one we know, its
values must name things that exist (a task type, one of its stages, a provider operation),
and it must have at least one effect. ``emulator/faults.py`` applies the rules.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from clustertasks import clock, errors
from clustertasks.domain import emulator, ids, params, states
from clustertasks.emulator import fault_store as fault_storage
from clustertasks.emulator import faults
from clustertasks.operations import base as operations
from clustertasks.storage import store

RULE_KEYS = ("match", "effect", "count", "probability")
MATCH_KEYS = ("task_type", "stage", "instance_index", "node_name", "operation")
EFFECT_KEYS = ("error_code", "message", "latency_seconds", "node_not_ready")
COMPENSATION_STAGE = "Compensate"
"""Where an operation's compensation runs (after a cancel or a failure)."""
MAX_LATENCY = 7 * 24 * 3600.0
MAX_COUNT = 1_000_000
MAX_MESSAGE = 1024
# ACK and ECS codes: InstanceCreateFailed, OperationDenied.NoStock, QuotaExceeded.Node …
ERROR_CODE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[._-][A-Za-z0-9]+)*$")


class FaultService:
    def __init__(
        self,
        fault_store: fault_storage.FaultStore,
        task_store: store.TaskStore,
        registry: operations.Registry,
        *,
        time: clock.Clock,
        id_generator: ids.IdGenerator,
        on_report: Callable[[Collection[str]], None] | None = None,
    ) -> None:
        """``on_report``: told the task a firing was reported to, once it is committed
        (whoever follows that task live hears of it at once)."""
        self._on_report = on_report
        self._faults = fault_store
        self._tasks = task_store
        self._registry = registry
        self._clock = time
        self._ids = id_generator

    def add(self, body: Mapping[str, Any]) -> emulator.FaultRule:
        params.only_keys(body, RULE_KEYS)
        match = self._match(params.obj(body, "match"))
        effect = _effect(params.obj(body, "effect"), match)
        probability = params.number(body, "probability", low=0.0, high=1.0)
        count = params.integer(body, "count", low=1, high=MAX_COUNT)
        if count is None and probability is None:
            count = 1
        rule = emulator.FaultRule(
            fault_id=self._ids.fault_id(),
            match=match,
            effect=effect,
            count=count,
            remaining=count,
            probability=probability,
            hits=0,
            created_us=self._clock.now_us(),
        )
        return self._faults.add(rule)

    def rules(self) -> Sequence[emulator.FaultRule]:
        return self._faults.rules()

    def get(self, fault_id: str) -> emulator.FaultRule:
        found = self._faults.get(fault_id) if ids.is_lookup_id(fault_id) else None
        if found is None:
            raise errors.FaultNotFound(fault_id)
        return found

    def remove(self, fault_id: str) -> None:
        if not ids.is_lookup_id(fault_id) or not self._faults.remove(
            fault_id, self._clock.now_us()
        ):
            raise errors.FaultNotFound(fault_id)

    def clear(self) -> int:
        """Remove every rule; returns how many there were."""
        return self._faults.remove_all(self._clock.now_us())

    def report(self, task_id: str, reason: str, message: str) -> None:
        """The simulated cloud's event sink: a Warning event in the task's events."""
        self._tasks.append_event(
            task_id,
            action="fault",
            level=states.EventLevel.WARNING,
            reason=reason,
            message=message,
            now_us=self._clock.now_us(),
        )
        if self._on_report is not None:
            self._on_report((task_id,))

    def _match(self, match: Mapping[str, Any]) -> emulator.FaultMatch:
        params.only_keys(match, MATCH_KEYS, "match.")
        task_type = params.text(match, "task_type", "match.", max_length=64) or None
        if task_type is not None and task_type not in self._registry:
            known = ", ".join(self._registry.task_types())
            raise errors.InvalidParameter(
                "match.task_type", f"unknown task type {task_type!r}; one of {known}"
            )
        stage = params.text(match, "stage", "match.", max_length=128) or None
        if stage is not None:
            stages = self._stages(task_type)
            if stage not in stages:
                where = f" of task type {task_type}" if task_type else ""
                raise errors.InvalidParameter(
                    "match.stage", f"unknown stage {stage!r}{where}; one of {', '.join(stages)}"
                )
        operation = params.text(match, "operation", "match.", max_length=64) or None
        if operation is not None and operation not in faults.FAULT_OPERATIONS:
            raise errors.InvalidParameter(
                "match.operation",
                f"unknown operation {operation!r}; one of {', '.join(faults.FAULT_OPERATIONS)}",
            )
        return emulator.FaultMatch(
            task_type=task_type,
            stage=stage,
            instance_index=params.integer(match, "instance_index", "match.", low=1),
            node_name=params.text(match, "node_name", "match.") or None,
            operation=operation,
        )

    def _stages(self, task_type: str | None) -> list[str]:
        types = [task_type] if task_type else self._registry.task_types()
        names: dict[str, None] = {}
        for name in types:
            operation = self._registry.get(name)
            if operation is not None:
                names.update(dict.fromkeys(operation.stage_names()))
        names[COMPENSATION_STAGE] = None
        return list(names)


def _effect(effect: Mapping[str, Any], match: emulator.FaultMatch) -> emulator.FaultEffect:
    params.only_keys(effect, EFFECT_KEYS, "effect.")
    code = effect.get("error_code")
    if code is not None:
        if not isinstance(code, str) or not code:
            raise errors.InvalidParameter("effect.error_code", "must be a non-empty error code")
        if len(code) > 128 or ERROR_CODE_RE.fullmatch(code) is None:
            raise errors.InvalidParameter(
                "effect.error_code",
                f"{code!r} is not an error code (like OperationDenied.NoStock or "
                "InstanceCreateFailed: letters and digits, parts joined by '.', '_' or '-')",
            )
    message = params.text(effect, "message", "effect.", max_length=MAX_MESSAGE)
    if message and not code:
        raise errors.InvalidParameter("effect.message", "goes with an effect.error_code")
    latency = params.number(effect, "latency_seconds", "effect.", low=0.0, high=MAX_LATENCY)
    not_ready = params.boolean(effect, "node_not_ready", "effect.")
    operation = match.operation
    if not_ready and operation is not None and operation not in faults.NODE_OPERATIONS:
        nodes = ", ".join(sorted(faults.NODE_OPERATIONS))
        raise errors.InvalidParameter(
            "effect.node_not_ready",
            f"{operation} leaves no node behind it to make NotReady; use it with one of {nodes}",
        )
    if not code and not latency and not not_ready:
        raise errors.InvalidParameter(
            "effect",
            "needs at least one of error_code, latency_seconds (> 0) or node_not_ready (true)",
        )
    return emulator.FaultEffect(
        error_code=code or "",
        message=message,
        latency_seconds=latency or 0.0,
        node_not_ready=not_ready,
    )
