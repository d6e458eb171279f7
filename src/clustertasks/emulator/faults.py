"""Fault injection: the emulator's rules applied to the simulated cloud's actions.

Each action a task makes (an operation of :data:`FAULT_OPERATIONS`) asks
:meth:`FaultInjector.before` first. A rule matches when every key of its ``match`` does:
the operation, the calling task's type and stage, the instance's number within the task
(``providers.base.for_instance``) and the name of the node acted on. Rules are tried in
creation order; a matching rule fires when its probability draw says so and one of its
remaining count can be taken (atomically, in the database). A firing rule's effects:

- ``latency_seconds``: the action first waits that long, in simulated time;
- ``error_code``: the action fails with the error a real failure of that code raises
  (``errors.from_code``), so the task goes down the same path as for a real one; no later
  rule is tried;
- ``node_not_ready``: once the action is done (or as it fails), the node it acted on is
  ``NotReady``. A rule doing only this matches only actions that leave a node
  (:data:`NODE_OPERATIONS`).

Every firing is written to the task's events as a Warning ``FaultInjected`` naming the
rule, the action and what it did.

Probability draws are a hash of the seed (``--sim-seed``; a random salt without one), the
rule, the call (task, stage, operation, instance number, node, its key or subject) and how
many times that same call drew from that rule before: the same requests give the same
firings on every run, whatever order concurrent actions happen to run in.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from clustertasks import clock, errors
from clustertasks.domain import emulator, ids, world
from clustertasks.emulator import fault_store as fault_storage
from clustertasks.emulator import simclock
from clustertasks.emulator import world_store as world_storage
from clustertasks.providers import base

FAULT_OPERATIONS = (
    "create_cluster",
    "provision_control_plane",
    "set_cluster_state",
    "set_cluster_spec",
    "delete_cluster",
    "create_nodepool",
    "update_nodepool",
    "delete_nodepool",
    "create_instance",
    "wait_instance_running",
    "join_node",
    "update_node",
    "release_instance",
    "set_schedulable",
    "evict_pod",
    "upgrade_node",
    "repair_node",
    "upgrade_control_plane",
    "set_pool_version",
    "remove_node",
    "attach_instance",
)
"""The actions a fault rule may name (``match.operation``), as docs/emulator.md lists them.

They name what a call does, and stay as they were when each was a provider method of its
own: a port call doing two of them passes the rules of each. ``CloudPort.update_cluster``
is ``set_cluster_spec`` (a spec), ``set_cluster_state`` (a state) and
``upgrade_control_plane`` (a version);
``update_nodepool`` is ``update_nodepool`` (state, size, spec) and ``set_pool_version``
(a version); ``update_node`` is ``update_node`` (labels and taints) and
``set_schedulable`` (cordon, uncordon). The others are the port's method names."""

NODE_OPERATIONS = frozenset(
    {
        "join_node",
        "attach_instance",
        "update_node",
        "set_schedulable",
        "evict_pod",
        "upgrade_node",
        "repair_node",
    }
)
"""Actions that leave a node behind them: the ones a ``node_not_ready`` effect applies to."""

REASON = "FaultInjected"


@dataclass(frozen=True, slots=True)
class Fired:
    """What :meth:`FaultInjector.before` left for :meth:`FaultInjector.after` to do."""

    not_ready: Sequence[emulator.FaultRule] = ()
    description: str = ""


NOTHING = Fired()


Report = Callable[[str, str, str], None]
"""Writes a Warning event ``(task_id, reason, message)`` to a task's events."""


def _no_sink(_task_id: str, _reason: str, _message: str) -> None:
    """Without a sink (a bare SimCloud in tests) firings are not reported."""


