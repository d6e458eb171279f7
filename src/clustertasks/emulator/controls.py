"""The emulator's own controls, behind the ``/_emulator/`` routes: its clock, its fault rules
and the world a test arranges (workloads, free instances, node status, node faults).

Fault rules are checked whole before they are stored: every match key must be one we know,
its values must name things that exist (a task type, one of its stages, a provider
operation), and a rule must have at least one effect. ``emulator/faults.py`` applies them.
A node fault (``upgrade`` or ``repair`` fails on a node) is such a rule too.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from clustertasks import clock, errors
from clustertasks.domain import emulator, ids, params, states, workloads, world
from clustertasks.emulator import cloud, faults
from clustertasks.emulator import fault_store as fault_storage
from clustertasks.operations import base as operations
from clustertasks.storage import store

# -- the clock ---------------------------------------------------------------------------------

MAX_SPEED = 1_000_000.0
MAX_ADVANCE = 10 * 366 * 24 * 3600.0
"""Ten years of simulated time in one advance."""


class ClockControls:
    def __init__(self, sim: cloud.SimCloud, *, realtime_only: str | None = None) -> None:
        """``realtime_only``: why the clock must stay in realtime mode, when it must (the
        stages wait in other processes)."""
        self._cloud = sim
        self._realtime_only = realtime_only

    def view(self) -> emulator.ClockView:
        return self._cloud.clock()

    def set(self, body: Mapping[str, Any]) -> emulator.ClockView:
        """``{"mode": …, "speed": …}``: the mode is required, the speed optional."""
        params.only_keys(body, ("mode", "speed"))
        mode = params.text(body, "mode", required=True)
        if mode not in emulator.CLOCK_MODES:
            raise errors.InvalidParameter(
                "mode", f"must be one of {', '.join(emulator.CLOCK_MODES)}, got {mode!r}"
            )
        if self._realtime_only is not None and mode != emulator.REALTIME:
            raise errors.InvalidParameter("mode", f"must be realtime: {self._realtime_only}")
        speed = params.number(body, "speed", low=0.0, high=MAX_SPEED)
        return self._cloud.set_clock(mode, speed)

    def reload(self) -> None:
        """After the database was reset or replaced (``/_emulator/reset``, a state import):
        the clock takes its stored state again (or keeps its own when none is stored, and
        stores it), and fault probability draws start afresh."""
        self._cloud.reload_emulator_state()

    def advance(self, body: Mapping[str, Any]) -> emulator.ClockView:
        """``{"seconds": N}`` (N >= 0) on a manual clock; ``errors.ClockNotManual`` else."""
        params.only_keys(body, ("seconds",))
        seconds = params.number(body, "seconds", low=0.0, high=MAX_ADVANCE)
        if seconds is None:
            raise errors.InvalidParameter("seconds", "is required")
        return self._cloud.advance_clock(seconds)


# -- fault rules -------------------------------------------------------------------------------

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


class FaultRules:
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

    def add_node_fault(self, node_name: str, action: str, message: str) -> emulator.FaultRule:
        """The rule that makes ``action`` (a key of ``emulator.NODE_FAULTS``) fail on the
        node from now on. The same node fault made again replaces the earlier one (its
        message is the one the node fails with)."""
        now_us = self._clock.now_us()
        rule = emulator.node_fault_rule(self._ids.fault_id(), node_name, action, message, now_us)
        for old in self._faults.rules():
            if _same_node_fault(old, rule):
                self._faults.remove(old.fault_id, now_us)
        return self._faults.add(rule)

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


def _same_node_fault(old: emulator.FaultRule, new: emulator.FaultRule) -> bool:
    return (
        old.match == new.match
        and old.effect.error_code == new.effect.error_code
        and not old.effect.latency_seconds
        and not old.effect.node_not_ready
        and old.count is None
        and old.probability is None
    )


# -- the world a test arranges -----------------------------------------------------------------


class WorldControls:
    """Workloads, free instances, a node's status and node faults: what a test sets up in
    the simulated world (a real cloud has no such endpoints)."""

    def __init__(self, sim: cloud.SimCloud, faults: FaultRules) -> None:
        self._cloud = sim
        self._faults = faults

    def declare_workloads(self, cluster_id: str, body: Mapping[str, Any]) -> None:
        cluster = self._cluster(cluster_id)
        declared = [
            _workload(cluster.cluster_id, item, f"deployments[{i}].", workloads.DEPLOYMENT)
            for i, item in enumerate(params.object_list(body, "deployments"))
        ]
        declared += [
            _workload(cluster.cluster_id, item, f"daemonsets[{i}].", workloads.DAEMONSET)
            for i, item in enumerate(params.object_list(body, "daemonsets"))
        ]
        budgets = [
            _budget(cluster.cluster_id, item, f"pdbs[{i}].")
            for i, item in enumerate(params.object_list(body, "pdbs"))
        ]
        self._cloud.declare_workloads(cluster.cluster_id, declared, budgets)

    def workloads(self, cluster_id: str) -> dict[str, Any]:
        cluster = self._cluster(cluster_id)
        items = self._cloud.list_workloads(cluster.cluster_id)
        return {
            "deployments": [_workload_doc(w) for w in items if w.kind == workloads.DEPLOYMENT],
            "daemonsets": [_workload_doc(w) for w in items if w.kind == workloads.DAEMONSET],
            "pdbs": [
                {
                    "name": b.name,
                    "selector": dict(b.selector),
                    "min_available": b.min_available,
                    "max_unavailable": b.max_unavailable,
                }
                for b in self._cloud.list_budgets(cluster.cluster_id)
            ],
            "pods": [
                {
                    "name": p.name,
                    "workload": p.workload,
                    "kind": p.kind,
                    "node_name": p.node_name,
                    "phase": p.phase,
                    "cpu": p.cpu_millis,
                }
                for p in self._cloud.list_pods(cluster.cluster_id)
            ],
        }

    async def create_free_instances(self, body: Mapping[str, Any]) -> list[world.Instance]:
        cluster = self._cluster(params.text(body, "cluster_id", required=True))
        count = params.integer(body, "count", default=1, low=1, high=50) or 1
        instance_type = params.text(body, "instance_type", default="ecs.g7.large")
        self._cloud.check_instance_types([instance_type])
        token = params.text(body, "client_token", max_length=64) or uuid.uuid4().hex
        return [
            await self._cloud.create_free_instance(
                f"emulator/instances/{token}/{n}", cluster.cluster_id, instance_type
            )
            for n in range(1, count + 1)
        ]

    def free_instances(self) -> Sequence[world.Instance]:
        return self._cloud.free_instances()

    def set_node_status(
        self, cluster_id: str, node_name: str, body: Mapping[str, Any]
    ) -> world.Node:
        cluster = self._cluster(cluster_id)
        status = params.text(body, "node_status", required=True)
        self._cloud.get_node(cluster.cluster_id, node_name)
        return self._cloud.set_node_status(cluster.cluster_id, node_name, status)

    def add_node_fault(
        self, cluster_id: str, node_name: str, body: Mapping[str, Any]
    ) -> emulator.FaultRule:
        """``{"action": "upgrade" | "repair", "message"?}``: from now on that action fails
        on the node (a fault rule on the node and the action's operation)."""
        cluster = self._cluster(cluster_id)
        action = params.text(body, "action", required=True)
        message = params.text(body, "message", max_length=MAX_MESSAGE)
        if action not in emulator.NODE_FAULTS:
            allowed = ", ".join(sorted(emulator.NODE_FAULTS))
            raise errors.InvalidParameter("action", f"must be one of {allowed}")
        self._cloud.get_node(cluster.cluster_id, node_name)
        return self._faults.add_node_fault(node_name, action, message)

    def _cluster(self, cluster_id: str) -> world.Cluster:
        if not ids.is_lookup_id(cluster_id):
            raise errors.ClusterNotFound(cluster_id)
        return self._cloud.get_cluster(cluster_id)


# -- parsing workloads -------------------------------------------------------------------------


def _labels(item: Mapping[str, Any], key: str, path: str) -> dict[str, str]:
    found = params.obj(item, key, path)
    if "matchLabels" in found:
        found = params.obj(found, "matchLabels", f"{path}{key}.")
    labels = {}
    for name, value in found.items():
        if not isinstance(value, str):
            raise errors.InvalidParameter(f"{path}{key}.{name}", "must be a string")
        labels[str(name)] = value
    return labels


def _cpu(item: Mapping[str, Any], path: str, default: int) -> int:
    """``cpu`` as millicores: ``250``, ``"250m"`` or ``"0.25"`` cores."""
    value = item.get("cpu")
    if value is None:
        return default
    if isinstance(value, str) and value.endswith("m"):
        value = value[:-1]
    elif isinstance(value, str):
        try:
            return max(1, round(float(value) * 1000))
        except ValueError:
            raise errors.InvalidParameter(f"{path}cpu", "must be like 250m or 0.25") from None
    return params.integer({"cpu": value}, "cpu", path, low=1, high=512_000) or default


def _workload(cluster_id: str, item: Mapping[str, Any], path: str, kind: str) -> workloads.Workload:
    name = params.text(item, "name", path, required=True, max_length=200)
    replicas = 0
    if kind == workloads.DEPLOYMENT:
        replicas = params.integer(item, "replicas", path, default=1, low=0, high=1000) or 0
    default_cpu = workloads.DEFAULT_CPU_MILLIS if kind == workloads.DEPLOYMENT else 50
    return workloads.Workload(
        cluster_id=cluster_id,
        name=name,
        kind=kind,
        replicas=replicas,
        cpu_millis=_cpu(item, path, default_cpu),
        labels={"app": name, **_labels(item, "labels", path)},
    )


def _budget(cluster_id: str, item: Mapping[str, Any], path: str) -> workloads.DisruptionBudget:
    name = params.text(item, "name", path, required=True, max_length=200)
    selector = _labels(item, "selector", path)
    if not selector:
        raise errors.InvalidParameter(f"{path}selector", "needs at least one label")
    low = params.integer(item, "min_available", path, low=0) if "min_available" in item else None
    if low is None and "minAvailable" in item:
        low = params.integer(item, "minAvailable", path, low=0)
    high = (
        params.integer(item, "max_unavailable", path, low=0)
        if "max_unavailable" in item
        else params.integer(item, "maxUnavailable", path, low=0)
    )
    if (low is None) == (high is None):
        raise errors.InvalidParameter(
            f"{path}min_available", "give exactly one of min_available and max_unavailable"
        )
    return workloads.DisruptionBudget(cluster_id, name, selector, low, high)


def _workload_doc(item: workloads.Workload) -> dict[str, Any]:
    return {
        "name": item.name,
        "replicas": item.replicas,
        "cpu": item.cpu_millis,
        "labels": dict(item.labels),
    }
