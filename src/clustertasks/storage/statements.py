"""The task store's hot statements, built once.

Building a statement and its cache key costs more than running it on SQLite, so the
engine's writes and DescribeTaskInfo's reads reuse these, bound by parameters (named
``p_*`` so they never clash with a column in SET).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from clustertasks.storage import schema

T = schema.tasks
S = schema.stages
E = schema.events
R = schema.results
G = schema.state_generation


def _param(name: str, column: sa.Column[Any]) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=column.type)


_TASK_ID = _param("p_task_id", T.c.task_id)
# How many writes a statement stands for: 1, or more when a transaction of grouped changes
# folds the version bumps of a task's earlier changes into it (the version still moves by
# exactly one per write, as if each had been its own statement).
_BUMPS = _param("p_bumps", T.c.version)
_BUMP_VALUES = {"version": T.c.version + _BUMPS, "updated_us": _param("p_now", T.c.updated_us)}
BUMP = sa.update(T).where(T.c.task_id == _TASK_ID).values(**_BUMP_VALUES).returning(T.c.version)
_TASK_FIELDS = {
    "version": T.c.version + _BUMPS,
    "updated_us": _param("p_now", T.c.updated_us),
    "state": _param("p_state", T.c.state),
    "current_stage": _param("p_current_stage", T.c.current_stage),
    "outputs": _param("p_outputs", T.c.outputs),
    "error_code": _param("p_error_code", T.c.error_code),
    "error_message": _param("p_error_message", T.c.error_message),
}
_UPDATE_TASK_ROW = sa.update(T).where(T.c.task_id == _TASK_ID).returning(T.c.version)
UPDATE_TASK = _UPDATE_TASK_ROW.values(**_TASK_FIELDS)
UPDATE_TASK_ACTED_ON = _UPDATE_TASK_ROW.values(
    **_TASK_FIELDS,
    requested_action=sa.case(
        (T.c.requested_action == _param("p_acted_on", T.c.requested_action), sa.null()),
        else_=T.c.requested_action,
    ),
)
UPDATE_STAGE = (
    sa.update(S)
    .where(S.c.task_id == _param("p_task_id", S.c.task_id))
    .where(S.c.position == _param("p_position", S.c.position))
    .values(
        state=_param("p_state", S.c.state),
        start_us=_param("p_start_us", S.c.start_us),
        end_us=_param("p_end_us", S.c.end_us),
        message=_param("p_message", S.c.message),
        outputs=_param("p_outputs", S.c.outputs),
    )
)
NEXT_EVENT = (
    sa.update(T)
    .where(T.c.task_id == _TASK_ID)
    .values(event_count=T.c.event_count + 1, **_BUMP_VALUES)
    .returning(T.c.version)
)
# The number NEXT_EVENT gave the event, read in SQL: both statements can be sent at once.
_EVENT_SEQ = sa.select(T.c.event_count).where(T.c.task_id == _TASK_ID).scalar_subquery()
_EVENT_TIME = _param("p_timestamp_us", E.c.timestamp_us)
_PREVIOUS_TIME = (
    sa.select(E.c.timestamp_us)
    .where(E.c.task_id == _param("p_task_id", E.c.task_id), E.c.seq == _EVENT_SEQ - 1)
    .scalar_subquery()
)
# Concurrent writers may have read the clock in another order than they got the lock: an
# event never carries an earlier timestamp than the one before it (read in the same
# statement, which returns the number and timestamp it stored).
INSERT_EVENT = (
    sa.insert(E)
    .from_select(
        ["task_id", "seq", "action", "level", "reason", "message", "source", "timestamp_us"],
        sa.select(
            _param("p_task_id", E.c.task_id),
            _EVENT_SEQ,
            _param("p_action", E.c.action),
            _param("p_level", E.c.level),
            _param("p_reason", E.c.reason),
            _param("p_message", E.c.message),
            _param("p_source", E.c.source),
            sa.case((_PREVIOUS_TIME > _EVENT_TIME, _PREVIOUS_TIME), else_=_EVENT_TIME),
        ),
    )
    .returning(E.c.seq, E.c.timestamp_us)
)
GET_TASK = sa.select(T).where(T.c.task_id == _TASK_ID)
# SQLite renders no FOR UPDATE: its one writer holds the whole database already.
LOCK_TASK = GET_TASK.with_for_update()
TASK_STAGES = (
    sa.select(S).where(S.c.task_id == _param("p_task_id", S.c.task_id)).order_by(S.c.position)
)
TASK_EVENTS = (
    sa.select(E)
    .where(E.c.task_id == _param("p_task_id", E.c.task_id), E.c.seq > _param("p_after", E.c.seq))
    .order_by(E.c.seq)
)
TASK_VERSION = sa.select(T.c.version).where(T.c.task_id == _TASK_ID)
# The state's generation, 0 before the first reset or import (and where its row is missing).
GENERATION = sa.func.coalesce(
    sa.select(G.c.generation).where(G.c.row_id == 1).scalar_subquery(), 0
).label("state_generation")
# The version and the generation in one statement: two primary-key lookups, one read.
TASK_STAMP = sa.select(T.c.version, GENERATION).where(T.c.task_id == _TASK_ID)
# The task row and the generation, for a document that is kept by both.
GET_TASK_STAMPED = sa.select(T, GENERATION).where(T.c.task_id == _TASK_ID)
TASK_RESULTS = (
    sa.select(R.c.data, R.c.status)
    .where(R.c.task_id == _param("p_task_id", R.c.task_id))
    .order_by(R.c.position)
)
RESULT_STATUS = sa.select(R.c.status).where(
    R.c.task_id == _param("p_task_id", R.c.task_id), R.c.data == _param("p_data", R.c.data)
)
SET_RESULT_STATUS = (
    sa.update(R)
    .where(R.c.task_id == _param("p_task_id", R.c.task_id), R.c.data == _param("p_data", R.c.data))
    .values(status=_param("p_status", R.c.status))
)
# A new result takes the next position: the task's result count moves on with its version.
NEXT_RESULT = (
    sa.update(T)
    .where(T.c.task_id == _TASK_ID)
    .values(result_count=T.c.result_count + 1, **_BUMP_VALUES)
    .returning(T.c.result_count)
)
INSERT_RESULT = sa.insert(R).values(
    task_id=_param("p_task_id", R.c.task_id),
    data=_param("p_data", R.c.data),
    position=_param("p_position", R.c.position),
    status=_param("p_status", R.c.status),
)


def _document_part(
    kind: int, order: sa.ColumnElement[Any], columns: list[sa.ColumnElement[Any]], width: int
) -> sa.Select[Any]:
    padding = [sa.null()] * (width - len(columns))
    part = sa.literal_column(str(kind), sa.Integer).label("part")
    return sa.select(part, order.label("part_order"), *columns, *padding)


# Parts of TASK_DOCUMENT, in the order its rows list them.
DOCUMENT_TASK, DOCUMENT_STAGE, DOCUMENT_EVENT, DOCUMENT_RESULT = range(4)
# Each row: the part, its order within the part, then the columns of GET_TASK_STAMPED,
# TASK_STAGES, TASK_EVENTS or TASK_RESULTS, padded with NULLs to the widest.
_DOCUMENT_WIDTH = len(T.columns) + 1
TASK_DOCUMENT = sa.union_all(
    _document_part(
        DOCUMENT_TASK, sa.literal_column("0", sa.Integer), [*T.columns, GENERATION], _DOCUMENT_WIDTH
    ).where(T.c.task_id == _TASK_ID),
    _document_part(DOCUMENT_STAGE, S.c.position, list(S.columns), _DOCUMENT_WIDTH).where(
        S.c.task_id == _param("p_task_id", S.c.task_id)
    ),
    _document_part(DOCUMENT_EVENT, E.c.seq, list(E.columns), _DOCUMENT_WIDTH).where(
        E.c.task_id == _param("p_task_id", E.c.task_id), E.c.seq > _param("p_after", E.c.seq)
    ),
    _document_part(DOCUMENT_RESULT, R.c.position, [R.c.data, R.c.status], _DOCUMENT_WIDTH).where(
        R.c.task_id == _param("p_task_id", R.c.task_id)
    ),
)
"""A task's whole document in one statement (on SQLite one statement is one snapshot,
with no BEGIN and COMMIT around four): the task row with the state's generation, its
stages, events (after ``p_after``) and results, each row tagged with its part and its
order within it. The rows come in no promised order: the reader sorts them by (part,
order), which costs less than SQLite's sorter (a third of the statement's time)."""
