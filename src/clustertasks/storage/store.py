"""TaskStore: tasks, stages, events and results, written incrementally.

Each write is its own short transaction and is committed before the method returns; the
engine's changes (``changes``) may also be grouped, several in one transaction
(``apply_batch``). Appending an event or setting a result inserts one row and bumps the
task's ``version`` and ``updated``; it never rewrites the task or its other parts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import operator
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, overload

import sqlalchemy as sa

from clustertasks import errors
from clustertasks.domain import records, states
from clustertasks.storage import (
    changes,
    dialects,
    notices,
    point_reads,
    prepared,
    rows,
    schema,
    transactions,
    writes,
)
from clustertasks.storage import statements as sql

T = schema.tasks
S = schema.stages
E = schema.events
R = schema.results


# PostgreSQL advisory locks on client tokens live in a key space of their own.
_CLIENT_TOKEN_LOCKS = 0x746F6B

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


Accepted = Callable[[sa.Connection], None]
"""What else a task's acceptance changes, run in the transaction that inserts the task (a
node pool shown ``removing`` at once): committed with the task, or not at all."""


@dataclass(frozen=True, slots=True)
class SubmitOutcome:
    task: records.Task
    created: bool
    """False when a client token matched an earlier submission."""


@dataclass(frozen=True, slots=True)
class TaskPage:
    tasks: Sequence[records.Task]
    total_count: int
    has_more: bool


class TaskEvent(NamedTuple):
    """An event with the task it belongs to (DescribeClusterEvents, DescribeEvents)."""

    task_id: str
    cluster_id: str
    task_type: str
    target_id: str
    event: records.Event


@dataclass(frozen=True, slots=True)
class EventPage:
    events: Sequence[TaskEvent]
    total_count: int


@dataclass(frozen=True, slots=True)
class StageStart:
    """Start stage ``stage`` of task ``task_id`` at ``now_us`` (``TaskStore.begin_stages``);
    ``stage`` None: only read the task."""

    task_id: str
    stage: str | None
    now_us: int


class Stamp(NamedTuple):
    """What names one content of a task: its version, in the state's generation (a reset
    or an import of the emulator's state starts versions again in a new generation)."""

    version: int
    generation: int


class StampedView(NamedTuple):
    """A task read with the generation of the state it was read in."""

    view: records.TaskView
    generation: int

    @property
    def stamp(self) -> Stamp:
        return Stamp(self.view.task.version, self.generation)


class UnfinishedTask(NamedTuple):
    task_id: str
    state: states.TaskState
    requested_action: str | None
    updated_us: int = 0
    """When the task or one of its parts was last written."""
    event_count: int = 0
    """Events written so far (none before an executor has planned the task)."""


