"""Following a task: how it is shown (exit statuses, progress, plain lines, the live
view). How it is read, against a real server: tests/acceptance/test_cli_follow.py.
"""

from __future__ import annotations

import datetime
import io
from typing import Any

import pytest
from rich.console import Console

from clustertasks.cli import watch

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
