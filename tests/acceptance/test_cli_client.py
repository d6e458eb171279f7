"""The client commands against ``clustertasks serve --sim-speed 0``: configuration, every
command's happy path and an error path, output formats, and the exit statuses of --wait."""

from __future__ import annotations

import json
import re
import stat
import tomllib
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from alibabacloud_cs20151215 import models as cs_models

from clustertasks.domain import states
from clustertasks.storage import store
from tests.acceptance import cli as cli_support
from tests.acceptance import sdk
from tests.support import factories, signing
from tests.support.server import ServerProcess

OLD = "1.31.1-aliyun.1"
NEW = "1.32.1-aliyun.1"
VSWITCH = "vsw-hangzhou-h"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> cli_support.Cli:
    """The CLI with nothing configured, run in an empty working directory."""
    runner = cli_support.Cli(tmp_path / "cli")
    monkeypatch.chdir(runner.workdir)
    return runner


@pytest.fixture
def ct(cli: cli_support.Cli, server: ServerProcess) -> cli_support.Cli:
    """The CLI pointed at the server, with the test key, through the variables."""
    cli.env.update(cli_support.signed_env(server))
    return cli


def _cluster(ct: cli_support.Cli, *pools: str, version: str = NEW) -> str:
    args = ["cluster", "create", "--name", "demo", "--region", "cn-hangzhou"]
    args += ["--version", version, "--vswitch", VSWITCH]
    for pool in pools:
        args += ["--pool", pool]
    created = ct(*args, "--wait")
    assert created.exit_code == 0, created.stdout + created.stderr
    return cli_support.value(created.stdout, "cluster_id")


def _pools(ct: cli_support.Cli, cluster_id: str) -> dict[str, str]:
    """Pool name -> pool id."""
    body = ct.json("nodepool", "list", cluster_id)
    return {
        p["nodepool_info"]["name"]: p["nodepool_info"]["nodepool_id"] for p in body["nodepools"]
    }


def _nodes(ct: cli_support.Cli, cluster_id: str, *args: str) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = ct.json("node", "list", cluster_id, *args)["nodes"]
    return nodes


def _tasks(ct: cli_support.Cli, cluster_id: str) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = ct.json("task", "list", "-c", cluster_id, "--page-size", "100")[
        "tasks"
    ]
    return tasks


# -- configuration -----------------------------------------------------------------------------


def test_configure_saves_a_private_profile_that_later_commands_use(
    cli: cli_support.Cli, server: ServerProcess
) -> None:
    saved = cli(
        "configure",
        "--endpoint",
        server.endpoint,  # host:port, as the SDK takes it
        "--access-key-id",
        signing.KEY_ID,
        "--access-key-secret",
        signing.SECRET,
    )
    assert saved.exit_code == 0, saved.stderr
    assert str(cli.config_file) in saved.stderr
    assert stat.S_IMODE(cli.config_file.stat().st_mode) == 0o600
    written = tomllib.loads(cli.config_file.read_text())
    assert written == {
        "default": {
            "endpoint": server.url,
            "access_key_id": signing.KEY_ID,
            "access_key_secret": signing.SECRET,
        }
    }

    # Asked interactively; Enter keeps nothing here since profile "ci" is new.
    asked = cli("configure", "--profile", "ci", input="http://127.0.0.1:1\nci-ak\nci-secret\n")
    assert asked.exit_code == 0, asked.stderr
    assert "Endpoint" in asked.stdout
    assert "ci-secret" not in asked.stdout  # the secret is not echoed
    written = tomllib.loads(cli.config_file.read_text())
    assert written["ci"] == {
        "endpoint": "http://127.0.0.1:1",
        "access_key_id": "ci-ak",
        "access_key_secret": "ci-secret",
    }
    assert written["default"]["endpoint"] == server.url
    assert stat.S_IMODE(cli.config_file.stat().st_mode) == 0o600

    listed = cli("cluster", "list", "-o", "json")
    assert listed.exit_code == 0, listed.stderr
    assert json.loads(listed.stdout)["page_info"]["total_count"] == 0

    for chosen in (("--profile", "ci"), ()):
        env = {} if chosen else {"CLUSTERTASKS_PROFILE": "ci"}
        away = cli("cluster", "list", *chosen, env=env)
        assert away.exit_code == 4
        assert cli_support.error(away.stderr)["code"] == "ConnectionFailed"
        assert "http://127.0.0.1:1" in away.stderr

    missing = cli("cluster", "list", "--profile", "prod")
    assert missing.exit_code == 4
    assert "no profile 'prod'" in cli_support.error(missing.stderr)["message"]