class TaskStore:
    def __init__(self, engine: sa.Engine, points: point_reads.PointReads | None = None) -> None:
        """``points``: single-row reads straight through SQLite's driver (the version)."""
        self._engine = engine
        self._points = points
        self._version_read = points.prepare(sql.TASK_VERSION) if points is not None else None
        self._stamp_read = points.prepare(sql.TASK_STAMP) if points is not None else None
        self._document_read = (
            _DocumentRead(points, sql.TASK_DOCUMENT) if points is not None else None
        )
        self._write_options = dialects.write_options(engine)
        self._snapshot_options = dialects.snapshot_options(engine)
        # One queue of writers per engine, shared with the other stores on it.
        self._writer = transactions.writer_for(engine)

    # -- the engine's changes, alone or grouped ------------------------------------------------

    @overload
    def apply(self, change: changes.UpdateTask | changes.UpdateStage) -> int: ...
    @overload
    def apply(self, change: changes.AppendEvent) -> records.Event: ...
    @overload
    def apply(self, change: changes.SetResult) -> None: ...
    @overload
    def apply(self, change: changes.ReadTask) -> records.Task: ...
    @overload
    def apply(self, change: changes.ReadView) -> records.TaskView: ...
    @overload
    def apply(self, change: changes.Change) -> changes.Applied: ...
    def apply(self, change: changes.Change) -> changes.Applied:
        """Apply one change in a transaction of its own (see ``changes`` for what it returns)."""
        if isinstance(change, changes.ReadTask | changes.ReadView):
            with self._read(snapshot=True) as conn:
                return writes.apply(conn, change)
        with self._write() as conn:
            return writes.apply(conn, change)

    def apply_batch(self, batch: Sequence[changes.Change]) -> list[changes.BatchOutcome]:
        """Apply several changes in one transaction (group commit); one outcome per change.

        Nothing is visible, and no outcome is returned, before the commit. When any change
        fails, the whole transaction is rolled back and every change is applied again on its
        own, so each caller gets exactly the outcome it would have had alone.
        """
        values: list[changes.Applied] | None = None
        # Any failure, the commit's included: each change gets its own outcome below.
        with contextlib.suppress(Exception):
            with self._write() as conn:
                done = writes.apply_grouped(conn, batch)
            values = done  # only once committed
        if values is not None:
            return [changes.BatchOutcome(value=value) for value in values]
        outcomes: list[changes.BatchOutcome] = []
        for change in batch:
            try:
                outcomes.append(changes.BatchOutcome(value=self.apply(change)))
            except Exception as exc:  # noqa: BLE001 - handed back to the caller to raise
                outcomes.append(changes.BatchOutcome(error=exc))
        return outcomes

    # Kept for callers that write one change at a time (tests, the emulator's fault rules).

    def update_task(self, task: records.Task, *, acted_on: str | None = None) -> int:
        """``apply(UpdateTask(…))``: returns the new version."""
        return self.apply(changes.UpdateTask(task, acted_on))

    def update_stage(self, task_id: str, stage: records.Stage, now_us: int) -> int:
        """``apply(UpdateStage(…))``: returns the new version."""
        return self.apply(changes.UpdateStage(task_id, stage, now_us))

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
        """``apply(AppendEvent(…))``: returns the event as numbered."""
        return self.apply(
            changes.AppendEvent(task_id, action, level, reason, message, now_us, source)
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
        """``apply(SetResult(…))``."""
        self.apply(changes.SetResult(task_id, data, status, now_us, event))

    def get_task(self, task_id: str) -> records.Task:
        return self.apply(changes.ReadTask(task_id))

    # -- submissions and requests --------------------------------------------------------------

    def submit_task(
        self,
        task: records.Task,
        stages: Sequence[records.Stage],
        accepted: Accepted | None = None,
    ) -> SubmitOutcome:
        """Create ``task`` unless its client token or a conflicting task says otherwise.

        In one transaction: a known ``client_token`` returns its task (same type, cluster
        and parameters) or raises ``IdempotentParameterMismatch``; an unfinished task on
        the same target, or any unfinished task on the cluster when either task targets
        the whole cluster, raises ``TaskConflict`` naming it. Otherwise the task is created
        and ``accepted`` runs in the same transaction.
        """
        try:
            with self._write() as conn:
                return _submit(conn, task, stages, accepted)
        except errors.RowConflict as exc:
            # Serialised submissions never get here; another writer (or a token reused
            # across processes on SQLite's busy timeout) may. The row that won answers.
            if task.client_token is not None:
                with self._read() as conn:
                    existing = _task_with_token(conn, task.client_token)
                if existing is not None:
                    return SubmitOutcome(_same_request(existing, task), created=False)
            raise errors.DuplicateTask(f"the task {task.task_id} already exists") from exc

    def add_stages(self, task_id: str, names: Sequence[str], now_us: int) -> list[records.Stage]:
        """Plan stages a task does not list yet, ``pending``, after its last one."""
        with self._write() as conn:
            writes.bump(conn, task_id, now_us)
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
            task = _lock_task(conn, task_id)
            target = {
                records.PAUSE: states.TaskState.PAUSED,
                records.CANCEL: states.TaskState.CANCELED,
            }[action]
            states.check_task_transition(task_id, task.state, target)
            if action == records.PAUSE and task.requested_action == records.CANCEL:
                raise errors.IllegalTransition(task_id, "being canceled", target.value)
            writes.bump(conn, task_id, now_us, requested_action=action)
            return _lock_task(conn, task_id)

    def resume(self, task_id: str, now_us: int) -> records.Task:
        """paused -> running, with a ``TaskResumed`` event, in one transaction."""
        with self._write() as conn:
            task = _lock_task(conn, task_id)
            if task.requested_action == records.CANCEL:
                raise errors.IllegalTransition(task_id, "being canceled", "running")
            resumed = task.with_state(states.TaskState.RUNNING, now_us)
            writes.bump(conn, task_id, now_us, state=resumed.state.value, requested_action=None)
            writes.insert_event(
                conn,
                task_id,
                now_us,
                action="resume",
                level=states.EventLevel.NORMAL,
                reason="TaskResumed",
                message=f"task {task_id} resumed",
            )
            return _lock_task(conn, task_id)

    def count_tasks(self) -> int:
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(T)).scalar_one())

    def count_by_type_and_state(self) -> list[tuple[str, str, int]]:
        """(task_type, state, count) for every pair that has tasks: one grouped count, read
        at each metrics scrape."""
        with self._read() as conn:
            rows = conn.execute(
                sa.select(T.c.task_type, T.c.state, sa.func.count()).group_by(
                    T.c.task_type, T.c.state
                )
            ).all()
        return [(str(task_type), str(state), int(count)) for task_type, state, count in rows]

    def unfinished_tasks(self) -> list[UnfinishedTask]:
        """Every running or paused task, oldest first (what an executor must look after).

        Only the few columns an executor decides on: it looks again after every task
        that stops, so this must stay cheap with thousands of tasks queued.
        """
        active = [states.TaskState.RUNNING.value, states.TaskState.PAUSED.value]
        with self._read() as conn:
            rows = conn.execute(
                sa.select(
                    T.c.task_id, T.c.state, T.c.requested_action, T.c.updated_us, T.c.event_count
                )
                .where(T.c.state.in_(active))
                .order_by(T.c.created_us, T.c.task_id)
            ).all()
        return [
            UnfinishedTask(
                row.task_id,
                states.TaskState(row.state),
                row.requested_action,
                int(row.updated_us),
                int(row.event_count),
            )
            for row in rows
        ]

    # -- reads -----------------------------------------------------------------------------

    def describe_task(self, task_id: str, *, events_after: int = 0) -> records.TaskView:
        """The task with its stages, events and results, read in one consistent snapshot.

        ``events_after``: leave out the events numbered up to this one (a reader that has
        them already: the history is append-only).
        """
        return self.describe_task_stamped(task_id, events_after=events_after).view

    def describe_task_stamped(self, task_id: str, *, events_after: int = 0) -> StampedView:
        """``describe_task`` with the state's generation, read in the same snapshot."""
        if self._document_read is not None:
            return self._document_read.read(task_id, events_after)
        with self._read(snapshot=True) as conn:
            view = writes.read_view(conn, task_id, events_after=events_after)
            generation = conn.execute(sa.select(sql.GENERATION)).scalar_one()
        return StampedView(view, int(generation))

    def task_stamp(self, task_id: str) -> Stamp:
        """The task's version and the state's generation, in one statement (two primary-key
        lookups): together they name the task's content across resets and imports."""
        if self._points is not None and self._stamp_read is not None:
            found = self._points.first(self._stamp_read, {"p_task_id": task_id})
        else:
            with self._read() as conn:
                found = conn.execute(sql.TASK_STAMP, {"p_task_id": task_id}).first()
        if found is None:
            raise errors.TaskNotFound(task_id)
        return Stamp(int(found[0]), int(found[1]))

    def task_version(self, task_id: str) -> int:
        """The task's version alone (one primary-key lookup): it changes with every write
        to the task or its parts, so a reader can tell whether its copy is current."""
        if self._points is not None and self._version_read is not None:
            row = self._points.first(self._version_read, {"p_task_id": task_id})
            if row is None:
                raise errors.TaskNotFound(task_id)
            return int(row[0])
        with self._read() as conn:
            version = conn.execute(sql.TASK_VERSION, {"p_task_id": task_id}).scalar_one_or_none()
        if version is None:
            raise errors.TaskNotFound(task_id)
        return int(version)

    def task_stamps(self, task_ids: Collection[str]) -> dict[str, Stamp]:
        """The stamps of those of ``task_ids`` that exist, read together.

        Each version is read with the generation in one statement, as ``task_stamp`` reads
        it: on PostgreSQL a transaction whose snapshot was taken before a reset's
        ``TRUNCATE`` committed would find the tasks' table empty."""
        wanted = list(task_ids)
        found: dict[str, Stamp] = {}
        with self._read() as conn:
            for start in range(0, len(wanted), _VERSIONS_PER_QUERY):
                chunk = wanted[start : start + _VERSIONS_PER_QUERY]
                rows = conn.execute(
                    sa.select(T.c.task_id, T.c.version, sql.GENERATION).where(
                        T.c.task_id.in_(chunk)
                    )
                ).all()
                found.update(
                    (row.task_id, Stamp(int(row.version), int(row.state_generation)))
                    for row in rows
                )
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

    def list_events(
        self,
        *,
        cluster_id: str | None = None,
        task_id: str | None = None,
        task_type: str | None = None,
        limit: int,
        offset: int = 0,
    ) -> EventPage:
        """Events of the tasks that match, newest first (then by task and number)."""
        where = [E.c.task_id == T.c.task_id]
        if cluster_id is not None:
            where.append(T.c.cluster_id == cluster_id)
        if task_id is not None:
            where.append(T.c.task_id == task_id)
        if task_type is not None:
            where.append(T.c.task_type == task_type)
        columns = (T.c.task_id, T.c.cluster_id, T.c.task_type, T.c.target_id)
        with self._read() as conn:
            total = conn.execute(
                sa.select(sa.func.count())
                .select_from(E)
                .join(T, E.c.task_id == T.c.task_id)
                .where(*where)
            ).scalar_one()
            found = conn.execute(
                sa.select(*columns, *[c for c in E.c if c.name != "task_id"])
                .select_from(E)
                .join(T, E.c.task_id == T.c.task_id)
                .where(*where)
                .order_by(E.c.timestamp_us.desc(), T.c.task_id.desc(), E.c.seq.desc())
                .offset(offset)
                .limit(limit)
            ).all()
        events = [
            TaskEvent(
                r.task_id, r.cluster_id, r.task_type, r.target_id, rows.event_from_row(r._mapping)
            )
            for r in found
        ]
        return EventPage(events=events, total_count=total)

    # -- the Temporal executor's stage starts -----------------------------------------------

    def begin_stages(self, starts: Sequence[StageStart]) -> dict[str, records.TaskView]:
        """Read several tasks (each with its stages, events and results) and start one stage
        of each, in one transaction; the views as committed, by task id. Tasks that do not
        exist are left out.

        A stage starts (state ``running`` from ``now_us``, and the task's current stage)
        only while its task runs with no pause or cancel request, so a request committed
        before is seen here and the stage stays as it was: exactly the check a stage
        boundary makes. A stage already running only becomes the current one.
        """
        if not any(start.stage is not None for start in starts):
            with self._read(snapshot=True) as conn:
                return _read_views(conn, sorted({start.task_id for start in starts}), lock=False)
        with self._write() as conn:
            return _begin_stages(conn, starts)[0]

    def begin_stages_and_apply(
        self, starts: Sequence[StageStart], batch: Sequence[changes.Change]
    ) -> tuple[dict[str, records.TaskView], list[changes.BatchOutcome]]:
        """``begin_stages(starts)`` and ``apply_batch(batch)`` in one transaction: the
        changes first, then the starts. Should either fail, each runs again on its own, so
        every caller gets exactly the outcome it would have had alone."""
        if not batch:
            return self.begin_stages(starts), []
        if not starts:
            return {}, self.apply_batch(batch)
        with contextlib.suppress(Exception):
            with self._write() as conn:
                views, values = _begin_stages(conn, starts, batch)
            return views, [changes.BatchOutcome(value=value) for value in values]
        return self.begin_stages(starts), self.apply_batch(batch)

    # -- transactions ----------------------------------------------------------------------

    @contextlib.contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        with self._writer, transactions.translated(), self._engine.connect() as conn:
            conn = conn.execution_options(**self._write_options)
            notices.forget(conn)
            with conn.begin():
                yield conn
                notices.announce(conn)()

    @contextlib.contextmanager
    def _read(self, *, snapshot: bool = False) -> Iterator[sa.Connection]:
        """A read transaction; ``snapshot``: every statement in it sees the same commits
        (a task row never older than the events read after it, its version describing the
        whole document)."""
        with transactions.translated(), self._engine.connect() as conn:
            if snapshot and self._snapshot_options:
                conn = conn.execution_options(**self._snapshot_options)
            with conn.begin():
                yield conn


