"""The emulator's controls: the simulated clock and fault rules.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sim_clock",
        sa.Column("clock_id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("speed", sa.Float, nullable=False),
        sa.Column("sim_us", sa.BigInteger, nullable=False),
        sa.Column("real_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("clock_id", name="pk_sim_clock"),
    )
    op.create_table(
        "sim_fault_rules",
        sa.Column("fault_id", sa.String(128), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("task_type", sa.String(64), nullable=True),
        sa.Column("stage", sa.String(128), nullable=True),
        sa.Column("instance_index", sa.Integer, nullable=True),
        sa.Column("node_name", sa.String(256), nullable=True),
        sa.Column("operation", sa.String(64), nullable=True),
        sa.Column("error_code", sa.String(128), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("latency_seconds", sa.Float, nullable=False),
        sa.Column("node_not_ready", sa.Boolean, nullable=False),
        sa.Column("count_total", sa.Integer, nullable=True),
        sa.Column("remaining", sa.Integer, nullable=True),
        sa.Column("probability", sa.Float, nullable=True),
        sa.Column("hits", sa.Integer, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("deleted_us", sa.BigInteger, nullable=True),
        sa.PrimaryKeyConstraint("fault_id", name="pk_sim_fault_rules"),
    )
    op.create_index("ix_sim_fault_rules_seq", "sim_fault_rules", ["seq"], unique=True)
