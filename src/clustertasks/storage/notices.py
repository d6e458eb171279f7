"""Telling other processes that a task changed: PostgreSQL LISTEN/NOTIFY.

Every transaction that bumps task versions sends one notification per task on commit (NOTIFY
is transactional: a rolled-back change tells nobody). A :class:`Listener` in each API process
hears the notifications of every process on the database (other replicas, workers) and
hands the task ids to a callback, so long-polls and event streams wake at once rather than
at their next poll. SQLite has no such channel: there the poll alone sees other processes.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection

import psycopg
import sqlalchemy as sa

from clustertasks.storage import prepared

log = logging.getLogger("clustertasks.storage")

CHANNEL = "clustertasks_task_changed"
_TOUCHED = "clustertasks_touched"
RECONNECT_SECONDS = 1.0

Changed = Callable[[Collection[str]], None]

# Sent by every transaction that changes a task: compiled once, run on the driver.
_NOTIFY = prepared.Prepared(
    sa.text("SELECT pg_notify(:channel, id) FROM unnest(CAST(:ids AS text[])) AS id")
)


def touched(conn: sa.Connection, task_id: str) -> None:
    """Remember that this transaction changed ``task_id`` (announced by :func:`announce`)."""
    if conn.dialect.name == "postgresql":
        conn.info.setdefault(_TOUCHED, set()).add(task_id)


def forget(conn: sa.Connection) -> None:
    """A new transaction begins: nothing touched yet (a failed one may have left some)."""
    conn.info.pop(_TOUCHED, None)


def announce(conn: sa.Connection) -> Callable[[], None]:
    """Queue the notifications for what this transaction touched so far; sent at its
    commit. Inside ``prepared.pipeline`` they go out with the statements sent before them
    (no round trip of their own): call the returned function once the pipeline has ended."""
    task_ids = conn.info.pop(_TOUCHED, None)
    if not task_ids:
        return prepared.nothing
    sent = _NOTIFY.send(conn, {"channel": CHANNEL, "ids": sorted(task_ids)})
    return sent.rows_read


class Listener:
    """A thread holding one connection that LISTENs; reconnects after a failure."""

    def __init__(self, dsn: str, on_change: Changed) -> None:
        self._dsn = dsn
        self._on_change = on_change
        self._stopping = threading.Event()
        self._listening = threading.Event()
        self._connection: psycopg.Connection[tuple[object, ...]] | None = None
        self._thread = threading.Thread(target=self._run, name="clustertasks-listen", daemon=True)
        self._thread.start()

    def wait_listening(self, timeout: float) -> bool:
        """Whether the channel is listened to (within ``timeout`` seconds): a commit before
        then is not heard, only caught up with by the callers' poll."""
        return self._listening.wait(timeout)

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._listening.set()
                    # Whatever changed while not listening: the callers' poll catches up.
                    while not self._stopping.is_set():
                        batch = {n.payload for n in conn.notifies(timeout=0.5)}
                        if batch:
                            self._on_change(batch)
            except Exception:
                if self._stopping.is_set():
                    return
                log.warning("listening for task changes failed; retrying", exc_info=True)
                self._stopping.wait(RECONNECT_SECONDS)


def listen(engine: sa.Engine, on_change: Changed) -> Listener | None:
    """Hear every process's task changes on ``engine``'s database; None on SQLite."""
    if engine.dialect.name != "postgresql":
        return None
    url = engine.url.set(drivername="postgresql")
    return Listener(url.render_as_string(hide_password=False), on_change)
