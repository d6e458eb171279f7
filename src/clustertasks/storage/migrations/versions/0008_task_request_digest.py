"""Tasks remember a digest of the request that carried a client token.

A retry with the same ``client_token`` is compared with the first request over what the
client sent (normalised), never over the ids the server drew for it.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tasks", sa.Column("request_digest", sa.String(64), nullable=True))
