"""Cluster events (DescribeClusterEvents, DescribeEvents): the events of a cluster's tasks,
each tied to its task by ``task_id`` and typed by the task's type, newest first."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from clustertasks import errors
from clustertasks.domain import params, timefmt
from clustertasks.service import cloud
from clustertasks.storage import store

MAX_PAGE = 100


@dataclass(frozen=True, slots=True)
class EventList:
    events: list[dict[str, Any]]
    page_number: int
    page_size: int
    total_count: int


class EventService:
    def __init__(self, tasks: store.TaskStore, clouds: cloud.CloudService) -> None:
        self._tasks = tasks
        self._clouds = clouds

    def list_events(
        self,
        query: Mapping[str, Any],
        *,
        cluster_id: str | None = None,
        tz: str = "UTC",
    ) -> EventList:
        """``query``: ``page_number``, ``page_size``, ``task_id``, ``type`` (a task type)."""
        if cluster_id is not None:
            cluster_id = self._clouds.cluster(cluster_id).cluster_id
        number = params.integer(query, "page_number", default=1, low=1) or 1
        size = params.integer(query, "page_size", default=50, low=1, high=MAX_PAGE) or 50
        task_id = params.text(query, "task_id") or None
        if task_id is not None:
            task = self._tasks.get_task(task_id)
            if cluster_id is not None and task.cluster_id != cluster_id:
                raise errors.InvalidParameter(
                    "task_id", f"task {task_id} is not a task of cluster {cluster_id}"
                )
        page = self._tasks.list_events(
            cluster_id=cluster_id,
            task_id=task_id,
            task_type=params.text(query, "type") or None,
            limit=size,
            offset=(number - 1) * size,
        )
        return EventList(
            events=[_document(found, tz) for found in page.events],
            page_number=number,
            page_size=size,
            total_count=page.total_count,
        )


def _document(found: store.TaskEvent, tz: str) -> dict[str, Any]:
    event = found.event
    digest = hashlib.sha256(f"{found.task_id}/{event.seq}".encode()).hexdigest()
    event_id = f"e-{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"
    return {
        "cluster_id": found.cluster_id,
        "data": {"level": event.level.value, "message": event.message, "reason": event.reason},
        "event_id": event_id,
        "source": event.source,
        "subject": found.target_id,
        "time": timefmt.rfc3339(event.timestamp_us, tz),
        "type": found.task_type,
        # Extension: the task the event belongs to.
        "task_id": found.task_id,
    }
