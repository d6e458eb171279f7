"""Workflows recorded by earlier versions of the task workflow still replay on this one.

Each file in ``histories/`` is the history of one task (three no-op stages) as Temporal
stored it: a worker upgraded while the workflow is in flight replays it from the start,
and must issue the same commands, or the workflow is stuck.

- ``plan-in-local-activity.json``: before the first plan moved into the first stage's
  activity (``messages.PLAN_IN_FIRST_STAGE``): a local activity plans, then one activity
  per stage.
- ``plan-in-first-stage.json``: the current workflow, with its patch marker.
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


def test_a_workflow_that_plans_in_its_first_stage_replays() -> None:
    history = _history("plan-in-first-stage.json")
    scheduled = [
        event.activity_task_scheduled_event_attributes.activity_type.name
        for event in history.events
        if event.HasField("activity_task_scheduled_event_attributes")
    ]
    assert scheduled == [messages.PLAN_AND_RUN, messages.RUN_STAGE, messages.RUN_STAGE]
    _replay(history)
