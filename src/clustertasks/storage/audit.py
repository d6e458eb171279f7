"""The audit log: one row per mutating request, appended after it is answered."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from clustertasks.domain import access
from clustertasks.storage import schema, transactions

A = schema.audit_log
MAX_TARGET = 1024


class AuditLog:
    def __init__(
        self, engine: sa.Engine, writer: contextlib.AbstractContextManager[Any] | None = None
    ) -> None:
        self._tx = transactions.Transactions(engine, "the audit log")
        self._writer = writer or contextlib.nullcontext()

    def record(self, entry: access.AuditEntry) -> None:
        with self._writer, self._tx.write() as conn:
            conn.execute(
                sa.insert(A).values(
                    time_us=entry.time_us,
                    access_key_id=entry.access_key_id[:128],
                    action=entry.action[:128],
                    method=entry.method[:16],
                    target=entry.target[:MAX_TARGET],
                    request_id=entry.request_id[:64],
                    status=entry.status,
                    outcome=entry.outcome[:128],
                )
            )

    def entries(self, since_us: int = 0, limit: int = 1000) -> Sequence[access.AuditEntry]:
        """The newest ``limit`` entries at or after ``since_us``, oldest first."""
        query = (
            sa.select(A)
            .where(A.c.time_us >= since_us)
            .order_by(A.c.time_us.desc(), A.c.entry_id.desc())
            .limit(limit)
        )
        with self._tx.read() as conn:
            rows = [row._mapping for row in conn.execute(query)]
        return [
            access.AuditEntry(
                row["time_us"],
                row["access_key_id"],
                row["action"],
                row["method"],
                row["target"],
                row["request_id"],
                row["status"],
                row["outcome"],
            )
            for row in reversed(rows)
        ]
