"""The emulator's whole state as rows: wiped, dumped and loaded table by table.

The state is every table of ``schema.metadata`` except :data:`KEPT`, so a table added by a
later migration is wiped, exported and imported without being named here. What is kept is
what authentication needs: the AccessKeys, the signature nonces (forgetting them would make
captured requests replayable) and the audit log (a record of who reset the world).

Rows travel as JSON-safe values, one codec per column type: strings, integers, booleans and
JSON documents as themselves, binary as base64. Importing checks every value against its
column (type, width, range, nullability) before anything is written, and loads the rows in
one transaction, so a refused import changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from clustertasks import errors
from clustertasks.domain import records, states, wire
from clustertasks.storage import rows as task_rows
from clustertasks.storage import schema, transactions

KEPT = frozenset(
    {"access_keys", "auth_nonces", "audit_log", "console_sessions", "state_generation"}
)
"""Tables a reset or an import leaves alone (the state's generation is bumped by both, in
their transaction: see :func:`_next_generation`)."""

_UNFINISHED = (states.TaskState.RUNNING.value, states.TaskState.PAUSED.value)
# A deadlock with a write that was in flight when the wipe began (PostgreSQL picks a victim)
# is worth another try; a database that stays away is not worth many.
_WIPE_ATTEMPTS = 3
_INSERT_CHUNK = 500

Rows = list[dict[str, Any]]


def state_tables() -> list[sa.Table]:
    """The tables of the state, parents before the tables that refer to them."""
    return [table for table in schema.metadata.sorted_tables if table.name not in KEPT]


def table_names() -> list[str]:
    """The state's table names in the order a document lists them (alphabetical)."""
    return sorted(table.name for table in state_tables())


@dataclass(frozen=True, slots=True)
class Removed:
    """What a wipe removed."""

    tasks_unfinished: int
    """Tasks that were running or paused."""
    tasks: int
    clusters: int
    """Every cluster the world recorded, deleted ones included."""


@dataclass(frozen=True, slots=True)
class Replaced:
    """What an import removed, and how many rows of each table it loaded."""

    removed: Removed
    loaded: Mapping[str, int]


CheckLoaded = Callable[[sa.Connection], None]
"""Reads what an import loaded, inside its transaction, and raises
``errors.InvalidParameter`` for rows the application could not use (the import then rolls
back). The type checks of :meth:`SnapshotStore.check` cannot see, e.g., an unknown task
state."""


