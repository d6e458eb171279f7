"""The engine's changes (and the reads of a task it makes), applied in a transaction the
caller holds.

``apply`` applies one change; ``apply_grouped`` a group commit's batch, in order. Every
write to a task or one of its parts moves the task's ``version`` on by one and sets its
``updated``. Grouped changes share statements: the version bumps of a task's stage writes
are folded into the next statement that writes the task row anyway (its update, its next
event, or one bump at the end of the batch), and every stage row of the batch is written
by one ``executemany``. Nothing can tell the difference: what commits, and what each
change returns, is what applying the changes one by one, in order, would have committed
and returned (no other transaction sees the rows before the commit). The hot statements
run prepared (``storage/prepared.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from clustertasks import errors
from clustertasks.domain import records, states
from clustertasks.storage import changes, notices, prepared, rows, schema
from clustertasks.storage import statements as sql

T = schema.tasks
R = schema.results

_UPDATE_TASK = prepared.Prepared(sql.UPDATE_TASK)
_UPDATE_TASK_ACTED_ON = prepared.Prepared(sql.UPDATE_TASK_ACTED_ON)
_UPDATE_STAGE = prepared.Prepared(sql.UPDATE_STAGE)
_BUMP = prepared.Prepared(sql.BUMP)
_NEXT_EVENT = prepared.Prepared(sql.NEXT_EVENT)
_INSERT_EVENT = prepared.Prepared(sql.INSERT_EVENT)
_GET_TASK = prepared.Prepared(sql.GET_TASK)
_TASK_STAGES = prepared.Prepared(sql.TASK_STAGES)
_TASK_EVENTS = prepared.Prepared(sql.TASK_EVENTS)
_TASK_RESULTS = prepared.Prepared(sql.TASK_RESULTS)


def apply(conn: sa.Connection, change: changes.Change) -> changes.Applied:
    """Apply one change (see ``changes`` for what it returns)."""
    match change:
        case changes.UpdateTask():
            return update_task(conn, change)
        case changes.UpdateStage():
            version = bump(conn, change.task_id, change.now_us)
            _UPDATE_STAGE.rows(conn, _stage_params(change))
            return version
        case changes.AppendEvent():
            return _append_event(conn, change)[0]
        case changes.SetResult():
            set_result(conn, change)
            return None
        case changes.ReadTask():
            return read_task(conn, change.task_id)
        case changes.ReadView():
            return read_view(conn, change.task_id)


def apply_grouped(conn: sa.Connection, batch: Sequence[changes.Change]) -> list[changes.Applied]:
    """Apply ``batch`` in order, sharing statements; one value per change.

    Raises the first change's error; the transaction must then be rolled back (what was
    written so far is incomplete).
    """
    return _Grouped(conn).apply(batch)


def update_task(conn: sa.Connection, change: changes.UpdateTask, *, bumps: int = 1) -> int:
    """Write the task row's mutable fields; ``bumps``: the writes this statement stands for."""
    task = change.task
    params = {
        "p_task_id": task.task_id,
        "p_now": task.updated_us,
        "p_bumps": bumps,
        "p_state": task.state.value,
        "p_current_stage": task.current_stage,
        "p_outputs": dict(task.outputs),
        "p_error_code": task.error.code,
        "p_error_message": task.error.message,
    }
    statement = _UPDATE_TASK
    if change.acted_on is not None:
        statement = _UPDATE_TASK_ACTED_ON
        params["p_acted_on"] = change.acted_on
    row = statement.first(conn, params)
    if row is None:
        raise errors.TaskNotFound(task.task_id)
    notices.touched(conn, task.task_id)
    return int(row[0])


