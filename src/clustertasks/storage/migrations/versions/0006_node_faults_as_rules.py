"""Node faults become fault rules: ``sim_faults`` rows move to ``sim_fault_rules``.

A node fault (``upgrade`` or ``repair`` fails on a node) is now a rule matching the node and
the action's provider operation, unlimited, failing with the same code and message as
before. The old table goes.

The values are written out here, not imported: a migration must do the same thing for ever,
whatever the code around it becomes.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

# action -> (operation, error code)
_ACTIONS = {
    "upgrade": ("upgrade_node", "NodeUpgradeFailed"),
    "repair": ("repair_node", "NodeRepairFailed"),
}

_faults = sa.table(
    "sim_faults",
    sa.column("cluster_id", sa.String),
    sa.column("node_name", sa.String),
    sa.column("action", sa.String),
    sa.column("message", sa.Text),
    sa.column("created_us", sa.BigInteger),
)
_rules = sa.table(
    "sim_fault_rules",
    sa.column("fault_id", sa.String),
    sa.column("seq", sa.Integer),
    sa.column("task_type", sa.String),
    sa.column("stage", sa.String),
    sa.column("instance_index", sa.Integer),
    sa.column("node_name", sa.String),
    sa.column("operation", sa.String),
    sa.column("error_code", sa.String),
    sa.column("message", sa.Text),
    sa.column("latency_seconds", sa.Float),
    sa.column("node_not_ready", sa.Boolean),
    sa.column("count_total", sa.Integer),
    sa.column("remaining", sa.Integer),
    sa.column("probability", sa.Float),
    sa.column("hits", sa.Integer),
    sa.column("created_us", sa.BigInteger),
    sa.column("deleted_us", sa.BigInteger),
)


def fault_id(cluster_id: str, node_name: str, action: str) -> str:
    """Derived from what the row was keyed by: never one a seeded generator issues
    (those hash the seed, ``fault`` and a sequence number)."""
    digest = hashlib.sha256(f"sim_faults:{cluster_id}:{node_name}:{action}".encode())
    return "F-" + digest.hexdigest()[:16]


def upgrade() -> None:
    conn = op.get_bind()
    found = conn.execute(
        sa.select(_faults).order_by(
            _faults.c.created_us, _faults.c.cluster_id, _faults.c.node_name, _faults.c.action
        )
    ).mappings()
    seq = int(conn.execute(sa.select(sa.func.max(_rules.c.seq))).scalar() or 0)
    rules = []
    for row in found:
        if row["action"] not in _ACTIONS:
            continue  # never written: the API refused any other action
        operation, code = _ACTIONS[row["action"]]
        seq += 1
        rules.append(
            {
                "fault_id": fault_id(row["cluster_id"], row["node_name"], row["action"]),
                "seq": seq,
                "task_type": None,
                "stage": None,
                "instance_index": None,
                "node_name": row["node_name"],
                "operation": operation,
                "error_code": code,
                "message": f"node {row['node_name']}: {row['message']}",
                "latency_seconds": 0.0,
                "node_not_ready": False,
                "count_total": None,
                "remaining": None,
                "probability": None,
                "hits": 0,
                "created_us": row["created_us"],
                "deleted_us": None,
            }
        )
    if rules:
        op.bulk_insert(_rules, rules)
    op.drop_table("sim_faults")
