"""The small places where SQLite and PostgreSQL differ, each a named hook.

Connecting, upserting, how writers take turns, snapshot reads and the locks that serialise
submissions and migrations. Nothing else in ``storage`` asks which database it is on.
"""

from __future__ import annotations

import contextlib
import json
import re
import select
from collections.abc import Iterator
from typing import Any, TypeVar

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url

from clustertasks import errors, settings

SQLITE_BEGIN_OPTION = "clustertasks_sqlite_begin"

_T = TypeVar("_T")

# Any constant: serialises concurrent starts of several servers on one PostgreSQL database.
_PG_MIGRATION_LOCK = 0x636C7573

# Connections beyond the steady 10 that a burst may open: the API's worker threads (40)
# plus the executor's database threads (16) can all hold one at once, and waiting for a
# pooled connection would turn a burst into timeouts.
POOL_OVERFLOW = 50
# A PostgreSQL connection older than this is closed at its next checkout and replaced: a
# connection cut where nothing tells this end (a firewall's idle timeout) lasts no longer.
POOL_RECYCLE_SECONDS = 1800


def normalise_url(url: str) -> sa.URL:
    """Accept ``sqlite:///…`` and ``postgresql://…`` (driver psycopg 3 is implied)."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise errors.ConfigurationError(f"cannot parse database URL {url!r}") from exc
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return parsed.set(drivername="sqlite+pysqlite")
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    raise errors.ConfigurationError(
        f"unsupported database {backend!r}: use sqlite:///path or postgresql://…"
    )


def create_engine(config: settings.StorageSettings) -> sa.Engine:
    url = normalise_url(config.url)
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, config)
    return _postgres_engine(url)


def _postgres_engine(url: sa.URL) -> sa.Engine:
    engine = sa.create_engine(
        url, pool_size=10, max_overflow=POOL_OVERFLOW, pool_recycle=POOL_RECYCLE_SECONDS
    )

    @sa.event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        # A connection the server closed (a restart, pg_terminate_backend, a crashed
        # backend) is replaced before it is used. Asking the server (pool_pre_ping) would
        # cost a round trip per transaction; instead the socket is looked at: an idle
        # connection has nothing to read unless the server said goodbye (its FATAL
        # message, then end of file). Only then does the server get asked.
        if not _server_may_have_closed(dbapi_connection):
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:  # any failure of the ping means "dead"
            raise sa.exc.DisconnectionError("the server closed the connection") from exc
        if not alive:
            raise sa.exc.DisconnectionError("the server closed the connection")

    return engine


def _server_may_have_closed(dbapi_connection: Any) -> bool:
    """True unless the pooled connection is open with nothing waiting to be read."""
    if getattr(dbapi_connection, "closed", False):
        return True
    try:
        fd = dbapi_connection.fileno()
    except Exception:  # noqa: BLE001 - a connection without a socket is no use
        return True
    poller = select.poll()
    poller.register(fd, select.POLLIN | select.POLLPRI)
    return bool(poller.poll(0))


# An integer of 19 digits or more may be beyond 64 bits, which orjson reads as a float.
_LONG_DIGITS = re.compile(r"[0-9]{19}")


def load_json(text: str) -> Any:
    """A JSON column's value (SQLite stores JSON as text), exactly as ``json.loads``
    reads it: orjson where it gives the same value (some five times faster on the small
    objects of a task's parameters and outputs), the standard library for what orjson
    refuses (NaN, infinities, lone surrogates, numbers out of a double's range) or reads
    otherwise (integers beyond 64 bits, which it makes floats)."""
    if _LONG_DIGITS.search(text) is None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    return json.loads(text)


def _sqlite_engine(url: sa.URL, config: settings.StorageSettings) -> sa.Engine:
    if url.database in (None, "", ":memory:"):
        raise errors.ConfigurationError("SQLite needs a file: use sqlite:///path/to/file.db")
    engine = sa.create_engine(
        url,
        connect_args={"check_same_thread": False},
        pool_size=10,
        max_overflow=POOL_OVERFLOW,
        json_deserializer=load_json,
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event issue BEGIN itself, so writers can take the
        # write lock up front (BEGIN IMMEDIATE) instead of failing with SQLITE_BUSY when a
        # read transaction tries to upgrade.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode loses nothing when the process dies (kill -9); only a power
        # failure can roll back the last commits.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA busy_timeout={int(config.sqlite_busy_timeout_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        mode = connection.get_execution_options().get(SQLITE_BEGIN_OPTION, "DEFERRED")
        connection.exec_driver_sql(f"BEGIN {mode}")

    return engine


def write_options(engine: sa.Engine) -> dict[str, Any]:
    """Execution options for a transaction that will write."""
    if engine.dialect.name == "sqlite":
        return {SQLITE_BEGIN_OPTION: "IMMEDIATE"}
    return {}


def upsert(
    engine: sa.Engine, table: sa.Table, values: dict[str, Any], keys: list[str], update: list[str]
) -> Any:
    """INSERT … ON CONFLICT (keys) DO UPDATE SET update — same semantics on both dialects."""
    insert: Any = sqlite.insert if engine.dialect.name == "sqlite" else postgresql.insert
    stmt = insert(table).values(**values)
    return stmt.on_conflict_do_update(
        index_elements=keys, set_={name: stmt.excluded[name] for name in update}
    )


def insert_new(engine: sa.Engine, table: sa.Table) -> Any:
    """INSERT … ON CONFLICT DO NOTHING: rows whose key exists are left out, silently."""
    insert: Any = sqlite.insert if engine.dialect.name == "sqlite" else postgresql.insert
    return insert(table).on_conflict_do_nothing()


def choose(engine: sa.Engine, *, sqlite: _T, postgresql: _T) -> _T:
    """The one of two implementations that fits ``engine``'s database."""
    return sqlite if engine.dialect.name == "sqlite" else postgresql


def one_writer_at_a_time(engine: sa.Engine) -> bool:
    """True when the database has a single writer (SQLite), so this process's writers
    should queue for it; PostgreSQL takes row locks itself."""
    return engine.dialect.name == "sqlite"


def database_file(engine: sa.Engine) -> str | None:
    """The file the database lives in (SQLite), or None for a database server."""
    if engine.dialect.name != "sqlite" or not engine.url.database:
        return None
    return engine.url.database


def snapshot_options(engine: sa.Engine) -> dict[str, Any]:
    """Execution options for a read transaction whose statements all see the same commits.

    SQLite gives that to any transaction (WAL). PostgreSQL's default, READ COMMITTED, lets
    each statement see newer commits; REPEATABLE READ takes one snapshot for them all.
    """
    if engine.dialect.name == "postgresql":
        return {"isolation_level": "REPEATABLE READ"}
    return {}


def serialise_in_transaction(conn: sa.Connection, key: str, *, space: int | None = None) -> None:
    """Make the transactions that call this with the same ``key`` run one after another.

    SQLite's writers already do (``BEGIN IMMEDIATE``). PostgreSQL takes a transaction-scoped
    advisory lock: two submissions on one cluster cannot both see "no conflict". ``space``
    keeps other kinds of key apart (PostgreSQL's two-number locks never meet the one-number
    ones), e.g. client tokens from cluster ids.
    """
    if conn.dialect.name != "postgresql":
        return
    if space is None:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": key})
    else:
        conn.execute(
            sa.text("SELECT pg_advisory_xact_lock(:space, hashtext(:key))"),
            {"space": space, "key": key},
        )


@contextlib.contextmanager
def migration_lock(conn: sa.Connection) -> Iterator[None]:
    """Held while migrating, so that servers starting together migrate one at a time.

    SQLite's migration transaction locks the file; PostgreSQL uses a session advisory lock
    (DDL there is transactional, but two servers could both decide to apply a revision).
    """
    if conn.dialect.name != "postgresql":
        yield
        return
    conn.execute(sa.text("SELECT pg_advisory_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    conn.commit()
    try:
        yield
    finally:
        conn.execute(sa.text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_MIGRATION_LOCK})
        conn.commit()


def alters_by_copying(conn: sa.Connection) -> bool:
    """True when ALTER TABLE is too limited for migrations (SQLite): Alembic then copies
    the table ("batch" mode)."""
    return conn.dialect.name == "sqlite"
