"""The engine's hot statements, compiled once per dialect and run on the driver's cursor.

SQLAlchemy builds and compiles each statement (one SQL implementation, every dialect);
running a compiled statement through ``Connection.execute`` still costs several times what
the database does for a one-row update (measured: ~0.3 ms against ~0.03 ms of ``sqlite3``),
and a stage transition is a handful of them. A :class:`Prepared` statement keeps the
compiled text, the order of its parameters and the column types' own bind and result
processors (JSON in and out), and runs on the DBAPI cursor of the connection the caller's
transaction holds. Driver errors become SQLAlchemy's, as ``Connection.execute`` would raise
them, so ``transactions.translated`` sees no difference.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True, slots=True)
class Compiled:
    text: str
    # (name, processor, constant): each parameter in the order the driver takes them; a
    # constant is a value the statement carries itself (a literal ``1``).
    params: tuple[tuple[str, Processor, Any], ...]
    positional: bool
    keys: tuple[str, ...]
    results: tuple[Processor, ...]
    dbapi_error: type[Exception]


_NO_VALUE = object()
_PIPELINE = "clustertasks_pipeline"


class Prepared:
    """One statement; :meth:`rows` and :meth:`many` run it inside the caller's transaction."""

    def __init__(self, statement: sa.ClauseElement) -> None:
        self.statement = statement
        self._compiled: dict[Dialect, Compiled] = {}
        self._guard = threading.Lock()

    def rows(self, conn: sa.Connection, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Every row the statement returns (none for a plain UPDATE), processed."""
        return self.send(conn, params).rows()

    def send(self, conn: sa.Connection, params: dict[str, Any]) -> Sent:
        """Run the statement; inside :func:`pipeline` its rows may arrive only later (ask
        :meth:`Sent.rows` once every statement that does not need them has been sent)."""
        compiled = self._for(conn.dialect)
        cursor = _cursor(conn)
        bound = bind_params(compiled, params)
        try:
            cursor.execute(compiled.text, bound)
        except compiled.dbapi_error as exc:
            cursor.close()
            raise _translated(compiled, bound, exc) from exc
        sent = Sent(compiled, cursor, bound)
        if not conn.info.get(_PIPELINE):
            sent.rows()
        return sent

    def many(self, conn: sa.Connection, params: Sequence[dict[str, Any]]) -> int:
        """Run once per parameter set (``executemany``); returns the rows changed in all."""
        compiled = self._for(conn.dialect)
        cursor = _cursor(conn)
        try:
            cursor.executemany(compiled.text, [bind_params(compiled, p) for p in params])
            return int(cursor.rowcount)
        except compiled.dbapi_error as exc:
            raise _translated(compiled, params, exc) from exc
        finally:
            cursor.close()

    def _for(self, dialect: Dialect) -> Compiled:
        compiled = self._compiled.get(dialect)
        if compiled is None:
            with self._guard:
                compiled = self._compiled.get(dialect)
                if compiled is None:
                    compiled = self._compiled[dialect] = compile_for(self.statement, dialect)
        return compiled


class Sent:
    """A statement sent to the database, and the rows it returns."""

    def __init__(self, compiled: Compiled, cursor: Any, bound: Any) -> None:
        self._compiled = compiled
        self._cursor = cursor
        self._bound = bound
        self._rows: list[tuple[Any, ...]] | None = None
        self._rowcount = -1

    @property
    def rowcount(self) -> int:
        """The rows an UPDATE or DELETE changed (the driver's count)."""
        self.rows()
        return self._rowcount

    def rows(self) -> list[tuple[Any, ...]]:
        if self._rows is None:
            compiled, cursor = self._compiled, self._cursor
            try:
                # A statement with columns returns rows: no need to ask the cursor (building
                # psycopg's description of the columns costs more than reading a row).
                found = cursor.fetchall() if compiled.keys or cursor.description else []
                self._rowcount = int(cursor.rowcount)
            except compiled.dbapi_error as exc:
                raise _translated(compiled, self._bound, exc) from exc
            finally:
                cursor.close()
            if any(compiled.results):
                found = [
                    tuple(
                        value if fn is None else fn(value)
                        for fn, value in zip(compiled.results, row, strict=True)
                    )
                    for row in found
                ]
            self._rows = [tuple(row) for row in found]
        return self._rows

    def rows_read(self) -> None:
        """Read the rows and drop them (the statement's errors raise here)."""
        self.rows()

    def first(self) -> tuple[Any, ...] | None:
        found = self.rows()
        return found[0] if found else None

    def mapping(self) -> dict[str, Any] | None:
        """The first row by column name, or None."""
        row = self.first()
        return None if row is None else dict(zip(self._compiled.keys, row, strict=True))

    def mappings(self) -> list[dict[str, Any]]:
        """Every row by column name."""
        keys = self._compiled.keys
        return [dict(zip(keys, row, strict=True)) for row in self.rows()]


@contextlib.contextmanager
def pipeline(conn: sa.Connection) -> Iterator[None]:
    """Statements sent inside go out together where the driver can (psycopg's pipeline
    mode: one round trip to PostgreSQL instead of one per statement); reading a statement's
    rows waits for everything sent before it. Elsewhere (SQLite) it changes nothing."""
    if conn.dialect.driver != "psycopg" or conn.info.get(_PIPELINE):
        yield
        return
    driver = conn.connection.dbapi_connection
    conn.info[_PIPELINE] = True
    try:
        with driver.pipeline():  # type: ignore[union-attr]
            yield
    except conn.dialect.loaded_dbapi.Error as exc:
        raise sa.exc.DBAPIError.instance(
            "(pipeline)", None, exc, conn.dialect.loaded_dbapi.Error
        ) from exc
    finally:
        conn.info.pop(_PIPELINE, None)


def send_commit(conn: sa.Connection) -> Callable[[], None]:
    """Inside :func:`pipeline` on psycopg: send the COMMIT of the transaction behind the
    statements sent so far, so it goes out in their round trip instead of one of its own;
    the transaction's end then finds nothing left to commit. Call the returned function
    once the pipeline has ended (a failure of the COMMIT, or of any statement before it,
    raises when the pipeline ends, and the transaction's end rolls back as usual).
    Elsewhere nothing is sent: the transaction commits at its end."""
    if conn.dialect.driver != "psycopg" or not conn.info.get(_PIPELINE):
        return nothing
    cursor = _cursor(conn)
    try:
        cursor.execute("COMMIT")
    except conn.dialect.loaded_dbapi.Error as exc:
        cursor.close()
        raise sa.exc.DBAPIError.instance(
            "COMMIT", None, exc, conn.dialect.loaded_dbapi.Error
        ) from exc
    return cursor.close  # type: ignore[no-any-return]


def nothing() -> None:
    """What is left to do after a pipeline when nothing was sent."""
    return None


def compile_for(statement: sa.ClauseElement, dialect: Dialect) -> Compiled:
    compiled = statement.compile(dialect=dialect)
    if not isinstance(compiled, sa.sql.compiler.SQLCompiler):
        raise TypeError(f"not a SQL statement: {statement!r}")
    positional = bool(compiled.positional)
    names = list(compiled.positiontup or []) if positional else list(compiled.binds)
    params = []
    for name in names:
        bind = compiled.binds[name]
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        constant = _NO_VALUE if bind.required or bind.value is None else bind.value
        params.append((name, processor, constant))
    if isinstance(statement, sa.UpdateBase):
        described = statement.returning_column_descriptions
    elif isinstance(statement, sa.Select):
        described = statement.column_descriptions
    else:
        described = []
    keys = tuple(str(d["name"]) for d in described)
    results = tuple(_result_processor(d["type"], dialect) for d in described)
    dbapi = dialect.loaded_dbapi
    return Compiled(compiled.string, tuple(params), positional, keys, results, dbapi.Error)


def _result_processor(type_: Any, dialect: Dialect) -> Processor:
    impl = type_.dialect_impl(dialect)
    try:
        processor: Processor = impl.result_processor(dialect, None)
    except TypeError:
        # psycopg's float and numeric types choose their processor by the type code the
        # server sends with the rows, unknown here. A float column arrives as a float, a
        # numeric one as a Decimal: as a float both, as SQLAlchemy's Float returns them.
        if isinstance(impl, sa.Float | sa.Numeric) and not impl.asdecimal:
            return _as_float
        raise
    return processor


def _as_float(value: Any) -> Any:
    return None if value is None else float(value)


def bind_params(compiled: Compiled, params: dict[str, Any]) -> Any:
    values = []
    for name, processor, constant in compiled.params:
        value = params[name] if constant is _NO_VALUE else constant
        values.append(value if processor is None or value is None else processor(value))
    if compiled.positional:
        return tuple(values)
    return dict(zip((name for name, _, _ in compiled.params), values, strict=True))


def _cursor(conn: sa.Connection) -> Any:
    # The connection's transaction has begun (SQLite: BEGIN IMMEDIATE for a writer): the
    # cursor runs inside it, and commit or rollback stay SQLAlchemy's.
    return conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]


def _translated(compiled: Compiled, params: Any, exc: Exception) -> sa.exc.StatementError:
    return sa.exc.DBAPIError.instance(compiled.text, params, exc, compiled.dbapi_error)
