"""Reads of one row by primary key, sent straight to SQLite's driver.

A read through SQLAlchemy's connection pool and transaction (check a connection out,
``BEGIN``, execute, ``COMMIT``, check it back in, with their events) costs some 20 times
what SQLite takes to find the row. The hottest reads of the read path are single
statements (a task's version with the state's generation, a task's whole document, an
AccessKey), and a single statement on a connection without an open transaction is a
transaction of its own in SQLite (a consistent snapshot), so nothing is lost by running
them as they are. The statements are SQLAlchemy
Core's, compiled once for the dialect by ``prepared.compile_for`` (as the engine's hot
statements are); each thread that reads has a connection of its own, opened with the
pool's settings and kept for the life of the store.

SQLite only: a PostgreSQL read crosses the network, where this saving does not matter.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from typing import Any, NamedTuple

import sqlalchemy as sa

from clustertasks import errors
from clustertasks.storage import prepared


class PointReads:
    def __init__(self, engine: sa.Engine) -> None:
        self._path = str(engine.url.database)
        with engine.connect() as conn:
            self._busy_timeout_ms = int(conn.exec_driver_sql("PRAGMA busy_timeout").scalar() or 0)
        self._dialect = engine.dialect
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self._ping = self.prepare(sa.select(sa.literal_column("1")))

    @classmethod
    def for_engine(cls, engine: sa.Engine) -> PointReads | None:
        return cls(engine) if engine.dialect.name == "sqlite" else None

    def prepare(self, statement: sa.Select[Any] | sa.CompoundSelect[Any]) -> prepared.Compiled:
        """``statement`` compiled once for SQLite, as the engine's hot statements are."""
        return prepared.compile_for(statement, self._dialect)

    def rows(self, statement: prepared.Compiled, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Every row of the statement as the driver gives it (no result processors: for a
        statement whose columns hold values of different kinds row by row)."""
        return self._execute(statement, params).fetchall()

    def first(self, statement: prepared.Compiled, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """The statement's first row, or None."""
        row: tuple[Any, ...] | None = self._execute(statement, params).fetchone()
        return row

    def _execute(self, statement: prepared.Compiled, params: dict[str, Any]) -> sqlite3.Cursor:
        try:
            return self._connection().execute(
                statement.text, prepared.bind_params(statement, params)
            )
        except sqlite3.OperationalError as exc:
            raise errors.StorageUnavailable() from exc
        except sqlite3.Error as exc:
            raise errors.StorageError(f"the task store failed: {type(exc).__name__}") from exc

    def writer(self) -> Writer:
        """A connection of its own for short writes from an event loop."""
        return Writer(self._path, self._busy_timeout_ms)

    def ping(self) -> None:
        """Raise ``errors.StorageUnavailable`` unless the database answers."""
        self.first(self._ping, {})

    def close(self) -> None:
        with self._lock:
            self._closed = True
            opened, self._opened = self._opened, []
        for conn in opened:
            conn.close()

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        return conn if conn is not None else self._open()

    def _open(self) -> sqlite3.Connection:
        with self._lock:
            if self._closed:
                raise errors.StorageUnavailable()
            try:
                # Autocommit (no implicit BEGIN): each statement is its own read transaction.
                conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
                conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
                conn.execute("PRAGMA query_only=1")
            except sqlite3.Error as exc:
                raise errors.StorageUnavailable() from exc
            self._opened.append(conn)
        self._local.conn = conn
        return conn


class Claimed(NamedTuple):
    """What one transaction of nonces wrote and read (``Writer.claim_nonces``)."""

    inserted: set[tuple[str, str]]
    """The (access key, nonce) pairs that were new."""
    keys: list[tuple[Any, ...]]
    """The rows of the nonces' keys, as the transaction found them."""


class Writer:
    """Short writes straight through SQLite's driver that never wait for the write lock:
    a caller on an event loop tries again later instead of blocking the loop."""

    def __init__(self, path: str, busy_timeout_ms: int) -> None:
        self.busy_timeout_s = busy_timeout_ms / 1000
        self._path = path
        self._conn: sqlite3.Connection | None = None

    def claim_nonces(
        self, nonces: list[tuple[str, str, int]], purge_before_us: int | None
    ) -> Claimed | None:
        """Insert the (access key, nonce, expiry) rows not in ``auth_nonces`` yet, and
        delete the expired ones first when ``purge_before_us`` is given; the pairs
        inserted and the rows of their keys as the same transaction finds them, or None
        when the write lock is taken (nothing was written)."""
        conn = self._connection()
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if _busy(exc):
                return None
            raise errors.StorageUnavailable() from exc
        try:
            if purge_before_us is not None:
                conn.execute(_PURGE, (purge_before_us,))
            placeholders = ",".join(["(?,?,?)"] * len(nonces))
            rows = conn.execute(
                _CLAIM.format(placeholders), [value for row in nonces for value in row]
            ).fetchall()
            key_ids = list(dict.fromkeys(row[0] for row in nonces))
            statement = _KEYS.format(
                columns=", ".join(KEY_COLUMNS), ids=",".join("?" * len(key_ids))
            )
            keys = conn.execute(statement, key_ids).fetchall()
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise errors.StorageUnavailable() from exc
            raise errors.StorageError(f"the key store failed: {type(exc).__name__}") from exc
        return Claimed({(row[0], row[1]) for row in rows}, keys)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            try:
                conn = sqlite3.connect(self._path, check_same_thread=False, isolation_level=None)
                # The same durability as the pool's connections (storage/dialects.py).
                conn.execute("PRAGMA synchronous=NORMAL")
                conn.execute("PRAGMA busy_timeout=0")
            except sqlite3.Error as exc:
                raise errors.StorageUnavailable() from exc
            self._conn = conn
        return self._conn


def _busy(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in str(exc)


# schema.auth_nonces; only placeholders are ever filled in.
_CLAIM = (
    "INSERT INTO auth_nonces (access_key_id, nonce, expires_us) VALUES {} "
    "ON CONFLICT DO NOTHING RETURNING access_key_id, nonce"
)
_PURGE = "DELETE FROM auth_nonces WHERE expires_us < ?"
KEY_COLUMNS = ("access_key_id", "secret", "role", "name", "status", "created_us")
"""The columns of ``schema.access_keys`` a key is read from straight through the driver, in
the order its rows come back (``Claimed.keys``, and ``keys.KeyStore``'s own read)."""
_KEYS = "SELECT {columns} FROM access_keys WHERE access_key_id IN ({ids})"
