"""The simulated cloud: clusters, node pools, instances, nodes and stock.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = sa.String(128)
KEY = sa.String(256)


def upgrade() -> None:
    op.create_table(
        "sim_clusters",
        sa.Column("cluster_id", ID, nullable=False),
        sa.Column("idempotency_key", KEY, nullable=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("region_id", sa.String(64), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("current_version", sa.String(64), nullable=False),
        sa.Column("vpc_id", ID, nullable=False),
        sa.Column("security_group_id", ID, nullable=False),
        sa.Column("node_quota", sa.Integer, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("cluster_id", name="pk_sim_clusters"),
    )
    op.create_index(
        "ix_sim_clusters_idempotency_key", "sim_clusters", ["idempotency_key"], unique=True
    )
    op.create_index("ix_sim_clusters_state_created_us", "sim_clusters", ["state", "created_us"])

    op.create_table(
        "sim_nodepools",
        sa.Column("nodepool_id", ID, nullable=False),
        sa.Column("cluster_id", ID, nullable=False),
        sa.Column("idempotency_key", KEY, nullable=True),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("desired_size", sa.Integer, nullable=False),
        sa.Column("kubernetes_version", sa.String(64), nullable=False),
        sa.Column("scaling_group_id", ID, nullable=False),
        sa.Column("spec", sa.JSON, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.Column("deleted_us", sa.BigInteger, nullable=True),
        sa.ForeignKeyConstraint(
            ["cluster_id"],
            ["sim_clusters.cluster_id"],
            name="fk_sim_nodepools_cluster_id_sim_clusters",
        ),
        sa.PrimaryKeyConstraint("nodepool_id", name="pk_sim_nodepools"),
    )
    op.create_index(
        "ix_sim_nodepools_idempotency_key", "sim_nodepools", ["idempotency_key"], unique=True
    )
    op.create_index(
        "ix_sim_nodepools_cluster_id_created_us", "sim_nodepools", ["cluster_id", "created_us"]
    )

    op.create_table(
        "sim_instances",
        sa.Column("instance_id", ID, nullable=False),
        sa.Column("cluster_id", ID, nullable=False),
        sa.Column("nodepool_id", ID, nullable=False),
        sa.Column("idempotency_key", KEY, nullable=True),
        sa.Column("vpc_id", ID, nullable=False),
        sa.Column("instance_type", sa.String(64), nullable=False),
        sa.Column("zone_id", sa.String(64), nullable=False),
        sa.Column("vswitch_id", ID, nullable=False),
        sa.Column("ip_address", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("image_id", sa.String(256), nullable=False),
        sa.Column("instance_charge_type", sa.String(32), nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.Column("released_us", sa.BigInteger, nullable=True),
        sa.ForeignKeyConstraint(
            ["cluster_id"],
            ["sim_clusters.cluster_id"],
            name="fk_sim_instances_cluster_id_sim_clusters",
        ),
        sa.PrimaryKeyConstraint("instance_id", name="pk_sim_instances"),
    )
    op.create_index(
        "ix_sim_instances_idempotency_key", "sim_instances", ["idempotency_key"], unique=True
    )
    op.create_index(
        "ix_sim_instances_cluster_id_nodepool_id_created_us",
        "sim_instances",
        ["cluster_id", "nodepool_id", "created_us"],
    )
    op.create_index(
        "ix_sim_instances_vpc_id_ip_address",
        "sim_instances",
        ["vpc_id", "ip_address"],
        unique=True,
    )

    op.create_table(
        "sim_nodes",
        sa.Column("cluster_id", ID, nullable=False),
        sa.Column("node_name", sa.String(256), nullable=False),
        sa.Column("instance_id", ID, nullable=False),
        sa.Column("nodepool_id", ID, nullable=False),
        sa.Column("idempotency_key", KEY, nullable=True),
        sa.Column("node_status", sa.String(16), nullable=False),
        sa.Column("schedulable", sa.Boolean, nullable=False),
        sa.Column("kubelet_version", sa.String(64), nullable=False),
        sa.Column("labels", sa.JSON, nullable=False),
        sa.Column("taints", sa.JSON, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.ForeignKeyConstraint(
            ["cluster_id"],
            ["sim_clusters.cluster_id"],
            name="fk_sim_nodes_cluster_id_sim_clusters",
        ),
        sa.ForeignKeyConstraint(
            ["instance_id"],
            ["sim_instances.instance_id"],
            name="fk_sim_nodes_instance_id_sim_instances",
        ),
        sa.PrimaryKeyConstraint("cluster_id", "node_name", name="pk_sim_nodes"),
    )
    op.create_index("ix_sim_nodes_idempotency_key", "sim_nodes", ["idempotency_key"], unique=True)
    op.create_index("ix_sim_nodes_instance_id", "sim_nodes", ["instance_id"], unique=True)
    op.create_index(
        "ix_sim_nodes_cluster_id_nodepool_id", "sim_nodes", ["cluster_id", "nodepool_id"]
    )

    op.create_table(
        "sim_stock",
        sa.Column("instance_type", sa.String(64), nullable=False),
        sa.Column("zone_id", sa.String(64), nullable=False),
        sa.Column("available", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("instance_type", "zone_id", name="pk_sim_stock"),
    )


def downgrade() -> None:
    for table in ("sim_stock", "sim_nodes", "sim_instances", "sim_nodepools", "sim_clusters"):
        op.drop_table(table)
