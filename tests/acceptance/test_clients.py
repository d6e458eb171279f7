"""Every client that talks to real ACK talks to clustertasks, over HTTP and over HTTPS.

The official SDK (ACS3 and ``v2``), the older ``aliyun-python-sdk-core`` (``CommonRequest``,
ROA HMAC-SHA1 without a nonce) and ``aliyun-python-sdk-cs`` request classes run unmodified;
alibaba-cloud-sdk-go, the aliyun CLI and aliyungo, which cannot be installed here, are
reproduced request for request (tests/support/legacy_signers.py).

On SQLite only: what is tested is the wire, which does not depend on the database.
"""

from __future__ import annotations

import json
import socket
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest
from alibabacloud_cs20151215 import models as cs_models
from alibabacloud_cs20151215.client import Client
from alibabacloud_tea_openapi.exceptions import ClientException
from alibabacloud_tea_openapi.utils_models import Config
from aliyunsdkcore.acs_exception.exceptions import ServerException
from aliyunsdkcore.client import AcsClient
from aliyunsdkcore.request import CommonRequest
from aliyunsdkcs.request.v20151215 import DeleteClusterRequest, DescribeClusterDetailRequest

from clustertasks.service import certificates
from tests.acceptance import sdk
from tests.acceptance.cli import Cli, error, signed_env
from tests.support import legacy_signers, signing
from tests.support.server import ServerProcess

pytestmark = pytest.mark.one_backend

KEY = legacy_signers.Key(signing.KEY_ID, signing.SECRET)
GATEWAY_KEYS = {"Code", "Message", "RequestId", "HostId", "Recommend"}


@pytest.fixture(params=["http", "https"])
def any_server(request: pytest.FixtureRequest, backend: str) -> ServerProcess:
    """The shared server on ``backend``, plain or with TLS."""
    name = "server" if request.param == "http" else "tls_server"
    process: ServerProcess = request.getfixturevalue(name)
    return process


def ca_of(server: ServerProcess) -> str | None:
    return str(server.ca_cert) if server.ca_cert is not None else None


def verify(server: ServerProcess) -> ssl.SSLContext | bool:
    """What httpx should trust for ``server``."""
    if server.ca_cert is None:
        return True
    return ssl.create_default_context(cafile=str(server.ca_cert))


def official(server: ServerProcess, algorithm: str | None = None, secret: str = "") -> Client:
    """``alibabacloud-cs20151215`` as its documentation configures it, plus ``ca``."""
    config = Config(
        access_key_id=signing.KEY_ID,
        access_key_secret=secret or signing.SECRET,
        endpoint=server.endpoint,
        protocol=server.scheme,
        region_id="cn-hangzhou",
        ca=ca_of(server),
    )
    if algorithm:
        config.signature_algorithm = algorithm
    return Client(config)


def protected_cluster(client: Client) -> str:
    request = cs_models.CreateClusterRequest(
        name="protected",
        region_id="cn-hangzhou",
        cluster_type="ManagedKubernetes",
        kubernetes_version="1.32.1-aliyun.1",
        vswitch_ids=["vsw-hangzhou-h"],
        deletion_protection=True,
        nodepools=[
            cs_models.Nodepool(
                nodepool_info=cs_models.NodepoolNodepoolInfo(name="pool-a"),
                scaling_group=cs_models.NodepoolScalingGroup(
                    instance_types=["ecs.g7.large"], desired_size=1
                ),
            )
        ],
    )
    body = client.create_cluster(request).body
    assert sdk.wait_task(client, body.task_id).state == "success"
    return str(body.cluster_id)


def test_the_official_sdk_both_signatures(any_server: ServerProcess) -> None:
    default = official(any_server)
    cluster_id = protected_cluster(default)
    legacy = official(any_server, "v2")
    assert legacy.describe_cluster_detail(cluster_id).body.deletion_protection is True
    # A state error is the client's to fix: 400, which Terraform does not retry.
    for client in (default, legacy):
        with pytest.raises(ClientException) as caught:
            client.delete_cluster(cluster_id, cs_models.DeleteClusterRequest())
        assert (caught.value.code, caught.value.status_code) == ("ErrorClusterState", 400)
    with pytest.raises(ClientException) as refused:
        official(any_server, secret="guess").describe_cluster_detail(cluster_id)
    assert refused.value.code == "SignatureDoesNotMatch"
    assert set(refused.value.data) >= GATEWAY_KEYS