class SnapshotStore:
    def __init__(self, engine: sa.Engine, check_loaded: CheckLoaded | None = None) -> None:
        self._tx = transactions.Transactions(engine, "the emulator's state")
        self._engine = engine
        self._check_loaded = check_loaded or tasks_read_back

    # -- reset ---------------------------------------------------------------------------------

    def wipe(self) -> Removed:
        """Delete every row of the state in one transaction; say what was there."""
        attempt = 0
        while True:
            attempt += 1
            try:
                with self._tx.write() as conn:
                    removed = _census(conn)
                    self._clear(conn)
                    _next_generation(conn)
                    return removed
            except errors.StorageUnavailable:
                if attempt >= _WIPE_ATTEMPTS:
                    raise

    # -- export --------------------------------------------------------------------------------

    def dump(self) -> dict[str, Rows]:
        """Every row of every state table, from one consistent snapshot of the database.

        Tables by name; rows ordered by primary key (compared in Python, so the order is
        the same on both backends whatever their collation); every column, JSON-safe.
        """
        tables = {table.name: table for table in state_tables()}
        dumped: dict[str, Rows] = {}
        with self._snapshot() as conn:
            for name in sorted(tables):
                table = tables[name]
                codecs = [(column.name, _codec(column)) for column in table.columns]
                rows = [
                    {column: codec.encode(row[column]) for column, codec in codecs}
                    for row in conn.execute(sa.select(table)).mappings()
                ]
                rows.sort(key=_sort_key(table))
                dumped[name] = rows
        return dumped

    # -- import --------------------------------------------------------------------------------

    def check(self, document: Any, field: str = "tables") -> dict[str, Rows]:
        """The rows of ``document`` (``{table: [row, …]}``) as the database takes them.

        Raises ``errors.InvalidParameter`` naming the table, row and column of the first
        problem: an unknown table or column, a missing column, a value of the wrong type, too
        long or out of range. A table the document leaves out is loaded empty.
        """
        if not isinstance(document, Mapping):
            raise errors.InvalidParameter(field, "must be an object of table names to rows")
        tables = {table.name: table for table in state_tables()}
        for name in document:
            if name not in tables:
                why = " (kept across resets and imports)" if name in KEPT else ""
                raise errors.InvalidParameter(
                    f"{field}.{name}", f"is not a table of the emulator's state{why}"
                )
        checked: dict[str, Rows] = {}
        for name, table in tables.items():
            rows = document.get(name, [])
            where = f"{field}.{name}"
            if not isinstance(rows, list):
                raise errors.InvalidParameter(where, "must be a list of rows")
            checked[name] = [
                _decode_row(table, row, f"{where}[{index}]") for index, row in enumerate(rows)
            ]
        return checked

    def replace(self, rows: Mapping[str, Rows]) -> Replaced:
        """Wipe the state and load ``rows`` (checked by :meth:`check`), in one transaction.

        A row that breaks a constraint of the schema (a duplicate key, a reference to a row
        that is not there) raises ``errors.InvalidParameter`` naming its table, and nothing
        changes.
        """
        loaded: dict[str, int] = {}
        with self._tx.write() as conn:
            removed = _census(conn)
            self._clear(conn)
            _next_generation(conn)
            for table in state_tables():
                batch = rows.get(table.name, [])
                loaded[table.name] = len(batch)
                for start in range(0, len(batch), _INSERT_CHUNK):
                    try:
                        conn.execute(sa.insert(table), batch[start : start + _INSERT_CHUNK])
                    except sa.exc.IntegrityError as exc:
                        raise errors.InvalidParameter(
                            f"tables.{table.name}",
                            f"a row breaks a constraint of the schema: {_driver_message(exc)}",
                        ) from None
            if self._check_loaded is not None:
                self._check_loaded(conn)
            self._restart_sequences(conn)
        return Replaced(removed, dict(sorted(loaded.items())))

    # -- plumbing ------------------------------------------------------------------------------

    def _clear(self, conn: sa.Connection) -> None:
        tables = state_tables()
        if conn.dialect.name == "postgresql":
            # One statement, which locks every table before it empties them: a write still in
            # flight finishes first or finds its rows gone, never half of each. RESTART
            # IDENTITY: numbering starts again as in a fresh database.
            quote = conn.dialect.identifier_preparer.quote
            names = ", ".join(quote(table.name) for table in tables)
            conn.execute(sa.text(f"TRUNCATE TABLE {names} RESTART IDENTITY"))
            return
        for table in reversed(tables):
            conn.execute(sa.delete(table))

    def _restart_sequences(self, conn: sa.Connection) -> None:
        """PostgreSQL: an identity column's sequence continues after the highest row loaded
        (SQLite numbers from the highest rowid by itself)."""
        if conn.dialect.name != "postgresql":
            return
        for table in state_tables():
            column = table.autoincrement_column
            if column is None:
                continue
            highest = conn.execute(sa.select(sa.func.max(column))).scalar_one_or_none()
            conn.execute(
                sa.text("SELECT setval(pg_get_serial_sequence(:table, :column), :next, false)"),
                {"table": table.name, "column": column.name, "next": int(highest or 0) + 1},
            )

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sa.Connection]:
        """A read transaction that sees one instant of the database throughout."""
        with transactions.translated(self._tx.name), self._engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                # READ COMMITTED would let each table be read at a different instant.
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():  # SQLite: a read transaction in WAL mode is a snapshot
                yield conn


