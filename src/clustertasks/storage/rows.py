"""Task rows to records and back: one mapping, shared by the task store and whoever
checks rows written by other means (the emulator's state import)."""

from __future__ import annotations

from typing import Any

from clustertasks.domain import records, states


def task_row(task: records.Task) -> dict[str, Any]:
    return {
        "task_id": task.task_id,
        "cluster_id": task.cluster_id,
        "task_type": task.task_type,
        "state": task.state.value,
        "created_us": task.created_us,
        "updated_us": task.updated_us,
        "target_id": task.target.id,
        "target_type": task.target.type,
        "parameters": dict(task.parameters),
        "current_stage": task.current_stage,
        "outputs": dict(task.outputs),
        "error_code": task.error.code,
        "error_message": task.error.message,
        "client_token": task.client_token,
        "request_digest": task.request_digest,
        "requested_action": task.requested_action,
        "version": task.version,
        "trace_parent": task.trace_parent,
    }


def stage_row(task_id: str, stage: records.Stage) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "position": stage.position,
        "name": stage.name,
        "state": stage.state.value,
        "start_us": stage.start_us,
        "end_us": stage.end_us,
        "message": stage.message,
        "outputs": dict(stage.outputs),
    }


def task_from_row(row: Any) -> records.Task:
    return records.Task(
        task_id=row["task_id"],
        cluster_id=row["cluster_id"],
        task_type=row["task_type"],
        state=states.TaskState(row["state"]),
        created_us=row["created_us"],
        updated_us=row["updated_us"],
        target=records.Target(id=row["target_id"], type=row["target_type"]),
        parameters=row["parameters"],
        current_stage=row["current_stage"],
        outputs=row["outputs"],
        error=records.TaskError(code=row["error_code"], message=row["error_message"]),
        client_token=row["client_token"],
        request_digest=row.get("request_digest"),
        requested_action=row["requested_action"],
        version=row["version"],
        trace_parent=row["trace_parent"],
    )


def stage_from_row(row: Any) -> records.Stage:
    return records.Stage(
        position=row["position"],
        name=row["name"],
        state=states.StageState(row["state"]),
        start_us=row["start_us"],
        end_us=row["end_us"],
        message=row["message"],
        outputs=row["outputs"],
    )


def event_from_row(row: Any) -> records.Event:
    return records.Event(
        seq=row["seq"],
        action=row["action"],
        level=states.EventLevel(row["level"]),
        reason=row["reason"],
        message=row["message"],
        timestamp_us=row["timestamp_us"],
        source=row["source"],
    )