class _DocumentRead:
    """``describe_task_stamped`` straight through SQLite's driver: one statement
    (``statements.TASK_DOCUMENT``), whose rows are the task's parts, each converted as
    the part's own statement would convert it (JSON columns decoded)."""

    def __init__(self, points: point_reads.PointReads, statement: sa.CompoundSelect[Any]) -> None:
        self._points = points
        self._statement = points.prepare(statement)
        # A result's two columns (data, status) have no processor: read as they come.
        parts = (sql.GET_TASK_STAMPED, sql.TASK_STAGES, sql.TASK_EVENTS)
        self._parts = tuple(_Part.of(points.prepare(part)) for part in parts)

    def read(self, task_id: str, events_after: int) -> StampedView:
        found = self._points.rows(self._statement, {"p_task_id": task_id, "p_after": events_after})
        found.sort(key=_part_order)
        if not found or found[0][0] != sql.DOCUMENT_TASK:
            raise errors.TaskNotFound(task_id)
        task_part, stage_part, event_part = self._parts
        task = task_part.mapping(found[0])
        stages, events, results = [], [], []
        for row in found[1:]:
            part = row[0]
            if part == sql.DOCUMENT_STAGE:
                stages.append(rows.stage_from_row(stage_part.mapping(row)))
            elif part == sql.DOCUMENT_EVENT:
                events.append(rows.event_from_row(event_part.mapping(row)))
            else:
                results.append(records.TaskResult(data=row[2], status=states.ResultStatus(row[3])))
        view = records.TaskView(
            task=rows.task_from_row(task),
            stages=tuple(stages),
            events=tuple(events),
            results=tuple(results),
        )
        return StampedView(view, int(task["state_generation"]))


