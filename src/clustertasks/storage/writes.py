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
run prepared (``storage/prepared.py``), and on PostgreSQL a batch's statements go out in
one pipeline: a round trip per batch, not per statement.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from clustertasks import errors
from clustertasks.domain import records, states
from clustertasks.storage import changes, notices, prepared, rows, schema
from clustertasks.storage import statements as sql

T = schema.tasks

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
_RESULT_STATUS = prepared.Prepared(sql.RESULT_STATUS)
_SET_RESULT_STATUS = prepared.Prepared(sql.SET_RESULT_STATUS)
_NEXT_RESULT = prepared.Prepared(sql.NEXT_RESULT)
_INSERT_RESULT = prepared.Prepared(sql.INSERT_RESULT)


def apply(conn: sa.Connection, change: changes.Change) -> changes.Applied:
    """Apply one change (see ``changes`` for what it returns)."""
    match change:
        case changes.UpdateTask():
            version = update_task(conn, change)
            if change.also is not None:
                change.also(conn)
            return version
        case changes.UpdateStage():
            version = bump(conn, change.task_id, change.now_us)
            _UPDATE_STAGE.rows(conn, _stage_params(change))
            return version
        case changes.AppendEvent():
            return _append_event(conn, change)
        case changes.SetResult():
            set_result(conn, change)
            return None
        case changes.ReadTask():
            return read_task(conn, change.task_id)
        case changes.ReadView():
            return read_view(conn, change.task_id)


def apply_grouped(conn: sa.Connection, batch: Sequence[changes.Change]) -> list[changes.Applied]:
    """Apply ``batch`` in order, sharing statements; one value per change.

    Raises the first error met; the transaction must then be rolled back (what was
    written so far is incomplete).
    """
    return _Grouped(conn).apply(batch)


def send_grouped(
    conn: sa.Connection, batch: Sequence[changes.Change]
) -> Callable[[], list[changes.Applied]]:
    """:func:`apply_grouped`'s statements, sent inside the caller's ``prepared.pipeline``
    with whatever it sends after them; their NOTIFY is the caller's to send
    (``notices.announce``). Once the pipeline has ended, the returned call gives one value
    per change, or raises the first error met (roll the transaction back then)."""
    grouped = _Grouped(conn)
    grouped.send(batch)
    return grouped.finish


def update_task(conn: sa.Connection, change: changes.UpdateTask, *, bumps: int = 1) -> int:
    """Write the task row's mutable fields; ``bumps``: the writes this statement stands for."""
    return _version(_send_update_task(conn, change, bumps), change.task_id)


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
    key = {"p_task_id": task_id, "p_data": data}
    current = _RESULT_STATUS.send(conn, key).first()
    if current is not None:
        states.check_result_transition(task_id, data, states.ResultStatus(current[0]), status)
        bump(conn, task_id, now_us)
        _SET_RESULT_STATUS.send(conn, {**key, "p_status": status.value})
        return
    notices.touched(conn, task_id)
    position = _NEXT_RESULT.send(conn, {"p_task_id": task_id, "p_now": now_us, "p_bumps": 1})
    row = position.first()
    if row is None:
        raise errors.TaskNotFound(task_id)
    _INSERT_RESULT.send(conn, {**key, "p_position": int(row[0]) - 1, "p_status": status.value})


def read_task(conn: sa.Connection, task_id: str) -> records.Task:
    return _task(_GET_TASK.send(conn, {"p_task_id": task_id}), task_id)


def read_view(conn: sa.Connection, task_id: str, *, events_after: int = 0) -> records.TaskView:
    """The task with its stages, events (those numbered after ``events_after``) and
    results; in one snapshot when ``conn``'s transaction gives one."""
    return _send_read_view(conn, task_id, events_after)()


MAX_VIEWS_PER_READ = 256
"""Tasks whose views one set of statements reads (their ids are bound one by one)."""


