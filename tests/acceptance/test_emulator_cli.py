"""``clustertasks emulator`` against a real server, with the official SDK doing the ACK calls,
and the refusals that happen before anything is sent."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_cs20151215 import models as cs_models
from alibabacloud_cs20151215.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException

from tests.acceptance import cli as cli_support
from tests.acceptance import sdk
from tests.support.server import ServerProcess

# Nothing listens here: a command that got as far as connecting fails with "cannot reach".
NOWHERE = "http://127.0.0.1:1"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> cli_support.Cli:
    """The CLI with nothing configured, run in an empty working directory."""
    runner = cli_support.Cli(tmp_path / "cli")
    monkeypatch.chdir(runner.workdir)
    return runner


def plain(body: Any) -> dict[str, Any]:
    """The SDK's response body as a dict, without the request id (new on every call)."""
    found: dict[str, Any] = body.to_map()
    return {k: v for k, v in found.items() if k not in ("request_id", "requestId", "RequestId")}


def clusters(client: Client) -> dict[str, Any]:
    return plain(client.describe_clusters_v1(cs_models.DescribeClustersV1Request()).body)


def test_export_reset_import_through_the_cli(
    cli: cli_support.Cli, server: ServerProcess, tmp_path: Path
) -> None:
    cli.env.update(cli_support.signed_env(server))
    client = sdk.client(server)
    cluster_id, created = sdk.create_cluster(client, pool_size=2)
    assert created.state == "success"
    pool_id = (
        client.describe_cluster_node_pools(cluster_id, cs_models.DescribeClusterNodePoolsRequest())
        .body.nodepools[0]
        .nodepool_info.nodepool_id
    )
    scale = client.scale_cluster_node_pool(
        cluster_id, pool_id, cs_models.ScaleClusterNodePoolRequest(count=1)
    ).body
    scaled = sdk.wait_task(client, scale.task_id)
    assert scaled.state == "success"
    task_ids = [created.task_id, scaled.task_id]
    tasks_before = {t: plain(client.describe_task_info(t).body) for t in task_ids}
    clusters_before = clusters(client)
    assert [c["cluster_id"] for c in clusters_before["clusters"]] == [cluster_id]

    saved = tmp_path / "state.json"
    # The document is JSON whatever -o says; the summary goes to stderr.
    exported = cli("emulator", "state", "export", str(saved), "-o", "yaml")
    assert exported.exit_code == 0, exported.stderr
    assert exported.stdout == ""
    assert f"exported 2 tasks and 1 clusters to {saved}" in exported.stderr
    document = json.loads(saved.read_text(encoding="utf-8"))
    assert (document["format"], document["version"]) == ("clustertasks-state", 1)
    unwritable = cli("emulator", "state", "export", str(tmp_path / "missing" / "state.json"))
    assert unwritable.exit_code == 4
    error = cli_support.error(unwritable.stderr)
    assert (error["code"], "cannot write" in error["message"]) == ("InvalidConfiguration", True)
    # A real process with its stdout a pipe, as in `emulator state export > state.json`.
    to_stdout = cli.subprocess("emulator", "state", "export", "-o", "yaml")
    assert to_stdout.returncode == 0, to_stdout.stderr
    assert json.loads(to_stdout.stdout)["tables"] == document["tables"]

    counts = cli.json("emulator", "reset")
    assert (counts["tasks_canceled"], counts["tasks_deleted"], counts["clusters_deleted"]) == (
        0,
        2,
        1,
    )
    assert clusters(client)["clusters"] == []
    for task_id in task_ids:
        with pytest.raises(ClientException) as gone:
            client.describe_task_info(task_id)
        assert (gone.value.status_code, gone.value.code) == (404, "ErrorTaskNotFound")

    imported = cli("emulator", "state", "import", str(saved))
    assert imported.exit_code == 0, imported.stderr
    assert "imported 2 tasks and 1 clusters" in imported.stdout
    assert "replaced: 0 unfinished tasks stopped, 0 tasks and 0 clusters deleted" in (
        imported.stdout
    )
    assert clusters(client) == clusters_before
    for task_id in task_ids:
        assert plain(client.describe_task_info(task_id).body) == tasks_before[task_id]

    # From standard input, over what is there: the answer as JSON.
    again = cli(
        "emulator", "state", "import", "-", "-o", "json", input=saved.read_text(encoding="utf-8")
    )
    assert again.exit_code == 0, again.stderr
    answer = json.loads(again.stdout)
    assert (answer["tasks_deleted"], answer["clusters_deleted"]) == (2, 1)
    assert (answer["imported"]["tasks"], answer["imported"]["sim_clusters"]) == (2, 1)
    assert clusters(client) == clusters_before

    # A document the server refuses: one error line, exit 4, nothing changed.
    document["version"] = 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(document), encoding="utf-8")
    refused = cli("emulator", "state", "import", str(bad))
    assert refused.exit_code == 4
    assert refused.stdout == ""
    error = cli_support.error(refused.stderr)
    assert error["code"] == "InvalidParameter"
    assert error["message"].startswith("The parameter version is invalid")
    assert error["rid"]
    assert clusters(client) == clusters_before


