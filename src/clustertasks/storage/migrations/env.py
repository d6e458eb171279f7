"""Alembic environment: always driven programmatically by ``clustertasks.storage.migrate``."""

from __future__ import annotations

from alembic import context

from clustertasks.storage import dialects, schema

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=schema.metadata,
    render_as_batch=dialects.alters_by_copying(connection),
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
