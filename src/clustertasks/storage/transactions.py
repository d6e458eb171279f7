"""Short transactions on one engine, with driver errors translated where they enter.

Shared by the stores so that every table is written the same way: a writer on SQLite takes
the lock up front (``BEGIN IMMEDIATE``, see ``dialects.write_options``) and a failure of the
database surfaces as ``errors.StorageUnavailable`` or ``errors.StorageError``.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import sqlalchemy as sa

from clustertasks import errors
from clustertasks.storage import dialects


@contextlib.contextmanager
def translated(name: str = "the task store") -> Iterator[None]:
    """Turn driver errors into ours (STYLE.md §2); ``name`` says whose database failed.

    ``IntegrityError`` becomes ``errors.RowConflict`` (a 409, never a 500): the stores catch
    it to recognise a duplicate and answer with the row that is already there.
    """
    try:
        yield
    except sa.exc.IntegrityError as exc:
        raise errors.RowConflict() from exc
    except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError) as exc:
        raise errors.StorageUnavailable() from exc
    except sa.exc.SQLAlchemyError as exc:
        raise errors.StorageError(f"{name} failed: {type(exc).__name__}") from exc


_WRITERS: weakref.WeakKeyDictionary[sa.Engine, threading.RLock] = weakref.WeakKeyDictionary()
_WRITERS_GUARD = threading.Lock()


def writer_for(engine: sa.Engine) -> contextlib.AbstractContextManager[Any]:
    """The queue of this process's writers on ``engine``, shared by every store on it.

    SQLite has one writer at a time; left to itself, each waiting thread polls in SQLite's
    busy handler, sleeping up to 100 ms between tries. Queueing on one Python lock per
    engine hands the database over at once (other processes still wait through
    ``busy_timeout``). Re-entrant: a write nested in another on one thread fails as it
    would without the queue (SQLite's busy timeout), never waits for itself. PostgreSQL
    takes row locks itself: no queue.
    """
    if not dialects.one_writer_at_a_time(engine):
        return contextlib.nullcontext()
    with _WRITERS_GUARD:
        lock = _WRITERS.get(engine)
        if lock is None:
            lock = _WRITERS[engine] = threading.RLock()
        return lock


class Transactions:
    """Opens read and write transactions on ``engine``; each commits when its block ends."""

    def __init__(self, engine: sa.Engine, name: str = "the task store") -> None:
        self.engine = engine
        self.name = name
        self._write_options = dialects.write_options(engine)

    @contextlib.contextmanager
    def write(self) -> Iterator[sa.Connection]:
        with writer_for(self.engine), translated(self.name), self.engine.connect() as conn:
            conn = conn.execution_options(**self._write_options)
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[sa.Connection]:
        with translated(self.name), self.engine.connect() as conn, conn.begin():
            yield conn


Timer = Callable[[str, float, str], None]
"""Told (backend, seconds, ``commit`` or ``rollback``) after each transaction."""

_STARTED = "clustertasks_transaction_started"


def time_each(engine: sa.Engine, timer: Timer) -> None:
    """Tell ``timer`` how long each transaction on ``engine`` took, from BEGIN to its end
    (a SQLite writer's wait for the lock included)."""
    backend = engine.dialect.name

    def begun(conn: sa.Connection) -> None:
        conn.info[_STARTED] = time.perf_counter()

    def ended(outcome: str) -> Callable[[sa.Connection], None]:
        def end(conn: sa.Connection) -> None:
            started = conn.info.pop(_STARTED, None)
            if started is not None:
                timer(backend, time.perf_counter() - started, outcome)

        return end

    sa.event.listen(engine, "begin", begun)
    sa.event.listen(engine, "commit", ended("commit"))
    sa.event.listen(engine, "rollback", ended("rollback"))
