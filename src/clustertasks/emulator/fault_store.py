"""FaultStore: the emulator's fault rules.

A firing takes one from a rule's remaining count in a single conditional UPDATE, so two
tasks (or two processes on one PostgreSQL database) can never both take the last one.
Removed rules are kept, marked deleted: the count of every rule ever made numbers the
seeded fault ids, which must not repeat.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from clustertasks import errors
from clustertasks.domain import emulator
from clustertasks.storage import prepared, schema, transactions

F = schema.sim_fault_rules
# A concurrent add on PostgreSQL may take the same seq; the loser tries again.
_ATTEMPTS = 5
_LIVE = F.c.deleted_us.is_(None)
_ARMED = sa.and_(_LIVE, sa.or_(F.c.remaining.is_(None), F.c.remaining > 0))
# Read before every call the simulated cloud answers: built and compiled once, run on the
# driver's cursor (storage/prepared.py; SQLAlchemy's execution path costs several times
# what SQLite takes to run it).
_ARMED_RULES = prepared.Prepared(sa.select(F).where(_ARMED).order_by(F.c.seq))


class FaultStore:
    def __init__(self, engine: sa.Engine) -> None:
        self._tx = transactions.Transactions(engine, "the fault store")

    def add(self, rule: emulator.FaultRule) -> emulator.FaultRule:
        """Insert the rule after every other one; returns it as stored."""
        for _ in range(_ATTEMPTS):
            try:
                with self._tx.write() as conn:
                    last = conn.execute(sa.select(sa.func.max(F.c.seq))).scalar_one_or_none()
                    conn.execute(sa.insert(F).values(seq=int(last or 0) + 1, **rule_row(rule)))
                    stored = conn.execute(sa.select(F).where(F.c.fault_id == rule.fault_id))
                    return _rule(stored.one())
            except errors.RowConflict as exc:
                if self._exists(rule.fault_id):
                    raise errors.StorageError(
                        f"a fault rule {rule.fault_id} exists already"
                    ) from exc
        raise errors.StorageError("the fault store could not number a new rule")

    def _exists(self, fault_id: str) -> bool:
        with self._tx.read() as conn:
            found = conn.execute(sa.select(F.c.fault_id).where(F.c.fault_id == fault_id))
            return found.first() is not None

    def get(self, fault_id: str) -> emulator.FaultRule | None:
        with self._tx.read() as conn:
            row = conn.execute(sa.select(F).where(F.c.fault_id == fault_id, _LIVE)).first()
        return None if row is None else _rule(row)

    def rules(self) -> list[emulator.FaultRule]:
        """Every rule not removed, in creation order."""
        with self._tx.read() as conn:
            return [_rule(r) for r in conn.execute(sa.select(F).where(_LIVE).order_by(F.c.seq))]

    def armed(self) -> list[emulator.FaultRule]:
        """The rules that may still fire, in creation order."""
        with self._tx.read() as conn:
            return [_rule(r) for r in _ARMED_RULES.send(conn, {}).mappings()]

    def take(self, fault_id: str) -> bool:
        """Fire the rule once: one less remaining, one more hit. False when it has none
        left (or was removed) — the check and the change are one statement."""
        with self._tx.write() as conn:
            done = conn.execute(
                sa.update(F)
                .where(F.c.fault_id == fault_id, _ARMED)
                .values(
                    hits=F.c.hits + 1,
                    remaining=sa.case(
                        (F.c.remaining.is_(None), sa.null()), else_=F.c.remaining - 1
                    ),
                )
            )
        return bool(done.rowcount)

    def remove(self, fault_id: str, now_us: int) -> bool:
        """False when there is no such rule."""
        with self._tx.write() as conn:
            done = conn.execute(
                sa.update(F).where(F.c.fault_id == fault_id, _LIVE).values(deleted_us=now_us)
            )
        return bool(done.rowcount)

    def remove_all(self, now_us: int) -> int:
        with self._tx.write() as conn:
            done = conn.execute(sa.update(F).where(_LIVE).values(deleted_us=now_us))
        return int(done.rowcount or 0)

    def count_all(self) -> int:
        """Rules ever made, removed ones included (the seeded ids' sequence)."""
        with self._tx.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(F)).scalar_one())


def rule_row(rule: emulator.FaultRule) -> dict[str, Any]:
    """The rule's columns but its place (``seq``) and removal (``deleted_us``)."""
    return {
        "fault_id": rule.fault_id,
        "task_type": rule.match.task_type,
        "stage": rule.match.stage,
        "instance_index": rule.match.instance_index,
        "node_name": rule.match.node_name,
        "operation": rule.match.operation,
        "error_code": rule.effect.error_code,
        "message": rule.effect.message,
        "latency_seconds": rule.effect.latency_seconds,
        "node_not_ready": rule.effect.node_not_ready,
        "count_total": rule.count,
        "remaining": rule.remaining,
        "probability": rule.probability,
        "hits": rule.hits,
        "created_us": rule.created_us,
    }


def _rule(row: Any) -> emulator.FaultRule:
    found = row if isinstance(row, dict) else row._mapping
    return emulator.FaultRule(
        fault_id=found["fault_id"],
        match=emulator.FaultMatch(
            task_type=found["task_type"],
            stage=found["stage"],
            instance_index=found["instance_index"],
            node_name=found["node_name"],
            operation=found["operation"],
        ),
        effect=emulator.FaultEffect(
            error_code=found["error_code"],
            message=found["message"],
            latency_seconds=float(found["latency_seconds"]),
            node_not_ready=bool(found["node_not_ready"]),
        ),
        count=found["count_total"],
        remaining=found["remaining"],
        probability=None if found["probability"] is None else float(found["probability"]),
        hits=int(found["hits"]),
        created_us=int(found["created_us"]),
    )