def set_result(conn: sa.Connection, change: changes.SetResult) -> None:
    task_id, data, status, now_us = change.task_id, change.data, change.status, change.now_us
    if change.event is not None:
        insert_event(
            conn,
            task_id,
            now_us,
            action=change.event.action,
            level=change.event.level,
            reason=change.event.reason,
            message=change.event.message,
        )
    current = conn.execute(
        sa.select(R.c.status).where(R.c.task_id == task_id, R.c.data == data)
    ).scalar_one_or_none()
    if current is not None:
        states.check_result_transition(task_id, data, states.ResultStatus(current), status)
        bump(conn, task_id, now_us)
        conn.execute(
            sa.update(R).where(R.c.task_id == task_id, R.c.data == data).values(status=status.value)
        )
        return
    position = conn.execute(
        sa.update(T)
        .where(T.c.task_id == task_id)
        .values(result_count=T.c.result_count + 1, version=T.c.version + 1, updated_us=now_us)
        .returning(T.c.result_count)
    ).scalar_one_or_none()
    if position is None:
        raise errors.TaskNotFound(task_id)
    notices.touched(conn, task_id)
    conn.execute(
        sa.insert(R).values(task_id=task_id, data=data, position=position - 1, status=status.value)
    )


def read_task(conn: sa.Connection, task_id: str) -> records.Task:
    row = _GET_TASK.mapping(conn, {"p_task_id": task_id})
    if row is None:
        raise errors.TaskNotFound(task_id)
    return rows.task_from_row(row)


def read_view(conn: sa.Connection, task_id: str, *, events_after: int = 0) -> records.TaskView:
    """The task with its stages, events (those numbered after ``events_after``) and
    results; in one snapshot when ``conn``'s transaction gives one."""
    params = {"p_task_id": task_id}
    row = _GET_TASK.mapping(conn, params)
    if row is None:
        raise errors.TaskNotFound(task_id)
    return records.TaskView(
        task=rows.task_from_row(row),
        stages=tuple(rows.stage_from_row(r) for r in _TASK_STAGES.mappings(conn, params)),
        events=tuple(
            rows.event_from_row(r)
            for r in _TASK_EVENTS.mappings(conn, {**params, "p_after": events_after})
        ),
        results=tuple(
            records.TaskResult(data=data, status=states.ResultStatus(status))
            for data, status in _TASK_RESULTS.rows(conn, params)
        ),
    )


def insert_event(
    conn: sa.Connection,
    task_id: str,
    now_us: int,
    *,
    action: str,
    level: states.EventLevel,
    reason: str,
    message: str,
    source: str = records.EVENT_SOURCE,
    bumps: int = 1,
) -> records.Event:
    """Append an event numbered after the task's last one; ``bumps`` as in ``update_task``."""
    return _insert_event(
        conn,
        task_id,
        now_us,
        action=action,
        level=level,
        reason=reason,
        message=message,
        source=source,
        bumps=bumps,
    )[0]


def _insert_event(
    conn: sa.Connection,
    task_id: str,
    now_us: int,
    *,
    action: str,
    level: states.EventLevel,
    reason: str,
    message: str,
    source: str,
    bumps: int,
) -> tuple[records.Event, int]:
    """The event as stored, and the task's version after it."""
    numbered = _NEXT_EVENT.first(conn, {"p_task_id": task_id, "p_now": now_us, "p_bumps": bumps})
    if numbered is None:
        raise errors.TaskNotFound(task_id)
    seq, version = int(numbered[0]), int(numbered[1])
    notices.touched(conn, task_id)
    ((stored_us,),) = _INSERT_EVENT.rows(
        conn,
        {
            "p_task_id": task_id,
            "p_seq": seq,
            "p_action": action,
            "p_level": level.value,
            "p_reason": reason,
            "p_message": message,
            "p_source": source,
            "p_timestamp_us": now_us,
        },
    )
    event = records.Event(
        seq=seq,
        action=action,
        level=level,
        reason=reason,
        message=message,
        timestamp_us=int(stored_us),
        source=source,
    )
    return event, version