def test_a_flag_beats_its_variable_which_beats_the_profile(
    cli: cli_support.Cli, server: ServerProcess
) -> None:
    saved = cli(
        "configure",
        "--endpoint",
        server.url,
        "--access-key-id",
        signing.KEY_ID,
        "--access-key-secret",
        "wrong-secret",
    )
    assert saved.exit_code == 0, saved.stderr

    from_profile = cli("cluster", "list")
    assert from_profile.exit_code == 4
    assert from_profile.stdout == ""
    refused = cli_support.error(from_profile.stderr)
    assert refused["code"] == "SignatureDoesNotMatch"
    assert re.fullmatch(r"[0-9A-F-]{36}", refused["rid"])
    assert "Traceback" not in from_profile.stderr

    right = {"CLUSTERTASKS_ACCESS_KEY_SECRET": signing.SECRET}
    assert cli("cluster", "list", env=right).exit_code == 0
    flagged = cli("cluster", "list", "--access-key-secret", "wrong-again", env=right)
    assert flagged.exit_code == 4
    assert cli_support.error(flagged.stderr)["code"] == "SignatureDoesNotMatch"

    away = {**right, "CLUSTERTASKS_ENDPOINT": "http://127.0.0.1:1"}
    unreachable = cli("cluster", "list", env=away)
    assert unreachable.exit_code == 4
    assert cli_support.error(unreachable.stderr) == {
        "code": "ConnectionFailed",
        "message": cli_support.error(unreachable.stderr)["message"],
        "rid": "",
    }
    assert "cannot reach http://127.0.0.1:1" in unreachable.stderr
    assert cli("cluster", "list", "--endpoint", server.url, env=away).exit_code == 0

    unknown = cli("cluster", "list", "--access-key-id", "nobody", env=right)
    assert unknown.exit_code == 4
    assert cli_support.error(unknown.stderr)["code"] == "InvalidAccessKeyId.NotFound"
    verbose = cli("cluster", "list", "--access-key-id", "nobody", "-v", env=right)
    assert verbose.exit_code == 4
    assert "Traceback" in verbose.stderr
    assert (
        verbose.stderr.strip().splitlines()[-1].startswith("Error: InvalidAccessKeyId.NotFound: ")
    )


