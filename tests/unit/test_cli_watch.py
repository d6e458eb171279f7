"""Following a task: how it is read (long-poll or polling) and how it is shown.

The reads run against ``httpx.MockTransport`` handlers that answer as the task API does:
with ``X-Clustertasks-Task-Version`` and ``?wait&since`` (long-poll), or without (polling,
with ETag / 304). No network, no sleeping: the follower's clock and sleep are injected.
"""

from __future__ import annotations

import copy
import datetime
import io
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from rich.console import Console

from clustertasks.cli import client, watch

TASK_ID = "T-5faa48fb31b6b8078d000006"


def _task(state: str = "running", **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "task_id": TASK_ID,
        "task_type": "nodepool_upgrade",
        "state": state,
        "created": "2026-01-02T10:00:00+08:00",
        "updated": "2026-01-02T10:01:30+08:00",
        "current_stage": "Precheck",
        "target": {"id": "np1", "type": "nodepool"},
        "error": {"code": "", "message": ""},
        "stages": [
            {
                "name": "Precheck",
                "state": "running",
                "start_time": "2026-01-02 10:00:00",
                "end_time": "",
                "message": "",
                "outputs": {},
            },
            {
                "name": "UpgradeNodes",
                "state": "pending",
                "start_time": "",
                "end_time": "",
                "message": "",
                "outputs": {},
            },
        ],
        "events": [
            {
                "action": "start",
                "level": "Normal",
                "reason": "TaskStart",
                "message": "started",
                "source": "ACK",
                "timestamp": "1767319200000",
            },
        ],
        "task_result": [],
        "requestId": "R-1",
    }
    document.update(changes)
    return document


def _upgrading(done: int, state: str = "running") -> dict[str, Any]:
    document = _task(state, current_stage="UpgradeNodes")
    document["stages"][0].update(state="success", end_time="2026-01-02 10:00:05", message="ok")
    document["stages"][1].update(
        state="running" if state == "running" else state,
        start_time="2026-01-02 10:00:05",
        outputs={"nodes_total": 4, "nodes_done": done, "batch": 1, "batches_total": 2},
    )
    if state != "running":
        document["stages"][1]["end_time"] = "2026-01-02 10:01:30"
    document["events"] = [
        *document["events"],
        *[
            {
                "action": "upgrade",
                "level": "Normal",
                "reason": "NodeUpgraded",
                "message": f"node n{i} upgraded",
                "source": "ACK",
                "timestamp": str(1767319300000 + i),
            }
            for i in range(done)
        ],
    ]
    document["task_result"] = [
        {"data": f"i-{i}", "status": "success" if i < done else "initial"} for i in range(4)
    ]
    return document


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _follower(
    handler: Callable[[httpx.Request], httpx.Response], time: FakeTime
) -> watch.TaskFollower:
    api = client.ApiClient("http://server", transport=httpx.MockTransport(handler))
    return watch.TaskFollower(api, TASK_ID, sleep=time.sleep, monotonic=time.monotonic)


def _json(
    document: dict[str, Any], status: int = 200, *, version: str = "", etag: str = ""
) -> httpx.Response:
    headers = {}
    if version:
        headers["X-Clustertasks-Task-Version"] = version
    if etag:
        headers["ETag"] = etag
    return httpx.Response(status, content=json.dumps(document).encode(), headers=headers)


