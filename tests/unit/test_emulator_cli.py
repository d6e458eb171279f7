"""``clustertasks emulator``: the request bodies its commands send and how the answers are
shown (the commands against a real server: tests/acceptance/test_emulator_cli.py)."""

from __future__ import annotations

import io
from typing import Any

import pytest
from rich.console import Console

from clustertasks import errors, settings
from clustertasks.cli import emulator, output


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
    assert emulator.clock_mode_body(settings.ClockMode.per_poll) == {"mode": "per_poll"}
    assert emulator.clock_advance_body(3600.0) == {"seconds": 3600}
    assert isinstance(emulator.clock_advance_body(3600.0)["seconds"], int)
    assert emulator.clock_advance_body(0.25) == {"seconds": 0.25}
    with pytest.raises(errors.ConfigurationError, match="positive"):
        emulator.clock_advance_body(0)


# -- what the commands send and show, against an in-memory server ------------------------------


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