# The old SDK's own copy of urllib3 sets up TLS the ways Python 3.10 and 3.7 deprecated.
@pytest.mark.filterwarnings("ignore:ssl.PROTOCOL_TLS is deprecated:DeprecationWarning")
@pytest.mark.filterwarnings(r"ignore:ssl\.match_hostname\(\) is deprecated:DeprecationWarning")
def test_the_old_python_sdk_core_and_its_cs_requests(any_server: ServerProcess) -> None:
    cluster_id = protected_cluster(official(any_server))
    acs = AcsClient(signing.KEY_ID, signing.SECRET, "cn-hangzhou", verify=ca_of(any_server))

    def common(method: str, pattern: str, body: dict[str, Any] | None = None, **path: str) -> Any:
        request = CommonRequest(
            domain=any_server.endpoint, version="2015-12-15", uri_pattern=pattern, product="CS"
        )
        request.set_method(method)
        request.set_protocol_type(any_server.scheme)
        request.set_accept_format("json")
        for name, value in path.items():
            request.add_path_param(name, value)
        if body is not None:
            request.set_content(json.dumps(body).encode())
            request.set_content_type("application/json")
        return json.loads(acs.do_action_with_exception(request))

    detail = common("GET", "/clusters/[ClusterId]", ClusterId=cluster_id)
    assert detail["cluster_id"] == cluster_id
    pools = common("GET", "/clusters/[ClusterId]/nodepools", ClusterId=cluster_id)["nodepools"]
    pool_id = pools[0]["nodepool_info"]["nodepool_id"]
    scaled = common(
        "POST",
        "/clusters/[ClusterId]/nodepools/[NodepoolId]",
        {"count": 1},
        ClusterId=cluster_id,
        NodepoolId=pool_id,
    )
    task = sdk.wait_task(official(any_server), scaled["task_id"])
    assert task.state == "success"
    assert common("GET", "/tasks/[TaskId]", TaskId=scaled["task_id"])["state"] == "success"

    def cs_request(request: Any) -> Any:
        request.set_endpoint(any_server.endpoint)
        request.set_protocol_type(any_server.scheme)
        request.set_ClusterId(cluster_id)
        return request

    described = acs.do_action_with_exception(
        cs_request(DescribeClusterDetailRequest.DescribeClusterDetailRequest())
    )
    assert json.loads(described)["name"] == "protected"
    with pytest.raises(ServerException) as caught:
        acs.do_action_with_exception(cs_request(DeleteClusterRequest.DeleteClusterRequest()))
    # The service's own errors are lowercase, as on ACK: this SDK reads only "Code".
    assert caught.value.get_http_status() == 400
    assert "ErrorClusterState" in caught.value.get_error_msg()
    # The gateway's carry "Code" too, which is all this SDK reads.
    stranger = AcsClient(signing.KEY_ID, "guess", "cn-hangzhou", verify=ca_of(any_server))
    with pytest.raises(ServerException) as refused:
        stranger.do_action_with_exception(
            cs_request(DescribeClusterDetailRequest.DescribeClusterDetailRequest())
        )
    assert refused.value.get_error_code() == "SignatureDoesNotMatch"
    assert refused.value.get_request_id()


