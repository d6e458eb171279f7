"""TaskStore: tasks, stages, events and results, written incrementally.

Each write is its own short transaction and is committed before the method returns.
Appending an event or setting a result inserts one row and bumps the task's ``version``
and ``updated``; it never rewrites the task or its other parts.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import sqlalchemy as sa

from clustertasks import errors
from clustertasks.domain import records, states
from clustertasks.storage import dialects, rows, schema, transactions

T = schema.tasks
S = schema.stages
E = schema.events
R = schema.results


def _param(name: str, column: sa.Column[Any]) -> sa.BindParameter[Any]:
    return sa.bindparam(name, type_=column.type)


# The hot statements, built once. Building a statement and its cache key costs more than
# running it on SQLite, so the engine's writes and DescribeTaskInfo's reads reuse these,
# bound by parameters (named p_* so they never clash with a column in SET).
_TASK_ID = _param("p_task_id", T.c.task_id)
_BUMP = (
    sa.update(T)
    .where(T.c.task_id == _TASK_ID)
    .values(version=T.c.version + 1, updated_us=_param("p_now", T.c.updated_us))
    .returning(T.c.version)
)
_TASK_FIELDS = {
    "version": T.c.version + 1,
    "updated_us": _param("p_now", T.c.updated_us),
    "state": _param("p_state", T.c.state),
    "current_stage": _param("p_current_stage", T.c.current_stage),
    "outputs": _param("p_outputs", T.c.outputs),
    "error_code": _param("p_error_code", T.c.error_code),
    "error_message": _param("p_error_message", T.c.error_message),
}
_UPDATE_TASK = sa.update(T).where(T.c.task_id == _TASK_ID).returning(T.c.version)
_UPDATE_TASK_PLAIN = _UPDATE_TASK.values(**_TASK_FIELDS)
_UPDATE_TASK_ACTED_ON = _UPDATE_TASK.values(
    **_TASK_FIELDS,
    requested_action=sa.case(
        (T.c.requested_action == _param("p_acted_on", T.c.requested_action), sa.null()),
        else_=T.c.requested_action,
    ),
)
_UPDATE_STAGE = (
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
_NEXT_EVENT = (
    sa.update(T)
    .where(T.c.task_id == _TASK_ID)
    .values(
        event_count=T.c.event_count + 1,
        version=T.c.version + 1,
        updated_us=_param("p_now", T.c.updated_us),
    )
    .returning(T.c.event_count)
)
_EVENT_TIME = sa.select(E.c.timestamp_us).where(
    E.c.task_id == _param("p_task_id", E.c.task_id), E.c.seq == _param("p_seq", E.c.seq)
)
_INSERT_EVENT = sa.insert(E)
_GET_TASK = sa.select(T).where(T.c.task_id == _TASK_ID)
_TASK_STAGES = (
    sa.select(S).where(S.c.task_id == _param("p_task_id", S.c.task_id)).order_by(S.c.position)
)
_TASK_EVENTS = (
    sa.select(E)
    .where(E.c.task_id == _param("p_task_id", E.c.task_id), E.c.seq > _param("p_after", E.c.seq))
    .order_by(E.c.seq)
)
_TASK_VERSION = sa.select(T.c.version).where(T.c.task_id == _TASK_ID)
_TASK_RESULTS = (
    sa.select(R.c.data, R.c.status)
    .where(R.c.task_id == _param("p_task_id", R.c.task_id))
    .order_by(R.c.position)
)


# Ids per IN (…) list: far below SQLite's limit on bound parameters.
_VERSIONS_PER_QUERY = 500


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """Which of a cluster's tasks to list, newest first."""

    cluster_id: str
    limit: int
    offset: int = 0
    state: str | None = None
    task_type: str | None = None
    after: tuple[int, str] | None = None
    """Keyset cursor: list only tasks older than this ``(created_us, task_id)``."""


@dataclass(frozen=True, slots=True)
class SubmitOutcome:
    task: records.Task
    created: bool
    """False when a client token matched an earlier submission."""


BATCHABLE_CALLS = frozenset(
    {
        "update_task",
        "update_stage",
        "append_event",
        "set_result",
        "get_task",
    }
)
"""The calls ``TaskStore.write_batch`` may group: each touches one task, and a failure
in one of them is that call's own (an unknown task, an illegal result transition). A read
(``get_task``) in a batch sees every commit before it and the batch's earlier writes."""

BatchedWrite = tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    """What one call of a batch returned, or the exception it raised."""

    value: Any = None
    error: Exception | None = None