def _next_generation(conn: sa.Connection) -> None:
    """Start a new generation of the state, in the transaction that resets or imports it:
    ids and task versions start again, so every API process (workers, replicas) must stop
    using what it kept by task id and version; they read the generation with the version.
    """
    table = schema.state_generation
    bumped = conn.execute(
        sa.update(table).where(table.c.row_id == 1).values(generation=table.c.generation + 1)
    )
    if bumped.rowcount == 0:  # the row was deleted by hand: readers took it for 0
        conn.execute(sa.insert(table).values(row_id=1, generation=1))


def _census(conn: sa.Connection) -> Removed:
    tasks = schema.tasks
    count = sa.func.count()
    return Removed(
        tasks_unfinished=int(
            conn.execute(
                sa.select(count).select_from(tasks).where(tasks.c.state.in_(_UNFINISHED))
            ).scalar_one()
        ),
        tasks=int(conn.execute(sa.select(count).select_from(tasks)).scalar_one()),
        clusters=int(conn.execute(sa.select(count).select_from(schema.sim_clusters)).scalar_one()),
    )


def _sort_key(table: sa.Table) -> Callable[[Mapping[str, Any]], Any]:
    keys = [column.name for column in table.primary_key.columns]
    if keys:
        return lambda row: tuple(row[name] for name in keys)
    return lambda row: json.dumps(row, sort_keys=True)


def _driver_message(exc: sa.exc.IntegrityError) -> str:
    text = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else type(exc).__name__
    return text[:300]


def _decode_row(table: sa.Table, row: Any, where: str) -> dict[str, Any]:
    if not isinstance(row, Mapping):
        raise errors.InvalidParameter(where, "must be an object of column names to values")
    for name in row:
        if name not in table.columns:
            raise errors.InvalidParameter(
                f"{where}.{name}", f"is not a column of the table {table.name}"
            )
    decoded: dict[str, Any] = {}
    for column in table.columns:
        field = f"{where}.{column.name}"
        if column.name not in row:
            if not column.nullable:
                raise errors.InvalidParameter(field, "is required")
            decoded[column.name] = None
            continue
        value = row[column.name]
        if value is None:
            if not column.nullable:
                raise errors.InvalidParameter(field, "must not be null")
            decoded[column.name] = None
            continue
        decoded[column.name] = _codec(column).decode(value, field)
    return decoded


# -- codecs: one per kind of column ------------------------------------------------------------


class _Codec:
    """A column's values: to JSON (``encode``) and back, checked (``decode``)."""

    def encode(self, value: Any) -> Any:
        return value

    def decode(self, value: Any, field: str) -> Any:
        raise NotImplementedError


class _Text(_Codec):
    def __init__(self, length: int | None) -> None:
        self.length = length

    def decode(self, value: Any, field: str) -> Any:
        if not isinstance(value, str):
            raise errors.InvalidParameter(field, f"must be a string, got {_kind(value)}")
        if self.length is not None and len(value) > self.length:
            raise errors.InvalidParameter(
                field, f"must be at most {self.length} characters, got {len(value)}"
            )
        if "\x00" in value:
            raise errors.InvalidParameter(field, "must not contain NUL characters")
        return value


