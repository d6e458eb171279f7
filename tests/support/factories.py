"""Writing realistic tasks through the store, the way the engine will."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

import sqlalchemy as sa

from clustertasks import errors
from clustertasks.domain import ids, records, states
from clustertasks.storage import changes, rows, schema, store

BASE_US = 1_764_000_000_000_000  # 2025-11-24T16:00:00Z

_ids = ids.IdGenerator(random.Random(7))


def seed_task(
    task_store: store.TaskStore,
    *,
    cluster_id: str = "c0123456789abcdef0123456789abcdef",
    task_type: str = "cluster_scaleout",
    state: states.TaskState = states.TaskState.RUNNING,
    created_us: int = BASE_US,
    instances: Sequence[str] = ("i-aaaaaaaaaaaaaaaaaaaa", "i-bbbbbbbbbbbbbbbbbbbb"),
    stage_names: Sequence[str] = ("Precheck", "CreateInstances", "JoinNodes"),
    parameters: dict[str, object] | None = None,
    error: records.TaskError | None = None,
) -> records.TaskView:
    """A task part-way through (``running``) or finished in ``state``.

    Running: first stage done, second running with progress counters, the rest pending.
    Terminal: every stage ended; failures fail the last stage and the last instance.
    """
    task_id = _ids.task_id(created_us)
    task = records.Task(
        task_id=task_id,
        cluster_id=cluster_id,
        task_type=task_type,
        state=states.TaskState.RUNNING,
        created_us=created_us,
        updated_us=created_us,
        target=records.Target(id=cluster_id, type="cluster"),
        parameters=parameters if parameters is not None else {"count": len(instances)},
    )
    planned = records.plan_stages(stage_names)
    _submit(task_store, task, planned)
    now = created_us
    reached = 2 if state is states.TaskState.RUNNING else len(planned)
    for stage in planned[:reached]:
        now += 1_000_000
        started = stage.with_state(task_id, states.StageState.RUNNING, now)
        task = task.with_current_stage(stage.name, now)
        task_store.apply(changes.UpdateTask(task))
        task_store.apply(changes.UpdateStage(task_id, started, now))
        task_store.apply(
            changes.AppendEvent(
                task_id,
                action="start",
                level=states.EventLevel.NORMAL,
                reason=f"{stage.name}Start",
                message=f"stage {stage.name} started",
                now_us=now,
            )
        )
        last = stage is planned[reached - 1]
        if last and state is states.TaskState.RUNNING:
            for instance in instances:
                task_store.apply(
                    changes.SetResult(task_id, instance, states.ResultStatus.INITIAL, now)
                )
            progress = {"nodes_total": len(instances), "nodes_done": 1}
            with_progress = dataclasses.replace(started, outputs=progress)
            task_store.apply(changes.UpdateStage(task_id, with_progress, now))
            break
        now += 1_000_000
        outcome = states.StageState.SUCCESS
        if last and state is states.TaskState.FAIL:
            outcome = states.StageState.FAIL
        ended = started.with_state(task_id, outcome, now, message=f"{stage.name} {outcome}")
        task_store.apply(changes.UpdateStage(task_id, ended, now))
    if state is not states.TaskState.RUNNING:
        for index, instance in enumerate(instances):
            failed = state is states.TaskState.FAIL and index == len(instances) - 1
            status = states.ResultStatus.FAILED if failed else states.ResultStatus.SUCCESS
            task_store.apply(changes.SetResult(task_id, instance, status, now))
        if state is states.TaskState.FAIL:
            task = task.with_error(
                error or records.TaskError("InstanceCreateFailed", f"{instances[-1]} failed"), now
            )
            task_store.apply(
                changes.AppendEvent(
                    task_id,
                    action="fail",
                    level=states.EventLevel.WARNING,
                    reason="TaskFailed",
                    message=task.error.message,
                    now_us=now,
                )
            )
        task = task.with_state(state, now)
        task_store.apply(changes.UpdateTask(task))
    return task_store.describe_task(task_id)


def _submit(
    task_store: store.TaskStore, task: records.Task, planned: Sequence[records.Stage]
) -> None:
    try:
        task_store.submit_task(task, planned)
    except errors.TaskConflict:
        # Listings page through several unfinished tasks on one cluster, which a submission
        # refuses to create (one mutating task per cluster): write the rows it would have.
        values = {**rows.task_row(task), "event_count": 0, "result_count": 0}
        with task_store._engine.begin() as conn:
            conn.execute(sa.insert(schema.tasks).values(**values))
            if planned:
                stage_rows = [rows.stage_row(task.task_id, s) for s in planned]
                conn.execute(sa.insert(schema.stages), stage_rows)
