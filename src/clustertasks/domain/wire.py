"""Task documents exactly as ACK puts them on the wire (reference/ack-api.md §2–§3).

Every key is always present: empty strings, objects or lists stand in for absent values,
because clients written against every generation of the API read them. Extensions are
added keys only (stage ``name``).
"""

from __future__ import annotations

from typing import Any

from clustertasks.domain import records, timefmt


def task_document(view: records.TaskView, tz: str = "UTC") -> dict[str, Any]:
    """The DescribeTaskInfo body."""
    task = view.task
    return {
        "task_id": task.task_id,
        "cluster_id": task.cluster_id,
        "task_type": task.task_type,
        "state": task.state.value,
        "created": timefmt.rfc3339(task.created_us, tz),
        "updated": timefmt.rfc3339(task.updated_us, tz),
        "current_stage": task.current_stage,
        "target": {"id": task.target.id, "type": task.target.type},
        "parameters": dict(task.parameters),
        "stages": [_stage(stage, tz) for stage in view.stages],
        "events": [_event(event) for event in view.events],
        "task_result": [{"data": r.data, "status": r.status.value} for r in view.results],
        "error": {"code": task.error.code, "message": task.error.message},
        "outputs": dict(task.outputs),
    }


def task_summary(task: records.Task, tz: str = "UTC") -> dict[str, Any]:
    """One item of DescribeClusterTasks' ``tasks[]``: exactly these keys."""
    return {
        "task_id": task.task_id,
        "task_type": task.task_type,
        "state": task.state.value,
        "created": timefmt.rfc3339(task.created_us, tz),
        "updated": timefmt.rfc3339(task.updated_us, tz),
        "error": {"code": task.error.code, "message": task.error.message},
    }


def _stage(stage: records.Stage, tz: str) -> dict[str, Any]:
    return {
        "state": stage.state.value,
        "start_time": timefmt.stage_time(stage.start_us, tz),
        "end_time": timefmt.stage_time(stage.end_us, tz),
        "message": stage.message,
        "outputs": dict(stage.outputs),
        "name": stage.name,
    }


def _event(event: records.Event) -> dict[str, Any]:
    return {
        "action": event.action,
        "level": event.level.value,
        "reason": event.reason,
        "message": event.message,
        "source": event.source,
        "timestamp": timefmt.epoch_ms(event.timestamp_us),
    }
