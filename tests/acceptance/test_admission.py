"""Waiting clients are admitted up to their caps; slow and silent sockets are closed.

One server of its own, with tiny caps and a short read timeout: the flags are the point.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from clustertasks.storage import database as storage_database
from clustertasks.storage import store
from tests.support import factories, polling, signing
from tests.support.server import ServerProcess

pytestmark = pytest.mark.one_backend  # counted in memory, before any query

OTHER = ("other-ak", "other-secret")


@pytest.fixture
def small_server(
    db_url: str, tmp_path: Path, database: storage_database.Database
) -> Iterator[ServerProcess]:
    signing.add_key(database, key_id=OTHER[0], secret=OTHER[1])
    caps = ("--max-waits", "3", "--max-waits-per-key", "2", "--read-timeout", "1")
    with ServerProcess(db_url, tmp_path, "--no-executor", *caps) as server:
        yield server


@contextlib.contextmanager
def _stream(
    server: ServerProcess, task_id: str, key: tuple[str, str] | None = None
) -> Iterator[httpx.Response]:
    auth = signing.auth(*key) if key else signing.auth()
    with (
        httpx.Client(auth=auth, trust_env=False, timeout=30) as http,
        http.stream("GET", f"{server.url}/tasks/{task_id}/stream") as response,
    ):
        yield response


def _refused(response: httpx.Response, status: int, code: str) -> None:
    response.read()
    assert response.status_code == status, response.text
    assert response.headers["retry-after"] == "1"
    assert response.headers["x-acs-retry-after"] == "1000"
    assert response.json()["code"] == code


def test_waits_over_the_caps_are_refused_and_slots_come_back(
    small_server: ServerProcess, task_store: store.TaskStore
) -> None:
    task_id = factories.seed_task(task_store).task.task_id
    url = f"{small_server.url}/tasks/{task_id}"
    with contextlib.ExitStack() as held:
        first = held.enter_context(_stream(small_server, task_id))
        assert first.status_code == 200
        assert held.enter_context(_stream(small_server, task_id)).status_code == 200
        # The key has its two: a third wait of it, stream or long-poll, is a 429.
        with _stream(small_server, task_id) as third:
            _refused(third, 429, "Throttling.User")
            assert "the AccessKey test-ak has 2" in third.text
        poll = httpx.get(f"{url}?wait=5&since=1", auth=signing.auth(), trust_env=False)
        _refused(poll, 429, "Throttling.User")
        # Another key takes the last slot; then the server is full: 503 for anyone.
        assert held.enter_context(_stream(small_server, task_id, OTHER)).status_code == 200
        with _stream(small_server, task_id, OTHER) as full:
            _refused(full, 503, "ServiceUnavailable")
        # Ordinary requests are neither counted nor refused.
        for _ in range(5):
            plain = httpx.get(url, auth=signing.auth(), trust_env=False)
            assert plain.status_code == 200
            assert plain.json()["task_id"] == task_id
        first.close()

        def admitted() -> int:
            with _stream(small_server, task_id) as again:
                return again.status_code

        assert polling.until("a slot back", admitted, lambda status: status == 200) == 200


def _closed_by_server(sock: socket.socket) -> bool:
    sock.settimeout(20)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


def test_silent_and_slow_sockets_are_closed(small_server: ServerProcess) -> None:
    with socket.create_connection(("127.0.0.1", small_server.port)) as silent:
        assert _closed_by_server(silent)

    request = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-padding: " + b"a" * 200 + b"\r\n\r\n"
    with socket.create_connection(("127.0.0.1", small_server.port)) as slow:
        sent = 0
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for byte in request:
                slow.sendall(bytes([byte]))
                sent += 1
                time.sleep(0.05)
        # Closed long before its headers were all sent (they would take ~11 s).
        assert sent < len(request)
        assert _closed_by_server(slow)

    # A request that arrived whole may wait longer than the read timeout for its answer.
    started = time.monotonic()
    answer = httpx.get(f"{small_server.url}/healthz", trust_env=False)
    assert answer.status_code == 200
    assert time.monotonic() - started < 20


def test_a_long_poll_outlives_the_read_timeout(
    small_server: ServerProcess, task_store: store.TaskStore
) -> None:
    view = factories.seed_task(task_store)
    answer = httpx.get(
        f"{small_server.url}/tasks/{view.task.task_id}?wait=2&since={view.task.version}",
        auth=signing.auth(),
        trust_env=False,
        timeout=30,
    )
    assert answer.status_code == 200
    assert answer.headers["x-clustertasks-task-version"] == str(view.task.version)
