"""Pooled PostgreSQL connections the server closed (a restart, a failover, an operator's
pg_terminate_backend) are replaced before use: the next reads and writes succeed."""

from __future__ import annotations

import contextlib

import psycopg
import pytest

from clustertasks.domain import states
from clustertasks.storage import changes, store
from clustertasks.storage import database as storage_database
from tests.support import factories

pytestmark = pytest.mark.postgres

POOLED = 4
NOW = factories.BASE_US + 60_000_000


def _fill_pool(db: storage_database.Database) -> None:
    """Leave ``POOLED`` connections in the pool, each used once."""
    with contextlib.ExitStack() as held:
        for _ in range(POOLED):
            held.enter_context(db.engine.connect()).exec_driver_sql("SELECT 1")


def _terminate_every_other_backend(db: storage_database.Database) -> int:
    url = db.engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            # With a timeout it returns once each backend has exited (not just been
            # signalled): the pool then finds every socket closed, as after a restart.
            "SELECT count(pg_terminate_backend(pid, 10000)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_reads_and_writes_after_the_server_closed_every_pooled_connection(
    pg_database: storage_database.Database,
) -> None:
    tasks = pg_database.tasks
    seeded = factories.seed_task(tasks)
    task_id = seeded.task.task_id
    _fill_pool(pg_database)
    assert _terminate_every_other_backend(pg_database) >= POOLED

    # Every call below checks a closed connection out of the pool first; none fails.
    assert tasks.get_task(task_id).state is states.TaskState.RUNNING
    before = tasks.describe_task(task_id)
    event = tasks.apply(
        changes.AppendEvent(
            task_id, "start", states.EventLevel.NORMAL, "Reconnected", "still here", NOW
        )
    )
    views = tasks.begin_stages([store.StageStart(task_id, None, 0)])
    after = tasks.describe_task(task_id)
    assert views[task_id].task.version == after.task.version == before.task.version + 1
    assert after.events[-1] == event
    assert pg_database.ping()
