"""Workloads of the simulated cloud: pods from Deployments and DaemonSets, and the
PodDisruptionBudgets that guard them, with the Eviction API's arithmetic.

Pure data and pure functions: the storage layer applies them inside one transaction, so
that two drains racing for the same budget cannot both take its last disruption.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

DEPLOYMENT = "Deployment"
DAEMONSET = "DaemonSet"
KINDS = (DEPLOYMENT, DAEMONSET)

RUNNING = "Running"
PENDING = "Pending"

DEFAULT_CPU_MILLIS = 100
"""A pod's CPU request when the declaration names none (kubectl's LimitRange default)."""


@dataclass(frozen=True, slots=True)
class Workload:
    cluster_id: str
    name: str
    kind: str
    replicas: int
    """Pods wanted (Deployments); a DaemonSet has one pod per node instead."""
    cpu_millis: int = DEFAULT_CPU_MILLIS
    labels: Mapping[str, str] = field(default_factory=dict)
    """Labels of its pods, ``app: <name>`` included."""


@dataclass(frozen=True, slots=True)
class Pod:
    cluster_id: str
    name: str
    workload: str
    kind: str
    node_name: str
    """``""`` while Pending (no node with room)."""
    phase: str
    cpu_millis: int
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DisruptionBudget:
    """A PodDisruptionBudget; exactly one of ``min_available`` and ``max_unavailable``."""

    cluster_id: str
    name: str
    selector: Mapping[str, str]
    min_available: int | None = None
    max_unavailable: int | None = None


@dataclass(frozen=True, slots=True)
class Eviction:
    """What one eviction request did.

    ``outcome``: ``evicted`` (the pod left; ``to_node`` is where its replacement runs, or
    ``""`` when it is Pending), ``blocked`` (refused, HTTP 429 in Kubernetes: ``blocked_by``
    names the budget), or ``gone`` (the pod was no longer on the node).
    """

    pod: str
    outcome: str
    to_node: str = ""
    blocked_by: str = ""


def matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """A ``matchLabels`` selector; an empty selector matches nothing (as in policy/v1)."""
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def healthy(pod: Pod) -> bool:
    return pod.phase == RUNNING and bool(pod.node_name)


def disruptions_allowed(budget: DisruptionBudget, pods: Iterable[Pod]) -> int:
    """How many more of the budget's pods may be evicted now (the PDB's
    ``status.disruptionsAllowed``): healthy minus ``minAvailable``, or ``maxUnavailable``
    minus those already unavailable."""
    selected = [pod for pod in pods if matches(budget.selector, pod.labels)]
    up = sum(1 for pod in selected if healthy(pod))
    if budget.min_available is not None:
        return up - budget.min_available
    if budget.max_unavailable is not None:
        return budget.max_unavailable - (len(selected) - up)
    return len(selected)


def blocking_budget(
    pod: Pod, budgets: Sequence[DisruptionBudget], pods: Sequence[Pod]
) -> DisruptionBudget | None:
    """The first budget covering ``pod`` that allows no disruption, if any."""
    for budget in budgets:
        if matches(budget.selector, pod.labels) and disruptions_allowed(budget, pods) < 1:
            return budget
    return None


def choose_node(cpu_millis: int, free: Mapping[str, int]) -> str:
    """The node with the most free CPU that fits the pod (spreading replicas like the
    default scheduler's LeastAllocated score); ``""`` when none fits. Ties go to the
    node name that sorts first, so placement is deterministic."""
    fitting = [(-room, name) for name, room in free.items() if room >= cpu_millis]
    return min(fitting)[1] if fitting else ""
