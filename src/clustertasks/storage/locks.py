"""The executor lock: one executor per database; and turn locks, for chores of several
processes.

SQLite: an exclusive ``flock`` on a file beside the database (released by the kernel when
the process dies, even by kill -9). PostgreSQL: a session advisory lock held on a dedicated
connection (released when that connection closes, including when the process dies).
"""

from __future__ import annotations

import abc
import contextlib
import fcntl
import os
import zlib
from typing import IO

import sqlalchemy as sa

from clustertasks import errors
from clustertasks.storage import dialects

# Any constant, distinct from the migration lock's.
_PG_EXECUTOR_LOCK = 0x63747845
# TurnLock keys: this plus a CRC-32 of the name, above every other lock's key.
_PG_TURN_LOCKS = 0x7475726E << 32


class ExecutorLock(abc.ABC):
    """Held by the executor for as long as it runs; ``for_engine`` picks the kind."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    @classmethod
    def for_engine(cls, engine: sa.Engine) -> ExecutorLock:
        return dialects.choose(engine, sqlite=FileExecutorLock, postgresql=AdvisoryExecutorLock)(
            engine
        )

    @property
    @abc.abstractmethod
    def description(self) -> str:
        """Where the lock is, for a message to an operator."""

    @abc.abstractmethod
    def acquire(self) -> None:
        """Take the lock or raise ``errors.ExecutorLocked`` at once (never waits)."""

    @abc.abstractmethod
    def release(self) -> None:
        """Let go of the lock (nothing when not held)."""


class FileExecutorLock(ExecutorLock):
    """An exclusive ``flock`` on a file beside the SQLite database."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self._file: IO[bytes] | None = None

    @property
    def description(self) -> str:
        return f"lock file {self._lock_path()}"

    def _lock_path(self) -> str:
        return f"{dialects.database_file(self._engine)}.executor.lock"

    def acquire(self) -> None:
        path = self._lock_path()
        handle = open(path, "a+b")  # noqa: SIM115 - held open for the lock's lifetime
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            raise errors.ExecutorLocked(
                f"another clustertasks server is already running tasks on this database "
                f"(it holds {path}); start this one with --no-executor to serve the API only"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n".encode())
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


class AdvisoryExecutorLock(ExecutorLock):
    """A PostgreSQL session advisory lock held on a connection of its own."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        self._connection: sa.Connection | None = None

    @property
    def description(self) -> str:
        return f"PostgreSQL advisory lock {_PG_EXECUTOR_LOCK}"

    def acquire(self) -> None:
        connection = _try_session_lock(self._engine, _PG_EXECUTOR_LOCK)
        if connection is None:
            raise errors.ExecutorLocked(
                "another clustertasks server is already running tasks on this database "
                "(it holds the executor advisory lock); start this one with --no-executor "
                "to serve the API only"
            )
        self._connection = connection

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            _release_session_lock(connection, _PG_EXECUTOR_LOCK)


class TurnLock:
    """Whose turn it is to do a chore that any of several processes may do, one at a time
    (the Temporal workers' reconciler): :meth:`try_acquire` takes it if it is free and
    never waits, so the others skip their turn rather than repeat the work.

    PostgreSQL: a session advisory lock, named by ``name``, on a connection of its own
    (released with it, as when the process dies). SQLite: always free, as one process works
    on its file.
    """

    def __init__(self, engine: sa.Engine, name: str) -> None:
        self._engine = engine
        self._key = _PG_TURN_LOCKS + zlib.crc32(name.encode())
        self._connection: sa.Connection | None = None

    def try_acquire(self) -> bool:
        if self._engine.dialect.name != "postgresql":
            return True
        if self._connection is not None:
            return True
        self._connection = _try_session_lock(self._engine, self._key)
        return self._connection is not None

    def release(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            _release_session_lock(connection, self._key)


def _try_session_lock(engine: sa.Engine, key: int) -> sa.Connection | None:
    """PostgreSQL's session advisory lock ``key`` on a connection of its own, which holds it
    until released; None when another session holds it."""
    connection = engine.connect()
    # Out of the pool: closing it must really end the session, and with it the lock.
    connection.detach()
    try:
        got = connection.execute(
            sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": key}
        ).scalar_one()
        connection.commit()
    except sa.exc.SQLAlchemyError as exc:
        connection.close()
        raise errors.StorageUnavailable() from exc
    if not got:
        connection.close()
        return None
    return connection


def _release_session_lock(connection: sa.Connection, key: int) -> None:
    with contextlib.suppress(sa.exc.SQLAlchemyError):
        # Unlocked before the close: the server frees a closed session's locks only once
        # its backend has exited, and another process (a restart, a replica taking over)
        # may try in the meantime.
        connection.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": key})
        connection.commit()
    with contextlib.suppress(sa.exc.SQLAlchemyError):
        connection.close()
