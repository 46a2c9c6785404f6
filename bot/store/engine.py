"""The store's engines: SQLite (pysqlite) with WAL and explicit BEGIN [IMMEDIATE], PostgreSQL through asyncpg.

Also what a SQLite database needs before any engine exists, without importing SQLAlchemy: the file of a plain
``sqlite:///path`` URL, creating that file, and opening a sqlite3 connection with every setting the engine's
connections get. ``modelbot chat`` answers its first line on such connections alone (the engine's import is
half its start-up); SQLAlchemy is imported by the functions that make or use an engine.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import unquote

from bot.errors import StoreError

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection, Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

# Execution option read by the SQLite "begin" listener. Read-modify-write transactions must start as
# BEGIN IMMEDIATE: under WAL a deferred transaction that later needs the write lock gets SQLITE_BUSY
# at once, whatever busy_timeout says (measured: 437 "database is locked" in 800 increments).
BEGIN_OPTION: Final = "modelbot_begin"
WRITE: Final[dict[str, Any]] = {BEGIN_OPTION: "IMMEDIATE"}
BEGIN_READ: Final = "BEGIN"
BEGIN_WRITE: Final = "BEGIN IMMEDIATE"
_BEGIN_STATEMENTS: Final = {"": BEGIN_READ, "IMMEDIATE": BEGIN_WRITE}

# Plain driver names map to the async drivers we ship with, so "sqlite:///x.db" works in the config too.
_ASYNC_DRIVERS: Final = {"sqlite": "sqlite+aiosqlite", "postgresql": "postgresql+asyncpg"}
_SUPPORTED: Final = frozenset(_ASYNC_DRIVERS.values())
# The store drives SQLite synchronously in worker threads (one hop per transaction, where aiosqlite made one
# per DB-API call), so the configured aiosqlite URL is served by the standard library's sqlite3 module.
_SYNC_SQLITE: Final = "sqlite+pysqlite"
# Connections, and so worker threads, per SQLite database. This process's writes run one at a time anyway
# and WAL readers do not block, so a second thread only keeps reads flowing while a write waits for another
# process's lock; more threads just compete for the GIL (measured: 5 threads cost 10-15 % in bench.pipeline).
# (The event loop holds two more of its own, outside the pool: see bot.store.sqlite_database.)
SQLITE_THREADS: Final = 2
# The URLs of a SQLite file that plain_sqlite_file reads without SQLAlchemy: a driver parse_url accepts, no
# host, no query (make_url reads everything after the third slash as the file's name, unquoted).
_PLAIN_SQLITE_PREFIXES: Final = ("sqlite+aiosqlite:///", "sqlite:///")


def plain_sqlite_file(url: str) -> Path | None:
    """The database file of a ``sqlite[+aiosqlite]:///path`` URL without a query (the default URL is one),
    as ``sqlite_file(parse_url(url))`` reads it but without importing SQLAlchemy; None for any other URL,
    which ``parse_url`` checks."""
    if "?" in url:
        return None
    for prefix in _PLAIN_SQLITE_PREFIXES:
        if url.startswith(prefix):
            database = unquote(url[len(prefix) :])
            if database in ("", ":memory:") or database.startswith("file:"):
                return None
            return Path(database)
    return None


def parse_url(url: str) -> URL:
    """The URL with an async driver; StoreError (without the password) for anything unsupported."""
    from sqlalchemy.engine import make_url  # noqa: PLC0415 - see the module docstring
    from sqlalchemy.exc import ArgumentError  # noqa: PLC0415

    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise StoreError("The storage URL is not a valid database URL.") from exc
    backend = "postgresql" if parsed.get_backend_name() == "postgres" else parsed.get_backend_name()
    if "+" not in parsed.drivername and backend in _ASYNC_DRIVERS:
        parsed = parsed.set(drivername=_ASYNC_DRIVERS[backend])
    if parsed.drivername not in _SUPPORTED:
        shown = parsed.render_as_string(hide_password=True)
        raise StoreError(
            f"Unsupported storage URL {shown}: use sqlite+aiosqlite:// or postgresql+asyncpg://."
        )
    return parsed


def sqlite_file(url: URL) -> Path | None:
    """The database file of a SQLite URL; None for PostgreSQL and in-memory databases."""
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database)


def sqlite_in_memory(url: URL) -> bool:
    """Whether a SQLite URL names a private in-memory database (one per connection)."""
    return url.get_backend_name() == "sqlite" and (url.database or "") in ("", ":memory:")


# Serialises this process's file creations: see prepare_sqlite_file.
_CREATING = threading.Lock()


def prepare_sqlite_file(path: Path) -> None:
    """Create the directory (0700) and, if missing, an empty file (0600): the history is private conversation.

    An existing database file is never opened here. SQLite's locks are POSIX advisory locks, which belong to
    the process: closing *any* descriptor of the file drops every lock this process's SQLite connections
    hold on it, and another process may then delete a WAL that is in use (measured: a whole process's
    committed writes lost, "disk I/O error" on connect). A new file is safe to open and close: no
    connection of this process can have it open before this function returns, as creations are serialised.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with _CREATING:
        if path.exists():
            return
        try:
            # SQLite gives its -wal and -shm files the database file's mode, so this covers them too.
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        except FileExistsError:  # another process created it meanwhile, and may be using it
            return
        os.close(fd)


