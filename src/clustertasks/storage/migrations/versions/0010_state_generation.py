"""The state's generation: bumped by every reset or import of the emulator's state.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "state_generation",
        sa.Column("row_id", sa.Integer, autoincrement=False, nullable=False),
        sa.Column("generation", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("row_id", name="pk_state_generation"),
    )
    op.bulk_insert(table, [{"row_id": 1, "generation": 0}])