def send_read_views(
    conn: sa.Connection, task_ids: Sequence[str], *, lock: bool = False
) -> Callable[[], dict[str, records.TaskView]]:
    """Send the reads of the views of ``task_ids`` (at most ``MAX_VIEWS_PER_READ``, no
    repeats): four statements however many tasks, where :func:`read_view` takes four for
    one. The returned call gives the views of those that exist, by task id.
    ``lock``: hold their rows until the transaction ends, taken in task id order."""
    if len(task_ids) > MAX_VIEWS_PER_READ:
        raise ValueError(f"{len(task_ids)} views asked for, {MAX_VIEWS_PER_READ} at most")
    statements = _views_statements(_bound_ids(len(task_ids)), lock=lock)
    # Ids repeated up to the statements' size: a few sizes compiled, not one per count.
    padded = [*task_ids, *[task_ids[-1]] * (statements.size - len(task_ids))]
    params = {f"p_id_{index}": task_id for index, task_id in enumerate(padded)}
    tasks = statements.tasks.send(conn, params)
    stages = statements.stages.send(conn, params)
    events = statements.events.send(conn, params)
    results = statements.results.send(conn, params)

    def views() -> dict[str, records.TaskView]:
        stage_rows: dict[str, list[records.Stage]] = {}
        for row in stages.mappings():
            stage_rows.setdefault(row["task_id"], []).append(rows.stage_from_row(row))
        event_rows: dict[str, list[records.Event]] = {}
        for row in events.mappings():
            event_rows.setdefault(row["task_id"], []).append(rows.event_from_row(row))
        result_rows: dict[str, list[records.TaskResult]] = {}
        for task_id, data, status in results.rows():
            result_rows.setdefault(task_id, []).append(
                records.TaskResult(data=data, status=states.ResultStatus(status))
            )
        found: dict[str, records.TaskView] = {}
        for row in tasks.mappings():
            task = rows.task_from_row(row)
            found[task.task_id] = records.TaskView(
                task=task,
                stages=tuple(stage_rows.get(task.task_id, ())),
                events=tuple(event_rows.get(task.task_id, ())),
                results=tuple(result_rows.get(task.task_id, ())),
            )
        return found

    return views


def _bound_ids(count: int) -> int:
    """The number of ids the statements for ``count`` ids bind: the next power of two."""
    return 1 << max(count - 1, 0).bit_length()


@dataclass(frozen=True, slots=True)
class _ViewStatements:
    size: int
    tasks: prepared.Prepared
    stages: prepared.Prepared
    events: prepared.Prepared
    results: prepared.Prepared


@functools.cache
def _views_statements(size: int, *, lock: bool) -> _ViewStatements:
    S, E, R = schema.stages, schema.events, schema.results
    ids = [sa.bindparam(f"p_id_{index}", type_=T.c.task_id.type) for index in range(size)]
    tasks = sa.select(T).where(T.c.task_id.in_(ids)).order_by(T.c.task_id)
    if lock:
        # SQLite renders no FOR UPDATE: its one writer holds the whole database already.
        tasks = tasks.with_for_update()
    return _ViewStatements(
        size=size,
        tasks=prepared.Prepared(tasks),
        stages=prepared.Prepared(
            sa.select(S).where(S.c.task_id.in_(ids)).order_by(S.c.task_id, S.c.position)
        ),
        events=prepared.Prepared(
            sa.select(E).where(E.c.task_id.in_(ids)).order_by(E.c.task_id, E.c.seq)
        ),
        results=prepared.Prepared(
            sa.select(R.c.task_id, R.c.data, R.c.status)
            .where(R.c.task_id.in_(ids))
            .order_by(R.c.task_id, R.c.position)
        ),
    )


def write_stage_starts(
    conn: sa.Connection, started: Sequence[tuple[records.Task, records.Stage]]
) -> None:
    """Write each ``(task, stage)``: the stage, and the task row's fields (its current
    stage) with one version bump for both. Two statements for all of them (each run once
    per row). The caller holds the tasks' rows locked since it read them: each task's
    version becomes the one read plus one."""
    if not started:
        return
    _UPDATE_STAGE.many(
        conn,
        [_stage_params(changes.UpdateStage(task.task_id, stage, 0)) for task, stage in started],
    )
    for task, _ in started:
        notices.touched(conn, task.task_id)
    _UPDATE_TASK.many(conn, [_task_params(task, 1) for task, _ in started])


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
) -> records.Event:
    """Append an event numbered after the task's last one."""
    change = changes.AppendEvent(task_id, action, level, reason, message, now_us, source)
    return _append_event(conn, change)


