"""The TypeScript SDK ``@alicloud/cs20151215`` under Node, unmodified, over HTTP and HTTPS.

Node and the SDK come from scripts/ensure-node (which the CI script runs first; the fixture
runs it too, so that this file also runs on its own). On SQLite only: the wire is tested.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support import signing
from tests.support.server import ServerProcess, clean_env

pytestmark = pytest.mark.one_backend

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "tests" / "node" / "cs_client.js"


@pytest.fixture(scope="session")
def node() -> str:
    subprocess.run(["bash", str(ROOT / "scripts" / "ensure-node")], check=True, timeout=300)
    found = shutil.which("node")
    assert found is not None, "scripts/ensure-node did not install node"
    return found


def run_node(node: str, server: ServerProcess, algorithm: str) -> dict[str, Any]:
    env = clean_env(
        CT_ENDPOINT=server.endpoint,
        CT_PROTOCOL=server.scheme,
        CT_ACCESS_KEY_ID=signing.KEY_ID,
        CT_ACCESS_KEY_SECRET=signing.SECRET,
        CT_SIGNATURE_ALGORITHM=algorithm,
    )
    if server.ca_cert is not None:
        env["NODE_EXTRA_CA_CERTS"] = str(server.ca_cert)
    done = subprocess.run(
        [node, str(SCRIPT)],
        cwd=SCRIPT.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    seen: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return seen


# Each protocol once and each signature once: a Node run costs a second or more.
@pytest.mark.parametrize(
    ("fixture", "algorithm"),
    [("server", ""), ("tls_server", "v2")],
    ids=["http-acs3", "https-v2"],
)
def test_the_typescript_sdk(
    node: str, backend: str, fixture: str, algorithm: str, request: pytest.FixtureRequest
) -> None:
    server: ServerProcess = request.getfixturevalue(fixture)
    seen = run_node(node, server, algorithm)
    assert seen["taskState"] == "success"
    assert seen["stages"] > 0
    assert seen["name"] == "from-node"
    assert seen["protectedError"] == {"code": "ErrorClusterState", "statusCode": 400}
    assert seen["signatureError"] == {"code": "SignatureDoesNotMatch", "statusCode": 400}
