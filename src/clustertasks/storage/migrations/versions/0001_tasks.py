"""Tasks, their stages, events and results.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

ID = sa.String(128)


def upgrade() -> None:
    op.create_table(
        "tasks",
        sa.Column("task_id", ID, nullable=False),
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
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("event_count", sa.Integer, nullable=False),
        sa.Column("result_count", sa.Integer, nullable=False),
        sa.Column("requested_action", sa.String(16), nullable=True),
        sa.PrimaryKeyConstraint("task_id", name="pk_tasks"),
    )
    op.create_index(
        "ix_tasks_cluster_id_created_us_task_id", "tasks", ["cluster_id", "created_us", "task_id"]
    )
    op.create_index("ix_tasks_state", "tasks", ["state"])
    op.create_index("ix_tasks_client_token", "tasks", ["client_token"], unique=True)

    op.create_table(
        "task_stages",
        sa.Column("task_id", ID, nullable=False),
        sa.Column("position", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("start_us", sa.BigInteger, nullable=True),
        sa.Column("end_us", sa.BigInteger, nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("outputs", sa.JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.task_id"], name="fk_task_stages_task_id_tasks", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("task_id", "position", name="pk_task_stages"),
    )
    op.create_table(
        "task_events",
        sa.Column("task_id", ID, nullable=False),
        sa.Column("seq", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("reason", sa.String(128), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("source", sa.String(64), nullable=False),
        sa.Column("timestamp_us", sa.BigInteger, nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.task_id"], name="fk_task_events_task_id_tasks", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("task_id", "seq", name="pk_task_events"),
    )
    op.create_table(
        "task_results",
        sa.Column("task_id", ID, nullable=False),
        sa.Column("data", sa.String(256), nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.task_id"], name="fk_task_results_task_id_tasks", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("task_id", "data", name="pk_task_results"),
    )
