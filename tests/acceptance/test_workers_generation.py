"""``serve --workers 2``: after a state import, no worker answers from the documents it kept.

Each API process keeps DescribeTaskInfo's rendered documents by task version; an import
(or a reset) starts ids and versions again, so a task id can come back at the version it
had, with other content. The import bumps the state's generation in the database, and every
process checks it with the version: the process that did not handle the import must not
serve what it kept. One server of its own: the processes are the point.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from clustertasks.api import conditional
from tests.support import signing
from tests.support.server import ServerProcess

# New connections, each handed by the kernel to one of the two processes sharing the port:
# the chance that one process gets none of them is 2 in 2**40.
ANSWERS = 40


@pytest.fixture
def workers_server(db_url: str, tmp_path: Path) -> Iterator[ServerProcess]:
    with ServerProcess(db_url, tmp_path, "--workers", "2", "--sim-speed", "0") as server:
        yield server


def _describe(server: ServerProcess, task_id: str) -> tuple[int, dict[str, Any]]:
    """The task's version (its header) and its document without the request id."""
    # A client of its own per request: a new connection, wherever the kernel sends it.
    answer = httpx.get(
        f"{server.url}/tasks/{task_id}", auth=signing.auth(), trust_env=False, timeout=30
    )
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    body.pop("requestId")
    return int(answer.headers[conditional.VERSION_HEADER]), body


def test_every_worker_answers_the_imported_task_not_the_kept_document(
    workers_server: ServerProcess,
) -> None:
    task_id = workers_server.create_cluster("gen")
    deadline = time.monotonic() + 60
    version, before = _describe(workers_server, task_id)
    while before["state"] != "success" and time.monotonic() < deadline:
        time.sleep(0.2)
        version, before = _describe(workers_server, task_id)
    assert before["state"] == "success"
    # Both processes render the document of this version and keep it.
    kept = [_describe(workers_server, task_id) for _ in range(ANSWERS)]
    assert all(answer == (version, before) for answer in kept)
    tag_before = _conditional(workers_server, task_id, None).headers["etag"]
    assert _conditional(workers_server, task_id, tag_before).status_code == 304

    # The same task id, at the same version, with other content: an event's message.
    state = workers_server.emulator("GET", "EmulatorExportState", "/_emulator/state")
    rows = state["tables"]["task_events"]
    first = min((r for r in rows if r["task_id"] == task_id), key=lambda r: r["seq"])
    first["message"] = "imported: " + first["message"]
    assert [r["version"] for r in state["tables"]["tasks"] if r["task_id"] == task_id] == [version]
    workers_server.emulator("POST", "EmulatorImportState", "/_emulator/state", state)

    expected = copy.deepcopy(before)
    expected["events"][0]["message"] = first["message"]
    after = [_describe(workers_server, task_id) for _ in range(ANSWERS)]
    assert [answer for answer in after if answer != (version, expected)] == []

    # The ETag names the generation too: the tag held from before the import is not the
    # imported task's, in either process, though the version is the same.
    answers = [_conditional(workers_server, task_id, tag_before) for _ in range(ANSWERS)]
    assert [a.status_code for a in answers] == [200] * ANSWERS
    assert {a.json()["events"][0]["message"] for a in answers} == {first["message"]}
    tags_after = {a.headers["etag"] for a in answers}
    assert len(tags_after) == 1
    assert tag_before not in tags_after
    assert {a.headers[conditional.VERSION_HEADER] for a in answers} == {str(version)}
    (tag_after,) = tags_after
    assert {
        _conditional(workers_server, task_id, tag_after).status_code for _ in range(ANSWERS)
    } == {304}


def _conditional(server: ServerProcess, task_id: str, held: str | None) -> httpx.Response:
    """DescribeTaskInfo with ``If-None-Match: held`` (none when None), on a new connection."""
    headers = {"if-none-match": held} if held else {}
    return httpx.get(
        f"{server.url}/tasks/{task_id}",
        headers=headers,
        auth=signing.auth(),
        trust_env=False,
        timeout=30,
    )
