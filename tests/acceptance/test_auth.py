"""AccessKeys, signatures and abuse resistance, seen by the official SDK over real HTTP."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alibabacloud_cs20151215 import models as cs_models
from alibabacloud_tea_openapi.exceptions import ClientException, ThrottlingException
from darabonba.runtime import RuntimeOptions

from clustertasks.domain import signing
from tests.acceptance import sdk
from tests.support import signing as test_signing
from tests.support.server import ServerProcess, clean_env

CLUSTER = "c0123456789abcdef0123456789abcdef"


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "clustertasks", *args],
        capture_output=True,
        text=True,
        env=clean_env(COLUMNS="200"),
        cwd=cwd,
        timeout=60,
        check=False,
    )


def refused(call: Any, code: str, status: int) -> ClientException:
    with pytest.raises(ClientException) as caught:
        call()
    assert caught.value.code == code, caught.value.message
    assert caught.value.status_code == status
    return caught.value


def test_a_valid_key_works_with_both_schemes_and_async(server: ServerProcess) -> None:
    default = sdk.client(server)
    cluster_id, created = sdk.create_cluster(default, pool_size=1)
    assert created.state == "success"

    legacy = sdk.client(server, signature_algorithm="v2")
    assert legacy.describe_cluster_detail(cluster_id).body.cluster_id == cluster_id
    pool_id = (
        legacy.describe_cluster_node_pools(cluster_id, cs_models.DescribeClusterNodePoolsRequest())
        .body.nodepools[0]
        .nodepool_info.nodepool_id
    )
    # A POST with a JSON body under the legacy scheme (which does not sign the body).
    scale = legacy.scale_cluster_node_pool(
        cluster_id, pool_id, cs_models.ScaleClusterNodePoolRequest(count=1)
    )
    assert sdk.wait_task(legacy, scale.body.task_id).state == "success"

    async def read_async(client: Any) -> Any:
        return await client.describe_task_info_async(scale.body.task_id)

    # aiohttp adds an unsigned Content-Type to body-less requests: harmless for ACS3, and
    # tolerated for the legacy scheme, which signs Content-Type.
    for client in (default, legacy):
        assert asyncio.run(read_async(client)).body.task_id == scale.body.task_id


def test_gateway_errors_reach_the_sdk_as_client_exceptions(server: ServerProcess) -> None:
    for algorithm in (None, "v2"):
        wrong = sdk.client(server, algorithm, access_key_secret="not-the-secret")
        error = refused(lambda c=wrong: c.describe_task_info("T-1"), "SignatureDoesNotMatch", 400)
        assert "string to sign" in error.message
        assert "not-the-secret" not in error.message
        assert "test-secret" not in error.message
        stranger = sdk.client(server, algorithm, access_key_id="nobody")
        refused(lambda c=stranger: c.describe_task_info("T-1"), "InvalidAccessKeyId.NotFound", 404)

    client = sdk.client(server)
    runtime = RuntimeOptions()
    same_nonce = {"x-acs-signature-nonce": "f00dfeedf00dfeedf00dfeedf00dfeed"}
    refused(
        lambda: client.describe_task_info_with_options("T-1", same_nonce, runtime),
        "ErrorTaskNotFound",
        404,
    )
    refused(
        lambda: client.describe_task_info_with_options("T-1", same_nonce, runtime),
        "SignatureNonceUsed",
        400,
    )
    stale = {"x-acs-date": "2020-01-01T00:00:00Z"}
    refused(
        lambda: client.describe_task_info_with_options("T-1", stale, runtime),
        "InvalidTimeStamp.Expired",
        400,
    )
    legacy = sdk.client(server, "v2")
    old_date = {"date": "Wed, 01 Jan 2020 00:00:00 GMT"}
    refused(
        lambda: legacy.describe_task_info_with_options("T-1", old_date, runtime),
        "InvalidTimeStamp.Expired",
        400,
    )


@pytest.fixture
def keys_server(db_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    """A server of its own: AccessKeys and the audit log are what an emulator reset keeps,
    so a shared server would show other tests' keys and requests."""
    process = ServerProcess(db_url, tmp_path, "--sim-speed", "0").start()
    try:
        yield process
    finally:
        assert process.stop() == 0, process.log()


