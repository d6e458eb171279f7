"""The engine bench's workload on Temporal: one workflow, one no-op activity per stage.

A module of its own because Temporal refuses workflow classes defined inside a function,
and because ``temporalio`` is only in the ``bench`` extra.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import activity, workflow

STAGES = 5


@activity.defn(name="noop")
async def noop(i: int) -> int:
    return i


@workflow.defn(name="FiveStages", sandboxed=False)
class FiveStages:
    @workflow.run
    async def run(self) -> int:
        for i in range(STAGES):
            await workflow.execute_activity(noop, i, start_to_close_timeout=timedelta(seconds=60))
        return STAGES
