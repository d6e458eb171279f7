"""The Temporal executor's load as Temporal sees it: the ``executor="temporal"`` gauges.

``running``: the task workflows open on the task queue (a task under way, paused ones
included). ``backlog``: what waits on the queue for a free worker (workflow steps and stage
activities, Temporal's approximate count). Both describe the whole deployment, so every
replica reports the same (aggregate with ``max``, like the task gauges).

Temporal is asked every ``every`` seconds in the background, never during a scrape: a scrape
does not wait on Temporal, and many replicas scraped often cost it one query each per period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from temporalio import client as temporal_client
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest

from clustertasks import settings

log = logging.getLogger("clustertasks.engine")

LOAD_SECONDS = 5.0
_QUEUE_TYPES = (TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW, TaskQueueType.TASK_QUEUE_TYPE_ACTIVITY)


class QueueLoad:
    def __init__(self, config: settings.TemporalSettings, *, every: float = LOAD_SECONDS) -> None:
        self._config = config
        self._every = every
        self._running = 0
        self._backlog = 0

    def load(self) -> tuple[int, int]:
        """(running, backlog) as last asked (zeros before the first answer)."""
        return self._running, self._backlog

    async def watch(self, temporal: temporal_client.Client, stop: asyncio.Event) -> None:
        """Ask Temporal every period until ``stop`` is set; a failure keeps the last figures."""
        while not stop.is_set():
            try:
                await self.refresh(temporal)
            except Exception:
                log.warning("asking Temporal for the task queue's load failed", exc_info=True)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._every)

    async def refresh(self, temporal: temporal_client.Client) -> None:
        queue = self._config.task_queue.replace("'", "\\'")
        running = await temporal.count_workflows(
            f"TaskQueue = '{queue}' AND ExecutionStatus = 'Running'"
        )
        backlog = 0
        for kind in _QUEUE_TYPES:
            described = await temporal.workflow_service.describe_task_queue(
                DescribeTaskQueueRequest(
                    namespace=self._config.namespace,
                    task_queue=TaskQueue(name=self._config.task_queue),
                    task_queue_type=kind,
                    report_stats=True,
                )
            )
            backlog += described.stats.approximate_backlog_count
        self._running, self._backlog = running.count, backlog
