"""``clustertasks emulator`` against a real server, with the official SDK doing the ACK calls."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alibabacloud_cs20151215 import models as cs_models
from alibabacloud_cs20151215.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException
from typer.testing import CliRunner

from clustertasks.cli import main
from tests.acceptance import sdk
from tests.support import signing
from tests.support.server import ServerProcess, clean_env

# Nothing listens here: a command that got as far as connecting fails with "cannot reach".
NOWHERE = "http://127.0.0.1:1"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clustertasks", "emulator", *args],
        capture_output=True,
        text=True,
        env=clean_env(COLUMNS="200", **signing.SERVER_ENV),
        timeout=60,
        check=False,
    )


def plain(body: Any) -> dict[str, Any]:
    """The SDK's response body as a dict, without the request id (new on every call)."""
    found: dict[str, Any] = body.to_map()
    return {k: v for k, v in found.items() if k not in ("request_id", "requestId", "RequestId")}


def clusters(client: Client) -> dict[str, Any]:
    return plain(client.describe_clusters_v1(cs_models.DescribeClustersV1Request()).body)


def test_export_reset_import_through_the_cli(server: ServerProcess, tmp_path: Path) -> None:
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
    exported = cli("export", str(saved), "--endpoint", server.url)
    assert exported.returncode == 0, exported.stderr
    assert f"exported 2 tasks and 1 clusters to {saved}" in exported.stderr
    document = json.loads(saved.read_text(encoding="utf-8"))
    assert (document["format"], document["version"]) == ("clustertasks-state", 1)
    to_stdout = cli("export", "--endpoint", server.url)
    assert to_stdout.returncode == 0, to_stdout.stderr
    again = json.loads(to_stdout.stdout)
    assert again["tables"] == document["tables"]

    reset = cli("reset", "--endpoint", server.url, "-o", "json")
    assert reset.returncode == 0, reset.stderr
    counts = json.loads(reset.stdout)
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

    imported = cli("import", str(saved), "--endpoint", server.url)
    assert imported.returncode == 0, imported.stderr
    assert "imported 2 tasks and 1 clusters" in imported.stdout
    assert clusters(client) == clusters_before
    for task_id in task_ids:
        assert plain(client.describe_task_info(task_id).body) == tasks_before[task_id]

    # A document the server refuses: one line naming the problem, nothing changed.
    document["version"] = 2
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(document), encoding="utf-8")
    refused = cli("import", str(bad), "--endpoint", server.url)
    assert refused.returncode == 1
    assert "InvalidParameter (HTTP 400)" in refused.stderr
    assert "The parameter version is invalid" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert clusters(client) == clusters_before


def in_process(*args: str) -> tuple[int, str]:
    """The command line run in this process (as fast as a function call), output merged."""
    result = CliRunner().invoke(main.app, ["emulator", *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_arguments_are_refused_before_anything_is_sent(tmp_path: Path) -> None:
    refused = [
        (("faults", "delete"), "name one fault id, or --all"),
        (("faults", "delete", "f-1", "--all"), "name one fault id, or --all"),
        (("faults", "add", "--task-type", "cluster_scaleout"), "needs an effect"),
        (("faults", "add", "--message", "m", "--latency", "1"), "--message goes with"),
        (("clock", "advance", "0"), "positive"),
    ]
    for args, problem in refused:
        code, output = in_process(*args, "--endpoint", NOWHERE)
        assert (code, problem in output) == (4, True), (args, output)
    for args in (
        ("clock", "set-mode", "sometimes"),
        ("faults", "add", "--error-code", "X", "--instance-index", "0"),
        ("faults", "add", "--error-code", "X", "--probability", "1.5"),
    ):
        code, output = in_process(*args, "--endpoint", NOWHERE)
        assert code == 4, (args, output)  # the parser's usage error: exit 4, as every usage error
    # Well-formed commands get as far as the network.
    for args in (("faults", "delete", "f-1"), ("clock", "advance", "60"), ("clock",)):
        code, output = in_process(*args, "--endpoint", NOWHERE)
        assert (code, "cannot reach" in output) == (4, True), (args, output)
    # The clock group's own --endpoint applies to its commands.
    code, output = in_process("clock", "--endpoint", NOWHERE, "advance", "60")
    assert (code, "cannot reach http://127.0.0.1:1" in output) == (4, True), output

    not_json = tmp_path / "state.json"
    not_json.write_text("{not json", encoding="utf-8")
    code, output = in_process("import", str(not_json), "--endpoint", NOWHERE)
    assert (code, "is not a JSON document" in output) == (4, True), output
    code, output = in_process("import", str(tmp_path / "missing.json"), "--endpoint", NOWHERE)
    assert (code, "cannot read" in output) == (4, True), output
