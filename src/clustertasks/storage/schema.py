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
    # SHA-256 (hex) of the normalised request that carried ``client_token``: what a retry
    # with the token is compared with.
    sa.Column("request_digest", sa.String(64), nullable=True),
    # Bumped by every change to the task or its parts: the document's version (ETags, waits).
    sa.Column("version", sa.BigInteger, nullable=False),
    # Number of events appended so far; the next event's seq is this plus one.
    sa.Column("event_count", sa.Integer, nullable=False),
    # Number of resources in task_result[]; a new resource takes this as its position.
    sa.Column("result_count", sa.Integer, nullable=False),
    # A pause or cancel asked for by a client and not yet acted on by the engine.
    sa.Column("requested_action", sa.String(16), nullable=True),
    # The W3C traceparent of the submitting request: the task's runs continue its trace.
    sa.Column("trace_parent", sa.String(64), nullable=True),
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

# --- the simulated cloud (clustertasks.providers.sim) ---------------------------------------
# Rows an action creates carry the caller's idempotency key: a repeated call finds the first
# result by it instead of creating a second one. Keys are unique where present; NULL means
# "created without a key" and never clashes.

KEY = sa.String(256)

sim_clusters = sa.Table(
    "sim_clusters",
    metadata,
    sa.Column("cluster_id", ID, primary_key=True),
    sa.Column("idempotency_key", KEY, nullable=True),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("region_id", sa.String(64), nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("current_version", sa.String(64), nullable=False),
    sa.Column("vpc_id", ID, nullable=False),
    sa.Column("security_group_id", ID, nullable=False),
    sa.Column("node_quota", sa.Integer, nullable=False),
    # The normalised ClusterSpec: read back whole, never queried by field.
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
    sa.Index(None, "idempotency_key", unique=True),
    sa.Index(None, "state", "created_us"),
)

sim_nodepools = sa.Table(
    "sim_nodepools",
    metadata,
    sa.Column("nodepool_id", ID, primary_key=True),
    sa.Column("cluster_id", ID, sa.ForeignKey("sim_clusters.cluster_id"), nullable=False),
    sa.Column("idempotency_key", KEY, nullable=True),
    sa.Column("name", sa.String(256), nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("desired_size", sa.Integer, nullable=False),
    sa.Column("kubernetes_version", sa.String(64), nullable=False),
    sa.Column("scaling_group_id", ID, nullable=False),
    sa.Column("spec", sa.JSON, nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
    # Deleted pools stay for history and so that a repeated delete is a no-op.
    sa.Column("deleted_us", sa.BigInteger, nullable=True),
    sa.Index(None, "idempotency_key", unique=True),
    sa.Index(None, "cluster_id", "created_us"),
)

sim_instances = sa.Table(
    "sim_instances",
    metadata,
    sa.Column("instance_id", ID, primary_key=True),
    sa.Column("cluster_id", ID, sa.ForeignKey("sim_clusters.cluster_id"), nullable=False),
    # "" for an instance outside any pool (legacy scale-out, detached), hence no foreign key.
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
    # Released instances stay for history; listings skip them.
    sa.Column("released_us", sa.BigInteger, nullable=True),
    sa.Index(None, "idempotency_key", unique=True),
    sa.Index(None, "cluster_id", "nodepool_id", "created_us"),
    # An address is never handed out twice in one VPC, not even after a release, so a node
    # name (<region>.<ip>) in an old task's events keeps naming one machine.
    sa.Index(None, "vpc_id", "ip_address", unique=True),
)

sim_nodes = sa.Table(
    "sim_nodes",
    metadata,
    sa.Column("cluster_id", ID, sa.ForeignKey("sim_clusters.cluster_id"), primary_key=True),
    sa.Column("node_name", sa.String(256), primary_key=True),
    sa.Column("instance_id", ID, sa.ForeignKey("sim_instances.instance_id"), nullable=False),
    sa.Column("nodepool_id", ID, nullable=False),
    sa.Column("idempotency_key", KEY, nullable=True),
    sa.Column("node_status", sa.String(16), nullable=False),
    sa.Column("schedulable", sa.Boolean, nullable=False),
    sa.Column("kubelet_version", sa.String(64), nullable=False),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("taints", sa.JSON, nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
    sa.Index(None, "idempotency_key", unique=True),
    # One node per instance: a second join of the same instance finds the first node.
    sa.Index(None, "instance_id", unique=True),
    sa.Index(None, "cluster_id", "nodepool_id"),
)

sim_stock = sa.Table(
    "sim_stock",
    metadata,
    # Only (type, zone) pairs that were used or set have a row; others have the catalogue's
    # default stock.
    sa.Column("instance_type", sa.String(64), primary_key=True),
    sa.Column("zone_id", sa.String(64), primary_key=True),
    sa.Column("available", sa.Integer, nullable=False),
)

# --- workloads of the simulated cloud (migration 0003) ---------------------------------------
# Pods, the Deployments and DaemonSets they come from, the PodDisruptionBudgets that guard
# them, and fault rules on nodes: what a drain, an upgrade or a repair acts on. Kubernetes
# names are unique per cluster (one namespace is simulated).

sim_workloads = sa.Table(
    "sim_workloads",
    metadata,
    sa.Column("cluster_id", ID, sa.ForeignKey("sim_clusters.cluster_id"), primary_key=True),
    sa.Column("name", sa.String(253), primary_key=True),
    sa.Column("kind", sa.String(32), nullable=False),
    sa.Column("replicas", sa.Integer, nullable=False),
    sa.Column("cpu_millis", sa.Integer, nullable=False),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
)

sim_pods = sa.Table(
    "sim_pods",
    metadata,
    sa.Column("cluster_id", ID, sa.ForeignKey("sim_clusters.cluster_id"), primary_key=True),
    sa.Column("name", sa.String(253), primary_key=True),
    sa.Column("workload", sa.String(253), nullable=False),
    sa.Column("kind", sa.String(32), nullable=False),
    # "" while the pod is Pending; no foreign key: the node may leave before the pod moves.
    sa.Column("node_name", sa.String(256), nullable=False),
    sa.Column("phase", sa.String(16), nullable=False),
    sa.Column("cpu_millis", sa.Integer, nullable=False),
    sa.Column("labels", sa.JSON, nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("updated_us", sa.BigInteger, nullable=False),
    sa.Index(None, "cluster_id", "node_name"),
)

sim_pdbs = sa.Table(
    "sim_pdbs",
    metadata,
    sa.Column("cluster_id", ID, sa.ForeignKey("sim_clusters.cluster_id"), primary_key=True),
    sa.Column("name", sa.String(253), primary_key=True),
    sa.Column("selector", sa.JSON, nullable=False),
    sa.Column("min_available", sa.Integer, nullable=True),
    sa.Column("max_unavailable", sa.Integer, nullable=True),
    sa.Column("created_us", sa.BigInteger, nullable=False),
)

# -- authentication (migration 0004) ---------------------------------------------------------

access_keys = sa.Table(
    "access_keys",
    metadata,
    sa.Column("access_key_id", sa.String(128), primary_key=True),
    # HMAC is symmetric: verifying a signature needs the secret itself, not a hash of it.
    sa.Column("secret", sa.String(128), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("name", sa.String(128), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
)

auth_nonces = sa.Table(
    "auth_nonces",
    metadata,
    # Not a foreign key: deleting a key must not make its captured requests replayable, and
    # the rows expire on their own within the freshness window.
    sa.Column("access_key_id", sa.String(128), primary_key=True),
    sa.Column("nonce", sa.String(128), primary_key=True),
    sa.Column("expires_us", sa.BigInteger, nullable=False),
    sa.Index(None, "expires_us"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("entry_id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("time_us", sa.BigInteger, nullable=False),
    sa.Column("access_key_id", sa.String(128), nullable=False),
    sa.Column("action", sa.String(128), nullable=False),
    sa.Column("method", sa.String(16), nullable=False),
    sa.Column("target", sa.String(1024), nullable=False),
    sa.Column("request_id", sa.String(64), nullable=False),
    sa.Column("status", sa.Integer, nullable=False),
    # "" when the request succeeded, else the error code it was answered with.
    sa.Column("outcome", sa.String(128), nullable=False),
    sa.Index(None, "time_us"),
)

# -- the web console (migration 0009) ------------------------------------------------------

console_sessions = sa.Table(
    "console_sessions",
    metadata,
    # SHA-256 (hex) of the cookie's random token: the table alone lets nobody sign in.
    sa.Column("token_hash", sa.String(64), primary_key=True),
    # Not a foreign key: the key is looked up on every request, so a deleted or disabled
    # key ends its sessions at once, and its rows expire on their own.
    sa.Column("access_key_id", sa.String(128), nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    sa.Column("expires_us", sa.BigInteger, nullable=False),
    sa.Index(None, "expires_us"),
)

# -- the emulator's controls (migration 0005) ------------------------------------------------

sim_clock = sa.Table(
    "sim_clock",
    metadata,
    # One row: the simulated clock's mode and speed, and the simulated time it showed at a
    # wall-clock instant (domain.emulator.ClockState).
    sa.Column("clock_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("speed", sa.Float, nullable=False),
    sa.Column("sim_us", sa.BigInteger, nullable=False),
    sa.Column("real_us", sa.BigInteger, nullable=False),
)

sim_fault_rules = sa.Table(
    "sim_fault_rules",
    metadata,
    sa.Column("fault_id", ID, primary_key=True),
    # Creation order (1, 2, …): rules are tried in this order.
    sa.Column("seq", sa.Integer, nullable=False),
    # The match: NULL matches anything.
    sa.Column("task_type", sa.String(64), nullable=True),
    sa.Column("stage", sa.String(128), nullable=True),
    sa.Column("instance_index", sa.Integer, nullable=True),
    sa.Column("node_name", sa.String(256), nullable=True),
    sa.Column("operation", sa.String(64), nullable=True),
    # The effect.
    sa.Column("error_code", sa.String(128), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("latency_seconds", sa.Float, nullable=False),
    sa.Column("node_not_ready", sa.Boolean, nullable=False),
    # Firings allowed and left (NULL: unlimited); a firing takes one, atomically.
    sa.Column("count_total", sa.Integer, nullable=True),
    sa.Column("remaining", sa.Integer, nullable=True),
    sa.Column("probability", sa.Float, nullable=True),
    sa.Column("hits", sa.Integer, nullable=False),
    sa.Column("created_us", sa.BigInteger, nullable=False),
    # Removed rules stay, so that seeded fault ids keep counting instead of repeating.
    sa.Column("deleted_us", sa.BigInteger, nullable=True),
    sa.Index(None, "seq", unique=True),
)

# -- the state's generation (migration 0010) -----------------------------------------------

# One row (``row_id`` 1). A reset or an import of the emulator's state bumps ``generation``
# in its own transaction: ids and task versions start again then (with ``--sim-seed`` a
# task id can come back at the same version with other content), so whatever an API process
# kept by (task id, version) is usable only for the generation it was read in. Readers
# read it with the task's version, in the same statement.
state_generation = sa.Table(
    "state_generation",
    metadata,
    sa.Column("row_id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("generation", sa.BigInteger, nullable=False),
)