def test_long_poll_when_the_server_sends_a_version() -> None:
    time = FakeTime()
    versions = {1: _task(), 2: _upgrading(2), 3: _upgrading(4, "success")}
    answers = iter([1, 2, 2, 3])
    asked: list[dict[str, str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(dict(request.url.params))
        version = next(answers)
        if asked[-1] and version == int(asked[-1]["since"]):
            time.now += 20  # the server held the read for its whole wait
        return _json(versions[version], version=str(version))

    seen = list(_follower(handler, time).documents())

    assert seen == [versions[1], versions[2], versions[3]]
    assert asked == [
        {},
        {"wait": "20", "since": "1"},
        {"wait": "20", "since": "2"},
        {"wait": "20", "since": "2"},
    ]
    assert time.sleeps == []


def test_a_server_that_answers_long_polls_at_once_is_not_hammered() -> None:
    time = FakeTime()
    answers = iter([_task(), _task(), _task(), _upgrading(4, "success")])

    def handler(request: httpx.Request) -> httpx.Response:
        return _json(next(answers), version="7")

    seen = list(_follower(handler, time).documents())
    assert [d["state"] for d in seen] == ["running", "success"]
    assert time.sleeps == [watch.POLL_SECONDS, watch.POLL_SECONDS]


def test_without_a_version_it_polls_each_second_with_the_etag() -> None:
    time = FakeTime()
    first = _task()
    same_but_new_request_id = {**copy.deepcopy(first), "requestId": "R-2"}
    answers = iter(
        [
            _json(first, etag='"a"'),
            httpx.Response(304, headers={"ETag": '"a"'}),
            _json(same_but_new_request_id, etag='"a"'),
            _json({"code": "ServiceUnavailable", "message": "busy", "requestId": "R"}, 503),
            _json(_upgrading(4, "fail"), etag='"b"'),
        ]
    )
    conditions: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert "wait" not in request.url.params
        conditions.append(request.headers.get("if-none-match"))
        return next(answers)

    seen = list(_follower(handler, time).documents())

    assert [d["state"] for d in seen] == ["running", "fail"]
    assert conditions == [None, '"a"', '"a"', '"a"', '"a"']
    # A poll interval after each read with nothing new, a short pause before the retry,
    # and none once the task has ended.
    assert time.sleeps == [1.0, 1.0, 0.5]


def test_it_gives_up_on_a_server_that_went_away_and_stays_away() -> None:
    time = FakeTime()
    reads = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal reads
        reads += 1
        if reads == 1:
            return _json(_task())
        raise httpx.ConnectError("Connection refused", request=request)

    follower = _follower(handler, time).documents()
    assert next(follower)["state"] == "running"
    with pytest.raises(client.ConnectionFailed, match="Connection refused"):
        next(follower)
    assert watch.PATIENCE_SECONDS - 5 <= sum(time.sleeps) <= watch.PATIENCE_SECONDS
    assert reads >= 7


def test_a_server_unreachable_from_the_start_is_said_at_once() -> None:
    time = FakeTime()

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    with pytest.raises(client.ConnectionFailed, match="Connection refused"):
        list(_follower(handler, time).documents())
    assert time.sleeps == []


def test_request_errors_are_not_retried() -> None:
    time = FakeTime()

    def handler(request: httpx.Request) -> httpx.Response:
        body = {"code": "ErrorTaskNotFound", "message": "gone", "requestId": "R-9"}
        return _json(body, 404)

    with pytest.raises(client.ApiError) as caught:
        list(_follower(handler, time).documents())
    assert (caught.value.code, caught.value.status, caught.value.request_id) == (
        "ErrorTaskNotFound",
        404,
        "R-9",
    )
    assert time.sleeps == []


@pytest.mark.parametrize(
    ("state", "code"), [("success", 0), ("fail", 1), ("canceled", 2), ("paused", 3)]
)
def test_exit_codes(state: str, code: int) -> None:
    assert watch.exit_code(_task(state)) == code


def test_progress_pairs() -> None:
    assert watch.progress({"nodes_total": 4, "nodes_done": 1, "batches_total": 2}) == (
        "nodes",
        1,
        4,
    )
    assert watch.progress(
        {"instances_total": 3, "instance_ids": ["i-1"], "instances_created": 2}
    ) == ("instances", 2, 3)
    assert watch.progress({"batch": 1, "batches_total": 2}) is None
    assert watch.progress({"nodes_total": True, "nodes_done": 1}) is None


def _plain(documents: list[dict[str, Any]]) -> list[str]:
    buffer = io.StringIO()
    reporter = watch.PlainReporter(Console(file=buffer, width=300), now=lambda: 0.0)
    for document in documents:
        reporter.update(document)
    reporter.close(documents[-1])
    return buffer.getvalue().splitlines()


def test_plain_lines_say_each_change_once() -> None:
    lines = _plain([_task(), _task(), _upgrading(1), _upgrading(3), _upgrading(4, "success")])
    assert lines == [
        f"task {TASK_ID} nodepool_upgrade on nodepool np1",
        "stage Precheck: running",
        "event Normal TaskStart: started",
        "state: running",
        "stage Precheck: success (5s): ok",
        "stage UpgradeNodes: running",
        "progress UpgradeNodes: nodes 1/4",
        "event Normal NodeUpgraded: node n0 upgraded",
        "progress UpgradeNodes: nodes 3/4",
        "event Normal NodeUpgraded: node n1 upgraded",
        "event Normal NodeUpgraded: node n2 upgraded",
        "stage UpgradeNodes: success (1m25s)",
        "progress UpgradeNodes: nodes 4/4",
        "event Normal NodeUpgraded: node n3 upgraded",
        "state: success",
        f"result: {TASK_ID} success after 1m30s",
        "resources: 4 (4 success)",
    ]


def test_a_task_already_over_is_told_whole_and_its_error_summarised() -> None:
    failed = _upgrading(2, "fail")
    failed["error"] = {"code": "MaxFailedNodesExceeded", "message": "n2, n3 failed"}
    failed["task_result"][2]["status"] = "failed"
    lines = _plain([failed])
    assert lines[0] == f"task {TASK_ID} nodepool_upgrade on nodepool np1"
    assert "stage Precheck: success (5s): ok" in lines
    assert "stage UpgradeNodes: fail (1m25s)" in lines
    assert [line for line in lines if line.startswith("event")] == [
        "event Normal TaskStart: started",
        "event Normal NodeUpgraded: node n0 upgraded",
        "event Normal NodeUpgraded: node n1 upgraded",
    ]
    assert lines[-4:] == [
        "state: fail",
        f"result: {TASK_ID} fail after 1m30s",
        "error: MaxFailedNodesExceeded: n2, n3 failed",
        "resources: 4 (1 failed, 1 initial, 2 success)",
    ]


def test_a_paused_task_says_how_to_go_on() -> None:
    lines = _plain([_upgrading(2, "paused")])
    assert lines[-1] == (
        f"paused: continue with 'clustertasks task resume {TASK_ID} --wait', "
        f"or stop with 'clustertasks task cancel {TASK_ID}'"
    )


def test_the_live_view_shows_stages_progress_last_events_and_elapsed_time() -> None:
    task = _upgrading(3)
    task["events"] += [
        {
            "action": "a",
            "level": "Warning",
            "reason": f"Extra{i}",
            "message": f"m{i}",
            "source": "ACK",
            "timestamp": "1",
        }
        for i in range(3)
    ]
    # 60 s after the task was created, 55 s into UpgradeNodes.
    now = datetime.datetime.fromisoformat("2026-01-02T10:01:00+08:00").timestamp()
    buffer = io.StringIO()
    Console(file=buffer, width=120).print(watch.TaskView(task, now=lambda: now))
    text = buffer.getvalue()
    assert f"{TASK_ID}  nodepool_upgrade on nodepool np1  running  elapsed 1m00s" in text
    assert "Precheck" in text
    assert "5s" in text
    assert "55s" in text
    assert "UpgradeNodes nodes" in text
    assert "3/4" in text
    assert "last events" in text
    # The last five events only.
    assert "TaskStart" not in text
    assert "node n0 upgraded" not in text
    assert all(f"Extra{i}" in text for i in range(3))
    assert "node n1 upgraded" in text
    assert "node n2 upgraded" in text


def test_no_summary_when_reading_is_given_up() -> None:
    gone = {"code": "ErrorTaskNotFound", "message": "gone", "requestId": "R-9"}
    answers = iter([_json(_task()), _json(gone, 404)])
    api = client.ApiClient("http://server", transport=httpx.MockTransport(lambda _: next(answers)))
    buffer = io.StringIO()
    with pytest.raises(client.ApiError):
        watch.follow(api, TASK_ID, Console(file=buffer, width=200))
    lines = buffer.getvalue().splitlines()
    assert lines[0] == f"task {TASK_ID} nodepool_upgrade on nodepool np1"
    assert lines[-1] == "state: running"
    assert not [line for line in lines if line.startswith("result:")]