_part_order = operator.itemgetter(0, 1)


@dataclass(frozen=True, slots=True)
class _Part:
    """The columns of one part of a ``TASK_DOCUMENT`` row, after its part and order."""

    keys: tuple[str, ...]
    end: int
    converted: tuple[tuple[int, Callable[[Any], Any]], ...]
    """(index in the row, result processor) of the columns that have one."""

    @classmethod
    def of(cls, statement: prepared.Compiled) -> _Part:
        converted = tuple(
            (2 + index, process)
            for index, process in enumerate(statement.results)
            if process is not None
        )
        return cls(statement.keys, 2 + len(statement.keys), converted)

    def mapping(self, row: tuple[Any, ...]) -> dict[str, Any]:
        values = list(row)
        for index, process in self.converted:
            value = values[index]
            if value is not None:
                values[index] = process(value)
        return dict(zip(self.keys, values[2 : self.end], strict=True))


# -- the Temporal executor's stage starts, in a transaction the caller holds ------------


def _read_views(
    conn: sa.Connection, task_ids: Sequence[str], *, lock: bool
) -> dict[str, records.TaskView]:
    """The views of those of ``task_ids`` that exist. ``lock``: hold their rows until the
    transaction ends (every write to a task or its parts updates its row, so what is read
    after the lock stays as read). In ``task_ids``' order: locks are taken in one order."""
    with prepared.pipeline(conn):
        read = _send_read_views(conn, task_ids, lock=lock)
    return read()  # the pipeline has ended: every row has arrived


