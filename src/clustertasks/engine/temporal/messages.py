"""What the workflow and its activities pass each other: small serialisable records.

Pure data, no I/O: the workflow imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

WORKFLOW = "ClusterTask"
PLAN = "clustertasks.plan"
PLAN_AND_RUN = "clustertasks.plan_and_run"
"""Plan, then run the first stage left, in one activity (a workflow's first step)."""
RUN_STAGE = "clustertasks.run_stage"
FAIL_STAGE = "clustertasks.fail_stage"
REQUEST_CANCEL = "clustertasks.request_cancel"
CANCEL = "clustertasks.cancel"
POKE = "poke"
PLAN_IN_FIRST_STAGE = "plan-in-first-stage"
"""The workflow change (``workflow.patched``) that plans in the first stage's activity:
workflows begun before it plan in a local activity of their own, and replay so."""
VERSION = 1
"""The version of the workflow this code starts: its second input, recorded in its first
event, so a workflow knows its path from its start. Workflows started before the input
existed are version 0 (the default): they ask ``workflow.patched(PLAN_IN_FIRST_STAGE)``.
Version 1 plans in the first stage's activity with no patch marker in its history (the
marker and the search-attribute upsert Temporal's SDK records beside it cost the dev
server about a tenth of its CPU per task). Raise it, and branch on it, for the next change
of the workflow's commands."""

# What a plan or a stage reports back to the workflow.
RUN = "run"
"""Stages remain: run them."""
NEXT = "next"
"""The stage succeeded; go on with the next one."""
PAUSED = "paused"
"""The task is paused; wait for a poke (a resume) and plan again."""
ENDED = "ended"
"""The task reached a terminal state."""


@dataclass(frozen=True)
class StagePlan:
    """One stage still to run, with its retry and timeout policy."""

    name: str
    timeout: float
    max_attempts: int
    initial_delay: float
    factor: float
    max_delay: float


@dataclass(frozen=True)
class Plan:
    outcome: str
    stages: list[StagePlan] = field(default_factory=list)


@dataclass(frozen=True)
class StageInput:
    task_id: str
    stage: str
    max_attempts: int

    @classmethod
    def from_json(cls, value: Any) -> StageInput:
        """From the JSON object Temporal delivers (see :func:`planned_from_json`)."""
        return cls(str(value["task_id"]), str(value["stage"]), int(value["max_attempts"]))


@dataclass(frozen=True)
class StageFailure:
    task_id: str
    stage: str
    code: str
    message: str


@dataclass(frozen=True)
class Planned:
    """What ``PLAN_AND_RUN`` did: the plan and, when it said ``RUN``, the outcome of its
    first stage (``plan.stages[0]``)."""

    plan: Plan
    outcome: str


def planned_from_json(value: Any) -> Planned:
    """A :class:`Planned` from the JSON object Temporal delivers. The activities and the
    workflow take their records as plain JSON and build them here: Temporal's data
    converter, given a dataclass type, reads its type hints again for every value it
    decodes (about 1 ms for a plan of five stages, more than the rest of the decoding)."""
    plan = value["plan"]
    return Planned(
        Plan(str(plan["outcome"]), [StagePlan(**stage) for stage in plan.get("stages", ())]),
        str(value["outcome"]),
    )
