"""``clustertasks emulator``: the request bodies its commands send."""

from __future__ import annotations

import pytest

from clustertasks import errors
from clustertasks.cli import emulator


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