def test_keys_cli_round_trip_and_a_readonly_key(keys_server: ServerProcess, db_url: str) -> None:
    server = keys_server
    admin = sdk.client(server)
    cluster_id, _ = sdk.create_cluster(admin, pool_size=1)

    made = cli("keys", "create", "--role", "readonly", "--name", "ci", "--db", db_url, "-o", "json")
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)
    assert set(key) >= {"access_key_id", "access_key_secret", "role"}
    assert key["role"] == "readonly"

    listed = cli("keys", "list", "--db", db_url, "-o", "json")
    assert listed.returncode == 0, listed.stderr
    rows = {row["access_key_id"]: row for row in json.loads(listed.stdout)}
    assert rows[key["access_key_id"]]["status"] == "Active"
    assert rows["test-ak"]["role"] == "admin"
    assert key["access_key_secret"] not in listed.stdout
    assert "test-secret" not in listed.stdout

    reader = sdk.client(
        server, access_key_id=key["access_key_id"], access_key_secret=key["access_key_secret"]
    )
    pools = reader.describe_cluster_node_pools(
        cluster_id, cs_models.DescribeClusterNodePoolsRequest()
    ).body.nodepools
    pool_id = pools[0].nodepool_info.nodepool_id
    denied = refused(
        lambda: reader.scale_cluster_node_pool(
            cluster_id, pool_id, cs_models.ScaleClusterNodePoolRequest(count=2)
        ),
        "Forbidden.RAM",
        403,
    )
    assert "cs:ScaleClusterNodePool" in denied.message
    after = reader.describe_cluster_node_pools(
        cluster_id, cs_models.DescribeClusterNodePoolsRequest()
    ).body.nodepools
    assert after[0].status.total_nodes == pools[0].status.total_nodes
    assert after[0].status.state == "active"

    audit = cli("audit", "list", "--since", "1h", "--db", db_url, "-o", "json")
    assert audit.returncode == 0, audit.stderr
    entries = [(e["access_key_id"], e["action"], e["outcome"]) for e in json.loads(audit.stdout)]
    assert ("test-ak", "CreateCluster", "success") in entries
    assert (key["access_key_id"], "ScaleClusterNodePool", "Forbidden.RAM") in entries
    assert not any(action.startswith("Describe") for _, action, _ in entries)

    assert cli("keys", "disable", key["access_key_id"], "--db", db_url).returncode == 0
    refused(lambda: reader.describe_task_info("T-1"), "InvalidAccessKeyId.Inactive", 400)
    assert cli("keys", "delete", key["access_key_id"], "--db", db_url).returncode == 0
    refused(lambda: reader.describe_task_info("T-1"), "InvalidAccessKeyId.NotFound", 404)
    gone = cli("keys", "delete", key["access_key_id"], "--db", db_url)
    assert gone.returncode == 1
    assert "InvalidAccessKeyId.NotFound" in gone.stderr


def _signed_headers(server: ServerProcess, method: str, path: str, body: bytes) -> dict[str, str]:
    headers = {
        "host": server.endpoint,
        "x-acs-action": "ScaleClusterNodePool",
        "content-type": "application/json; charset=utf-8",
    }
    unsigned = signing.HttpRequest(method, path, "", signing.lower_headers(headers), body)
    added = signing.sign_acs3(
        unsigned,
        test_signing.KEY_ID,
        test_signing.SECRET,
        now_us=int(time.time() * 1_000_000),
    )
    return headers | added


