"""The migrated schema is exactly the declared one, on both backends."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from clustertasks import settings
from clustertasks.storage import dialects, migrate, schema, store


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
            "sim_faults",
            "sim_clock",
            "sim_fault_rules",
            "access_keys",
            "auth_nonces",
            "audit_log",
        }
    finally:
        engine.dispose()


def test_opening_twice_is_a_no_op_and_keeps_data(empty_db_url: str) -> None:
    from tests.support import factories

    config = settings.StorageSettings(url=empty_db_url)
    first = store.TaskStore.open(config)
    task_id = factories.seed_task(first).task.task_id
    first.close()
    second = store.TaskStore.open(config)
    try:
        assert second.describe_task(task_id).task.task_id == task_id
    finally:
        second.close()


def test_sqlite_runs_in_wal_mode_with_foreign_keys(tmp_path: object) -> None:
    import pathlib

    path = pathlib.Path(str(tmp_path)) / "wal.db"
    opened = store.TaskStore.open(settings.StorageSettings(url=f"sqlite:///{path}"))
    try:
        with opened._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 5000
    finally:
        opened.close()