def test_go_sdk_aliyun_cli_and_aliyungo_requests(any_server: ServerProcess) -> None:
    cluster_id = protected_cluster(official(any_server))
    with httpx.Client(base_url=any_server.url, verify=verify(any_server), trust_env=False) as http:

        def send(signed: legacy_signers.Signed) -> httpx.Response:
            return http.request(
                signed.method, signed.target, content=signed.body, headers=signed.headers
            )

        now = signing.clock_now_us() / 1e6
        go = send(
            legacy_signers.go_sdk(
                "GET", f"/clusters/{cluster_id}", action="DescribeClusterDetail", now_s=now, key=KEY
            )
        )
        assert go.status_code == 200, go.text
        assert go.json()["cluster_id"] == cluster_id

        pools = send(
            legacy_signers.aliyun_cli(
                "GET", f"/clusters/{cluster_id}/nodepools", now_s=now, key=KEY
            )
        )
        assert pools.status_code == 200, pools.text
        pool_id = pools.json()["nodepools"][0]["nodepool_info"]["nodepool_id"]
        scaled = send(
            legacy_signers.aliyun_cli(
                "POST",
                f"/clusters/{cluster_id}/nodepools/{pool_id}",
                body=b'{"count": 1}',
                now_s=now,
                key=KEY,
            )
        )
        assert scaled.status_code == 200, scaled.text
        task_id = scaled.json()["task_id"]
        assert sdk.wait_task(official(any_server), task_id).state == "success"
        listed = send(
            legacy_signers.aliyun_cli(
                "GET",
                f"/clusters/{cluster_id}/tasks",
                query={"page_size": "10", "page_number": "1"},
                now_s=now,
                key=KEY,
            )
        )
        assert task_id in [t["task_id"] for t in listed.json()["tasks"]]

        # aliyungo builds some queries into the path, and signs the query as sent.
        nodes = send(
            legacy_signers.aliyungo(
                "GET",
                f"/clusters/{cluster_id}/nodes?nodepool_id={pool_id}&pageNumber=1&pageSize=10",
                now_s=now,
                key=KEY,
            )
        )
        assert nodes.status_code == 200, nodes.text
        assert len(nodes.json()["nodes"]) == 2
        shrink = send(
            legacy_signers.aliyungo(
                "POST",
                f"/clusters/{cluster_id}/nodepools/{pool_id}",
                args=b'{"count":1}',
                region="cn-hangzhou",
                now_s=now,
                key=KEY,
            )
        )
        assert shrink.status_code == 200, shrink.text

        # What alibaba-cloud-sdk-go's NewServerError reads: Code, Message, RequestId.
        wrong = send(
            legacy_signers.go_sdk(
                "GET",
                f"/clusters/{cluster_id}",
                action="DescribeClusterDetail",
                now_s=now,
                key=legacy_signers.Key(signing.KEY_ID, "guess"),
            )
        )
        assert wrong.status_code == 400
        assert wrong.json()["Code"] == "SignatureDoesNotMatch"
        assert wrong.json()["RequestId"] == wrong.headers["x-acs-request-id"]


def test_plain_http_and_failed_handshakes_on_the_tls_port_are_refused_cleanly(
    tls_server: ServerProcess,
) -> None:
    with socket.create_connection(("127.0.0.1", tls_server.port), timeout=10) as plain:
        plain.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        answer = b""
        try:
            while chunk := plain.recv(4096):
                answer += chunk
        except ConnectionResetError:
            pass
    assert not answer.startswith(b"HTTP/"), answer

    # A client that does not trust the server's CA gives up during the handshake.
    untrusted = ssl.create_default_context()
    with (
        socket.create_connection(("127.0.0.1", tls_server.port), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        untrusted.wrap_socket(raw, server_hostname="127.0.0.1")

    healthy = httpx.get(f"{tls_server.url}/healthz", verify=verify(tls_server), trust_env=False)
    assert healthy.json()["status"] == "ok"
    assert "Traceback" not in tls_server.log()


def test_tls_init_and_the_cli_client_over_https(
    tls_server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cli = Cli(tmp_path, signed_env(tls_server))
    made = cli.subprocess("tls", "init", "--dir", "certs")
    assert made.returncode == 0, made.stderr
    files = certificates.TlsFiles(tmp_path / "certs")
    for hint in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "NODE_EXTRA_CA_CERTS", "--cacert"):
        assert hint in made.stdout
    assert str(files.ca.resolve()) in made.stdout
    assert (files.key.stat().st_mode & 0o777) == 0o600
    again = cli.subprocess("tls", "init", "--dir", "certs")
    assert again.returncode == 4
    assert "--force" in again.stderr

    monkeypatch.chdir(tmp_path)
    listed = cli("cluster", "list", "--ca-cert", str(tls_server.ca_cert), "-o", "json")
    assert listed.exit_code == 0, listed.stderr
    # Another CA (the one just made) did not sign the server's certificate.
    untrusted = cli("cluster", "list", "--ca-cert", str(files.ca))
    assert untrusted.exit_code == 4
    assert error(untrusted.stderr)["code"] == "ConnectionFailed"
