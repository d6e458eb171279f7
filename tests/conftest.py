"""Fixtures shared by every suite: databases on both backends.

PostgreSQL is real: the suite starts a throwaway server from the machine's binaries the
first time a test needs it (``tests/support/postgres.py``), or uses the server named by
``CLUSTERTASKS_TEST_POSTGRES_URL``. Each test gets a database of its own.
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from clustertasks import settings
from clustertasks.storage import store
from tests.support import postgres

DatabaseFactory = Callable[[], str]
_names = itertools.count(1)


def _unique_name() -> str:
    return f"ct_{next(_names)}_{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[DatabaseFactory]:
    """Makes a new, empty PostgreSQL database and returns its URL."""
    existing = os.environ.get("CLUSTERTASKS_TEST_POSTGRES_URL")
    if existing:
        admin = make_url(existing)

        def create() -> str:
            name = _unique_name()
            dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return admin.set(database=name).render_as_string(hide_password=False)

        yield create
        return
    with postgres.PostgresServer() as server:
        yield lambda: server.create_database(_unique_name())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh database URL, once per backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db') / 'clustertasks.db'}"
    factory: DatabaseFactory = request.getfixturevalue("postgres_databases")
    return factory()


@pytest.fixture
def task_store(db_url: str) -> Iterator[store.TaskStore]:
    opened = store.TaskStore.open(settings.StorageSettings(url=db_url))
    try:
        yield opened
    finally:
        opened.close()