def bump(conn: sa.Connection, task_id: str, now_us: int, **values: Any) -> int:
    """Move the task's version on (and set ``values`` on its row); returns the new version."""
    if values:
        statement: Any = (
            sa.update(T)
            .where(T.c.task_id == task_id)
            .values(version=T.c.version + 1, updated_us=now_us, **values)
            .returning(T.c.version)
        )
        version = conn.execute(statement).scalar_one_or_none()
        if version is None:
            raise errors.TaskNotFound(task_id)
        notices.touched(conn, task_id)
        return int(version)
    return _version(_send_bump(conn, task_id, now_us, 1), task_id)


# -- statements sent now, read later (a pipeline's rows arrive at its end) -------------------


def _send_update_task(conn: sa.Connection, change: changes.UpdateTask, bumps: int) -> prepared.Sent:
    task = change.task
    params = _task_params(task, bumps)
    statement = _UPDATE_TASK
    if change.acted_on is not None:
        statement = _UPDATE_TASK_ACTED_ON
        params["p_acted_on"] = change.acted_on
    notices.touched(conn, task.task_id)
    return statement.send(conn, params)


def _task_params(task: records.Task, bumps: int) -> dict[str, Any]:
    return {
        "p_task_id": task.task_id,
        "p_now": task.updated_us,
        "p_bumps": bumps,
        "p_state": task.state.value,
        "p_current_stage": task.current_stage,
        "p_outputs": dict(task.outputs),
        "p_error_code": task.error.code,
        "p_error_message": task.error.message,
    }


def _send_bump(conn: sa.Connection, task_id: str, now_us: int, bumps: int) -> prepared.Sent:
    notices.touched(conn, task_id)
    return _BUMP.send(conn, {"p_task_id": task_id, "p_now": now_us, "p_bumps": bumps})


def _version(sent: prepared.Sent, task_id: str) -> int:
    """The new version a statement on the task row returned."""
    row = sent.first()
    if row is None:
        raise errors.TaskNotFound(task_id)
    return int(row[0])


def _task(sent: prepared.Sent, task_id: str) -> records.Task:
    row = sent.mapping()
    if row is None:
        raise errors.TaskNotFound(task_id)
    return rows.task_from_row(row)


def _append_event(conn: sa.Connection, change: changes.AppendEvent) -> records.Event:
    numbered = _send_next_event(conn, change, 1)
    _version(numbered, change.task_id)  # unknown task: nothing more to send
    return _event(change, _send_insert_event(conn, change))


def _send_next_event(conn: sa.Connection, change: changes.AppendEvent, bumps: int) -> prepared.Sent:
    """Number the event (the task's event count and version move on); returns the version."""
    notices.touched(conn, change.task_id)
    params = {"p_task_id": change.task_id, "p_now": change.now_us, "p_bumps": bumps}
    return _NEXT_EVENT.send(conn, params)


def _send_insert_event(conn: sa.Connection, change: changes.AppendEvent) -> prepared.Sent:
    """Insert the event numbered by ``_send_next_event`` (its number read in SQL)."""
    return _INSERT_EVENT.send(
        conn,
        {
            "p_task_id": change.task_id,
            "p_action": change.action,
            "p_level": change.level.value,
            "p_reason": change.reason,
            "p_message": change.message,
            "p_source": change.source,
            "p_timestamp_us": change.now_us,
        },
    )


def _event(change: changes.AppendEvent, inserted: prepared.Sent) -> records.Event:
    row = inserted.first()
    if row is None:
        raise errors.TaskNotFound(change.task_id)
    seq, stored_us = row
    return records.Event(
        seq=int(seq),
        action=change.action,
        level=change.level,
        reason=change.reason,
        message=change.message,
        timestamp_us=int(stored_us),
        source=change.source,
    )


def _send_read_view(
    conn: sa.Connection, task_id: str, events_after: int
) -> Callable[[], records.TaskView]:
    params = {"p_task_id": task_id}
    task = _GET_TASK.send(conn, params)
    stages = _TASK_STAGES.send(conn, params)
    events = _TASK_EVENTS.send(conn, {**params, "p_after": events_after})
    results = _TASK_RESULTS.send(conn, params)

    def view() -> records.TaskView:
        return records.TaskView(
            task=_task(task, task_id),
            stages=tuple(rows.stage_from_row(r) for r in stages.mappings()),
            events=tuple(rows.event_from_row(r) for r in events.mappings()),
            results=tuple(
                records.TaskResult(data=data, status=states.ResultStatus(status))
                for data, status in results.rows()
            ),
        )

    return view


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