def test_arguments_are_refused_before_anything_is_sent(
    cli: cli_support.Cli, tmp_path: Path
) -> None:
    refused = [
        (("faults", "delete"), "name one fault id, or --all"),
        (("faults", "delete", "f-1", "--all"), "name one fault id, or --all"),
        (("faults", "add", "--task-type", "cluster_scaleout"), "needs an effect"),
        (("faults", "add", "--message", "m", "--latency", "1"), "--message goes with"),
        (("clock", "advance", "0"), "positive"),
    ]
    for args, problem in refused:
        result = cli("emulator", *args, "--endpoint", NOWHERE)
        assert result.exit_code == 4, (args, result.stderr)
        error = cli_support.error(result.stderr)
        assert (error["code"], problem in error["message"]) == ("InvalidConfiguration", True)

    # The parser's usage errors: exit 4, as every usage error.
    for args in (
        ("clock", "set-mode", "sometimes"),
        ("faults", "add", "--error-code", "X", "--instance-index", "0"),
        ("faults", "add", "--error-code", "X", "--probability", "1.5"),
        ("faults", "list", "-o", "xml"),
        ("clock", "--endpoint", NOWHERE, "show"),  # the group takes no options
        ("state", "import"),
    ):
        result = cli("emulator", *args)
        assert result.exit_code == 4, (args, result.stdout, result.stderr)
    alone = cli("emulator", "clock")
    assert alone.exit_code == 4
    shown = alone.stdout + alone.stderr
    assert "Usage" in shown
    assert all(name in shown for name in ("show", "set-mode", "advance")), shown

    # Well-formed commands get as far as the network.
    for args in (
        ("reset",),
        ("state", "export"),
        ("clock", "show"),
        ("clock", "set-mode", "manual"),
        ("clock", "advance", "60"),
        ("faults", "list"),
        ("faults", "add", "--node-name", "n1", "--node-not-ready"),
        ("faults", "delete", "f-1"),
        ("faults", "delete", "--all"),
    ):
        result = cli("emulator", *args, "--endpoint", NOWHERE)
        assert result.exit_code == 4, (args, result.stderr)
        assert result.stdout == ""
        error = cli_support.error(result.stderr)
        assert error["code"] == "ConnectionFailed"
        assert error["message"].startswith(f"cannot reach {NOWHERE}")
    verbose = cli("emulator", "faults", "list", "-v", env={"CLUSTERTASKS_ENDPOINT": NOWHERE})
    assert verbose.exit_code == 4
    assert "Traceback" in verbose.stderr
    assert verbose.stderr.strip().splitlines()[-1].startswith("Error: ConnectionFailed: ")

    not_json = tmp_path / "state.json"
    not_json.write_text("{not json", encoding="utf-8")
    for file, problem in (
        (not_json, "is not a JSON document"),
        (tmp_path / "no.json", "cannot read"),
    ):
        result = cli("emulator", "state", "import", str(file), "--endpoint", NOWHERE)
        assert result.exit_code == 4, result.stderr
        error = cli_support.error(result.stderr)
        assert (error["code"], problem in error["message"]) == ("InvalidConfiguration", True)