def test_tampered_and_oversized_bodies_are_refused(server: ServerProcess) -> None:
    path = f"/clusters/{CLUSTER}/nodepools/np1"
    headers = _signed_headers(server, "POST", path, b'{"count":1}')
    tampered = httpx.post(
        f"{server.url}{path}", content=b'{"count":50}', headers=headers, trust_env=False
    )
    assert tampered.status_code == 400
    assert tampered.json()["code"] == "SignatureDoesNotMatch"

    big = b'{"count":1,"pad":"' + b"x" * (2 << 20) + b'"}'
    huge = httpx.post(
        f"{server.url}{path}",
        content=big,
        headers=_signed_headers(server, "POST", path, big),
        trust_env=False,
    )
    assert huge.status_code == 413
    assert huge.json()["code"] == "RequestEntityTooLarge"
    assert huge.headers["x-acs-request-id"] == huge.json()["requestId"]


def test_rate_limit_answers_429_then_recovers(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'ct.db'}"
    args = ("--no-executor", "--rate-limit", "1", "--rate-burst", "3")
    with ServerProcess(db, tmp_path, *args) as process:
        client = sdk.client(process)
        throttled: ThrottlingException | None = None
        for _ in range(50):  # a few more than the burst; far fewer than a second's worth
            try:
                client.describe_cluster_tasks(CLUSTER, cs_models.DescribeClusterTasksRequest())
            except ThrottlingException as exc:
                throttled = exc
                break
        assert throttled is not None
        assert throttled.code == "Throttling.User"
        assert throttled.status_code == 429
        assert throttled.retry_after > 0
        # Recovers: waiting as told is enough (bounded, in case the machine is slow).
        for _ in range(20):
            try:
                client.describe_cluster_tasks(CLUSTER, cs_models.DescribeClusterTasksRequest())
                break
            except ThrottlingException as exc:
                time.sleep(exc.retry_after / 1000)
        else:
            raise AssertionError("still throttled after waiting as told")
        assert process.stop() == 0


def test_serve_makes_a_first_key_and_saves_it_0600(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fresh.db'}"
    no_env_key = {"CLUSTERTASKS_ACCESS_KEY_ID": "", "CLUSTERTASKS_ACCESS_KEY_SECRET": ""}
    with ServerProcess(db, tmp_path, "--no-executor", env=no_env_key) as process:
        saved_path = tmp_path / "clustertasks.credentials"
        assert stat.S_IMODE(os.stat(saved_path).st_mode) == 0o600
        assert stat.S_IMODE(os.stat(tmp_path / "fresh.db").st_mode) == 0o600
        saved = json.loads(saved_path.read_text())
        assert saved["role"] == "admin"
        log = process.log()
        assert "created the first AccessKey" in log
        assert str(saved_path) in log
        assert log.count(saved["access_key_secret"]) == 1  # printed once, never again
        client = sdk.client(
            process,
            access_key_id=saved["access_key_id"],
            access_key_secret=saved["access_key_secret"],
        )
        assert (
            client.describe_cluster_tasks(
                CLUSTER, cs_models.DescribeClusterTasksRequest()
            ).body.tasks
            == []
        )
        # The CLI finds the saved key in its working directory.
        listed = cli("task", "list", "-c", CLUSTER, "--endpoint", process.url, cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        assert process.stop() == 0
    with ServerProcess(db, tmp_path, "--no-executor", env=no_env_key) as again:
        assert "created the first AccessKey" not in again.log()
        assert again.stop() == 0


def test_auth_off_is_for_loopback_only(tmp_path: Path) -> None:
    public = cli("serve", "--auth", "off", "--host", "0.0.0.0", "--port", "1")
    assert public.returncode == 4
    assert "local emulation only" in public.stderr
    assert "Traceback" not in public.stderr

    db = f"sqlite:///{tmp_path / 'off.db'}"
    with ServerProcess(db, tmp_path, "--no-executor", "--auth", "off") as process:
        assert "authentication is OFF" in process.log()
        anyone = sdk.client(process, access_key_id="anyone", access_key_secret="anything")
        assert (
            anyone.describe_cluster_tasks(
                CLUSTER, cs_models.DescribeClusterTasksRequest()
            ).body.tasks
            == []
        )
        assert process.stop() == 0