class _Integer(_Codec):
    def __init__(self, bits: int) -> None:
        self.low = -(1 << (bits - 1))
        self.high = (1 << (bits - 1)) - 1

    def encode(self, value: Any) -> Any:
        return None if value is None else int(value)

    def decode(self, value: Any, field: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            raise errors.InvalidParameter(field, f"must be an integer, got {_kind(value)}")
        if not self.low <= value <= self.high:
            raise errors.InvalidParameter(
                field, f"must be between {self.low} and {self.high}, got {value}"
            )
        return value


class _Boolean(_Codec):
    def encode(self, value: Any) -> Any:
        return None if value is None else bool(value)

    def decode(self, value: Any, field: str) -> Any:
        if not isinstance(value, bool):
            raise errors.InvalidParameter(field, f"must be true or false, got {_kind(value)}")
        return value


class _Float(_Codec):
    def decode(self, value: Any, field: str) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise errors.InvalidParameter(field, f"must be a number, got {_kind(value)}")
        if not math.isfinite(value):
            raise errors.InvalidParameter(field, "must be a finite number")
        return float(value)


class _Json(_Codec):
    def decode(self, value: Any, field: str) -> Any:
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise errors.InvalidParameter(field, f"must be a JSON value: {exc}") from None
        return value


class _Binary(_Codec):
    def encode(self, value: Any) -> Any:
        return None if value is None else base64.b64encode(bytes(value)).decode("ascii")

    def decode(self, value: Any, field: str) -> Any:
        if not isinstance(value, str):
            raise errors.InvalidParameter(field, f"must be a base64 string, got {_kind(value)}")
        try:
            return base64.b64decode(value, validate=True)
        except binascii.Error:
            raise errors.InvalidParameter(field, "must be a base64 string") from None


def _codec(column: sa.Column[Any]) -> _Codec:
    kind = column.type
    if isinstance(kind, sa.Boolean):
        return _Boolean()
    if isinstance(kind, sa.BigInteger):
        return _Integer(64)
    if isinstance(kind, sa.SmallInteger):
        return _Integer(16)
    if isinstance(kind, sa.Integer):
        return _Integer(32)
    if isinstance(kind, sa.Float):
        return _Float()
    if isinstance(kind, sa.String):
        return _Text(kind.length)
    if isinstance(kind, sa.JSON):
        return _Json()
    if isinstance(kind, sa.LargeBinary):
        return _Binary()
    raise errors.StorageError(
        f"the column {column.table.name}.{column.name} ({kind}) has no state codec"
    )


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:40] + "…"
        return f"the string {shown!r}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


def tasks_read_back(conn: sa.Connection) -> None:
    """Every task of an import reads back as DescribeTaskInfo and the engine read it.

    Raises ``errors.InvalidParameter`` naming the first task that does not (an unknown
    state, parameters that are not an object …); the import is then rolled back.
    """
    parts: dict[str, dict[str, list[Any]]] = {}
    for table, order in (
        (schema.stages, schema.stages.c.position),
        (schema.events, schema.events.c.seq),
        (schema.results, schema.results.c.position),
    ):
        for row in conn.execute(sa.select(table).order_by(table.c.task_id, order)).mappings():
            parts.setdefault(row["task_id"], {}).setdefault(table.name, []).append(row)
    for row in conn.execute(sa.select(schema.tasks).order_by(schema.tasks.c.task_id)).mappings():
        task_id = row["task_id"]
        found = parts.get(task_id, {})
        try:
            view = records.TaskView(
                task=task_rows.task_from_row(row),
                stages=tuple(
                    task_rows.stage_from_row(r) for r in found.get(schema.stages.name, [])
                ),
                events=tuple(
                    task_rows.event_from_row(r) for r in found.get(schema.events.name, [])
                ),
                results=tuple(
                    records.TaskResult(data=r["data"], status=states.ResultStatus(r["status"]))
                    for r in found.get(schema.results.name, [])
                ),
            )
            _check_shapes(view)
            wire.task_document(view)
        except (ValueError, TypeError, KeyError, OverflowError, OSError) as exc:
            raise errors.InvalidParameter(
                "tables.tasks", f"the task {task_id} cannot be read back: {exc}"
            ) from None


def _check_shapes(view: records.TaskView) -> None:
    task = view.task
    if task.target.type not in records.TARGET_TYPES:
        raise ValueError(f"target_type {task.target.type!r} is not cluster or nodepool")
    if task.requested_action not in (None, records.PAUSE, records.CANCEL):
        raise ValueError(f"requested_action {task.requested_action!r} is not pause or cancel")
    objects = [("parameters", task.parameters), ("outputs", task.outputs)]
    objects += [(f"the outputs of stage {s.name}", s.outputs) for s in view.stages]
    for name, value in objects:
        if not isinstance(value, dict):
            raise TypeError(f"{name} must be a JSON object")
