"""``serve --workers N``: API processes sharing one port, the executor in the first only.

One server of its own: the processes are the point.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from clustertasks.domain import signing as wire_signing
from tests.support import signing
from tests.support.server import ServerProcess

pytestmark = pytest.mark.one_backend  # SQLite: the backend the point reads and nonces use


@pytest.fixture
def workers_server(db_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(db_url, tmp_path, "--workers", "2", "--sim-speed", "0") as server:
        yield server


def _children(pid: int) -> list[int]:
    """The worker processes (not multiprocessing's resource tracker)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(p) for p in (task / "children").read_text().split()]
    return [p for p in found if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]


def test_workers_share_a_port_run_tasks_once_refuse_replays_and_stop_cleanly(
    workers_server: ServerProcess,
) -> None:
    """One server for all (starting one is the slow part): two workers answer, tasks run
    in one, a replay is refused by whichever worker it reaches, SIGTERM stops all, and
    the nonces the workers answered outlive a kill -9 of every process."""
    _two_workers_serve_one_port_and_one_runs_the_tasks(workers_server)
    _a_replay_is_refused_whichever_worker_it_reaches(workers_server)
    _sigterm_stops_every_worker_with_status_0(workers_server)
    _nonces_answered_by_any_worker_outlive_a_kill_9(workers_server)


def _two_workers_serve_one_port_and_one_runs_the_tasks(workers_server: ServerProcess) -> None:
    assert workers_server.process is not None
    assert len(_children(workers_server.process.pid)) == 2
    task_id = workers_server.create_cluster("w")
    # A long-poll wherever it lands is answered once the executor's process has finished
    # the task (another process's commit: seen by the followed-tasks poll).
    deadline = time.monotonic() + 60
    state = ""
    while state != "success" and time.monotonic() < deadline:
        answer = httpx.get(
            f"{workers_server.url}/tasks/{task_id}?wait=10",
            headers={"If-None-Match": '"0-json"'},
            auth=signing.auth(),
            trust_env=False,
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        state = answer.json()["state"]
    assert state == "success"
    # Many new connections, spread over both processes: one answer, byte for byte, but
    # for the request id.
    bodies = set()
    for _ in range(12):
        answer = httpx.get(
            f"{workers_server.url}/tasks/{task_id}", auth=signing.auth(), trust_env=False
        )
        assert answer.status_code == 200
        body = answer.json()
        assert body.pop("requestId") == answer.headers["x-acs-request-id"]
        bodies.add(repr(body))
    assert len(bodies) == 1


def _signed(server: ServerProcess, path: str) -> dict[str, str]:
    request = wire_signing.HttpRequest("GET", path, "", (("host", server.endpoint),), b"")
    return wire_signing.sign_acs3(
        request, signing.KEY_ID, signing.SECRET, now_us=time.time_ns() // 1000
    )


def _a_replay_is_refused_whichever_worker_it_reaches(workers_server: ServerProcess) -> None:
    path = "/tasks/T-5faa48fb31b6b8078d000006"
    headers = _signed(workers_server, path)
    codes = []
    for _ in range(10):  # a new connection each: the kernel spreads them over the workers
        answer = httpx.get(f"{workers_server.url}{path}", headers=headers, trust_env=False)
        codes.append(answer.json()["code"])
    assert codes[0] == "ErrorTaskNotFound"
    assert codes[1:] == ["SignatureNonceUsed"] * 9


def _sigterm_stops_every_worker_with_status_0(workers_server: ServerProcess) -> None:
    assert workers_server.process is not None
    children = _children(workers_server.process.pid)
    assert workers_server.stop(signal.SIGTERM) == 0, workers_server.log()[-3000:]
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "Z" in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2]
    except OSError:
        return "Z"


def _nonces_answered_by_any_worker_outlive_a_kill_9(workers_server: ServerProcess) -> None:
    """Each worker records a request's nonce before it answers, so a kill -9 of every
    process and a restart forget none, whichever worker answered."""
    workers_server.start()
    path = "/tasks/T-5faa48fb31b6b8078d000007"
    sent = [_signed(workers_server, path) for _ in range(12)]
    for headers in sent:  # a new connection each: the kernel spreads them over the workers
        answer = httpx.get(f"{workers_server.url}{path}", headers=headers, trust_env=False)
        assert answer.json()["code"] == "ErrorTaskNotFound", answer.text
    assert workers_server.process is not None
    children = _children(workers_server.process.pid)
    assert len(children) == 2
    for pid in [workers_server.process.pid, *children]:
        os.kill(pid, signal.SIGKILL)
    workers_server.process.wait()
    workers_server.start()
    codes = set()
    for headers in sent:
        answer = httpx.get(f"{workers_server.url}{path}", headers=headers, trust_env=False)
        codes.add(answer.json()["code"])
    assert codes == {"SignatureNonceUsed"}
