"""SQLite transactions on the event loop when they can start at once, else in worker threads; checkpoints.

Measured on this project's 2-vCPU VM: handing a transaction to a thread and back costs 0.15-0.4 ms each way,
more than the turn's transactions themselves on a held connection (read a session ~0.05 ms, save a turn
~0.2 ms). Under WAL with ``synchronous=NORMAL`` a commit is memory work and ``write()`` calls, no fsync, so
running it on the loop costs less than any hand-off. What could make it wait — another process's write lock,
WAL recovery — is refused at once on the loop's connections (``busy_timeout=0``); the transaction is then run
again, from the start, in a worker thread, where ``busy_timeout`` waits. Bulk transactions (listing, resetting
or pruning many rows) always run in a thread. sqlite3 releases the GIL while SQLite works, so the loop keeps
running meanwhile.

A turn's own transactions (``run_sql``) are SQL text on the sqlite3 connection itself: SQLAlchemy's execution
machinery (events, compiled-statement caches, result objects) cost three times what SQLite took to run them.
The loop's two connections are opened with sqlite3 too (``bot.store.engine.connect_sqlite``: the settings of
the engine's connections), so a turn needs no SQLAlchemy at all, whose import was half of ``modelbot chat``'s
start-up; checkpoints have a sqlite3 connection of their own. The engine, whose pool serves the worker
threads, is made the first time a transaction goes to a thread (``warm`` makes it at once, for a process
that serves chats); a SQLAlchemy connection over a loop connection the first time a ``run`` body (a
compaction, the auth state) runs on the loop.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, Final, TypeVar

from bot.store.db_errors import database_errors
from bot.store.engine import BEGIN_READ, BEGIN_WRITE, WRITE, sqlalchemy_connection

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.exc import DBAPIError

T = TypeVar("T")
log = logging.getLogger("modelbot.store")

# Writes on the loop between checkpoints: SQLite's own autocheckpoint size (1000 pages) at the ~4 pages a
# saved turn dirties.
CHECKPOINT_EVERY_WRITES: Final = 250
# The WAL is made to start over once it holds this many frames (16 MiB of 4 KiB pages): see _checkpoint.
RESTART_WAL_AFTER_FRAMES: Final = 4096


class SqliteDatabase:
    """Quick transactions on the loop's two held connections, others in threads on a sync pysqlite engine.

    ``engine`` makes that engine, on first need. ``connect`` opens a connection for the loop (two are held);
    None for an in-memory database, whose one connection serves every transaction in the one worker thread.
    """

    def __init__(
        self, engine: Callable[[], Engine], *, workers: int, connect: Callable[[], sqlite3.Connection] | None
    ) -> None:
        self._make_engine = engine
        # The engine, and the same pool's twin whose transactions BEGIN IMMEDIATE; see _engine.
        self._engines: tuple[Engine, Engine] | None = None
        self._making_engine = threading.Lock()
        # No more threads than pooled connections, so a thread never waits for a connection.
        self._threads = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="modelbot-store")
        self._connect = connect
        self._loop_connections: _LoopConnections | None = None
        self._opening: asyncio.Future[_LoopConnections] | None = None
        self._thread_write: asyncio.Future[Any] | None = None  # see _write
        self._writes_since_checkpoint = 0
        self._checkpointing: asyncio.Task[None] | None = None
        self._checkpointer: sqlite3.Connection | None = None  # see _checkpoint_pass

    @property
    def dialect(self) -> str:
        return "sqlite"

    def _engine(self, *, write: bool = False) -> Engine:
        """The engine (``write``: its twin whose transactions BEGIN IMMEDIATE), made on first use, in whichever
        worker thread needs it first: under a lock, as two may."""
        engines = self._engines
        if engines is None:
            with self._making_engine:
                if self._engines is None:
                    engine = self._make_engine()
                    self._engines = (engine, engine.execution_options(**WRITE))
                engines = self._engines
        return engines[1] if write else engines[0]

    async def run(self, body: Callable[[Connection], T], *, write: bool = False, quick: bool = False) -> T:
        on_loop = await self._loop_side() if quick else None
        if write:
            now = None if on_loop is None else partial(_transaction_now, on_loop.sqlalchemy()[1], body)
            return await self._write(now, partial(_transaction, partial(self._engine, write=True), body))
        if on_loop is not None:
            try:
                return _transaction_now(on_loop.sqlalchemy()[0], body)
            except _Busy:
                pass
        return await asyncio.get_running_loop().run_in_executor(
            self._threads, _transaction, self._engine, body
        )

    async def run_sql(self, body: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        """A quick transaction whose ``body`` runs SQL text on the sqlite3 connection itself: on the loop
        when it can start at once, else in a thread, like ``run(…, quick=True)``."""
        begin = BEGIN_WRITE if write else BEGIN_READ
        on_loop = await self._loop_side()
        if write:
            now = None if on_loop is None else partial(_sql_transaction_now, on_loop.writer, body, begin)
            return await self._write(now, partial(_sql_transaction, self._engine, body, begin))
        if on_loop is not None:
            # On the writer's connection, whose page cache holds what the turn's writes just wrote: SQLite
            # drops a connection's whole cache when another connection has written since its last read (a
            # session read after the lease's write took 22-43 us on the reader, 13 us on a warm cache). It is
            # free: the loop's transactions never span an await.
            try:
                return _sql_transaction_now(on_loop.writer, body, begin)
            except _Busy:
                pass
        return await asyncio.get_running_loop().run_in_executor(
            self._threads, _sql_transaction, self._engine, body, begin
        )

    async def _write(self, now: Callable[[], T] | None, in_thread: Callable[[], T]) -> T:
        """This process's writes, one at a time: on the loop when possible, else one thread write at a time.

        SQLite allows one writer, and connections of one process that race for it wait in SQLite's sleeping
        busy handler, where they can time out under load ("database is locked"); so a write waits here for
        the thread write in progress, if any, leaving busy_timeout to arbitrate between processes only.
        Writes on the loop need no lock: nothing else runs on the loop while one does. Waiters wait for the
        thread write only, not for each other, so they all run as soon as it ends: an asyncio.Lock handed
        over one waiter per loop iteration kept a queue of every conversation's save under load (measured:
        all 200 conversations of bench.pipeline parked there for good after the first compaction).
        """
        while (current := self._thread_write) is not None and not current.done():
            await asyncio.wait([current])  # never raises, and leaves the thread write alone if cancelled
        if now is not None:
            try:
                result = now()
            except _Busy:
                pass  # another process is writing: wait for it in a thread
            else:
                self._count_write()
                return result
        done = asyncio.get_running_loop().run_in_executor(self._threads, in_thread)
        # Until its transaction has ended (a thread cannot be interrupted), even if our caller is cancelled.
        self._thread_write = done
        return await asyncio.shield(done)

    async def _loop_side(self) -> _LoopConnections | None:
        """The loop's two connections, opened in a thread on first use (connecting may wait for a lock)."""
        if self._connect is None:
            return None
        if self._loop_connections is not None:
            return self._loop_connections
        if self._opening is None or self._opening.done():  # done, yet no connections: it failed, try again
            loop = asyncio.get_running_loop()
            self._opening = loop.run_in_executor(self._threads, self._open_loop_connections)
        return await asyncio.shield(self._opening)  # callers meanwhile wait for the same opening

    def _open_loop_connections(self) -> _LoopConnections:
        assert self._connect is not None
        # Set here, in the thread, so that dispose() closes them even if every caller was cancelled.
        self._loop_connections = _LoopConnections.open(self._connect)
        return self._loop_connections

    def _count_write(self) -> None:
        self._writes_since_checkpoint += 1
        if self._writes_since_checkpoint >= CHECKPOINT_EVERY_WRITES and self._checkpointing is None:
            self._writes_since_checkpoint = 0
            self._checkpointing = asyncio.ensure_future(self._checkpoint())

    async def _checkpoint(self) -> None:
        """Copy the WAL into the database beside the loop's writes; now and then, make the WAL start over.

        The loop's connections never checkpoint (a checkpoint fsyncs). SQLite reuses the WAL from its start
        only when a write begins with every frame already copied, which a checkpoint running beside a steady
        stream of writes never achieves (measured: the WAL grew by 20 MB/s in bench.pipeline, and reads
        slowed as it grew). When idle moments do not let it happen by itself and the WAL passes
        ``RESTART_WAL_AFTER_FRAMES``, a second pass copies the few frames written meanwhile as a thread
        write: this process's writes wait for it (its two fsyncs: ~10 ms here), and the next one restarts
        the WAL. Waiting on every checkpoint instead cost 1-2 % of the turns that long.
        """
        loop = asyncio.get_running_loop()
        try:
            frames = await loop.run_in_executor(self._threads, self._checkpoint_pass)
            if frames < RESTART_WAL_AFTER_FRAMES:
                return
            while (current := self._thread_write) is not None and not current.done():
                await asyncio.wait([current])
            self._thread_write = loop.run_in_executor(self._threads, self._checkpoint_pass)
            await self._thread_write
        except database_errors() as exc:
            log.warning("WAL checkpoint failed (%s); the next one will retry", type(exc).__name__)
        finally:
            self._checkpointing = None

    def _checkpoint_pass(self) -> int:
        """One checkpoint, in a worker thread, on a sqlite3 connection of its own opened on first use: a
        chat that needs nothing else of SQLAlchemy (no bulk work, no busy database) never imports it."""
        if self._checkpointer is None:
            assert self._connect is not None  # only the loop's writes count towards a checkpoint
            self._checkpointer = self._connect()
        return _checkpoint(self._checkpointer)

    async def warm(self) -> None:
        """Make the engine and the loop's SQLAlchemy connections now. A process that serves chats calls it
        before it does (``modelbot run``): made on first need, in the middle of a turn, their import (~0.2 s
        of SQLAlchemy) would hold up every chat on the event loop once. ``modelbot chat`` leaves them to first
        need, so that its first answer does not wait for them."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._threads, self._engine)
        on_loop = await self._loop_side()
        if on_loop is not None:
            on_loop.sqlalchemy()

    async def dispose(self) -> None:
        if self._checkpointing is not None:
            self._checkpointing.cancel()  # its thread work, if any, still ends before the pool closes
            await asyncio.wait([self._checkpointing])
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        self._threads.shutdown(wait=True)  # transactions and checkpoints already handed over finish first
        if self._checkpointer is not None:
            self._checkpointer.close()
            self._checkpointer = None
        if self._loop_connections is not None:
            self._loop_connections.close()
            self._loop_connections = None
        if self._engines is not None:
            self._engines[0].dispose()
            self._engines = None


class _Busy(Exception):
    """SQLite refused to wait for a lock on a loop connection; the transaction did nothing."""


class _LoopConnections:
    """Two held connections for the event loop (reads, and writes that BEGIN IMMEDIATE), never waiting."""

    def __init__(self, reader: sqlite3.Connection, writer: sqlite3.Connection) -> None:
        self.reader = reader
        self.writer = writer
        self._sqlalchemy: tuple[Connection, Connection] | None = None

    @classmethod
    def open(cls, connect: Callable[[], sqlite3.Connection]) -> _LoopConnections:
        opened: list[sqlite3.Connection] = []
        try:
            for _ in range(2):
                conn = connect()
                opened.append(conn)
                # The loop's own connections, so these settings never reach the threads' connections.
                conn.execute("PRAGMA busy_timeout=0")
                conn.execute("PRAGMA wal_autocheckpoint=0")
        except BaseException:
            for conn in opened:
                conn.close()
            raise
        return cls(*opened)

    def sqlalchemy(self) -> tuple[Connection, Connection]:
        """SQLAlchemy connections over the reader and the writer (whose transactions BEGIN IMMEDIATE), made
        the first time a ``run`` body runs on the loop."""
        if self._sqlalchemy is None:
            reader = sqlalchemy_connection(self.reader)
            self._sqlalchemy = (reader, sqlalchemy_connection(self.writer).execution_options(**WRITE))
        return self._sqlalchemy

    def close(self) -> None:
        if self._sqlalchemy is not None:
            for conn in self._sqlalchemy:
                conn.close()
                conn.engine.dispose()  # closes the sqlite3 connection under it
        self.reader.close()
        self.writer.close()


def _transaction_now(conn: Connection, body: Callable[[Connection], T]) -> T:
    """One transaction on a loop connection; ``_Busy``, with nothing done, when SQLite would have waited."""
    from sqlalchemy.exc import OperationalError  # noqa: PLC0415 - loaded with ``conn``: see the module docstring

    try:
        with conn.begin():
            return body(conn)
    except OperationalError as exc:
        if not _is_busy(exc):
            raise
        if conn.in_transaction():  # BEGIN itself was refused: SQLAlchemy may still count it as open
            conn.rollback()
        raise _Busy from exc


_BUSY_CODES: Final = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def _is_busy(exc: DBAPIError) -> bool:
    return isinstance(exc.orig, sqlite3.OperationalError) and _is_busy_error(exc.orig)


def _is_busy_error(exc: sqlite3.OperationalError) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code is not None and code & 0xFF in _BUSY_CODES


def _transaction(engine: Callable[[], Engine], body: Callable[[Connection], T]) -> T:
    with engine().connect() as conn, conn.begin():
        return body(conn)


def _sql_transaction_now(
    driver: sqlite3.Connection, body: Callable[[sqlite3.Connection], T], begin: str
) -> T:
    """``_sql_transaction_body`` on a loop connection; ``_Busy``, with nothing done, when SQLite would have
    waited."""
    try:
        return _sql_transaction_body(driver, body, begin)
    except sqlite3.OperationalError as exc:
        if not _is_busy_error(exc):
            raise
        raise _Busy from exc


def _sql_transaction(engine: Callable[[], Engine], body: Callable[[sqlite3.Connection], T], begin: str) -> T:
    """``_sql_transaction_body`` on a pooled connection, in a worker thread (where busy_timeout waits)."""
    with engine().connect() as conn:
        return _sql_transaction_body(_driver(conn), body, begin)


def _sql_transaction_body(
    driver: sqlite3.Connection, body: Callable[[sqlite3.Connection], T], begin: str
) -> T:
    """Commit if ``body`` returns, roll back if it (or the commit) raises. The connection is in autocommit
    mode (``bot.store.engine.configure_sqlite``): nothing is open before ``begin``, nothing after."""
    driver.execute(begin)
    try:
        result = body(driver)
        driver.execute("COMMIT")
    except BaseException:
        if driver.in_transaction:
            driver.execute("ROLLBACK")
        raise
    return result


def _checkpoint(connection: sqlite3.Connection) -> int:
    """A PASSIVE checkpoint, which copies what it can without waiting for, or blocking, any reader or
    writer; returns the frames in the WAL. Run outside any transaction (the connection is in autocommit
    mode: see ``bot.store.engine.configure_sqlite``)."""
    _busy, frames, _copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(frames)


def _driver(conn: Connection) -> sqlite3.Connection:
    driver = conn.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    return driver
