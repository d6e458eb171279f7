"""Workflows recorded by earlier versions of the task workflow still replay on this one.

Each file in ``histories/`` is the history of one task (three no-op stages) as Temporal
stored it: a worker upgraded while the workflow is in flight replays it from the start,
and must issue the same commands, or the workflow is stuck.

- ``plan-in-local-activity.json``: before the first plan moved into the first stage's
  activity (``messages.PLAN_IN_FIRST_STAGE``): a local activity plans, then one activity
  per stage.
- ``plan-in-first-stage.json``: then the same path, guarded by its patch marker.
- ``plan-in-first-stage-v1.json``: the current workflow, started at ``messages.VERSION``
  1: the same path, with no patch marker.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner

from clustertasks.engine.temporal import messages, workflow

HISTORIES = Path(__file__).parent / "histories"

pytestmark = pytest.mark.one_backend


def _history(name: str) -> WorkflowHistory:
    text = (HISTORIES / name).read_text()
    workflow_id = json.loads(text)["events"][0]["workflowExecutionStartedEventAttributes"][
        "workflowId"
    ]
    return WorkflowHistory.from_json(workflow_id, text)


def _replay(history: WorkflowHistory) -> None:
    replayer = Replayer(
        workflows=[workflow.TaskWorkflow], workflow_runner=UnsandboxedWorkflowRunner()
    )
    asyncio.run(replayer.replay_workflow(history))


def _event_types(history: WorkflowHistory) -> list[str]:
    return [event.WhichOneof("attributes") or "" for event in history.events]


def test_a_workflow_begun_before_the_plan_moved_replays_with_its_local_activity() -> None:
    history = _history("plan-in-local-activity.json")
    types = _event_types(history)
    # The plan's marker, then three stage activities; no patch marker.
    assert types.count("marker_recorded_event_attributes") == 1
    assert types.count("activity_task_scheduled_event_attributes") == 3
    _replay(history)


def _scheduled(history: WorkflowHistory) -> list[str]:
    return [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
    ]


def test_a_workflow_that_plans_in_its_first_stage_behind_its_patch_marker_replays() -> None:
    history = _history("plan-in-first-stage.json")
    types = _event_types(history)
    assert types.count("marker_recorded_event_attributes") == 1
    assert types.count("upsert_workflow_search_attributes_event_attributes") == 1
    assert _scheduled(history) == [messages.PLAN_AND_RUN, messages.RUN_STAGE, messages.RUN_STAGE]
    _replay(history)


def test_a_workflow_started_at_version_1_plans_in_its_first_stage_with_no_marker() -> None:
    history = _history("plan-in-first-stage-v1.json")
    started = history.events[0].workflow_execution_started_event_attributes
    assert len(started.input.payloads) == 2  # the task id, then the version
    assert started.input.payloads[1].data == b"1"
    types = _event_types(history)
    assert "marker_recorded_event_attributes" not in types
    assert "upsert_workflow_search_attributes_event_attributes" not in types
    assert _scheduled(history) == [messages.PLAN_AND_RUN, messages.RUN_STAGE, messages.RUN_STAGE]
    _replay(history)
