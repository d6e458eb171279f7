"""Writing realistic tasks through the store, the way the engine will."""

from __future__ import annotations

import random
from collections.abc import Sequence

from clustertasks.domain import ids, records, states
from clustertasks.storage import store

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
    task_store.create_task(task, planned)
    now = created_us
    reached = 2 if state is states.TaskState.RUNNING else len(planned)
    for stage in planned[:reached]:
        now += 1_000_000
        started = stage.with_state(task_id, states.StageState.RUNNING, now)
        task = task.with_current_stage(stage.name, now)
        task_store.update_task(task)
        task_store.update_stage(task_id, started, now)
        task_store.append_event(
            task_id,
            action="start",
            level=states.EventLevel.NORMAL,
            reason=f"{stage.name}Start",
            message=f"stage {stage.name} started",
            now_us=now,
        )
        last = stage is planned[reached - 1]
        if last and state is states.TaskState.RUNNING:
            for instance in instances:
                task_store.set_result(task_id, instance, states.ResultStatus.INITIAL, now)
            progress = {"nodes_total": len(instances), "nodes_done": 1}
            task_store.update_stage(task_id, _with_outputs(started, progress), now)
            break
        now += 1_000_000
        outcome = states.StageState.SUCCESS
        if last and state is states.TaskState.FAIL:
            outcome = states.StageState.FAIL
        ended = started.with_state(task_id, outcome, now, message=f"{stage.name} {outcome}")
        task_store.update_stage(task_id, ended, now)
    if state is not states.TaskState.RUNNING:
        for index, instance in enumerate(instances):
            failed = state is states.TaskState.FAIL and index == len(instances) - 1
            status = states.ResultStatus.FAILED if failed else states.ResultStatus.SUCCESS
            task_store.set_result(task_id, instance, status, now)
        if state is states.TaskState.FAIL:
            task = task.with_error(
                error or records.TaskError("InstanceCreateFailed", f"{instances[-1]} failed"), now
            )
            task_store.append_event(
                task_id,
                action="fail",
                level=states.EventLevel.WARNING,
                reason="TaskFailed",
                message=task.error.message,
                now_us=now,
            )
        task = task.with_state(state, now)
        task_store.update_task(task)
    return task_store.describe_task(task_id)


def _with_outputs(stage: records.Stage, outputs: dict[str, int]) -> records.Stage:
    import dataclasses

    return dataclasses.replace(stage, outputs=outputs)
