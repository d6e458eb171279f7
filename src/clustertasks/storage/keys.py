"""AccessKeys and the signature nonces seen within the freshness window.

Nonces live in the database, not in memory, so that a request captured from one API replica
cannot be replayed against another that shares the PostgreSQL database. The primary key makes
"first one wins" atomic on both dialects; expired rows are purged as requests come in, so the
table holds at most one freshness window of requests.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any

import sqlalchemy as sa

from clustertasks import errors
from clustertasks.domain import access
from clustertasks.storage import dialects, schema, transactions

K = schema.access_keys
N = schema.auth_nonces
PURGE_EVERY_US = 60 * 1_000_000
"""How often (at most) one process deletes expired nonces."""
MAX_NONCE_BATCH = 500
"""Nonces per transaction (three bound parameters each)."""


class KeyStore:
    def __init__(
        self,
        engine: sa.Engine,
        writer: contextlib.AbstractContextManager[Any] | None = None,
    ) -> None:
        self._engine = engine
        self._tx = transactions.Transactions(engine, "the key store")
        # The task store's queue of this process's SQLite writers, so that a nonce write
        # waits its turn instead of polling the database lock.
        self._writer = writer or contextlib.nullcontext()
        self._purged_us = 0
        self._purge_lock = threading.Lock()
        self._claims = _NonceClaims(self._insert_nonces)
        # Built once: one compiled statement for batches of any size ("insertmanyvalues").
        self._claim = dialects.insert_new(engine, N).returning(N.c.access_key_id, N.c.nonce)

    # -- keys --------------------------------------------------------------------------------

    def get(self, access_key_id: str) -> access.AccessKey | None:
        with self._tx.read() as conn:
            row = conn.execute(sa.select(K).where(K.c.access_key_id == access_key_id)).first()
        return None if row is None else _key(row._mapping)

    def keys(self) -> Sequence[access.AccessKey]:
        with self._tx.read() as conn:
            rows = conn.execute(sa.select(K).order_by(K.c.created_us, K.c.access_key_id))
            return [_key(row._mapping) for row in rows]

    def count(self) -> int:
        with self._tx.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(K)).scalar_one())

    def put(self, key: access.AccessKey) -> None:
        """Insert the key, or replace the one with its id (secret, role, name, status)."""
        values = {
            "access_key_id": key.access_key_id,
            "secret": key.secret,
            "role": key.role.value,
            "name": key.name,
            "status": key.status.value,
            "created_us": key.created_us,
        }
        statement = dialects.upsert(
            self._engine, K, values, ["access_key_id"], ["secret", "role", "name", "status"]
        )
        with self._writer, self._tx.write() as conn:
            conn.execute(statement)
        self._protect_file()

    def set_status(self, access_key_id: str, status: access.KeyStatus) -> bool:
        """False when there is no such key."""
        with self._writer, self._tx.write() as conn:
            done = conn.execute(
                sa.update(K).where(K.c.access_key_id == access_key_id).values(status=status.value)
            )
        return bool(done.rowcount)

    def delete(self, access_key_id: str) -> bool:
        """False when there is no such key."""
        with self._writer, self._tx.write() as conn:
            done = conn.execute(sa.delete(K).where(K.c.access_key_id == access_key_id))
        return bool(done.rowcount)

    # -- nonces ------------------------------------------------------------------------------

    def use_nonce(self, access_key_id: str, nonce: str, expires_us: int, now_us: int) -> bool:
        """Record the nonce; False when this key already used it (a replay).

        Concurrent requests share one transaction (see ``_NonceClaims``): a nonce costs a
        row in a batch rather than a commit of its own.
        """
        self._purge(now_us)
        return self._claims.claim(_Claim(access_key_id, nonce, expires_us))

    def _insert_nonces(self, claims: Sequence[_Claim]) -> None:
        """Insert a batch of nonces in one transaction; the first claim of a pair that is
        not in the table yet is fresh, every other one a replay."""
        first: dict[tuple[str, str], _Claim] = {}
        for claim in claims:
            first.setdefault((claim.access_key_id, claim.nonce), claim)
        rows = [
            {"access_key_id": c.access_key_id, "nonce": c.nonce, "expires_us": c.expires_us}
            for c in first.values()
        ]
        with self._writer, self._tx.write() as conn:
            inserted = {(row.access_key_id, row.nonce) for row in conn.execute(self._claim, rows)}
        for claim in claims:
            pair = (claim.access_key_id, claim.nonce)
            claim.fresh = first[pair] is claim and pair in inserted

    def nonce_count(self) -> int:
        with self._tx.read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(N)).scalar_one())

    def purge_nonces(self, now_us: int) -> int:
        """Delete nonces whose request could no longer pass the freshness check."""
        with self._writer, self._tx.write() as conn:
            done = conn.execute(sa.delete(N).where(N.c.expires_us < now_us))
        return int(done.rowcount or 0)

    def _purge(self, now_us: int) -> None:
        with self._purge_lock:
            if now_us - self._purged_us < PURGE_EVERY_US:
                return
            self._purged_us = now_us
        self.purge_nonces(now_us)

    def _protect_file(self) -> None:
        """A SQLite file now holds secrets: make it readable by its owner only. Its -wal and
        -shm files hold the same pages; SQLite gives new ones the database file's mode, but
        ones that already exist keep theirs, so they are restricted too."""
        database = dialects.database_file(self._engine)
        if database is None:
            return
        try:
            os.chmod(database, 0o600)
            for suffix in ("-wal", "-shm"):
                if os.path.exists(database + suffix):
                    os.chmod(database + suffix, 0o600)
        except OSError as exc:
            raise errors.StorageError(f"cannot restrict the database file's mode: {exc}") from exc


def _key(row: Any) -> access.AccessKey:
    return access.AccessKey(
        access_key_id=row["access_key_id"],
        secret=row["secret"],
        role=access.Role(row["role"]),
        name=row["name"],
        status=access.KeyStatus(row["status"]),
        created_us=row["created_us"],
    )


@dataclasses.dataclass(eq=False, slots=True)
class _Claim:
    access_key_id: str
    nonce: str
    expires_us: int
    fresh: bool = False
    error: BaseException | None = None
    lead: bool = False
    done: threading.Event = dataclasses.field(default_factory=threading.Event)


class _NonceClaims:
    """Group commit for nonces, across the threads answering requests.

    A thread that finds no batch being written writes the waiting claims (its own among
    them) in one transaction; claims that arrive meanwhile wait, and the first of them
    writes the next batch. Each claim is answered only once its transaction committed, so
    a nonce is as durable as when written alone.
    """

    def __init__(self, write: Callable[[Sequence[_Claim]], None]) -> None:
        self._write = write
        self._lock = threading.Lock()
        self._waiting: list[_Claim] = []
        self._writing = False

    def claim(self, claim: _Claim) -> bool:
        with self._lock:
            self._waiting.append(claim)
            claim.lead = not self._writing
            self._writing = True
        if not claim.lead:
            claim.done.wait()
        if claim.lead:  # first in, or handed the next batch by the previous writer
            self._write_batch()
        if claim.error is not None:
            raise claim.error
        return claim.fresh

    def _write_batch(self) -> None:
        with self._lock:
            batch, self._waiting = self._waiting[:MAX_NONCE_BATCH], self._waiting[MAX_NONCE_BATCH:]
        try:
            self._write(batch)
        except BaseException as exc:
            for claim in batch:  # every claim of the batch fails as the transaction did
                claim.error = exc
            if not isinstance(exc, Exception):
                raise
        finally:
            with self._lock:
                if self._waiting:
                    self._waiting[0].lead = True  # its thread writes what came meanwhile
                    self._waiting[0].done.set()
                else:
                    self._writing = False
            for claim in batch:
                claim.lead = False
                claim.done.set()