@dataclass(frozen=True, slots=True)
class TaskPage:
    tasks: Sequence[records.Task]
    total_count: int
    has_more: bool


class UnfinishedTask(NamedTuple):
    task_id: str
    state: states.TaskState
    requested_action: str | None


class TaskStore:
    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine
        self._write_options = dialects.write_options(engine)
        # One queue of writers per engine, shared with the other stores on it.
        self._writer = transactions.writer_for(engine)
        # The transaction of the ``write_batch`` running on this thread, if any.
        self._batch = threading.local()

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    # -- writes ----------------------------------------------------------------------------

    def create_task(
        self,
        task: records.Task,
        stages: Sequence[records.Stage],
        results: Sequence[records.TaskResult] = (),
    ) -> None:
        """Insert a new task with all its planned stages (and any known resources)."""
        row = rows.task_row(task)
        row["event_count"] = 0
        row["result_count"] = len(results)
        try:
            with self._write() as conn:
                conn.execute(sa.insert(T).values(**row))
                if stages:
                    conn.execute(sa.insert(S), [rows.stage_row(task.task_id, s) for s in stages])
                if results:
                    conn.execute(
                        sa.insert(R),
                        [
                            {
                                "task_id": task.task_id,
                                "data": r.data,
                                "position": i,
                                "status": r.status.value,
                            }
                            for i, r in enumerate(results)
                        ],
                    )
        except sa.exc.IntegrityError as exc:
            raise errors.DuplicateTask(f"the task {task.task_id} already exists") from exc

    def update_task(self, task: records.Task, *, acted_on: str | None = None) -> int:
        """Write the task row's mutable fields; returns the new version.

        ``acted_on``: the client request (pause, cancel) this change fulfils, forgotten in
        the same transaction — unless a different request has arrived meanwhile.
        """
        params = {
            "p_task_id": task.task_id,
            "p_now": task.updated_us,
            "p_state": task.state.value,
            "p_current_stage": task.current_stage,
            "p_outputs": dict(task.outputs),
            "p_error_code": task.error.code,
            "p_error_message": task.error.message,
        }
        statement = _UPDATE_TASK_PLAIN
        if acted_on is not None:
            statement = _UPDATE_TASK_ACTED_ON
            params["p_acted_on"] = acted_on
        with self._write() as conn:
            version = conn.execute(statement, params).scalar_one_or_none()
        if version is None:
            raise errors.TaskNotFound(task.task_id)
        return int(version)

    def update_stage(self, task_id: str, stage: records.Stage, now_us: int) -> int:
        """Write one stage's state, times, message and outputs; returns the new version."""
        with self._write() as conn:
            version = self._bump(conn, task_id, now_us)
            conn.execute(
                _UPDATE_STAGE,
                {
                    "p_task_id": task_id,
                    "p_position": stage.position,
                    "p_state": stage.state.value,
                    "p_start_us": stage.start_us,
                    "p_end_us": stage.end_us,
                    "p_message": stage.message,
                    "p_outputs": dict(stage.outputs),
                },
            )
            return version

    def append_event(
        self,
        task_id: str,
        *,
        action: str,
        level: states.EventLevel,
        reason: str,
        message: str,
        now_us: int,
        source: str = records.EVENT_SOURCE,
    ) -> records.Event:
        """Append one event; events of a task are numbered 1, 2, 3… in commit order."""
        with self._write() as conn:
            return self._insert_event(
                conn,
                task_id,
                now_us,
                action=action,
                level=level,
                reason=reason,
                message=message,
                source=source,
            )

    def set_result(
        self,
        task_id: str,
        data: str,
        status: states.ResultStatus,
        now_us: int,
        *,
        event: records.EventNote | None = None,
    ) -> None:
        """Record what happened to one resource; a new resource is appended to the list.

        ``event``, when given, is appended in the same transaction: a crash leaves both
        or neither, so a stage re-run never skips the event of a resource already done.
        """
        with self._write() as conn:
            if event is not None:
                self._insert_event(
                    conn,
                    task_id,
                    now_us,
                    action=event.action,
                    level=event.level,
                    reason=event.reason,
                    message=event.message,
                )
            current = conn.execute(
                sa.select(R.c.status).where(R.c.task_id == task_id, R.c.data == data)
            ).scalar_one_or_none()
            if current is not None:
                states.check_result_transition(task_id, data, states.ResultStatus(current), status)
                self._bump(conn, task_id, now_us)
                conn.execute(
                    sa.update(R)
                    .where(R.c.task_id == task_id, R.c.data == data)
                    .values(status=status.value)
                )
                return
            position = conn.execute(
                sa.update(T)
                .where(T.c.task_id == task_id)
                .values(
                    result_count=T.c.result_count + 1, version=T.c.version + 1, updated_us=now_us
                )
                .returning(T.c.result_count)
            ).scalar_one_or_none()
            if position is None:
                raise errors.TaskNotFound(task_id)
            conn.execute(
                sa.insert(R).values(
                    task_id=task_id, data=data, position=position - 1, status=status.value
                )
            )

    def write_batch(self, calls: Sequence[BatchedWrite]) -> list[BatchOutcome]:
        """Run several writes in one transaction (group commit); one outcome per call.

        Each call is ``(method, args, kwargs)`` for one of the ``BATCHABLE_CALLS`` of this
        store. Nothing is visible, and no outcome is returned, before the commit. When any
        call fails, the whole transaction is rolled back and every call is made again on
        its own, so each caller gets exactly the outcome it would have had alone.
        """
        for method, _args, _kwargs in calls:
            if getattr(method, "__self__", None) is not self or (
                getattr(method, "__name__", "") not in BATCHABLE_CALLS
            ):
                raise ValueError(f"{method!r} cannot be batched")
        values: list[Any] | None = None
        # Any failure, the commit's included: each call gets its own outcome below.
        with contextlib.suppress(Exception):
            with self._write() as conn:
                self._batch.conn = conn
                try:
                    done = [method(*args, **kwargs) for method, args, kwargs in calls]
                finally:
                    self._batch.conn = None
            values = done  # only once committed
        if values is not None:
            return [BatchOutcome(value=value) for value in values]
        outcomes: list[BatchOutcome] = []
        for method, args, kwargs in calls:
            try:
                outcomes.append(BatchOutcome(value=method(*args, **kwargs)))
            except Exception as exc:  # noqa: BLE001 - handed back to the caller to raise
                outcomes.append(BatchOutcome(error=exc))
        return outcomes

    def submit_task(self, task: records.Task, stages: Sequence[records.Stage]) -> SubmitOutcome:
        """Create ``task`` unless its client token or a conflicting task says otherwise.

        In one transaction: a known ``client_token`` returns its task (same type, cluster
        and parameters) or raises ``IdempotentParameterMismatch``; an unfinished task on
        the same target, or any unfinished task on the cluster when either task targets
        the whole cluster, raises ``TaskConflict`` naming it. Otherwise the task is created.
        """
        with self._write() as conn:
            if self.dialect == "postgresql":
                # SQLite's BEGIN IMMEDIATE already serialises writers; PostgreSQL needs a
                # lock so two submissions cannot both see "no conflict".
                conn.execute(
                    sa.text("SELECT pg_advisory_xact_lock(hashtext(:cluster))"),
                    {"cluster": task.cluster_id},
                )
            if task.client_token is not None:
                row = conn.execute(
                    sa.select(T).where(T.c.client_token == task.client_token)
                ).one_or_none()
                if row is not None:
                    existing = rows.task_from_row(row._mapping)
                    same = (
                        existing.task_type == task.task_type
                        and existing.cluster_id == task.cluster_id
                        and dict(existing.parameters) == dict(task.parameters)
                    )
                    if not same:
                        raise errors.IdempotentParameterMismatch(
                            f"the client_token {task.client_token} was used for the task "
                            f"{existing.task_id} with other parameters"
                        )
                    return SubmitOutcome(existing, created=False)
            active = [states.TaskState.RUNNING.value, states.TaskState.PAUSED.value]
            scope = [T.c.cluster_id == task.cluster_id, T.c.state.in_(active)]
            if task.target.type != "cluster":
                scope.append(sa.or_(T.c.target_type == "cluster", T.c.target_id == task.target.id))
            blocking = conn.execute(
                sa.select(T.c.task_id, T.c.task_type).where(*scope).limit(1)
            ).one_or_none()
            if blocking is not None:
                raise errors.TaskConflict(
                    f"the task {blocking.task_id} ({blocking.task_type}) is still running on "
                    f"{task.target.type} {task.target.id}; wait for it to finish or cancel it"
                )
            values = rows.task_row(task)
            values["event_count"] = 0
            values["result_count"] = 0
            conn.execute(sa.insert(T).values(**values))
            if stages:
                conn.execute(sa.insert(S), [rows.stage_row(task.task_id, s) for s in stages])
            return SubmitOutcome(task, created=True)

    def add_stages(self, task_id: str, names: Sequence[str], now_us: int) -> list[records.Stage]:
        """Plan stages a task does not list yet, ``pending``, after its last one."""
        with self._write() as conn:
            self._bump(conn, task_id, now_us)
            last = conn.execute(
                sa.select(sa.func.max(S.c.position)).where(S.c.task_id == task_id)
            ).scalar_one_or_none()
            start = -1 if last is None else int(last)
            added = [records.Stage(position=start + i, name=n) for i, n in enumerate(names, 1)]
            if added:
                conn.execute(sa.insert(S), [rows.stage_row(task_id, s) for s in added])
            return added

    def request_action(self, task_id: str, action: str, now_us: int) -> records.Task:
        """Record a client's pause or cancel for the engine, if the task's state allows it."""
        with self._write() as conn:
            task = self._lock_task(conn, task_id)
            target = {
                records.PAUSE: states.TaskState.PAUSED,
                records.CANCEL: states.TaskState.CANCELED,
            }[action]
            states.check_task_transition(task_id, task.state, target)
            if action == records.PAUSE and task.requested_action == records.CANCEL:
                raise errors.IllegalTransition(task_id, "being canceled", target.value)
            self._bump(conn, task_id, now_us, requested_action=action)
            return self._lock_task(conn, task_id)

    def resume(self, task_id: str, now_us: int) -> records.Task:
        """paused -> running, with a ``TaskResumed`` event, in one transaction."""
        with self._write() as conn:
            task = self._lock_task(conn, task_id)
            if task.requested_action == records.CANCEL:
                raise errors.IllegalTransition(task_id, "being canceled", "running")
            resumed = task.with_state(states.TaskState.RUNNING, now_us)
            self._bump(conn, task_id, now_us, state=resumed.state.value, requested_action=None)
            self._insert_event(
                conn,
                task_id,
                now_us,
                action="resume",
                level=states.EventLevel.NORMAL,
                reason="TaskResumed",
                message=f"task {task_id} resumed",
            )
            return self._lock_task(conn, task_id)

    def count_tasks(self) -> int:
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(T)).scalar_one())

    def unfinished_tasks(self) -> list[UnfinishedTask]:
        """Every running or paused task, oldest first (what an executor must look after).

        Only the three columns an executor decides on: it looks again after every task
        that stops, so this must stay cheap with thousands of tasks queued.
        """
        active = [states.TaskState.RUNNING.value, states.TaskState.PAUSED.value]
        with self._read() as conn:
            rows = conn.execute(
                sa.select(T.c.task_id, T.c.state, T.c.requested_action)
                .where(T.c.state.in_(active))
                .order_by(T.c.created_us, T.c.task_id)
            ).all()
        return [
            UnfinishedTask(row.task_id, states.TaskState(row.state), row.requested_action)
            for row in rows
        ]

    # -- reads -----------------------------------------------------------------------------

    def get_task(self, task_id: str) -> records.Task:
        with self._read() as conn:
            row = conn.execute(_GET_TASK, {"p_task_id": task_id}).one_or_none()
        if row is None:
            raise errors.TaskNotFound(task_id)
        return rows.task_from_row(row._mapping)

    def describe_task(self, task_id: str, *, events_after: int = 0) -> records.TaskView:
        """The task with its stages, events and results, read in one consistent snapshot.

        ``events_after``: leave out the events numbered up to this one (a reader that has
        them already: the history is append-only).
        """
        params = {"p_task_id": task_id}
        with self._read(snapshot=True) as conn:
            row = conn.execute(_GET_TASK, params).one_or_none()
            if row is None:
                raise errors.TaskNotFound(task_id)
            stage_rows = conn.execute(_TASK_STAGES, params).all()
            event_rows = conn.execute(_TASK_EVENTS, {**params, "p_after": events_after}).all()
            result_rows = conn.execute(_TASK_RESULTS, params).all()
        return records.TaskView(
            task=rows.task_from_row(row._mapping),
            stages=tuple(rows.stage_from_row(r._mapping) for r in stage_rows),
            events=tuple(rows.event_from_row(r._mapping) for r in event_rows),
            results=tuple(
                records.TaskResult(data=r.data, status=states.ResultStatus(r.status))
                for r in result_rows
            ),
        )

    def task_version(self, task_id: str) -> int:
        """The task's version alone (one primary-key lookup): it changes with every write
        to the task or its parts, so a reader can tell whether its copy is current."""
        with self._read() as conn:
            version = conn.execute(_TASK_VERSION, {"p_task_id": task_id}).scalar_one_or_none()
        if version is None:
            raise errors.TaskNotFound(task_id)
        return int(version)

    def task_versions(self, task_ids: Collection[str]) -> dict[str, int]:
        """The versions of those of ``task_ids`` that exist, read together."""
        wanted = list(task_ids)
        found: dict[str, int] = {}
        with self._read() as conn:
            for start in range(0, len(wanted), _VERSIONS_PER_QUERY):
                chunk = wanted[start : start + _VERSIONS_PER_QUERY]
                rows = conn.execute(
                    sa.select(T.c.task_id, T.c.version).where(T.c.task_id.in_(chunk))
                ).all()
                found.update((row.task_id, int(row.version)) for row in rows)
        return found

    def list_cluster_tasks(self, query: TaskQuery) -> TaskPage:
        where = [T.c.cluster_id == query.cluster_id]
        if query.state is not None:
            where.append(T.c.state == query.state)
        if query.task_type is not None:
            where.append(T.c.task_type == query.task_type)
        page_where = list(where)
        if query.after is not None:
            created, task_id = query.after
            page_where.append(
                sa.or_(
                    T.c.created_us < created,
                    sa.and_(T.c.created_us == created, T.c.task_id < task_id),
                )
            )
        with self._read() as conn:
            total = conn.execute(
                sa.select(sa.func.count()).select_from(T).where(*where)
            ).scalar_one()
            found = conn.execute(
                sa.select(T)
                .where(*page_where)
                .order_by(T.c.created_us.desc(), T.c.task_id.desc())
                .offset(query.offset)
                .limit(query.limit + 1)
            ).all()
        tasks = [rows.task_from_row(r._mapping) for r in found[: query.limit]]
        return TaskPage(tasks=tasks, total_count=total, has_more=len(found) > query.limit)

    # -- plumbing --------------------------------------------------------------------------

    def _lock_task(self, conn: sa.Connection, task_id: str) -> records.Task:
        query = sa.select(T).where(T.c.task_id == task_id)
        if self.dialect == "postgresql":
            query = query.with_for_update()
        row = conn.execute(query).one_or_none()
        if row is None:
            raise errors.TaskNotFound(task_id)
        return rows.task_from_row(row._mapping)

    def _insert_event(
        self,
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
        seq = conn.execute(
            _NEXT_EVENT, {"p_task_id": task_id, "p_now": now_us}
        ).scalar_one_or_none()
        if seq is None:
            raise errors.TaskNotFound(task_id)
        # Concurrent writers may have read the clock in another order than they got the
        # lock: keep timestamps in step with the order of the events.
        previous = conn.execute(
            _EVENT_TIME, {"p_task_id": task_id, "p_seq": seq - 1}
        ).scalar_one_or_none()
        if previous is not None and previous > now_us:
            now_us = previous
        conn.execute(
            _INSERT_EVENT,
            {
                "task_id": task_id,
                "seq": seq,
                "action": action,
                "level": level.value,
                "reason": reason,
                "message": message,
                "source": source,
                "timestamp_us": now_us,
            },
        )
        return records.Event(
            seq=seq,
            action=action,
            level=level,
            reason=reason,
            message=message,
            timestamp_us=now_us,
            source=source,
        )

    def _bump(self, conn: sa.Connection, task_id: str, now_us: int, **values: Any) -> int:
        if values:
            statement: Any = (
                sa.update(T)
                .where(T.c.task_id == task_id)
                .values(version=T.c.version + 1, updated_us=now_us, **values)
                .returning(T.c.version)
            )
            version = conn.execute(statement).scalar_one_or_none()
        else:
            version = conn.execute(
                _BUMP, {"p_task_id": task_id, "p_now": now_us}
            ).scalar_one_or_none()
        if version is None:
            raise errors.TaskNotFound(task_id)
        return int(version)

    @contextlib.contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        batch: sa.Connection | None = getattr(self._batch, "conn", None)
        if batch is not None:
            yield batch  # inside write_batch: its transaction commits for all
            return
        with self._writer, transactions.translated(), self._engine.connect() as conn:
            conn = conn.execution_options(**self._write_options)
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def _read(self, *, snapshot: bool = False) -> Iterator[sa.Connection]:
        """A read transaction; ``snapshot``: every statement in it sees the same commits.

        SQLite gives that to any transaction (WAL). PostgreSQL's default, READ COMMITTED,
        lets each statement see newer commits: a task row could then be older than the
        events read after it, and its version would not describe the document.
        """
        batch: sa.Connection | None = getattr(self._batch, "conn", None)
        if batch is not None:
            yield batch
            return
        with transactions.translated(), self._engine.connect() as conn:
            if snapshot and self.dialect == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn
