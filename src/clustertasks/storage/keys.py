"""AccessKeys and the signature nonces seen within the freshness window.

Nonces live in the database, not in memory, so that a request captured from one API replica
cannot be replayed against another that shares the PostgreSQL database. The primary key makes
"first one wins" atomic on both dialects; expired rows are purged as requests come in, so the
table holds at most one freshness window of requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import threading
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa

from clustertasks import errors
from clustertasks.domain import access
from clustertasks.storage import dialects, point_reads, schema, transactions

K = schema.access_keys
N = schema.auth_nonces
PURGE_EVERY_US = 60 * 1_000_000
"""How often (at most) one process deletes expired nonces."""
MAX_NONCE_BATCH = 500
"""Nonces per transaction (three bound parameters each)."""
RETRY_SOON_S = 0.001
"""For this long after its first try found the write lock taken, a batch of nonces is tried
again at the loop's next turn (another API process's nonce transaction holds it for tens of
microseconds); then every millisecond."""
MAX_REMEMBERED = 1024
"""Keys one process remembers (``KeyStore.remembered``); all are forgotten beyond this."""


class Spent(NamedTuple):
    """A nonce spent (``KeyStore.spend_nonce``)."""

    fresh: bool
    """False: the key used this nonce before (a replay)."""
    key: access.AccessKey | None
    """The key as it stood when the nonce was written; None when it is no longer stored."""


class KeyStore:
    def __init__(
        self,
        engine: sa.Engine,
        writer: contextlib.AbstractContextManager[Any] | None = None,
        points: point_reads.PointReads | None = None,
    ) -> None:
        """``points``: a key read straight through SQLite's driver."""
        self._engine = engine
        self._points = points
        self._key_read = (
            points.prepare(
                sa.select(*(K.c[name] for name in point_reads.KEY_COLUMNS)).where(
                    K.c.access_key_id == sa.bindparam("p_id")
                )
            )
            if points is not None
            else None
        )
        self._tx = transactions.Transactions(engine, "the key store")
        # The task store's queue of this process's SQLite writers, so that a nonce write
        # waits its turn instead of polling the database lock.
        self._writer = writer or contextlib.nullcontext()
        self._purged_us = 0
        self._purge_lock = threading.Lock()
        self._claims = _NonceClaims(self._insert_nonces)
        self._loop_claims = (
            _LoopNonceClaims(points.writer(), self._writer) if points is not None else None
        )
        self._remembered: dict[str, access.AccessKey] = {}
        # Built once: one compiled statement for batches of any size ("insertmanyvalues").
        self._claim = dialects.insert_new(engine, N).returning(N.c.access_key_id, N.c.nonce)

    @property
    def local(self) -> bool:
        """Reads are of a local file (SQLite), short enough to make on an event loop: a
        hand-over to a thread and back would cost more than the read."""
        return self._engine.dialect.name == "sqlite"

    # -- keys --------------------------------------------------------------------------------

    def get(self, access_key_id: str) -> access.AccessKey | None:
        if self._points is not None and self._key_read is not None:
            found = self._points.first(self._key_read, {"p_id": access_key_id})
            key = None if found is None else _key_of_row(found)
            self._remember(access_key_id, key)
            return key
        with self._tx.read() as conn:
            row = conn.execute(sa.select(K).where(K.c.access_key_id == access_key_id)).first()
        return None if row is None else _key(row._mapping)

    def remembered(self, access_key_id: str) -> access.AccessKey | None:
        """The key as this process last read it, without reading it again; None when it
        is not remembered. Where nonces are spent on the event loop (SQLite) a signed
        request checks its signature against this record, and the nonce's transaction
        reads the key again (``spend_nonce``): a key changed meanwhile, by any process,
        is found there, before the request is answered. Elsewhere nothing is remembered."""
        if self._loop_claims is None:
            return None
        return self._remembered.get(access_key_id)

    def _remember(self, access_key_id: str, key: access.AccessKey | None) -> None:
        if self._loop_claims is None:
            return
        if key is None:
            self._remembered.pop(access_key_id, None)
            return
        if len(self._remembered) >= MAX_REMEMBERED and access_key_id not in self._remembered:
            self._remembered.clear()
        self._remembered[access_key_id] = key

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

    async def spend_nonce(
        self, key: access.AccessKey, nonce: str, expires_us: int, now_us: int
    ) -> Spent:
        """``use_nonce`` for a request signed with ``key``, on an event loop; and the key as
        it stood when the nonce was written.

        On SQLite the nonces spent in two turns of the loop are inserted together, on the
        loop, in one short transaction that never waits for the write lock (it tries again
        a moment later instead); the caller is answered once it has committed, as durable
        as ``use_nonce``. That transaction also reads the nonces' keys: a request checked
        against a remembered key learns there whether the key changed. Elsewhere
        ``use_nonce`` runs in a thread and ``key``, which the request read, comes back."""
        if self._loop_claims is None:
            fresh = await asyncio.to_thread(
                self.use_nonce, key.access_key_id, nonce, expires_us, now_us
            )
            return Spent(fresh, key)
        spent = await self._loop_claims.claim(_Claim(key.access_key_id, nonce, expires_us), now_us)
        self._remember(key.access_key_id, spent.key)
        return spent

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


_ROWS_SEEN: dict[tuple[Any, ...], access.AccessKey] = {}
"""The records of the rows read lately: a row equal to one seen is the same (immutable)
record, and every signed request reads its key's row."""
MAX_ROWS_SEEN = 256


def _key_of_row(row: tuple[Any, ...]) -> access.AccessKey:
    """``_key`` of a row read through the driver, its columns ``point_reads.KEY_COLUMNS``."""
    known = _ROWS_SEEN.get(row)
    if known is not None:
        return known
    key_id, secret, role, name, status, created_us = row
    key = access.AccessKey(
        key_id, secret, access.Role(role), name, access.KeyStatus(status), created_us
    )
    if len(_ROWS_SEEN) >= MAX_ROWS_SEEN:
        _ROWS_SEEN.clear()
    _ROWS_SEEN[row] = key
    return key


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
    done: threading.Event | None = None
    """Set once the claim's batch is written (claims across threads only)."""


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
        done = claim.done = threading.Event()
        with self._lock:
            self._waiting.append(claim)
            claim.lead = not self._writing
            self._writing = True
        if not claim.lead:
            done.wait()
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
                    _wake(self._waiting[0])
                else:
                    self._writing = False
            for claim in batch:
                claim.lead = False
                _wake(claim)


def _wake(claim: _Claim) -> None:
    if claim.done is not None:
        claim.done.set()


class _LoopNonceClaims:
    """Nonces claimed on an event loop, written to SQLite from that loop.

    A thread hop per request (and the GIL's hand-over with it) cost more than the insert.
    The claims of two turns of the loop share one ``INSERT … ON CONFLICT DO NOTHING
    RETURNING``: a row that comes back is a fresh nonce, one that does not was used
    before, by this process or any other on the database. The transaction takes the
    write lock without waiting (``busy_timeout`` 0, and this process's queue of writers
    without blocking); when either is taken, it is tried again at the loop's next turns
    for a millisecond (``RETRY_SOON_S``: another API process's nonce transaction is over
    in tens of microseconds), then every millisecond, for at most the database's busy
    timeout, as a blocking writer would have waited. Waiting a whole millisecond from the
    first miss left the API processes idle a fifth of the time under load
    (docs/performance.md).
    """

    def __init__(self, writer: point_reads.Writer, queue: contextlib.AbstractContextManager[Any]):
        self._writer = writer
        self._queue = queue if isinstance(queue, _LOCK_TYPES) else None
        self._waiting: list[tuple[_Claim, asyncio.Future[Spent]]] = []
        self._scheduled = False
        self._purged_us = 0
        self._since: float | None = None

    async def claim(self, claim: _Claim, now_us: int) -> Spent:
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Spent] = loop.create_future()
        self._waiting.append((claim, answer))
        self._now_us = now_us
        if not self._scheduled:
            self._scheduled = True
            # Written a turn of the loop later: the requests its next poll of the sockets
            # reads join this batch (fewer transactions under load; docs/performance.md).
            # Idle, it costs a turn of an empty loop.
            loop.call_soon(loop.call_soon, self._flush, loop)
        return await answer

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        self._scheduled = False
        batch = self._waiting[:MAX_NONCE_BATCH]
        if not batch:
            return
        purge_before = None
        if self._now_us - self._purged_us >= PURGE_EVERY_US:
            purge_before = self._now_us
        locked = self._queue is None or self._queue.acquire(blocking=False)
        try:
            claimed = (
                self._writer.claim_nonces(
                    [(c.access_key_id, c.nonce, c.expires_us) for c, _ in batch], purge_before
                )
                if locked
                else None
            )
        except errors.ClustertasksError as exc:
            self._since = None
            del self._waiting[: len(batch)]
            for _, answer in batch:
                if not answer.done():
                    answer.set_exception(exc)
            self._again(loop, 0)
            return
        finally:
            if locked and self._queue is not None:
                self._queue.release()
        if claimed is None:  # the write lock is taken: try again shortly
            started = self._since = self._since if self._since is not None else loop.time()
            if loop.time() - started > self._writer.busy_timeout_s:
                self._since = None
                del self._waiting[: len(batch)]
                for _, answer in batch:
                    if not answer.done():
                        answer.set_exception(errors.StorageUnavailable())
                self._again(loop, 0)
                return
            self._again(loop, 0 if loop.time() - started < RETRY_SOON_S else 0.001)
            return
        self._since = None
        if purge_before is not None:
            self._purged_us = purge_before
        del self._waiting[: len(batch)]
        keys = {row[0]: _key_of_row(row) for row in claimed.keys}
        seen: set[tuple[str, str]] = set()
        for claim, answer in batch:
            pair = (claim.access_key_id, claim.nonce)
            fresh = pair in claimed.inserted and pair not in seen
            seen.add(pair)
            if not answer.done():
                answer.set_result(Spent(fresh, keys.get(claim.access_key_id)))
        self._again(loop, 0)

    def _again(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        if self._waiting and not self._scheduled:
            self._scheduled = True
            if delay:
                loop.call_later(delay, self._flush, loop)
            else:
                loop.call_soon(self._flush, loop)


_LOCK_TYPES = (type(threading.RLock()), type(threading.Lock()))
