"""``clustertasks emulator``: the request bodies its commands send, the timeouts they send
them with, and how the answers are shown. Requests go to ``httpx.MockTransport``."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from rich.console import Console

from clustertasks import errors
from clustertasks.cli import client, command, emulator, output


def test_a_full_fault_rule() -> None:
    assert emulator.fault_rule(
        task_type="cluster_scaleout",
        stage="CreateInstances",
        instance_index=3,
        node_name="cn-hangzhou.192.168.0.7",
        operation="create_instance",
        error_code="OperationDenied.NoStock",
        message="no stock left",
        latency_seconds=30.0,
        node_not_ready=True,
        count=1,
        probability=0.5,
    ) == {
        "match": {
            "task_type": "cluster_scaleout",
            "stage": "CreateInstances",
            "instance_index": 3,
            "node_name": "cn-hangzhou.192.168.0.7",
            "operation": "create_instance",
        },
        "effect": {
            "error_code": "OperationDenied.NoStock",
            "message": "no stock left",
            "latency_seconds": 30,
            "node_not_ready": True,
        },
        "count": 1,
        "probability": 0.5,
    }


def test_a_fault_rule_leaves_out_what_was_not_given() -> None:
    assert emulator.fault_rule(instance_index=3, error_code="OperationDenied.NoStock") == {
        "match": {"instance_index": 3},
        "effect": {"error_code": "OperationDenied.NoStock"},
    }
    assert emulator.fault_rule(stage="JoinNodes", latency_seconds=2.5) == {
        "match": {"stage": "JoinNodes"},
        "effect": {"latency_seconds": 2.5},
    }
    assert emulator.fault_rule(node_name="n1", node_not_ready=True, count=2) == {
        "match": {"node_name": "n1"},
        "effect": {"node_not_ready": True},
        "count": 2,
    }


def test_a_fault_rule_needs_an_effect() -> None:
    with pytest.raises(errors.ConfigurationError, match="needs an effect"):
        emulator.fault_rule(task_type="cluster_scaleout")
    with pytest.raises(errors.ConfigurationError, match="--message goes with --error-code"):
        emulator.fault_rule(message="why", latency_seconds=1)


def test_clock_bodies() -> None:
    assert emulator.clock_mode_body(emulator.ClockMode.per_poll) == {"mode": "per_poll"}
    assert emulator.clock_advance_body(3600.0) == {"seconds": 3600}
    assert isinstance(emulator.clock_advance_body(3600.0)["seconds"], int)
    assert emulator.clock_advance_body(0.25) == {"seconds": 0.25}
    with pytest.raises(errors.ConfigurationError, match="positive"):
        emulator.clock_advance_body(0)


# -- what the commands send and show, against an in-memory server ------------------------------

CLIENT_TIMEOUT = 30.0
STATE = {"format": "clustertasks-state", "version": 1, "tables": {"tasks": [{"task_id": "T-1"}]}}
ANSWERS: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/_emulator/reset"): {
        "request_id": "R-1",
        "tasks_canceled": 1,
        "tasks_deleted": 12,
        "clusters_deleted": 2,
    },
    ("GET", "/_emulator/state"): STATE,
    ("POST", "/_emulator/state"): {
        "request_id": "R-2",
        "tasks_canceled": 0,
        "tasks_deleted": 3,
        "clusters_deleted": 1,
        "imported": {"sim_clusters": 1, "sim_instances": 4, "tasks": 3},
    },
    ("GET", "/_emulator/clock"): {
        "mode": "manual",
        "speed": 1.0,
        "now": "2026-01-05T10:00:00.000000Z",
        "waiting": 2,
        "request_id": "R-3",
    },
}


class Recorder:
    """Answers the routes above and remembers each request with its read timeout."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str, float | None, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout") or {}
        sent = json.loads(request.content) if request.content else None
        self.seen.append((request.method, request.url.path, timeouts.get("read"), sent))
        return httpx.Response(200, json=ANSWERS[(request.method, request.url.path)])

    def session(self, output_format: str = "table") -> command.Session:
        api = client.ApiClient(
            "http://emulator.test", timeout=CLIENT_TIMEOUT, transport=httpx.MockTransport(self)
        )
        return command.Session(api, output_format)


