"""The executor lock: one executor per database.

SQLite: an exclusive ``flock`` on a file beside the database (released by the kernel when
the process dies, even by kill -9). PostgreSQL: a session advisory lock held on a dedicated
connection (released when that connection closes, including when the process dies).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import IO

import sqlalchemy as sa

from clustertasks import errors

# Any constant, distinct from the migration lock's.
_PG_EXECUTOR_LOCK = 0x63747845


class ExecutorLock:
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._file: IO[bytes] | None = None
        self._connection: sa.Connection | None = None

    @classmethod
    def for_engine(cls, engine: sa.Engine) -> ExecutorLock:
        return cls(engine)

    @property
    def description(self) -> str:
        if self._engine.dialect.name == "sqlite":
            return f"lock file {self._lock_path()}"
        return f"PostgreSQL advisory lock {_PG_EXECUTOR_LOCK}"

    def acquire(self) -> None:
        """Take the lock or raise ``errors.ExecutorLocked`` at once (never waits)."""
        if self._engine.dialect.name == "sqlite":
            self._acquire_file()
        else:
            self._acquire_advisory()

    def release(self) -> None:
        if self._file is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None
        if self._connection is not None:
            with contextlib.suppress(sa.exc.SQLAlchemyError):
                self._connection.close()
            self._connection = None

    def _lock_path(self) -> str:
        return f"{self._engine.url.database}.executor.lock"

    def _acquire_file(self) -> None:
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

    def _acquire_advisory(self) -> None:
        connection = self._engine.connect()
        # Out of the pool: closing it must really end the session, and with it the lock.
        connection.detach()
        try:
            got = connection.execute(
                sa.text("SELECT pg_try_advisory_lock(:key)"), {"key": _PG_EXECUTOR_LOCK}
            ).scalar_one()
            connection.commit()
        except sa.exc.SQLAlchemyError as exc:
            connection.close()
            raise errors.StorageUnavailable() from exc
        if not got:
            connection.close()
            raise errors.ExecutorLocked(
                "another clustertasks server is already running tasks on this database "
                "(it holds the executor advisory lock); start this one with --no-executor "
                "to serve the API only"
            )
        self._connection = connection
