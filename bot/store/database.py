"""One database transaction per call: a synchronous body over a SQLAlchemy ``Connection``, on any backend."""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Protocol, TypeVar

from bot.store.engine import (
    SQLITE_THREADS,
    WRITE,
    connect_sqlite,
    make_engine,
    make_sqlite_engine,
    parse_url,
    plain_sqlite_file,
    prepare,
    sqlite_connector,
    sqlite_file,
    sqlite_in_memory,
)
from bot.store.sqlite_database import SqliteDatabase

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection, Engine
    from sqlalchemy.ext.asyncio import AsyncEngine

T = TypeVar("T")


class Database(Protocol):
    """Runs ``body(connection)`` inside one transaction and returns what it returns."""

    @property
    def dialect(self) -> str:
        """The SQLAlchemy dialect name: ``sqlite`` or ``postgresql``."""
        ...

    async def run(self, body: Callable[[Connection], T], *, write: bool = False, quick: bool = False) -> T:
        """Commit if ``body`` returns, roll back if it raises; ``write`` for read-modify-write bodies.

        ``quick``: a short transaction of a chat turn (a few rows), which SQLite may run on the event loop.
        """
        ...

    async def warm(self) -> None:
        """Make now what the database makes on first need (SQLite: its engine)."""
        ...

    async def dispose(self) -> None:
        """Close every pooled connection; the database is not used afterwards."""
        ...


def open_database(url: str) -> Database:
    """The database at ``url``: SQLite on the event loop or worker threads, PostgreSQL through asyncpg.

    A SQLite file's directory and file are created here. Its engine is made when first needed: a plain
    ``sqlite:///path`` URL (the default one) is read without SQLAlchemy, and the loop's connections are
    opened with sqlite3 itself (see ``bot.store.sqlite_database``).
    """
    path = plain_sqlite_file(url)
    if path is not None:
        prepare(path)
        # Absolute now, as pysqlite makes it: the engine, made later, opens the file the loop's connections did.
        database = os.path.abspath(path)
        engine = partial(_engine_of_file, url, database)
        return SqliteDatabase(engine, workers=SQLITE_THREADS, connect=partial(connect_sqlite, database))
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        if sqlite_in_memory(parsed):
            # One shared connection (StaticPool): every transaction on its one thread, none on the loop.
            return SqliteDatabase(partial(make_sqlite_engine, parsed), workers=1, connect=None)
        file = sqlite_file(parsed)
        if file is not None:
            prepare(file)
        connect = sqlite_connector(parsed)
        return SqliteDatabase(partial(make_sqlite_engine, parsed), workers=SQLITE_THREADS, connect=connect)
    return AsyncDatabase(make_engine(url))


def _engine_of_file(url: str, database: str) -> Engine:
    parsed: URL = parse_url(url)
    return make_sqlite_engine(parsed.set(database=database))


class AsyncDatabase:
    """An async engine (asyncpg): the body runs on the driver's connection through ``run_sync``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**WRITE)  # only SQLite's begin listener reads it

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    async def run(self, body: Callable[[Connection], T], *, write: bool = False, quick: bool = False) -> T:
        async with (self._writer if write else self._engine).begin() as conn:
            return await conn.run_sync(body)

    async def warm(self) -> None:
        """Nothing: the engine exists from the start."""

    async def dispose(self) -> None:
        await self._engine.dispose()
