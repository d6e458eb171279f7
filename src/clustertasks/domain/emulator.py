"""Records of the emulator's controls: the simulated clock, fault rules and node faults.

Pure data. ``clustertasks.providers.sim`` acts on them; the storage keeps them; the
service validates what a client asks for and builds them.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from clustertasks import settings
from clustertasks.domain import timefmt

REALTIME = settings.ClockMode.realtime.value
MANUAL = settings.ClockMode.manual.value
PER_POLL = settings.ClockMode.per_poll.value
CLOCK_MODES = settings.SIM_CLOCK_MODES
"""The clock's modes (``settings.ClockMode`` says what each does)."""


@dataclass(frozen=True, slots=True)
class ClockState:
    """What the simulated clock is: its mode and speed, and an anchor — the simulated time
    ``sim_us`` it showed at the wall-clock time ``real_us`` (microseconds since the epoch)."""

    mode: str
    speed: float
    sim_us: int
    real_us: int

    def at(self, real_us: int) -> int:
        """The simulated time at the wall-clock time ``real_us``.

        A realtime clock runs ``speed`` times as fast as the wall clock; at speed 0 it runs
        with the wall clock (durations take no time then, but time still passes, so
        timestamps keep their order). The other modes stand still between changes.
        """
        if self.mode != REALTIME:
            return self.sim_us
        rate = self.speed if self.speed > 0 else 1.0
        return self.sim_us + int((real_us - self.real_us) * rate)


@dataclass(frozen=True, slots=True)
class ClockView:
    """The clock as ``GET /_emulator/clock`` shows it."""

    mode: str
    speed: float
    now_us: int
    waiting: int
    """Simulated waits pending now (each booting instance, joining node, batch interval …)."""


@dataclass(frozen=True, slots=True)
class FaultMatch:
    """Which provider calls a rule applies to: every key given must match (AND)."""

    task_type: str | None = None
    stage: str | None = None
    instance_index: int | None = None
    node_name: str | None = None
    operation: str | None = None


@dataclass(frozen=True, slots=True)
class FaultEffect:
    """What a firing rule does to the call (at least one of them)."""

    error_code: str = ""
    message: str = ""
    latency_seconds: float = 0.0
    node_not_ready: bool = False


@dataclass(frozen=True, slots=True)
class FaultRule:
    fault_id: str
    match: FaultMatch
    effect: FaultEffect
    count: int | None
    """Firings allowed in all; None: unlimited."""
    remaining: int | None
    """Firings left; None: unlimited."""
    probability: float | None
    """Chance that a matching call fires the rule; None: every matching call does."""
    hits: int
    created_us: int


@dataclass(frozen=True, slots=True)
class NodeFault:
    """What ``POST /_emulator/clusters/{c}/nodes/{n}/faults`` ``{"action"}`` makes fail: a
    fault rule on the node's ``operation``, failing with ``error_code`` for ever."""

    operation: str
    error_code: str
    default_message: str
    """The message when the request gives none."""


NODE_FAULTS = {
    "repair": NodeFault(
        "repair_node", "NodeRepairFailed", "the node stayed NotReady after the repair operations"
    ),
    "upgrade": NodeFault(
        "upgrade_node", "NodeUpgradeFailed", "kubelet did not come back Ready after the upgrade"
    ),
}


def node_fault_rule(
    fault_id: str, node_name: str, action: str, message: str, created_us: int
) -> FaultRule:
    """The rule a node fault is: ``action`` (a key of :data:`NODE_FAULTS`) on the node
    fails, every time, with the error a failing node raises (``node <name>: <message>``)."""
    fault = NODE_FAULTS[action]
    return FaultRule(
        fault_id=fault_id,
        match=FaultMatch(node_name=node_name, operation=fault.operation),
        effect=FaultEffect(
            error_code=fault.error_code,
            message=f"node {node_name}: {message or fault.default_message}",
        ),
        count=None,
        remaining=None,
        probability=None,
        hits=0,
        created_us=created_us,
    )


def legacy_node_fault_id(cluster_id: str, node_name: str, action: str) -> str:
    """The id of a node fault stored before node faults were rules (a ``sim_faults`` row,
    migration 0006), derived from what the row was keyed by: never an id a seeded generator
    issues (those hash the seed, ``fault`` and a sequence number)."""
    digest = hashlib.sha256(f"sim_faults:{cluster_id}:{node_name}:{action}".encode())
    return "F-" + digest.hexdigest()[:16]


def fault_document(rule: FaultRule) -> dict[str, Any]:
    """A rule as the API shows it: the match and effect keys that were given, the count
    (None: unlimited), what is left of it, the probability (None: always) and the hits."""
    match = {
        key: value
        for key, value in (
            ("task_type", rule.match.task_type),
            ("stage", rule.match.stage),
            ("instance_index", rule.match.instance_index),
            ("node_name", rule.match.node_name),
            ("operation", rule.match.operation),
        )
        if value is not None
    }
    effect: dict[str, Any] = {}
    if rule.effect.error_code:
        effect["error_code"] = rule.effect.error_code
        effect["message"] = rule.effect.message
    if rule.effect.latency_seconds:
        effect["latency_seconds"] = rule.effect.latency_seconds
    if rule.effect.node_not_ready:
        effect["node_not_ready"] = True
    return {
        "fault_id": rule.fault_id,
        "match": match,
        "effect": effect,
        "count": rule.count,
        "remaining": rule.remaining,
        "probability": rule.probability,
        "hits": rule.hits,
    }


def clock_document(view: ClockView) -> dict[str, Any]:
    """The clock as the API shows it; ``now`` is ISO 8601 in UTC, to the microsecond."""
    return {
        "mode": view.mode,
        "speed": view.speed,
        "now": timefmt.iso_utc(view.now_us),
        "waiting": view.waiting,
    }
