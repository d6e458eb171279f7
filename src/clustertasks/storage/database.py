"""Database: one SQLAlchemy engine, opened and migrated once, and the stores on it.

The composition root opens one ``Database`` and hands its stores to whoever needs them:
``tasks`` (tasks, stages, events, results, conflicts, idempotency), ``keys`` (AccessKeys and
signature nonces), ``audit`` (the log of mutating requests) and ``sessions`` (the web
console's). The emulator keeps its own
tables on the same database through ``engine`` (see ``clustertasks.emulator``).
"""

from __future__ import annotations

import sqlalchemy as sa

from clustertasks import errors, settings
from clustertasks.storage import (
    audit,
    dialects,
    keys,
    locks,
    migrate,
    notices,
    point_reads,
    sessions,
    store,
    transactions,
)


class Database:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        """For stores kept outside ``storage`` (the emulator's): same engine, same pool."""
        # One queue of writers per engine, shared by every store on it.
        writer = transactions.writer_for(engine)
        self._points = point_reads.PointReads.for_engine(engine)
        self.tasks = store.TaskStore(engine, self._points)
        self.keys = keys.KeyStore(engine, writer, self._points)
        self.audit = audit.AuditLog(engine, writer)
        self.sessions = sessions.SessionStore(engine, writer)

    @classmethod
    def open(
        cls,
        config: settings.StorageSettings,
        *,
        upgrade: bool = True,
        on_transaction: transactions.Timer | None = None,
    ) -> Database:
        """Connect to the database of ``config.url``, applying migrations unless told not to;
        ``on_transaction`` is told how long each later transaction took (metrics)."""
        engine = dialects.create_engine(config)
        try:
            if upgrade:
                with transactions.translated():
                    migrate.upgrade(engine)
        except BaseException:
            engine.dispose()
            raise
        if on_transaction is not None:
            transactions.time_each(engine, on_transaction)
        return cls(engine)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def executor_lock(self) -> locks.ExecutorLock:
        """The lock that makes an executor the only one on this database."""
        return locks.ExecutorLock.for_engine(self.engine)

    def turn_lock(self, name: str) -> locks.TurnLock:
        """A lock that lets one process at a time do the chore ``name``."""
        return locks.TurnLock(self.engine, name)

    def ping(self) -> bool:
        """True when the database answers."""
        try:
            if self._points is not None:
                self._points.ping()
                return True
            with transactions.Transactions(self.engine).read() as conn:
                conn.execute(sa.text("SELECT 1"))
        except errors.ClustertasksError:
            return False
        return True

    def listen_for_task_changes(self, on_change: notices.Changed) -> notices.Listener | None:
        """Call ``on_change(task_ids)`` (from a thread of its own) whenever any process
        commits a change to those tasks; None on SQLite, which has no such channel."""
        return notices.listen(self.engine, on_change)

    def close(self) -> None:
        if self._points is not None:
            self._points.close()
        self.engine.dispose()