def bump(conn: sa.Connection, task_id: str, now_us: int, *, bumps: int = 1, **values: Any) -> int:
    """Move the task's version on (and set ``values`` on its row); returns the new version."""
    if values:
        statement: Any = (
            sa.update(T)
            .where(T.c.task_id == task_id)
            .values(version=T.c.version + bumps, updated_us=now_us, **values)
            .returning(T.c.version)
        )
        version = conn.execute(statement).scalar_one_or_none()
    else:
        row = _BUMP.first(conn, {"p_task_id": task_id, "p_now": now_us, "p_bumps": bumps})
        version = None if row is None else row[0]
    if version is None:
        raise errors.TaskNotFound(task_id)
    notices.touched(conn, task_id)
    return int(version)


def _append_event(
    conn: sa.Connection, change: changes.AppendEvent, *, bumps: int = 1
) -> tuple[records.Event, int]:
    return _insert_event(
        conn,
        change.task_id,
        change.now_us,
        action=change.action,
        level=change.level,
        reason=change.reason,
        message=change.message,
        source=change.source,
        bumps=bumps,
    )


def _stage_params(change: changes.UpdateStage) -> dict[str, Any]:
    stage = change.stage
    return {
        "p_task_id": change.task_id,
        "p_position": stage.position,
        "p_state": stage.state.value,
        "p_start_us": stage.start_us,
        "p_end_us": stage.end_us,
        "p_message": stage.message,
        "p_outputs": dict(stage.outputs),
    }


@dataclass(slots=True)
class _Owed:
    """A task's version bumps not written yet: the changes (by index) they belong to, in
    order, and the time of the latest (what ``updated`` becomes)."""

    changes: list[int] = field(default_factory=list)
    now_us: int = 0


class _Grouped:
    def __init__(self, conn: sa.Connection) -> None:
        self._conn = conn
        self._values: list[changes.Applied] = []
        self._owed: dict[str, _Owed] = {}
        self._stage_rows: list[dict[str, Any]] = []

    def apply(self, batch: Sequence[changes.Change]) -> list[changes.Applied]:
        for change in batch:
            self._values.append(self._one(change))
        self._settle_all()
        self._write_stages()
        return self._values

    def _write_stages(self) -> None:
        if len(self._stage_rows) == 1:
            _UPDATE_STAGE.rows(self._conn, self._stage_rows[0])
        elif self._stage_rows:
            _UPDATE_STAGE.many(self._conn, self._stage_rows)
        self._stage_rows = []

    def _one(self, change: changes.Change) -> changes.Applied:
        conn = self._conn
        match change:
            case changes.UpdateStage():
                # Stage rows are read only by a ReadView: written together before it or at
                # the end.
                later = self._owed.setdefault(change.task_id, _Owed())
                later.changes.append(len(self._values))
                later.now_us = change.now_us
                self._stage_rows.append(_stage_params(change))
                return None  # the version, filled in once its bump is written
            case changes.UpdateTask():
                owed = self._owed.pop(change.task_id, None)
                version = update_task(conn, change, bumps=1 + _count(owed))
                self._settled(owed, version - 1)
                return version
            case changes.AppendEvent():
                owed = self._owed.pop(change.task_id, None)
                event, version = _append_event(conn, change, bumps=1 + _count(owed))
                self._settled(owed, version - 1)
                return event
            case changes.SetResult() | changes.ReadTask():
                # These read the task row (or write it their own way): it must be current.
                self._settle(change.task_id)
                return apply(conn, change)
            case changes.ReadView():
                self._settle(change.task_id)
                self._write_stages()
                return apply(conn, change)

    def _settle(self, task_id: str) -> None:
        owed = self._owed.pop(task_id, None)
        if owed is not None:
            version = bump(self._conn, task_id, owed.now_us, bumps=len(owed.changes))
            self._settled(owed, version)

    def _settle_all(self) -> None:
        for task_id in list(self._owed):
            self._settle(task_id)

    def _settled(self, owed: _Owed | None, version: int) -> None:
        """``version``: the task's version once ``owed``'s bumps are written."""
        if owed is None:
            return
        first = version - len(owed.changes)
        for offset, index in enumerate(owed.changes, 1):
            self._values[index] = first + offset


def _count(owed: _Owed | None) -> int:
    return 0 if owed is None else len(owed.changes)
