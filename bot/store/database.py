"""One database transaction per call: a synchronous body over a SQLAlchemy ``Connection``, on any backend."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol, TypeVar

from sqlalchemy.engine import Connection

from bot.store.engine import (
    SQLITE_THREADS,
    WRITE,
    make_engine,
    make_sqlite_engine,
    parse_url,
    sqlite_in_memory,
)
from bot.store.sqlite_database import SqliteDatabase

if TYPE_CHECKING:
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

    async def dispose(self) -> None:
        """Close every pooled connection; the database is not used afterwards."""
        ...


def open_database(url: str) -> Database:
    """The database at ``url``: SQLite on the event loop or worker threads, PostgreSQL through asyncpg."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        if sqlite_in_memory(parsed):
            # One shared connection (StaticPool): every transaction on its one thread, none on the loop.
            return SqliteDatabase(make_sqlite_engine(parsed), workers=1, on_loop=False)
        return SqliteDatabase(make_sqlite_engine(parsed), workers=SQLITE_THREADS, on_loop=True)
    return AsyncDatabase(make_engine(url))


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

    async def dispose(self) -> None:
        await self._engine.dispose()