# -- a group commit's batch --------------------------------------------------------------------


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
        # Run once every statement is sent: each reads its statements' rows into _values.
        self._after: list[Callable[[], None]] = []
        # The changes' writes to other stores (``UpdateTask.also``), made last, outside the
        # pipeline: they are ordinary statements, and nothing in the batch reads them.
        self._also: list[changes.Also] = []

    def apply(self, batch: Sequence[changes.Change]) -> list[changes.Applied]:
        with prepared.pipeline(self._conn):
            self.send(batch)
            # With the batch's statements: no round trip of its own. What ``also`` touches
            # below, if anything, is announced at the commit as usual.
            # (Not the COMMIT: a change's outcome is only known from its rows, after the
            # pipeline, and one that fails there must leave nothing committed.)
            announced = notices.announce(self._conn)
        announced()
        return self.finish()

    def send(self, batch: Sequence[changes.Change]) -> None:
        self._values = [None] * len(batch)
        for index, change in enumerate(batch):
            self._send(index, change)
        for task_id in list(self._owed):
            self._settle(task_id)
        self._write_stages()

    def finish(self) -> list[changes.Applied]:
        for read in self._after:
            read()
        for also in self._also:
            also(self._conn)
        return self._values

    def _send(self, index: int, change: changes.Change) -> None:
        conn = self._conn
        match change:
            case changes.UpdateStage():
                # Stage rows are read only by a ReadView: written together before it or at
                # the end of the batch.
                later = self._owed.setdefault(change.task_id, _Owed())
                later.changes.append(index)
                later.now_us = change.now_us
                self._stage_rows.append(_stage_params(change))
            case changes.UpdateTask():
                owed = self._owed.pop(change.task_id, None)
                sent = _send_update_task(conn, change, 1 + _count(owed))
                self._then(index, owed, lambda: _version(sent, change.task_id))
                if change.also is not None:
                    self._also.append(change.also)
            case changes.AppendEvent():
                owed = self._owed.pop(change.task_id, None)
                numbered = _send_next_event(conn, change, 1 + _count(owed))
                inserted = _send_insert_event(conn, change)
                self._then(None, owed, lambda: _version(numbered, change.task_id))
                self._after.append(lambda: self._set(index, _event(change, inserted)))
            case changes.ReadTask():
                self._settle(change.task_id)
                task = _GET_TASK.send(conn, {"p_task_id": change.task_id})
                self._after.append(lambda: self._set(index, _task(task, change.task_id)))
            case changes.ReadView():
                self._settle(change.task_id)
                self._write_stages()
                view = _send_read_view(conn, change.task_id, 0)
                self._after.append(lambda: self._set(index, view()))
            case changes.SetResult():
                # Reads and decides as it goes: applied at once, after the task row's
                # pending bumps.
                self._settle(change.task_id)
                set_result(conn, change)

    def _then(self, index: int | None, owed: _Owed | None, version: Callable[[], int]) -> None:
        """Once sent: a statement moved the version to ``version()`` (the value of the change
        at ``index``, if given); ``owed``'s changes, folded into it, the versions before."""

        def read() -> None:
            new = version()
            if index is not None:
                self._values[index] = new
            if owed is not None:
                first = new - 1 - len(owed.changes)
                for offset, owed_index in enumerate(owed.changes, 1):
                    self._values[owed_index] = first + offset

        self._after.append(read)

    def _set(self, index: int, value: changes.Applied) -> None:
        self._values[index] = value

    def _settle(self, task_id: str) -> None:
        owed = self._owed.pop(task_id, None)
        if owed is None:
            return
        sent = _send_bump(self._conn, task_id, owed.now_us, len(owed.changes))

        def read() -> None:
            new = _version(sent, task_id)
            first = new - len(owed.changes)
            for offset, owed_index in enumerate(owed.changes, 1):
                self._values[owed_index] = first + offset

        self._after.append(read)

    def _write_stages(self) -> None:
        if len(self._stage_rows) == 1:
            _UPDATE_STAGE.send(self._conn, self._stage_rows[0])
        elif self._stage_rows:
            _UPDATE_STAGE.many(self._conn, self._stage_rows)
        self._stage_rows = []


def _count(owed: _Owed | None) -> int:
    return 0 if owed is None else len(owed.changes)
