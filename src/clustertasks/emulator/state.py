"""The emulator's clean slate and snapshots: reset, export and import of its whole state.

The state is the simulated world (clusters, pools, instances, nodes, pods, workloads,
budgets, free instances, stock, fault rules …) and the task history (tasks, stages, events,
results): every table but the AccessKeys, the signature nonces and the audit log
(``storage.snapshots.KEPT``).

- ``reset``: unfinished tasks are stopped first (the local executor's runners cancelled and
  waited for; on the Temporal executor the tasks are cancelled and waited for, or the reset
  is refused with 409 naming a task that does not stop), then every row of the state goes in
  one transaction. Ids start again as on a fresh
  database (``--sim-seed`` repeats them).
- ``export``: one document with every row of every state table.
- ``restore`` (import): the document is checked whole before anything happens; then, like a
  reset, unfinished tasks are stopped, and the state is replaced by the document's rows in
  one transaction. Imported tasks that are unfinished continue, exactly as after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any

from clustertasks import clock, errors
from clustertasks.domain import emulator, ids, params, states, timefmt
from clustertasks.emulator import fault_store, snapshots, world_store
from clustertasks.storage import database

FORMAT = "clustertasks-state"
VERSION = 1
_KEYS = frozenset({"format", "version", "exported_at", "tables"})

Halt = Callable[[], AbstractAsyncContextManager[object]]
"""Stops every runner of the executor and starts none while its block runs."""


def issued_ids(db: database.Database) -> dict[str, int]:
    """How many ids of each kind the stored state used: where seeded ids continue."""
    return {
        "task": db.tasks.count_tasks(),
        "fault": fault_store.FaultStore(db.engine).count_all(),
        **world_store.WorldStore(db.engine).count_all(),
    }


@dataclass(frozen=True, slots=True)
class ResetOutcome:
    tasks_canceled: int
    """Tasks that were unfinished (running or paused): stopped, then deleted."""
    tasks_deleted: int
    clusters_deleted: int
    """Every cluster the world recorded, deleted ones included."""


@dataclass(frozen=True, slots=True)
class ImportOutcome:
    removed: ResetOutcome
    imported: Mapping[str, int]
    """Rows loaded, by table."""


class EmulatorState:
    def __init__(
        self,
        db: database.Database,
        *,
        time: clock.Clock | None = None,
        id_generator: ids.IdGenerator | None = None,
        halt: Halt | None = None,
        after_change: Sequence[Callable[[], None]] = (),
    ) -> None:
        """``halt``: the local executor's ``halted`` when this process runs one.
        ``after_change``: called after every reset and import, once the new state is
        committed: whatever keeps state of its own in memory starts again from the store."""
        self._db = db
        self._snapshots = snapshots.SnapshotStore(db.engine)
        self._clock = time or clock.SystemClock()
        self._ids = id_generator
        self._serial = asyncio.Lock()
        self._halt: Halt = halt or self._hold_executor_lock
        self._after_change = tuple(after_change)

    async def reset(self) -> ResetOutcome:
        async with self._serial:
            stopping = await self._unfinished()
            async with self._halt():
                removed = await asyncio.to_thread(self._snapshots.wipe)
                await asyncio.to_thread(self._restarted)
        return _outcome(removed, stopping)

    def export(self) -> dict[str, Any]:
        """``{"format", "version", "exported_at", "tables": {name: [row, …]}}``."""
        tables = self._snapshots.dump()
        return {
            "format": FORMAT,
            "version": VERSION,
            "exported_at": timefmt.rfc3339(self._clock.now_us()),
            "tables": tables,
        }

    async def restore(self, document: Mapping[str, Any]) -> ImportOutcome:
        """Replace the state by an exported ``document``; ``errors.InvalidParameter`` names
        the first problem, and then nothing has changed."""
        rows = await asyncio.to_thread(self._check, document)
        async with self._serial:
            stopping = await self._unfinished()
            async with self._halt():
                replaced = await asyncio.to_thread(self._snapshots.replace, rows)
                await asyncio.to_thread(self._restarted)
        return ImportOutcome(_outcome(replaced.removed, stopping), replaced.loaded)

    async def _unfinished(self) -> int:
        """Unfinished tasks before the halt: a halt that cancels them (the Temporal
        executor's) leaves them ended, and they still count as stopped by the reset."""
        return len(await asyncio.to_thread(self._db.tasks.unfinished_tasks))

    def _check(self, document: Mapping[str, Any]) -> dict[str, snapshots.Rows]:
        for key in document:
            if key not in _KEYS:
                raise errors.InvalidParameter(
                    key, f"is not a field of a state document (expected {', '.join(sorted(_KEYS))})"
                )
        if document.get("format") != FORMAT:
            raise errors.InvalidParameter(
                "format", f"must be {FORMAT!r}, got {document.get('format')!r}"
            )
        version = document.get("version")
        if version != VERSION or isinstance(version, bool):
            raise errors.InvalidParameter(
                "version", f"must be {VERSION}, the version this server reads; got {version!r}"
            )
        exported_at = document.get("exported_at")
        if exported_at is not None and not isinstance(exported_at, str):
            raise errors.InvalidParameter("exported_at", "must be an RFC 3339 timestamp")
        if "tables" not in document:
            raise errors.InvalidParameter("tables", "is required")
        return self._snapshots.check(_node_faults_as_rules(document["tables"]))

    def _restarted(self) -> None:
        if self._ids is not None:
            self._ids.restart(issued_ids(self._db))
        for hook in self._after_change:
            hook()

    @contextlib.asynccontextmanager
    async def _hold_executor_lock(self) -> AsyncIterator[object]:
        """Without an executor in this process: hold the executor lock, so that none starts
        meanwhile. If another server holds it, its running tasks cannot be stopped from here."""
        lock = self._db.executor_lock()
        try:
            await asyncio.to_thread(lock.acquire)
        except errors.ExecutorLocked:
            unfinished = await asyncio.to_thread(self._db.tasks.unfinished_tasks)
            running = [t.task_id for t in unfinished if t.state is states.TaskState.RUNNING]
            if running:
                raise errors.TaskConflict(
                    f"the task {running[0]} is running in another server's executor on this "
                    "database; reset or import through that server"
                ) from None
            yield None
            return
        try:
            yield None
        finally:
            lock.release()


def _outcome(removed: snapshots.Removed, stopping: int) -> ResetOutcome:
    return ResetOutcome(
        tasks_canceled=max(removed.tasks_unfinished, stopping),
        tasks_deleted=removed.tasks,
        clusters_deleted=removed.clusters,
    )


_NODE_FAULTS = "sim_faults"
_NODE_FAULT_COLUMNS = ("cluster_id", "node_name", "action", "message")


def _node_faults_as_rules(tables: Any) -> Any:
    """A document exported before node faults were fault rules has a ``sim_faults`` table
    (migration 0006 moved it): its rows become rules, after the document's own rules, as
    the migration does with a database's."""
    if not isinstance(tables, Mapping) or _NODE_FAULTS not in tables:
        return tables
    found = tables[_NODE_FAULTS]
    where = f"tables.{_NODE_FAULTS}"
    if not isinstance(found, list):
        raise errors.InvalidParameter(where, "must be a list of rows")
    faults = []
    for index, row in enumerate(found):
        at = f"{where}[{index}]."
        if not isinstance(row, Mapping):
            raise errors.InvalidParameter(at[:-1], "must be an object of column names to values")
        params.only_keys(row, (*_NODE_FAULT_COLUMNS, "created_us"), at)
        fields = {name: params.text(row, name, at, required=True) for name in _NODE_FAULT_COLUMNS}
        if fields["action"] not in emulator.NODE_FAULTS:
            allowed = ", ".join(sorted(emulator.NODE_FAULTS))
            raise errors.InvalidParameter(f"{at}action", f"must be one of {allowed}")
        created_us = params.integer(row, "created_us", at, low=0)
        faults.append((created_us or 0, fields))
    rules = tables.get("sim_fault_rules", [])
    if not isinstance(rules, list):
        raise errors.InvalidParameter("tables.sim_fault_rules", "must be a list of rows")
    seqs = [r.get("seq") for r in rules if isinstance(r, Mapping)]
    seq = max((s for s in seqs if isinstance(s, int) and not isinstance(s, bool)), default=0)
    converted = list(rules)
    faults.sort(key=lambda f: (f[0], f[1]["cluster_id"], f[1]["node_name"], f[1]["action"]))
    for created_us, fields in faults:
        seq += 1
        fault_id = emulator.legacy_node_fault_id(
            fields["cluster_id"], fields["node_name"], fields["action"]
        )
        rule = emulator.node_fault_rule(
            fault_id, fields["node_name"], fields["action"], fields["message"], created_us
        )
        converted.append({**fault_store.rule_row(rule), "seq": seq, "deleted_us": None})
    rest = {name: rows for name, rows in tables.items() if name != _NODE_FAULTS}
    return {**rest, "sim_fault_rules": converted}
