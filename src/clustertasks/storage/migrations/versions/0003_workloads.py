"""Workloads of the simulated cloud: pods, DaemonSets, Deployments, PodDisruptionBudgets.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = sa.String(128)
NAME = sa.String(253)


def _cluster_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["cluster_id"], ["sim_clusters.cluster_id"], name=f"fk_{table}_cluster_id_sim_clusters"
    )


def upgrade() -> None:
    op.create_table(
        "sim_workloads",
        sa.Column("cluster_id", ID, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("replicas", sa.Integer, nullable=False),
        sa.Column("cpu_millis", sa.Integer, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        _cluster_fk("sim_workloads"),
        sa.PrimaryKeyConstraint("cluster_id", "name", name="pk_sim_workloads"),
    )
    op.create_table(
        "sim_pods",
        sa.Column("cluster_id", ID, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("workload", NAME, nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("node_name", sa.String(256), nullable=False),
        sa.Column("phase", sa.String(16), nullable=False),
        sa.Column("cpu_millis", sa.Integer, nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        _cluster_fk("sim_pods"),
        sa.PrimaryKeyConstraint("cluster_id", "name", name="pk_sim_pods"),
    )
    op.create_index("ix_sim_pods_cluster_id_node_name", "sim_pods", ["cluster_id", "node_name"])
    op.create_table(
        "sim_pdbs",
        sa.Column("cluster_id", ID, nullable=False),
        sa.Column("name", NAME, nullable=False),
        sa.Column("selector", sa.JSON, nullable=False),
        sa.Column("min_available", sa.Integer, nullable=True),
        sa.Column("max_unavailable", sa.Integer, nullable=True),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        _cluster_fk("sim_pdbs"),
        sa.PrimaryKeyConstraint("cluster_id", "name", name="pk_sim_pdbs"),
    )
    op.create_table(
        "sim_faults",
        sa.Column("cluster_id", ID, nullable=False),
        sa.Column("node_name", sa.String(256), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        _cluster_fk("sim_faults"),
        sa.PrimaryKeyConstraint("cluster_id", "node_name", "action", name="pk_sim_faults"),
    )
