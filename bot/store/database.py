"""One database transaction per call: a synchronous body over a SQLAlchemy ``Connection``, on any backend."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, TypeVar

from sqlalchemy.engine import Connection, Engine
from sqlalchemy.ext.asyncio import AsyncEngine

from bot.store.engine import (
    SQLITE_THREADS,
    WRITE,
    make_engine,
    make_sqlite_engine,
    parse_url,
    sqlite_in_memory,
)

T = TypeVar("T")


class Database(Protocol):
    """Runs ``body(connection)`` inside one transaction and returns what it returns."""

    @property
    def dialect(self) -> str:
        """The SQLAlchemy dialect name: ``sqlite`` or ``postgresql``."""
        ...

    async def run(self, body: Callable[[Connection], T], *, write: bool = False) -> T:
        """Commit if ``body`` returns, roll back if it raises; ``write`` for read-modify-write bodies."""
        ...

    async def dispose(self) -> None:
        """Close every pooled connection; the database is not used afterwards."""
        ...


def open_database(url: str) -> Database:
    """The database at ``url``: SQLite through worker threads, PostgreSQL through asyncpg."""
    parsed = parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        workers = 1 if sqlite_in_memory(parsed) else SQLITE_THREADS
        return ThreadedDatabase(make_sqlite_engine(parsed), workers=workers)
    return AsyncDatabase(make_engine(url))


class ThreadedDatabase:
    """A sync engine whose every transaction is one call on a small thread pool of its own.

    aiosqlite hops to its thread once per DB-API call (checkout, BEGIN, execute, fetch, commit, reset):
    ~2 ms per transaction. One hop per transaction costs ~0.1 ms, and sqlite3 releases the GIL while it
    works in C, so the event loop keeps running meanwhile.
    """

    def __init__(self, engine: Engine, *, workers: int) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**WRITE)  # same pool; its transactions BEGIN IMMEDIATE
        # No more threads than pooled connections, so a thread never waits for a connection.
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="modelbot-store")
        # SQLite allows one writer. Connections of one process that race for it wait in SQLite's sleeping
        # busy handler and can time out under load ("database is locked"); queueing this process's writes
        # here first leaves busy_timeout to arbitrate between processes only.
        self._write_lock = asyncio.Lock()

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    async def run(self, body: Callable[[Connection], T], *, write: bool = False) -> T:
        loop = asyncio.get_running_loop()
        if not write:
            return await loop.run_in_executor(self._threads, _transaction, self._engine, body)
        async with self._write_lock:
            done = loop.run_in_executor(self._threads, _transaction, self._writer, body)
            try:
                return await asyncio.shield(done)
            except asyncio.CancelledError:
                # A thread cannot be interrupted: hold the write lock until its transaction has ended, so
                # the next writer of this process does not meet it in SQLite's busy handler.
                await asyncio.wait([done])
                raise

    async def dispose(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        self._threads.shutdown(wait=True)  # transactions already handed over finish first
        self._engine.dispose()


def _transaction(engine: Engine, body: Callable[[Connection], T]) -> T:
    with engine.connect() as conn, conn.begin():
        return body(conn)


class AsyncDatabase:
    """An async engine (asyncpg): the body runs on the driver's connection through ``run_sync``."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._writer = engine.execution_options(**WRITE)  # only SQLite's begin listener reads it

    @property
    def dialect(self) -> str:
        return self._engine.dialect.name

    async def run(self, body: Callable[[Connection], T], *, write: bool = False) -> T:
        async with (self._writer if write else self._engine).begin() as conn:
            return await conn.run_sync(body)

    async def dispose(self) -> None:
        await self._engine.dispose()