def connect_sqlite(database: str, **connect_args: Any) -> sqlite3.Connection:
    """A sqlite3 connection as the engine's pool opens one (pysqlite's arguments, ``configure_sqlite``),
    usable from any thread; ``database`` is an absolute path, as pysqlite makes it."""
    connection: sqlite3.Connection = sqlite3.connect(database, check_same_thread=False, **connect_args)
    try:
        configure_sqlite(connection)
    except BaseException:
        connection.close()  # SQLite's own close keeps this process's locks (unlike os.close: see above)
        raise
    return connection


def sqlite_connector(url: URL) -> Callable[[], sqlite3.Connection]:
    """``connect_sqlite`` with the arguments SQLAlchemy's pysqlite dialect derives from a SQLite ``url``."""
    from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite  # noqa: PLC0415

    (database,), args = SQLiteDialect_pysqlite().create_connect_args(url.set(drivername=_SYNC_SQLITE))
    args.pop("check_same_thread", None)  # make_sqlite_engine's connect_args override it too
    return partial(connect_sqlite, database, **args)


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    configure_sqlite(dbapi_connection)


def configure_sqlite(dbapi_connection: Any) -> None:
    """The settings of every SQLite connection of the store: the engine's pool and the event loop's own."""
    # SQLAlchemy's documented recipe: take BEGIN away from the sqlite3 module, emit it in _sqlite_begin.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout=5000")
        _enable_wal(cursor)
        for pragma in ("synchronous=NORMAL", "foreign_keys=ON"):
            cursor.execute(f"PRAGMA {pragma}")
    finally:
        cursor.close()


WAL_ATTEMPTS = 100  # x 0.05 s: a bound well above any migration's lock hold


def _enable_wal(cursor: Any) -> None:
    """Switch the file to WAL once; the mode persists in the file, so later connections only check it.

    The switch needs a moment with no other connection in the file, and SQLite answers SQLITE_BUSY at once
    in some lock states instead of waiting out busy_timeout. That only happens while several processes race
    to create the database, so a short, bounded retry is enough (this runs on a worker thread).
    """
    for attempt in range(WAL_ATTEMPTS):
        try:
            cursor.execute("PRAGMA journal_mode")  # DB-API form: execute, then fetch (adapted cursors too)
            if str(cursor.fetchone()[0]).lower() != "wal":
                cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if ("locked" not in str(exc) and "busy" not in str(exc)) or attempt == WAL_ATTEMPTS - 1:
                raise
            time.sleep(0.05)


def _sqlite_begin(conn: Connection) -> None:
    mode = conn.get_execution_options().get(BEGIN_OPTION, "")
    conn.exec_driver_sql(_BEGIN_STATEMENTS[mode])


def prepare(path: Path) -> None:
    """``prepare_sqlite_file``, its failure as a StoreError."""
    try:
        prepare_sqlite_file(path)
    except OSError as exc:
        raise StoreError(f"Cannot create the database file {path}: {exc.strerror}.") from exc


def _prepare(url: URL) -> None:
    path = sqlite_file(url)
    if path is not None:
        prepare(path)


def _listen(engine: Engine) -> None:
    from sqlalchemy import event  # noqa: PLC0415 - see the module docstring

    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)


def sqlalchemy_connection(connection: sqlite3.Connection) -> Connection:
    """A SQLAlchemy connection over a held ``connect_sqlite`` connection, for bodies written against
    SQLAlchemy: its own one-connection engine emits BEGIN [IMMEDIATE] as the others do, and leaves the
    connection's settings as they are (no "connect" listener). Disposing of that engine closes it."""
    from sqlalchemy import create_engine, event  # noqa: PLC0415 - see the module docstring
    from sqlalchemy.pool import StaticPool  # noqa: PLC0415

    engine = create_engine(f"{_SYNC_SQLITE}://", creator=lambda: connection, poolclass=StaticPool)
    event.listen(engine, "begin", _sqlite_begin)
    return engine.connect()


def make_engine(url: str) -> AsyncEngine:
    """An async engine (aiosqlite or asyncpg); for a SQLite file, its directory and file are created first.

    The store itself uses it for PostgreSQL only: SQLite goes through ``make_sqlite_engine``.
    """
    # Imported here: SQLAlchemy's asyncio extension pulls in its ORM, ~0.1 s of every SQLite bot's start-up.
    from sqlalchemy.ext.asyncio import create_async_engine  # noqa: PLC0415

    parsed = parse_url(url)
    if parsed.get_backend_name() != "sqlite":
        # Long-running bots outlive server restarts: check pooled connections before handing them out.
        return create_async_engine(parsed, pool_pre_ping=True)
    _prepare(parsed)
    engine = create_async_engine(parsed)
    _listen(engine.sync_engine)
    return engine


def make_sqlite_engine(url: URL) -> Engine:
    """A sync pysqlite engine for a SQLite ``url`` whose connections may be used from any worker thread.

    Its file must have been created first (``prepare``): the engine is made when first needed, which may be
    long after the event loop's own connections opened the file.
    """
    from sqlalchemy import create_engine  # noqa: PLC0415 - see the module docstring
    from sqlalchemy.pool import QueuePool, StaticPool  # noqa: PLC0415

    sync_url = url.set(drivername=_SYNC_SQLITE)
    # check_same_thread=False: a connection is checked out by whichever pool thread runs the transaction.
    connect_args = {"check_same_thread": False}
    if sqlite_in_memory(url):
        # Every connection to :memory: is a database of its own: share one (its user runs one worker thread).
        engine = create_engine(sync_url, poolclass=StaticPool, connect_args=connect_args)
    else:
        engine = create_engine(
            sync_url,
            poolclass=QueuePool,
            pool_size=SQLITE_THREADS,
            max_overflow=0,  # never more threads than connections, so no thread waits for one
            connect_args=connect_args,
        )
    _listen(engine)
    return engine
