"""The express answer to DescribeTaskInfo leaves a real server as the same bytes as the
application's.

api/fastpath.py answers a plain signed read itself and writes it to the connection in one
step (api/protocol.py: ``respond``); ``?format=json`` asks for the same document the long
way (the middlewares, the route, uvicorn's two ``send`` calls). Both go over one raw
keep-alive socket and are compared byte for byte, the date and the request id aside; then
once more on a request that closes its connection.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from clustertasks.domain import signing as wire_signing
from tests.support import signing
from tests.support.server import ServerProcess

pytestmark = pytest.mark.one_backend  # SQLite: the express way is the inline one

_DATE = re.compile(rb"\r\ndate: [^\r]*\r\n")


@pytest.fixture
def server(db_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(db_url, tmp_path, "--no-executor") as started:
        yield started


def _request(server: ServerProcess, path: str, query: str = "", *, close: bool = False) -> bytes:
    host = f"127.0.0.1:{server.port}"
    unsigned = wire_signing.HttpRequest("GET", path, query, (("host", host),))
    headers = {"host": host} | wire_signing.sign_acs3(
        unsigned, signing.KEY_ID, signing.SECRET, now_us=signing.clock_now_us()
    )
    if close:
        headers["connection"] = "close"
    target = f"{path}?{query}" if query else path
    lines = [f"GET {target} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode()


def _response(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, "the server closed the connection before answering"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"content-length: (\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        chunk = conn.recv(65536)
        assert chunk
        body += chunk
    assert len(body) == length, "one response, nothing after it"
    return head + b"\r\n\r\n" + body


def _comparable(response: bytes) -> bytes:
    rid = re.search(rb"x-acs-request-id: ([0-9A-F-]{36})\r\n", response)
    assert rid is not None, response[:500]
    return _DATE.sub(b"\r\ndate: D\r\n", response).replace(rid.group(1), b"RID")


def test_the_express_answer_is_the_applications_byte_for_byte(server: ServerProcess) -> None:
    path = f"/tasks/{server.create_cluster('w')}"
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
        answers = []
        for query in ("format=json", "", "", "format=json"):  # rendered once, then kept
            conn.sendall(_request(server, path, query))
            answers.append(_comparable(_response(conn)))
        assert answers[0].startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"connection" not in answers[0]
        assert answers[1] == answers[0]
        assert answers[2] == answers[3]
    closing = []
    for query in ("", "format=json"):
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as conn:
            conn.sendall(_request(server, path, query, close=True))
            closing.append(_comparable(_response(conn)))
            assert conn.recv(1) == b"", "the connection is closed after the answer"
    assert b"\r\nconnection: close\r\n" in closing[0]
    assert closing[0] == closing[1]
