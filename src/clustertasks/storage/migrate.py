"""Applying the numbered Alembic migrations in ``migrations/versions``, programmatically.

Each migration file is named after its revision (``0006_….py`` holds revision ``"0006"``), so
the newest one is known from the file names alone: a database already at that revision is
opened without loading Alembic, which keeps short commands (``keys``, ``audit``) quick.
"""

from __future__ import annotations

import pathlib
from typing import TYPE_CHECKING

import sqlalchemy as sa

from clustertasks.storage import dialects

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = pathlib.Path(__file__).parent / "migrations"


def _config(connection: sa.Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def newest_revision() -> str:
    """The revision of the newest migration file, read from the file names."""
    names = sorted(
        path.name for path in (MIGRATIONS / "versions").glob("[0-9][0-9][0-9][0-9]_*.py")
    )
    return names[-1][:4]


def _stored_revision(connection: sa.Connection) -> str | None:
    if not sa.inspect(connection).has_table("alembic_version"):
        return None
    return connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the database to ``revision`` (all migrations by default)."""
    with engine.connect() as connection:
        if revision == "head" and _stored_revision(connection) == newest_revision():
            return
    from alembic import command

    with engine.connect() as connection, dialects.migration_lock(connection):
        command.upgrade(_config(connection), revision)
        connection.commit()


def current_revision(engine: sa.Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(_config()).get_current_head()