class FaultInjector:
    def __init__(
        self,
        store: fault_storage.FaultStore,
        world_store: world_storage.WorldStore,
        sim_clock: simclock.SimClock,
        *,
        stamps: clock.Clock,
        seed: int | None = None,
        report: Report | None = None,
    ) -> None:
        """``report``: where a firing is told to the task it hit (a Warning event)."""
        self._store = store
        self._world = world_store
        self._sim_clock = sim_clock
        self._stamps = stamps
        self._salt = f"seed:{seed}" if seed is not None else secrets.token_hex(16)
        self._sink: Report = report or _no_sink
        self._draws: dict[str, int] = {}
        self._lock = threading.Lock()

    def forget_draws(self) -> None:
        """Draw as a fresh server would (after the world was reset)."""
        with self._lock:
            self._draws.clear()

    def idle(self, operation: str) -> bool:
        """True when no rule can match this action of the calling task, so :meth:`before`
        would do nothing: read now, in the caller's thread (a worker thread about to act
        goes on without a trip back to the event loop)."""
        call = base.current_call()
        if call is None:
            return True
        return not any(_matches(rule.match, call, operation) for rule in self._store.armed())

    async def before(
        self,
        operation: str,
        *,
        subject: str = "",
        cluster_id: str = "",
        node_name: str = "",
        instance_id: str = "",
    ) -> Fired:
        """Apply the rules matching this action of the calling task: wait the latency they
        add, raise the error one injects. ``subject`` tells calls apart for probability
        draws (an idempotency key, a pod); the node is ``node_name`` or the node of
        ``instance_id`` (looked up only when a rule needs it)."""
        call = base.current_call()
        if call is None:
            return NOTHING
        armed = await asyncio.to_thread(self._store.armed)
        candidates = [rule for rule in armed if _matches(rule.match, call, operation)]
        if not candidates:
            return NOTHING
        needs_node = any(
            r.match.node_name is not None or r.effect.node_not_ready for r in candidates
        )
        if needs_node and not node_name and instance_id:
            cluster_id, node_name = await asyncio.to_thread(self._node_of, instance_id)
        fired: list[emulator.FaultRule] = []
        for rule in candidates:
            if rule.match.node_name is not None and rule.match.node_name != node_name:
                continue
            only_not_ready = not rule.effect.error_code and not rule.effect.latency_seconds
            if only_not_ready and (operation not in NODE_OPERATIONS or not node_name):
                continue
            if rule.probability is not None and not self._draw(
                rule, call, operation, node_name, subject
            ):
                continue
            if not await asyncio.to_thread(self._store.take, rule.fault_id):
                continue  # another call took its last firing meanwhile
            fired.append(rule)
            if rule.effect.error_code:
                break
        if not fired:
            return NOTHING
        what = _describe(operation, call, node_name)
        for rule in fired:
            if rule.effect.latency_seconds:
                await self._report(
                    call,
                    rule,
                    f"{what} delayed by {rule.effect.latency_seconds:g}s of simulated time",
                )
                await self._sim_clock.wait(rule.effect.latency_seconds)
        failing = fired[-1] if fired[-1].effect.error_code else None
        not_ready = [r for r in fired if r.effect.node_not_ready and node_name]
        if failing is None:
            return Fired(not_ready, what)
        code = failing.effect.error_code
        message = failing.effect.message or f"{what} failed with {code} (fault {failing.fault_id})"
        if not_ready:
            await self._not_ready(call, not_ready, what, cluster_id, node_name)
        given = f": {failing.effect.message}" if failing.effect.message else ""
        await self._report(call, failing, f"{what} failed with {code}{given}")
        raise errors.from_code(code, message)

    async def after(self, fired: Fired, cluster_id: str, node_name: str) -> world.Node | None:
        """Once the action is done: the node it acted on goes ``NotReady`` if a rule that
        fired says so; returns the node as it is then (None when nothing changed)."""
        call = base.current_call()
        if not fired.not_ready or call is None or not node_name:
            return None
        return await self._not_ready(
            call, fired.not_ready, fired.description, cluster_id, node_name
        )

    async def _not_ready(
        self,
        call: base.TaskCall,
        rules: Sequence[emulator.FaultRule],
        what: str,
        cluster_id: str,
        node_name: str,
    ) -> world.Node | None:
        try:
            node = await asyncio.to_thread(
                self._world.update_node,
                cluster_id,
                node_name,
                self._stamps.now_us(),
                node_status="NotReady",
            )
        except errors.NotFound:
            return None  # the node never joined, or left: nothing to make NotReady
        for rule in rules:
            await self._report(call, rule, f"{what} left node {node_name} NotReady")
        return node

    async def _report(self, call: base.TaskCall, rule: emulator.FaultRule, message: str) -> None:
        text = f"fault {rule.fault_id} injected: {message}"
        await asyncio.to_thread(self._sink, call.task_id, REASON, text)

    def _node_of(self, instance_id: str) -> tuple[str, str]:
        """(cluster id, node name) of the instance: its node, or the name it will join as."""
        try:
            instance = self._world.get_instance(instance_id)
            node = self._world.node_of_instance(instance_id)
            if node is not None:
                return node.cluster_id, node.node_name
            cluster = self._world.get_cluster(instance.cluster_id)
        except errors.NotFound:
            return "", ""
        return instance.cluster_id, ids.node_name(cluster.spec.region_id, instance.ip_address)

    def _draw(
        self,
        rule: emulator.FaultRule,
        call: base.TaskCall,
        operation: str,
        node_name: str,
        subject: str,
    ) -> bool:
        identity = "|".join(
            (
                rule.fault_id,
                call.task_id,
                call.stage,
                operation,
                str(call.instance_index or ""),
                node_name,
                subject,
            )
        )
        with self._lock:
            nth = self._draws.get(identity, 0) + 1
            self._draws[identity] = nth
        digest = hashlib.sha256(f"{self._salt}|{identity}|{nth}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64 < (rule.probability or 0.0)


def _matches(match: emulator.FaultMatch, call: base.TaskCall, operation: str) -> bool:
    """Every key but ``node_name`` (which may need a lookup) against the call."""
    return (
        (match.operation is None or match.operation == operation)
        and (match.task_type is None or match.task_type == call.task_type)
        and (match.stage is None or match.stage == call.stage)
        and (match.instance_index is None or match.instance_index == call.instance_index)
    )


def _describe(operation: str, call: base.TaskCall, node_name: str) -> str:
    """``create_instance #3``, ``upgrade_node #2 on node cn-hangzhou.192.168.4.7``."""
    what = operation
    if call.instance_index is not None:
        what += f" #{call.instance_index}"
    if node_name:
        what += f" on node {node_name}"
    return what
