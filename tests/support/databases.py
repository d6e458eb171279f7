"""Databases for tests: migrated once per session, then copied for each test.

Migrating a database from scratch costs far more than copying one that is migrated already,
so each backend keeps a template (procrastinate's template database): PostgreSQL copies it
with ``CREATE DATABASE … TEMPLATE``, SQLite by copying the file. A copy is exactly what the
migrations make, so a test sees the same database as if it had migrated its own. Tests of
the migrations themselves take an empty database instead.
"""

from __future__ import annotations

import itertools
import os
import shutil
import uuid
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from sqlalchemy.engine import make_url

from clustertasks import settings
from clustertasks.storage import database
from tests.support import postgres

SQLITE = "sqlite"
POSTGRES = "postgres"
_SQLITE_FILE = "clustertasks.db"


def migrate(url: str) -> None:
    """Apply every migration to the database of ``url``, as the server does when it opens it."""
    database.Database.open(settings.StorageSettings(url=url)).close()


class SqliteDatabases:
    """SQLite files, each in a directory of its own."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory
        self._template: Path | None = None

    def empty(self) -> str:
        """The URL of a database that does not exist yet (SQLite creates it on first use)."""
        return f"sqlite:///{self._tmp.mktemp('db') / _SQLITE_FILE}"

    def migrated(self) -> str:
        """The URL of a new, migrated database: a copy of the template."""
        if self._template is None:
            template = self._tmp.mktemp("template") / _SQLITE_FILE
            migrate(f"sqlite:///{template}")
            # Its last connection closed, a database in WAL mode is all in its main file
            # (SQLite checkpoints the -wal file into it and removes it).
            if Path(f"{template}-wal").exists():
                raise RuntimeError(f"{template} kept a -wal file: it cannot be copied alone")
            self._template = template
        copy = self._tmp.mktemp("db") / _SQLITE_FILE
        shutil.copyfile(self._template, copy)
        return f"sqlite:///{copy}"


class PostgresDatabases:
    """Databases on one PostgreSQL server, made (empty, or copied from a migrated template)
    and dropped again, so that a long run does not leave thousands of files behind."""

    def __init__(self, admin_url: str, *, throwaway: bool = False) -> None:
        """``throwaway``: the suite's own server (``tests/support/postgres.py``), which
        trades durability for speed."""
        admin = make_url(admin_url)
        self._admin = admin
        self._dsn = admin.set(drivername="postgresql").render_as_string(hide_password=False)
        # Several sessions (xdist workers, or developers sharing one server through
        # CLUSTERTASKS_TEST_POSTGRES_URL) may make databases on one server at once.
        self._prefix = f"ct_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self._names = itertools.count(1)
        self._template: str | None = None
        self._throwaway = throwaway
        self._strategy = sql.SQL("")

    def empty(self) -> str:
        """The URL of a new database that no migration has touched."""
        return self._create(None)

    def migrated(self) -> str:
        """The URL of a new, migrated database: a copy of the template."""
        if self._template is None:
            url = self._create(None)
            migrate(url)
            # The migration's connections are closed: a template must have none.
            self._template = make_url(url).database
            with psycopg.connect(self._dsn) as conn:
                if self._throwaway and conn.info.server_version >= 150000:
                    # Copy the files, as before PostgreSQL 15, rather than write every page
                    # of them to the WAL as well: with fsync off, the checkpoints this takes
                    # cost little.
                    self._strategy = sql.SQL(" STRATEGY FILE_COPY")
        return self._create(self._template)

    def drop(self, url: str) -> None:
        """Drop the database of ``url``, closing any connection a test left open."""
        name = make_url(url).database
        if name:
            self._execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)"), name)

    def close(self) -> None:
        if self._template is not None:
            self._execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)"), self._template)
            self._template = None

    def _create(self, template: str | None) -> str:
        name = f"{self._prefix}_{next(self._names)}"
        if template is None:
            self._execute(sql.SQL("CREATE DATABASE {}"), name)
        else:
            statement = sql.SQL("CREATE DATABASE {} TEMPLATE {}{}").format(
                sql.Identifier(name), sql.Identifier(template), self._strategy
            )
            with psycopg.connect(self._dsn, autocommit=True) as conn:
                conn.execute(statement)
        return self._admin.set(database=name).render_as_string(hide_password=False)

    def _execute(self, statement: sql.SQL, name: str) -> None:
        with psycopg.connect(self._dsn, autocommit=True) as conn:
            conn.execute(statement.format(sql.Identifier(name)))


class Databases:
    """New databases on either backend; PostgreSQL's server is started when first needed."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self.sqlite = SqliteDatabases(tmp_path_factory)
        self._postgres: PostgresDatabases | None = None
        self._server: postgres.PostgresServer | None = None

    def migrated(self, backend: str) -> str:
        """The URL of a new database the migrations have brought up to date."""
        if backend == SQLITE:
            return self.sqlite.migrated()
        return self.postgres.migrated()

    def empty(self, backend: str) -> str:
        """The URL of a new database no migration has touched."""
        if backend == SQLITE:
            return self.sqlite.empty()
        return self.postgres.empty()

    def drop(self, url: str) -> None:
        """Remove a PostgreSQL database (a SQLite file goes with the test's directory)."""
        if url.startswith("postgresql") and self._postgres is not None:
            self._postgres.drop(url)

    @property
    def postgres(self) -> PostgresDatabases:
        if self._postgres is None:
            existing = os.environ.get("CLUSTERTASKS_TEST_POSTGRES_URL")
            if existing:
                self._postgres = PostgresDatabases(existing)
            else:
                self._server = postgres.PostgresServer().start()
                self._postgres = PostgresDatabases(self._server.admin_url, throwaway=True)
        return self._postgres

    def close(self) -> None:
        if self._postgres is not None:
            self._postgres.close()
        if self._server is not None:
            self._server.stop()
