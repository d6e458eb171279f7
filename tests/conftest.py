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
from clustertasks.storage import database as storage_database
from clustertasks.storage import store
from tests.support import postgres

DatabaseFactory = Callable[[], str]
_names = itertools.count(1)


def _unique_name() -> str:
    return f"ct_{next(_names)}_{uuid.uuid4().hex[:8]}"


class Databases:
    """Creates empty databases on one PostgreSQL server (calling it creates one) and drops
    them again, so that a long run does not leave thousands of files to delete at the end."""

    def __init__(self, admin_url: str) -> None:
        admin = make_url(admin_url)
        self._admin = admin
        self._dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)

    def __call__(self) -> str:
        name = _unique_name()
        with psycopg.connect(self._dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self._admin.set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        """Drop the database of ``url``, closing any connection a test left open."""
        name = make_url(url).database
        if not name:
            return
        with psycopg.connect(self._dsn, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[Databases]:
    """Makes a new, empty PostgreSQL database and returns its URL."""
    existing = os.environ.get("CLUSTERTASKS_TEST_POSTGRES_URL")
    if existing:
        yield Databases(existing)
        return
    with postgres.PostgresServer() as server:
        yield Databases(server.admin_url)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A fresh database URL, once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'clustertasks.db'}"
        return
    databases: Databases = request.getfixturevalue("postgres_databases")
    url = databases()
    yield url
    databases.drop(url)


@pytest.fixture
def database(db_url: str) -> Iterator[storage_database.Database]:
    opened = storage_database.Database.open(settings.StorageSettings(url=db_url))
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def task_store(database: storage_database.Database) -> store.TaskStore:
    return database.tasks