def test_reset_export_and_import_wait_for_the_slow_routes_the_clock_does_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = Recorder()
    saved = tmp_path / "state.json"
    saved.write_text(json.dumps(STATE), encoding="utf-8")
    emulator.reset(session=server.session())
    emulator.export(None, session=server.session())
    emulator.import_state(saved, session=server.session())
    emulator.clock_show(session=server.session())
    assert server.seen == [
        ("POST", "/_emulator/reset", emulator.STATE_TIMEOUT_SECONDS, None),
        ("GET", "/_emulator/state", emulator.STATE_TIMEOUT_SECONDS, None),
        ("POST", "/_emulator/state", emulator.STATE_TIMEOUT_SECONDS, STATE),
        ("GET", "/_emulator/clock", CLIENT_TIMEOUT, None),
    ]
    assert emulator.STATE_TIMEOUT_SECONDS == 600
    shown = capsys.readouterr().out
    assert "reset: 1 unfinished tasks stopped, 12 tasks and 2 clusters deleted" in shown
    assert "imported 3 tasks and 1 clusters (8 rows); replaced: 0 unfinished" in shown
    assert "mode manual  speed 1.0  now 2026-01-05T10:00:00.000000Z  waiting 2" in shown


@pytest.mark.parametrize("output_format", ["table", "json", "yaml"])
def test_export_writes_the_json_document_whatever_the_output_format(
    output_format: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = Recorder()
    emulator.export(None, session=server.session(output_format))
    assert json.loads(capsys.readouterr().out) == STATE
    emulator.export(Path("-"), session=server.session(output_format))
    assert json.loads(capsys.readouterr().out) == STATE

    saved = tmp_path / "state.json"
    emulator.export(saved, session=server.session(output_format))
    assert json.loads(saved.read_text(encoding="utf-8")) == STATE
    written = capsys.readouterr()
    assert written.out == ""
    assert f"exported 1 tasks and 0 clusters to {saved}" in written.err


def test_import_shows_the_answer_in_the_chosen_format(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    saved = tmp_path / "state.json"
    saved.write_text(json.dumps(STATE), encoding="utf-8")
    emulator.import_state(saved, session=Recorder().session("yaml"))
    answer = yaml.safe_load(capsys.readouterr().out)
    assert answer == ANSWERS[("POST", "/_emulator/state")]


def _rendered(renderer: output.Renderer, body: dict[str, Any]) -> str:
    buffer = io.StringIO()
    renderer(Console(file=buffer, width=200), body)
    return buffer.getvalue()


def test_the_faults_table_shows_server_text_as_it_is() -> None:
    fault = {
        "fault_id": "f-0123456789abcdef",
        "match": {"task_type": "cluster_scaleout", "instance_index": 3},
        "effect": {"error_code": "OperationDenied.NoStock", "message": "[bold]no[/bold] stock"},
        "count": 1,
        "remaining": 1,
        "probability": None,
        "hits": 0,
    }
    listed = _rendered(emulator.print_faults, {"faults": [fault], "request_id": "R"})
    assert "fault rules — 1" in listed
    assert "f-0123456789abcdef" in listed
    assert "task_type=cluster_scaleout instance_index=3" in listed
    assert "message=[bold]no[/bold] stock" in listed
    added = _rendered(emulator.print_fault_added, fault)
    assert "fault f-0123456789abcdef added" in added
    assert "OperationDenied.NoStock" in added
    assert _rendered(emulator.print_faults, {"faults": []}).startswith("fault rules — 0")


def test_deleted_rules_and_the_clock_are_one_line() -> None:
    assert _rendered(emulator.print_fault_deleted, {"fault_id": "f-[1]"}) == "fault f-[1] deleted\n"
    assert _rendered(emulator.print_fault_deleted, {"removed": 3}) == "3 fault rules deleted\n"
    clock = {"mode": "[red]per_poll", "speed": 0.0, "now": "2026-01-05T10:00:00Z", "waiting": 0}
    assert _rendered(emulator.print_clock, clock) == (
        "mode [red]per_poll  speed 0.0  now 2026-01-05T10:00:00Z  waiting 0\n"
    )
