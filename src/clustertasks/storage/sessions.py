"""The web console's sessions: which AccessKey a browser signed in with, until when.

Only a hash of the session token is stored; the token itself lives in the browser's cookie.
Sessions are in the database rather than in memory so that every API replica sharing it
knows them (a browser may reach any replica behind a load balancer).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from clustertasks.storage import schema, transactions

S = schema.console_sessions


@dataclass(frozen=True, slots=True)
class SessionRow:
    token_hash: str
    access_key_id: str
    created_us: int
    expires_us: int


class SessionStore:
    def __init__(
        self, engine: sa.Engine, writer: contextlib.AbstractContextManager[Any] | None = None
    ) -> None:
        self._tx = transactions.Transactions(engine, "the console's sessions")
        self._writer = writer or contextlib.nullcontext()

    def add(self, row: SessionRow) -> None:
        with self._writer, self._tx.write() as conn:
            conn.execute(
                sa.insert(S).values(
                    token_hash=row.token_hash,
                    access_key_id=row.access_key_id,
                    created_us=row.created_us,
                    expires_us=row.expires_us,
                )
            )

    def get(self, token_hash: str, now_us: int) -> SessionRow | None:
        """The session, unless there is none or it has expired."""
        query = sa.select(S).where(S.c.token_hash == token_hash, S.c.expires_us > now_us)
        with self._tx.read() as conn:
            found = conn.execute(query).first()
        if found is None:
            return None
        row = found._mapping
        return SessionRow(
            row["token_hash"], row["access_key_id"], row["created_us"], row["expires_us"]
        )

    def delete(self, token_hash: str) -> bool:
        """False when there was no such session."""
        with self._writer, self._tx.write() as conn:
            done = conn.execute(sa.delete(S).where(S.c.token_hash == token_hash))
        return bool(done.rowcount)

    def purge(self, now_us: int) -> int:
        """Delete expired sessions; how many there were."""
        with self._writer, self._tx.write() as conn:
            done = conn.execute(sa.delete(S).where(S.c.expires_us <= now_us))
        return int(done.rowcount or 0)