def test_the_credentials_file_of_a_local_server_is_used_last(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    workdir = tmp_path / "served"
    workdir.mkdir()
    # No key from the environment: the server makes a first key and saves it here.
    no_key = {"CLUSTERTASKS_ACCESS_KEY_ID": "", "CLUSTERTASKS_ACCESS_KEY_SECRET": ""}
    with ServerProcess(db_url, workdir, "--sim-speed", "0", env=no_key) as served:
        saved = json.loads((workdir / "clustertasks.credentials").read_text())
        here = cli_support.Cli(workdir, {"CLUSTERTASKS_ENDPOINT": served.url})
        monkeypatch.chdir(workdir)
        assert here("cluster", "list").exit_code == 0
        # A key from anywhere else wins over the file.
        other = here(
            "cluster",
            "list",
            "--access-key-id",
            saved["access_key_id"],
            "--access-key-secret",
            "not-it",
        )
        assert cli_support.error(other.stderr)["code"] == "SignatureDoesNotMatch"

        elsewhere = cli_support.Cli(tmp_path / "elsewhere", {"CLUSTERTASKS_ENDPOINT": served.url})
        monkeypatch.chdir(elsewhere.workdir)
        unsigned = elsewhere("cluster", "list")
        assert unsigned.exit_code == 4
        assert cli_support.error(unsigned.stderr)["code"]
        assert served.stop() == 0


# -- clusters, node pools, nodes -----------------------------------------------------------------


def test_cluster_create_scale_and_list_in_every_format(ct: cli_support.Cli) -> None:
    created = ct(
        "cluster", "create", "--name", "demo", "--region", "cn-hangzhou", "--version", NEW,
        "--vswitch", VSWITCH, "--pool", "pool-a:ecs.g7.large:2", "--wait",
    )  # fmt: skip
    assert created.exit_code == 0, created.stdout + created.stderr
    cluster_id = cli_support.value(created.stdout, "cluster_id")
    create_task = cli_support.value(created.stdout, "task_id")
    assert re.fullmatch(r"c[0-9a-f]{32}", cluster_id)
    assert f"result: {create_task} success" in created.stdout

    listed = ct.json("cluster", "list")
    [cluster] = [c for c in listed["clusters"] if c["cluster_id"] == cluster_id]
    assert (cluster["name"], cluster["state"], cluster["size"]) == ("demo", "running", 2)
    table = ct("cluster", "list")
    assert cluster_id in table.stdout
    assert "running" in table.stdout

    detail = ct("cluster", "get", cluster_id, "-o", "yaml")
    assert detail.exit_code == 0, detail.stderr
    as_yaml = yaml.safe_load(detail.stdout)
    assert (as_yaml["cluster_id"], as_yaml["current_version"]) == (cluster_id, NEW)
    assert (as_yaml["cluster_type"], as_yaml["vswitch_ids"]) == ("ManagedKubernetes", [VSWITCH])
    assert as_yaml["request_id"]

    pool_id = _pools(ct, cluster_id)["pool-a"]
    scaled = ct("nodepool", "scale", cluster_id, pool_id, "--count", "2", "--wait", "-o", "json")
    assert scaled.exit_code == 0, scaled.stderr
    document = json.loads(scaled.stdout)
    assert set(document) == {"task_id", "request_id", "task"}
    task = document["task"]
    assert (task["task_id"], task["state"], task["task_type"]) == (
        document["task_id"],
        "success",
        "cluster_scaleout",
    )
    assert task["parameters"] == {"nodepool_id": pool_id, "count": 2, "desired_size": 4}
    # Progress went to stderr, leaving stdout to the document.
    assert f"result: {task['task_id']} success" in scaled.stderr

    nodes = _nodes(ct, cluster_id)
    assert len(nodes) == 4
    assert {n["nodepool_id"] for n in nodes} == {pool_id}
    assert {n["node_status"] for n in nodes} == {"Ready"}
    new_instances = {r["data"] for r in task["task_result"]}
    assert new_instances <= {n["instance_id"] for n in nodes}
    node_table = ct("node", "list", cluster_id, "--nodepool", pool_id)
    assert node_table.exit_code == 0, node_table.stderr
    assert all(n["node_name"] in node_table.stdout for n in nodes)
    node_yaml = yaml.safe_load(ct("node", "list", cluster_id, "-o", "yaml").stdout)
    assert node_yaml["page"]["total_count"] == 4

    pool = yaml.safe_load(ct("nodepool", "get", cluster_id, pool_id, "-o", "yaml").stdout)
    assert (pool["scaling_group"]["desired_size"], pool["status"]["total_nodes"]) == (4, 4)
    assert pool["status"]["state"] == "active"

    tasks = _tasks(ct, cluster_id)
    assert [t["task_type"] for t in tasks] == ["cluster_scaleout", "cluster_create"]
    assert ct.json("task", "get", task["task_id"])["state"] == "success"
    task_yaml = yaml.safe_load(ct("task", "get", task["task_id"], "-o", "yaml").stdout)
    assert set(task_yaml) >= {"task_id", "state", "stages", "events", "task_result", "error"}

    # Refused requests: one line each, exit 4, and nothing changes.
    for args, code, field in (
        (("--count", "500"), "QuotaExceeded.Node", cluster_id),
        (("--count", "501"), "InvalidParameter", "count"),
    ):
        refused = ct("nodepool", "scale", cluster_id, pool_id, *args)
        assert refused.exit_code == 4, refused.stdout
        line = cli_support.error(refused.stderr)
        assert line["code"] == code
        assert field in line["message"]
        assert line["rid"]
    missing = ct("cluster", "get", "c0123456789abcdef0123456789abcdef")
    assert missing.exit_code == 4
    assert cli_support.error(missing.stderr)["code"] == "ErrorClusterNotFound"
    assert len(_tasks(ct, cluster_id)) == 2
    assert len(_nodes(ct, cluster_id)) == 4


# Usage errors: the CLI sends nothing, so no database is reached.
@pytest.mark.one_backend
def test_usage_errors_exit_4(ct: cli_support.Cli) -> None:
    for args, says in (
        (("nodepool", "scale", "c1", "np1"), "exactly one of --count and --desired-size"),
        (("nodepool", "scale", "c1", "np1", "--count", "1", "--desired-size", "3"), "exactly one"),
        (("cluster", "get"), "Missing argument"),
        (("cluster", "list", "--bogus"), "No such option"),
        (("cluster", "list", "-o", "xml"), "xml"),
        (("cluster", "create", "--name", "x", "--region", "r", "--pool", "a:b"), "NAME:INSTANCE"),
        (("nodepool", "modify", "c1", "np1"), "nothing to change"),
        (("nodepool", "create", "c1", "--name", "p", "--label", "novalue"), "KEY=VALUE"),
        (("node", "list", "c1", "--state", "sleeping"), "sleeping"),
        (("task",), "Usage"),
    ):
        result = ct(*args)
        assert result.exit_code == 4, (args, result.stdout, result.stderr)
        assert says in result.stderr + result.stdout, (args, result.stderr)


def test_node_pool_operations(ct: cli_support.Cli) -> None:
    cluster_id = _cluster(ct, "pool-a:ecs.g7.large:3")
    pool_a = _pools(ct, cluster_id)["pool-a"]

    made = ct(
        "nodepool", "create", cluster_id, "--name", "pool-b", "--instance-type", "ecs.g7.large",
        "--count", "1", "--label", "team=infra", "--wait",
    )  # fmt: skip
    assert made.exit_code == 0, made.stdout + made.stderr
    pool_b = cli_support.value(made.stdout, "nodepool_id")
    assert _pools(ct, cluster_id) == {"pool-a": pool_a, "pool-b": pool_b}

    modified = ct(
        "nodepool", "modify", cluster_id, pool_b, "--desired-size", "2", "--label", "team=web",
        "--update-nodes", "--wait",
    )  # fmt: skip
    assert modified.exit_code == 0, modified.stdout + modified.stderr
    detail = ct.json("nodepool", "get", cluster_id, pool_b)
    assert detail["scaling_group"]["desired_size"] == 2
    assert detail["kubernetes_config"]["labels"] == [{"key": "team", "value": "web"}]
    assert len(_nodes(ct, cluster_id, "--nodepool", pool_b)) == 2

    leaving = _nodes(ct, cluster_id, "--nodepool", pool_a)[0]
    removed = ct(
        "nodepool", "remove-nodes", cluster_id, pool_a, "--node", leaving["node_name"],
        "--no-release", "--wait",
    )  # fmt: skip
    assert removed.exit_code == 0, removed.stdout + removed.stderr
    assert "kept running as a free ECS instance" in removed.stdout
    assert leaving["instance_id"] not in {
        n["instance_id"] for n in _nodes(ct, cluster_id, "--nodepool", pool_a)
    }

    attached = ct(
        "nodepool", "attach", cluster_id, pool_b, "--instance", leaving["instance_id"], "--wait"
    )
    assert attached.exit_code == 0, attached.stdout + attached.stderr
    in_b = _nodes(ct, cluster_id, "--nodepool", pool_b)
    assert leaving["instance_id"] in {n["instance_id"] for n in in_b}
    assert len(in_b) == 3

    repaired = ct(
        "nodepool", "repair", cluster_id, pool_b, "--operation", "restart.kubelet", "--wait"
    )
    assert repaired.exit_code == 0, repaired.stdout + repaired.stderr
    assert "resources: 3 (3 success)" in repaired.stdout

    busy = ct("nodepool", "delete", cluster_id, pool_b)
    assert busy.exit_code == 4
    refused = cli_support.error(busy.stderr)
    assert refused["code"] == "DependencyResourceExist"
    assert "force" in refused["message"]
    deleted = ct("nodepool", "delete", cluster_id, pool_b, "--force", "--wait")
    assert deleted.exit_code == 0, deleted.stdout + deleted.stderr
    assert list(_pools(ct, cluster_id)) == ["pool-a"]

    gone = ct("cluster", "delete", cluster_id, "--wait")
    assert gone.exit_code == 0, gone.stdout + gone.stderr
    assert cli_support.value(gone.stdout, "cluster_id") == cluster_id
    after = ct("cluster", "get", cluster_id)
    assert after.exit_code == 4
    assert cli_support.error(after.stderr)["code"] == "ErrorClusterNotFound"


# -- --wait and exit statuses ----------------------------------------------------------------------


def test_wait_exit_statuses_paused_resumed_canceled_failed(
    ct: cli_support.Cli, server: ServerProcess
) -> None:
    cluster_id = _cluster(ct, "pool-a:ecs.g7.large:4", "pool-b:ecs.g7.large:4", version=OLD)
    pools = _pools(ct, cluster_id)
    sdk_client = sdk.client(server)
    plane = sdk_client.upgrade_cluster(
        cluster_id, cs_models.UpgradeClusterRequest(next_version=NEW, master_only=True)
    ).body
    assert sdk.wait_task(sdk_client, plane.task_id).state == "success"

    upgrade = ("--version", NEW, "--max-parallelism", "2", "--pause-policy", "FirstBatch")
    paused = ct("nodepool", "upgrade", cluster_id, pools["pool-a"], *upgrade, "--wait")
    assert paused.exit_code == 3, paused.stdout + paused.stderr
    task_id = cli_support.value(paused.stdout, "task_id")
    assert "state: paused" in paused.stdout
    assert "progress UpgradeNodes: nodes 2/4" in paused.stdout
    assert f"clustertasks task resume {task_id} --wait" in paused.stdout

    resumed = ct("task", "resume", task_id, "--wait")
    assert resumed.exit_code == 0, resumed.stdout + resumed.stderr
    assert f"result: {task_id} success" in resumed.stdout
    assert "resources: 4 (4 success)" in resumed.stdout

    second = ct(
        "nodepool", "upgrade", cluster_id, pools["pool-b"], *upgrade, "--wait", "-o", "json"
    )
    assert second.exit_code == 3, second.stderr
    second_task = json.loads(second.stdout)["task"]
    assert second_task["state"] == "paused"
    assert (second_task["error"]["code"], second_task["error"]["message"]) == ("", "")

    canceled = ct("task", "cancel", second_task["task_id"], "--wait")
    assert canceled.exit_code == 2, canceled.stdout + canceled.stderr
    assert "state: canceled" in canceled.stdout
    watched = ct("task", "watch", second_task["task_id"], "-o", "json")
    assert watched.exit_code == 2
    assert json.loads(watched.stdout)["state"] == "canceled"
    again = ct("task", "resume", second_task["task_id"])
    assert again.exit_code == 4
    assert cli_support.error(again.stderr)["code"] == "ErrorTaskState"

    # A repair that cannot fix a node fails the task: exit 1, the error in the summary.
    sick = _nodes(ct, cluster_id, "--nodepool", pools["pool-a"])[0]["node_name"]
    for tail, body in (("status", {"node_status": "NotReady"}), ("faults", {"action": "repair"})):
        arranged = httpx.post(
            f"{server.url}/_emulator/clusters/{cluster_id}/nodes/{sick}/{tail}",
            json=body,
            auth=signing.auth(),
            trust_env=False,
        )
        assert arranged.status_code == 200, arranged.text
    failed = ct("nodepool", "repair", cluster_id, pools["pool-a"], "--wait")
    assert failed.exit_code == 1, failed.stdout + failed.stderr
    assert re.search(rf"^error: NodeRepairFailed: .*{re.escape(sick)}", failed.stdout, re.M)
    assert "resources: 4 (1 failed, 3 success)" in failed.stdout
    failed_id = cli_support.value(failed.stdout, "task_id")
    assert ct("task", "watch", failed_id).exit_code == 1


def test_pause_asks_a_running_task_to_pause(
    cli: cli_support.Cli, read_server: ServerProcess, seeding_store: store.TaskStore
) -> None:
    cli.env.update(cli_support.signed_env(read_server))
    upgrade = factories.seed_task(seeding_store, task_type="nodepool_upgrade")
    task_id = upgrade.task.task_id
    paused = cli("task", "pause", task_id)
    assert paused.exit_code == 0, paused.stderr
    assert cli_support.value(paused.stdout, "task_id") == task_id
    assert f"pause of {task_id} requested" in paused.stderr
    # Nothing runs the task here, so it stays running with the request pending.
    assert seeding_store.get_task(task_id).state is states.TaskState.RUNNING

    scale = factories.seed_task(seeding_store, created_us=factories.BASE_US + 1)
    refused = cli("task", "pause", scale.task.task_id)
    assert refused.exit_code == 4
    assert cli_support.error(refused.stderr)["code"] == "ErrorTaskNotSupported"


# -- a real process, its stdout a pipe ----------------------------------------------------------


def test_a_subprocess_prints_plain_lines_each_change_once(
    ct: cli_support.Cli, server: ServerProcess
) -> None:
    cluster_id = _cluster(ct, "pool-a:ecs.g7.large:1")
    pool_id = _pools(ct, cluster_id)["pool-a"]

    run = ct.subprocess("nodepool", "scale", cluster_id, pool_id, "--count", "3", "--wait")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "\x1b" not in run.stdout  # no terminal control codes in a log
    lines = run.stdout.splitlines()
    task_id = cli_support.value(run.stdout, "task_id")
    task = ct.json("task", "get", task_id)
    assert task["state"] == "success"
    assert lines[1] == f"task {task_id} cluster_scaleout on nodepool {pool_id}"
    events = [line for line in lines if line.startswith("event ")]
    assert events == [f"event {e['level']} {e['reason']}: {e['message']}" for e in task["events"]]
    for stage in task["stages"]:
        finals = [line for line in lines if line.startswith(f"stage {stage['name']}: success")]
        assert len(finals) == 1, lines
    assert [line for line in lines if line.startswith("progress JoinNodes")][-1] == (
        "progress JoinNodes: nodes 3/3"
    )
    assert lines[-3:] == [
        "state: success",
        lines[-2],
        "resources: 3 (3 success)",
    ]
    assert re.fullmatch(rf"result: {task_id} success after \d+s", lines[-2])

    usage = ct.subprocess("nodepool", "scale", cluster_id)
    assert usage.returncode == 4
    assert "Missing argument" in usage.stderr
    away = ct.subprocess("task", "watch", task_id, "--endpoint", "http://127.0.0.1:1")
    assert away.returncode == 4
    assert cli_support.error(away.stderr)["code"] == "ConnectionFailed"
