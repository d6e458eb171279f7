"""The command line against a real server, and ``serve``'s own behaviour."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from xml.etree import ElementTree

import httpx
import pytest

from clustertasks import settings
from clustertasks.domain import states, wire
from clustertasks.storage import database, store
from tests.support import factories, signing
from tests.support.server import ServerProcess, clean_env

CLUSTER = "c0123456789abcdef0123456789abcdef"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clustertasks", *args],
        capture_output=True,
        text=True,
        env=clean_env(COLUMNS="200", **{**signing.SERVER_ENV, **(env or {})}),
        timeout=60,
        check=False,
    )


def test_task_get_in_every_format(
    read_server: ServerProcess, seeding_store: store.TaskStore
) -> None:
    view = factories.seed_task(seeding_store, cluster_id=CLUSTER)
    task_id = view.task.task_id

    as_json = cli("task", "get", task_id, "--endpoint", read_server.url, "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    body = json.loads(as_json.stdout)
    del body["requestId"]
    assert body == wire.task_document(seeding_store.describe_task(task_id))

    as_xml = cli("task", "get", task_id, "--endpoint", read_server.url, "-o", "xml")
    assert as_xml.returncode == 0, as_xml.stderr
    assert ElementTree.fromstring(as_xml.stdout.strip()).findtext("task_id") == task_id

    # The endpoint may come from the environment instead of a flag.
    table = cli("task", "get", task_id, env={"CLUSTERTASKS_ENDPOINT": read_server.url})
    assert table.returncode == 0, table.stderr
    for text in (task_id, "CreateInstances", "running", "nodes_total=2", "PrecheckStart"):
        assert text in table.stdout


def test_task_list(read_server: ServerProcess, seeding_store: store.TaskStore) -> None:
    made = [
        factories.seed_task(
            seeding_store,
            cluster_id=CLUSTER,
            created_us=factories.BASE_US + i,
            state=states.TaskState.SUCCESS,
        ).task.task_id
        for i in range(3)
    ]
    listed = cli("task", "list", "--cluster", CLUSTER, "--endpoint", read_server.url, "-o", "json")
    assert listed.returncode == 0, listed.stderr
    body = json.loads(listed.stdout)
    assert [t["task_id"] for t in body["tasks"]] == list(reversed(made))
    table = cli("task", "list", "-c", CLUSTER, "--endpoint", read_server.url, "--state", "success")
    assert table.returncode == 0, table.stderr
    assert all(task_id in table.stdout for task_id in made)
    assert "3 in all" in table.stdout


def test_errors_are_one_line_with_the_code(read_server: ServerProcess) -> None:
    missing = cli("task", "get", "T-5faa48fb31b6b8078d000006", "--endpoint", read_server.url)
    assert missing.returncode == 4
    line = missing.stderr.strip()
    assert "\n" not in line
    assert line.startswith(
        "Error: ErrorTaskNotFound: the task T-5faa48fb31b6b8078d000006 not found (request id "
    )
    assert "Traceback" not in missing.stderr

    unreachable = cli("task", "get", "T-1", "--endpoint", "http://127.0.0.1:1")
    assert unreachable.returncode == 4
    assert unreachable.stderr.startswith("Error: ConnectionFailed: cannot reach ")
    assert "Traceback" not in unreachable.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_serve_shuts_down_cleanly(tmp_path: Path, sig: int) -> None:
    db = f"sqlite:///{tmp_path / 'ct.db'}"
    process = ServerProcess(db, tmp_path).start()
    assert process.stop(sig) == 0
    assert "Finished server process" in process.log()


def test_serve_settings_from_environment(tmp_path: Path) -> None:
    db_file = tmp_path / "from-env.db"
    env = {"CLUSTERTASKS_DB_URL": f"sqlite:///{db_file}", "CLUSTERTASKS_TIMEZONE": "Asia/Shanghai"}
    with ServerProcess(None, tmp_path, "--no-executor", env=env) as process:
        seeded = database.Database.open(settings.StorageSettings(url=f"sqlite:///{db_file}"))
        task_id = factories.seed_task(seeded.tasks).task.task_id
        seeded.close()
        body = httpx.get(
            f"{process.url}/tasks/{task_id}", trust_env=False, auth=signing.auth()
        ).json()
        assert body["created"].endswith("+08:00")
        assert process.stop() == 0


def test_serve_defaults_to_sqlite_in_the_working_directory(tmp_path: Path) -> None:
    with ServerProcess(None, tmp_path) as process:
        assert httpx.get(f"{process.url}/healthz", trust_env=False).json()["database"] is True
        assert process.stop() == 0
    assert (tmp_path / "clustertasks.db").exists()


def test_bad_settings_are_one_clear_line(tmp_path: Path) -> None:
    bad_db = cli("serve", "--db", "mysql://x/y")
    assert bad_db.returncode == 4
    assert "unsupported database" in bad_db.stderr
    bad_tz = cli("serve", "--timezone", "Mars/Olympus")
    assert bad_tz.returncode == 4
    assert "unknown time zone" in bad_tz.stderr
    for result in (bad_db, bad_tz):
        assert "Traceback" not in result.stderr


def test_db_migrate(tmp_path: Path) -> None:
    db = tmp_path / "migrated.db"
    result = cli("db", "migrate", "--db", f"sqlite:///{db}")
    assert result.returncode == 0, result.stderr
    assert "up to date" in result.stderr
    assert db.exists()


def test_a_second_executor_on_one_database_is_refused(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'shared.db'}"
    with ServerProcess(db, tmp_path) as first:
        second = cli("serve", "--db", db, "--port", "1")
        assert second.returncode == 4
        assert "ExecutorLocked" in second.stderr
        assert "--no-executor" in second.stderr
        assert "Traceback" not in second.stderr
        with ServerProcess(db, tmp_path, "--no-executor") as api_only:
            health = httpx.get(f"{api_only.url}/healthz", trust_env=False)
            assert health.json()["status"] == "ok"
            assert api_only.stop() == 0
        assert first.stop() == 0