def _send_read_views(
    conn: sa.Connection, task_ids: Sequence[str], *, lock: bool
) -> Callable[[], dict[str, records.TaskView]]:
    """:func:`_read_views` sent inside the caller's ``prepared.pipeline``; call the result
    once it has ended."""
    step = writes.MAX_VIEWS_PER_READ
    sent = [
        writes.send_read_views(conn, task_ids[start : start + step], lock=lock)
        for start in range(0, len(task_ids), step)
    ]

    def read() -> dict[str, records.TaskView]:
        found: dict[str, records.TaskView] = {}
        for views in sent:
            found.update(views())
        return found

    return read


def _begin_stages(
    conn: sa.Connection, starts: Sequence[StageStart], batch: Sequence[changes.Change] = ()
) -> tuple[dict[str, records.TaskView], list[changes.Applied]]:
    """``TaskStore.begin_stages``, after ``batch`` applied as ``apply_grouped`` does, in
    the write transaction ``conn`` holds; commits it."""
    # The changes and the reads of every task go out together, then the starts together
    # (on PostgreSQL two round trips however many tasks and changes, the commit in the
    # second).
    with prepared.pipeline(conn):
        applied = writes.send_grouped(conn, batch)
        read = _send_read_views(conn, sorted({start.task_id for start in starts}), lock=True)
    values = applied()
    views = read()
    started: list[tuple[records.Task, records.Stage]] = []
    for start in starts:
        view = views.get(start.task_id)
        if view is not None and start.stage is not None:
            view, stage = _start_stage(view, start.stage, start.now_us)
            if stage is not None:
                # Its row is locked since read: the version moves on by one.
                task = dataclasses.replace(view.task, version=view.task.version + 1)
                view = dataclasses.replace(view, task=task)
                started.append((task, stage))
            views[start.task_id] = view
    # The starts, their NOTIFY and the COMMIT go out together: one round trip.
    # (Nothing read after it can fail: the rows are locked, the tasks exist.)
    with prepared.pipeline(conn):
        writes.write_stage_starts(conn, started)
        announced = notices.announce(conn)
        committed = prepared.send_commit(conn)
    announced()
    committed()
    return views, values


