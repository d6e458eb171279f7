"""The declared tables. Migrations in ``migrations/versions`` must produce exactly these;
``tests/integration/test_migrations.py`` proves it.

Instants are BIGINT microseconds since the epoch (UTC): exact, portable, and free of the
two dialects' different ideas of time zones.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

ID = sa.String(128)

tasks = sa.Table(
    "tasks",
    metadata,
    sa.Column("task_id", ID, primary_key=True),
    sa.Column("cluster_id", ID, nullable=False),
    sa.Column("task_type", sa.String(64), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
    sa.Column("target_id", ID, nullable=False),
    sa.Column("target_type", sa.String(16), nullable=False),
    sa.Column("parameters", sa.JSON, nullable=False),
    sa.Column("current_stage", sa.String(128), nullable=False),
    sa.Column("outputs", sa.JSON, nullable=False),
    sa.Column("error_code", sa.String(128), nullable=False),
    sa.Column("error_message", sa.Text, nullable=False),
    sa.Column("client_token", sa.String(128), nullable=True),
    # Bumped by every change to the task or its parts: the document's version (ETags, waits).
    sa.Column("version", sa.BigInteger, nullable=False),
    # Number of events appended so far; the next event's seq is this plus one.
    sa.Column("event_count", sa.Integer, nullable=False),
    # Number of resources in task_result[]; a new resource takes this as its position.
    sa.Column("result_count", sa.Integer, nullable=False),
    # A pause or cancel asked for by a client and not yet acted on by the engine.
    sa.Column("requested_action", sa.String(16), nullable=True),
    sa.Index(None, "cluster_id", "created_us", "task_id"),
    sa.Index(None, "state"),
    sa.Index(None, "client_token", unique=True),
)

stages = sa.Table(
    "task_stages",
    metadata,
    sa.Column(
        "task_id",
        ID,
        sa.ForeignKey("tasks.task_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("position", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("start_us", sa.BigInteger, nullable=True),
    sa.Column("end_us", sa.BigInteger, nullable=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("outputs", sa.JSON, nullable=False),
)

events = sa.Table(
    "task_events",
    metadata,
    sa.Column(
        "task_id",
        ID,
        sa.ForeignKey("tasks.task_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("level", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(128), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("source", sa.String(64), nullable=False),
    sa.Column("timestamp_us", sa.BigInteger, nullable=False),
)

results = sa.Table(
    "task_results",
    metadata,
    sa.Column(
        "task_id",
        ID,
        sa.ForeignKey("tasks.task_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    sa.Column("data", sa.String(256), primary_key=True),
    # Insertion order: task_result[] lists resources in the order the task met them.
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
)
