"""The migrated schema is exactly the declared one, on both backends."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from clustertasks import settings
from clustertasks.domain import emulator
from clustertasks.emulator import fault_store
from clustertasks.storage import database, dialects, migrate, schema


def test_migrations_produce_the_declared_tables(empty_db_url: str) -> None:
    engine = dialects.create_engine(settings.StorageSettings(url=empty_db_url))
    try:
        migrate.upgrade(engine)
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(context, schema.metadata)
        assert diff == []
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert set(sa.inspect(engine).get_table_names()) == {
            "alembic_version",
            "tasks",
            "task_stages",
            "task_events",
            "task_results",
            "sim_clusters",
            "sim_nodepools",
            "sim_instances",
            "sim_nodes",
            "sim_stock",
            "sim_workloads",
            "sim_pods",
            "sim_pdbs",
            "sim_clock",
            "sim_fault_rules",
            "access_keys",
            "auth_nonces",
            "audit_log",
            "console_sessions",
            "state_generation",
        }
    finally:
        engine.dispose()


def test_opening_twice_is_a_no_op_and_keeps_data(empty_db_url: str) -> None:
    from tests.support import factories

    config = settings.StorageSettings(url=empty_db_url)
    first = database.Database.open(config)
    task_id = factories.seed_task(first.tasks).task.task_id
    first.close()
    second = database.Database.open(config)
    try:
        assert second.tasks.describe_task(task_id).task.task_id == task_id
    finally:
        second.close()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: object) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "wal.db"
    opened = database.Database.open(settings.StorageSettings(url=f"sqlite:///{path}"))
    try:
        with opened.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    finally:
        opened.close()


def test_node_faults_become_fault_rules(empty_db_url: str) -> None:
    """Migration 0006: every sim_faults row is an unlimited rule on the node and the
    action's operation, after the rules there were, failing as the node fault did."""
    engine = dialects.create_engine(settings.StorageSettings(url=empty_db_url))
    try:
        migrate.upgrade(engine, "0005")
        cluster = {
            "cluster_id": "c1",
            "name": "prod",
            "region_id": "cn-hangzhou",
            "state": "running",
            "current_version": "1.32.1-aliyun.1",
            "vpc_id": "vpc-1",
            "security_group_id": "sg-1",
            "node_quota": 100,
            "spec": {},
            "created_us": 1,
            "updated_us": 1,
        }
        faults = sa.table(
            "sim_faults",
            *(sa.column(name) for name in ("cluster_id", "node_name", "action", "message")),
            sa.column("created_us"),
        )
        rule: dict[str, object] = {c.name: None for c in schema.sim_fault_rules.columns}
        rule.update(
            fault_id="F-0",
            seq=1,
            error_code="X",
            message="",
            latency_seconds=0.0,
            node_not_ready=False,
            hits=0,
            created_us=1,
        )
        with engine.begin() as conn:
            conn.execute(sa.insert(schema.sim_clusters).values(**cluster))
            conn.execute(sa.insert(schema.sim_fault_rules).values(**rule))
            conn.execute(
                sa.insert(faults).values(
                    cluster_id="c1", node_name="n2", action="repair", message="disk", created_us=3
                )
            )
            conn.execute(
                sa.insert(faults).values(
                    cluster_id="c1", node_name="n1", action="upgrade", message="kl", created_us=2
                )
            )
        migrate.upgrade(engine)
        assert "sim_faults" not in sa.inspect(engine).get_table_names()
        stored = fault_store.FaultStore(engine).rules()
        assert stored[0].fault_id == "F-0"
        assert [(r.match, r.effect, r.count, r.probability) for r in stored[1:]] == [
            (
                emulator.FaultMatch(node_name="n1", operation="upgrade_node"),
                emulator.FaultEffect(error_code="NodeUpgradeFailed", message="node n1: kl"),
                None,
                None,
            ),
            (
                emulator.FaultMatch(node_name="n2", operation="repair_node"),
                emulator.FaultEffect(error_code="NodeRepairFailed", message="node n2: disk"),
                None,
                None,
            ),
        ]
        assert len({r.fault_id for r in stored}) == 3
    finally:
        engine.dispose()


def test_the_newest_file_name_is_alembics_head_and_every_file_is_named_after_its_revision() -> None:
    # Opening a migrated database skips Alembic by comparing with the newest file's name, so
    # the names must keep saying the revisions.
    assert migrate.newest_revision() == migrate.head_revision()
    for path in (migrate.MIGRATIONS / "versions").glob("[0-9]*.py"):
        assert f'revision = "{path.name[:4]}"' in path.read_text(), path.name


def test_a_database_one_revision_behind_is_brought_to_head(empty_db_url: str) -> None:
    engine = dialects.create_engine(settings.StorageSettings(url=empty_db_url))
    try:
        # The revision the newest migration revises.
        head = ScriptDirectory.from_config(migrate._config()).get_revision("head")
        assert head is not None
        previous = str(head.down_revision)
        migrate.upgrade(engine, previous)
        assert migrate.current_revision(engine) == previous
        migrate.upgrade(engine)
        assert migrate.current_revision(engine) == migrate.head_revision()
    finally:
        engine.dispose()