def _start_stage(
    view: records.TaskView, name: str, now_us: int
) -> tuple[records.TaskView, records.Stage | None]:
    """Start stage ``name`` if it may (see ``TaskStore.begin_stages``): the view as it will
    be, and the stage to write with the task's row (None: nothing to write)."""
    task = view.task
    stage = next((s for s in view.stages if s.name == name), None)
    if (
        stage is None
        or task.state is not states.TaskState.RUNNING
        or task.requested_action is not None
        or stage.state not in (states.StageState.PENDING, states.StageState.RUNNING)
    ):
        return view, None
    stages = tuple(view.stages)
    if stage.state is states.StageState.PENDING:
        stage = stage.with_state(task.task_id, states.StageState.RUNNING, now_us)
        stages = tuple(stage if s.name == name else s for s in stages)
    elif task.current_stage == name:
        return view, None
    # One update of the task row for both: the current stage, and the version the stage's
    # change bumps.
    task = task.with_current_stage(name, now_us)
    return dataclasses.replace(view, task=task, stages=stages), stage


# -- submissions ----------------------------------------------------------------------------


def _lock_task(conn: sa.Connection, task_id: str) -> records.Task:
    row = conn.execute(sql.LOCK_TASK, {"p_task_id": task_id}).one_or_none()
    if row is None:
        raise errors.TaskNotFound(task_id)
    return rows.task_from_row(row._mapping)


def _submit(
    conn: sa.Connection,
    task: records.Task,
    stages: Sequence[records.Stage],
    accepted: Accepted | None = None,
) -> SubmitOutcome:
    if task.client_token is not None:
        # Requests with one token wait for each other before anything else: the first
        # one's task is what the others answer with. (Always token, then cluster: no cycle.)
        dialects.serialise_in_transaction(conn, task.client_token, space=_CLIENT_TOKEN_LOCKS)
        existing = _task_with_token(conn, task.client_token)
        if existing is not None:
            return SubmitOutcome(_same_request(existing, task), created=False)
    dialects.serialise_in_transaction(conn, task.cluster_id)
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
    if accepted is not None:
        accepted(conn)
    return SubmitOutcome(task, created=True)


def _task_with_token(conn: sa.Connection, client_token: str) -> records.Task | None:
    row = conn.execute(sa.select(T).where(T.c.client_token == client_token)).one_or_none()
    return None if row is None else rows.task_from_row(row._mapping)


def _same_request(existing: records.Task, task: records.Task) -> records.Task:
    """``existing`` when ``task`` asks for the same thing with its token; otherwise
    ``IdempotentParameterMismatch``. Requests are compared by their digests (what the
    client sent, normalised), or, without one, by cluster and parameters."""
    if existing.request_digest is not None or task.request_digest is not None:
        same = existing.request_digest == task.request_digest
    else:
        same = existing.cluster_id == task.cluster_id and dict(existing.parameters) == dict(
            task.parameters
        )
    if existing.task_type != task.task_type or not same:
        raise errors.IdempotentParameterMismatch(
            f"the client_token {task.client_token} was used for the task "
            f"{existing.task_id} with other parameters"
        )
    return existing
