"""SQLite transactions: on the event loop when they can start at once, in a thread when they would wait;
checkpoints that keep the WAL from growing without end."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bot.errors import StoreError
from bot.store import NewMessage, sql_ops, sqlite_turn
from bot.store import sql as sql_store
from bot.store import sqlite_database as sqlite_db
from bot.store.database import open_database
from bot.store.sql import SqlSessionStore, sqlite_url
from bot.store.sqlite_database import SqliteDatabase

T0 = 1_700_000_000_000
KEY = "test:chat:1"


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqlSessionStore]:
    started = SqlSessionStore(sqlite_url(tmp_path / "modelbot.sqlite"))
    await started.start()
    await started.get_or_create(KEY, agent_id="main", platform="test", chat_id="1", now_ms=T0)
    try:
        yield started
    finally:
        await started.stop()


def _database(store: SqlSessionStore) -> SqliteDatabase:
    database = store._database
    assert isinstance(database, SqliteDatabase)
    return database


def _thread_of(conn: Connection) -> int:
    conn.execute(sa.text("SELECT 1"))
    return threading.get_ident()


def _thread_of_sql(conn: sqlite3.Connection) -> int:
    conn.execute("SELECT 1")
    return threading.get_ident()


async def test_quick_transactions_run_on_the_loop_and_bulk_ones_in_a_thread(store: SqlSessionStore) -> None:
    """A turn's few-row reads and writes cost no thread hand-off; listing many rows never blocks the loop."""
    database = _database(store)
    loop_thread = threading.get_ident()
    assert await database.run(_thread_of, quick=True) == loop_thread
    assert await database.run(_thread_of, write=True, quick=True) == loop_thread
    assert await database.run(_thread_of) != loop_thread
    assert await database.run(_thread_of, write=True) != loop_thread
    assert await database.run_sql(_thread_of_sql) == loop_thread
    assert await database.run_sql(_thread_of_sql, write=True) == loop_thread


async def test_in_memory_database_never_runs_on_the_loop() -> None:
    """One shared in-memory connection serves one worker thread, so quick transactions go there too."""
    database = open_database("sqlite+aiosqlite://")
    try:
        assert await database.run(_thread_of, quick=True) != threading.get_ident()
        assert isinstance(database, SqliteDatabase)
        assert await database.run_sql(_thread_of_sql, write=True) != threading.get_ident()
    finally:
        await database.dispose()


async def test_a_write_another_process_blocks_waits_in_a_thread(
    store: SqlSessionStore, tmp_path: Path
) -> None:
    """While another connection holds SQLite's write lock the loop keeps running; the write lands after."""
    database = _database(store)
    other = sqlite3.connect(tmp_path / "modelbot.sqlite", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        write = asyncio.create_task(store.append_messages(KEY, [NewMessage("user", "hello")], now_ms=T0))
        await asyncio.sleep(0.1)  # had the write waited on the loop, this would end only after it
        assert not write.done()
        read = await database.run(_thread_of, quick=True)  # WAL readers are not blocked by a writer
        assert read == threading.get_ident()
    finally:
        other.execute("COMMIT")
        other.close()
    stored = await asyncio.wait_for(write, 5)
    assert [m.content for m in stored] == ["hello"]
    # The loop's connection is fine afterwards: the next write runs there again.
    assert await database.run(_thread_of, write=True, quick=True) == threading.get_ident()
    assert [m.content for m in await store.history(KEY, limit=10)] == ["hello"]


async def test_a_failed_quick_write_leaves_nothing_and_the_connection_usable(store: SqlSessionStore) -> None:
    """A body that raises on the loop rolls back; the next transaction on the same connection works."""
    database = _database(store)

    def half_then_fail(conn: Connection) -> None:
        conn.execute(sa.text("UPDATE sessions SET last_model = 'x/y' WHERE key = :k"), {"k": KEY})
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await database.run(half_then_fail, write=True, quick=True)
    record = await store.get(KEY)
    assert record is not None and record.last_model is None
    await store.append_messages(KEY, [NewMessage("user", "after")], now_ms=T0)
    assert [m.content for m in await store.history(KEY, limit=10)] == ["after"]


async def test_a_failed_sql_text_write_leaves_nothing_and_the_connection_usable(
    store: SqlSessionStore,
) -> None:
    """The same on the sqlite3 connection itself: rolled back, and the connection out of its transaction."""
    database = _database(store)

    def half_then_fail(conn: sqlite3.Connection) -> None:
        conn.execute("UPDATE sessions SET last_model = 'x/y' WHERE key = ?", (KEY,))
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await database.run_sql(half_then_fail, write=True)
    assert await database.run_sql(lambda conn: conn.in_transaction) is True
    record = await store.get(KEY)
    assert record is not None and record.last_model is None
    await store.append_messages(KEY, [NewMessage("user", "after")], now_ms=T0)
    assert [m.content for m in await store.history(KEY, limit=10)] == ["after"]


async def test_a_busy_sql_text_read_runs_again_in_a_thread(store: SqlSessionStore) -> None:
    """SQLite refusing to wait on the loop's connection (WAL recovery, say) sends the read to a thread."""
    database = _database(store)
    threads: list[int] = []

    def busy_on_the_loop(conn: sqlite3.Connection) -> int:
        threads.append(threading.get_ident())
        if len(threads) == 1:
            busy = sqlite3.OperationalError("database is locked")
            busy.sqlite_errorcode = sqlite3.SQLITE_BUSY
            raise busy
        return conn.execute("SELECT count(*) FROM sessions").fetchone()[0]  # type: ignore[no-any-return]

    assert await database.run_sql(busy_on_the_loop) == 1
    assert threads[0] == threading.get_ident() != threads[1]
    assert await database.run_sql(_thread_of_sql) == threading.get_ident()


async def test_the_sql_text_reads_columns_in_the_order_rows_unpacks_them(store: SqlSessionStore) -> None:
    """``sqlite_turn``'s statements and ``rows``' converters agree on every column's place."""
    await store.append_messages(KEY, [NewMessage("user", "hello")], now_ms=T0)

    def names(conn: sqlite3.Connection, statement: str, params: tuple[object, ...]) -> list[str]:
        return [column[0] for column in conn.execute(statement, params).description]

    database = _database(store)
    session_columns = [c.name for c in sql_ops.SESSION_COLUMNS]
    message_columns = [c.name for c in sql_ops.MESSAGE_COLUMNS]
    assert (
        await database.run_sql(partial(names, statement=sqlite_turn._GET, params=(KEY,))) == session_columns
    )
    for statement, params in ((sqlite_turn._LAST_N, (KEY, 1)), (sqlite_turn._NEWEST_FIRST, (KEY,))):
        assert await database.run_sql(partial(names, statement=statement, params=params)) == message_columns
    bump = sqlite_turn._bump(("last_model",), appending=False)
    assert await database.run_sql(partial(names, statement=bump, params=("a/b", T0, KEY)), write=True) == (
        session_columns
    )


def _wal_frames(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        _busy, frames, _copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(frames)


async def _write_turns(store: SqlSessionStore, count: int) -> None:
    for i in range(count):
        await store.append_messages(KEY, [NewMessage("user", f"message {i} " + "x" * 3000)], now_ms=T0 + i)
        checkpointing = _database(store)._checkpointing
        if checkpointing is not None:  # wait for it here, as a busy bot's next turns would overlap it
            await checkpointing


@pytest.mark.parametrize("restart_after", [1, 10**9])
async def test_checkpoints_let_the_wal_start_over(
    store: SqlSessionStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restart_after: int
) -> None:
    """Writes that land while a checkpoint copies keep the WAL from ever being fully copied, so SQLite never
    reuses it from the start. Past the frame limit the second pass (writes held back) copies the rest and
    the next write starts the WAL over; without the limit it only grows."""
    path = tmp_path / "modelbot.sqlite"
    real_checkpoint = sqlite_db._checkpoint
    passes: list[int] = []

    def checkpoint_while_the_bot_writes(connection: sqlite3.Connection) -> int:
        first_pass = restart_after > 1 or len(passes) % 2 == 0  # with the limit, passes come in pairs
        if not first_pass:
            passes.append(real_checkpoint(connection))
            return passes[-1]
        # A turn saved while the pass copies, which it cannot copy yet: it came after a reader's snapshot.
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as reader:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM sessions").fetchone()
            with contextlib.closing(sqlite3.connect(path)) as writer, writer:
                writer.execute("UPDATE sessions SET updated_at = updated_at + 1 WHERE key = ?", (KEY,))
            passes.append(real_checkpoint(connection))
            reader.execute("COMMIT")
        return passes[-1]

    monkeypatch.setattr(sqlite_db, "_checkpoint", checkpoint_while_the_bot_writes)
    monkeypatch.setattr(sqlite_db, "CHECKPOINT_EVERY_WRITES", 5)
    monkeypatch.setattr(sqlite_db, "RESTART_WAL_AFTER_FRAMES", restart_after)
    await _write_turns(store, 40)
    frames = _wal_frames(path)
    if restart_after == 1:
        assert len(passes) == 2 * (40 // 5)
        assert frames < 5 * 4  # only what was written since the last restart, a few frames a write
    else:
        assert len(passes) == 40 // 5
        assert frames > 40  # every write's frames are still in the WAL
    assert len(await store.history(KEY, limit=100)) == 40


async def test_a_short_historys_compaction_runs_on_the_loop_and_a_long_ones_in_a_thread(
    store: SqlSessionStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As a thread write, a compaction makes every conversation's next save wait (a burst of them chained
    those waits to 100 ms); a short history's rewrite is turn-sized and runs on the loop instead. Past
    ``QUICK_REWRITE_MESSAGES`` it goes to a thread, rolled back and run again there: the same result."""
    ran_in: list[bool] = []
    rewrite = sql_ops.replace_history

    def recording(conn: Connection, **args: Any) -> int:
        ran_in.append(threading.get_ident() == loop_thread)
        return rewrite(conn, **args)

    loop_thread = threading.get_ident()
    monkeypatch.setattr(sql_ops, "replace_history", recording)
    monkeypatch.setattr(sql_store, "QUICK_REWRITE_MESSAGES", 3)
    await store.append_messages(KEY, [NewMessage("user", t) for t in "abc"], now_ms=T0)
    assert await store.replace_history(KEY, NewMessage("summary", "S1"), 1, now_ms=T0 + 1) == 1
    assert ran_in == [True]
    await store.append_messages(KEY, [NewMessage("user", t) for t in "def"], now_ms=T0 + 2)  # 5 messages now
    assert await store.replace_history(KEY, NewMessage("summary", "S2"), 1, now_ms=T0 + 3) == 2
    assert ran_in == [True, True, False]  # refused on the loop (too long), done in a thread
    assert [m.content for m in await store.history(KEY)] == ["S2", "f"]
    record = await store.get(KEY)
    assert record is not None and (record.compaction_count, record.message_count) == (2, 2)


_PRAGMAS = ("busy_timeout", "journal_mode", "synchronous", "foreign_keys", "wal_autocheckpoint")


def _pragmas_sql(conn: sqlite3.Connection) -> dict[str, object]:
    return {name: conn.execute(f"PRAGMA {name}").fetchone()[0] for name in _PRAGMAS}


def _pragmas(conn: Connection) -> dict[str, object]:
    driver = conn.connection.driver_connection
    assert isinstance(driver, sqlite3.Connection)
    return _pragmas_sql(driver)


def _engine_made(database: SqliteDatabase) -> bool:
    return database._engines is not None


async def test_every_connection_has_the_same_settings_and_the_loops_never_wait(
    store: SqlSessionStore,
) -> None:
    """The loop's connections, opened with sqlite3 itself, get the pragmas of the engine's: WAL, NORMAL
    sync, foreign keys; only they refuse to wait (and never checkpoint), through SQLAlchemy or not."""
    database = _database(store)
    on_loop = {"busy_timeout": 0, "journal_mode": "wal", "synchronous": 1, "foreign_keys": 1}
    assert await database.run_sql(_pragmas_sql) == {**on_loop, "wal_autocheckpoint": 0}
    assert await database.run(_pragmas, quick=True) == {**on_loop, "wal_autocheckpoint": 0}
    assert await database.run(_pragmas, write=True, quick=True) == {**on_loop, "wal_autocheckpoint": 0}
    assert await database.run(_pragmas) == {**on_loop, "busy_timeout": 5000, "wal_autocheckpoint": 1000}


async def test_the_engine_is_made_when_first_needed_beside_the_loops_connections(
    store: SqlSessionStore, tmp_path: Path
) -> None:
    """On a database at head, a turn's transactions run on the loop's sqlite3 connections without an engine;
    the first bulk transaction makes it, sees what the turns wrote, and the loop's transactions go on."""
    await store.stop()  # it migrated the new file: the engine was needed for that
    reopened = SqlSessionStore(sqlite_url(tmp_path / "modelbot.sqlite"))
    await reopened.start()
    try:
        database = _database(reopened)
        await reopened.append_messages(KEY, [NewMessage("user", "hello")], now_ms=T0)
        assert await reopened.acquire_lease(KEY, "me", ttl_ms=1000, now_ms=T0)
        assert not _engine_made(database)
        assert [s.key for s in await reopened.list_sessions()] == [KEY]  # a bulk read, in a thread
        assert _engine_made(database)
        assert await reopened.reset_all() == 1  # a bulk write, in a thread
        await reopened.append_messages(KEY, [NewMessage("user", "again")], now_ms=T0 + 1)
        assert [m.content for m in await reopened.history(KEY)] == ["again"]
        assert await database.run_sql(_thread_of_sql, write=True) == threading.get_ident()
    finally:
        await reopened.stop()


async def test_checkpoints_need_no_engine(
    store: SqlSessionStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A long chat checkpoints its WAL on a sqlite3 connection of its own: SQLAlchemy's engine is not made
    for it (in `modelbot chat`, SQLAlchemy is then never imported)."""
    monkeypatch.setattr(sqlite_db, "CHECKPOINT_EVERY_WRITES", 5)
    await store.stop()
    reopened = SqlSessionStore(sqlite_url(tmp_path / "modelbot.sqlite"))
    await reopened.start()
    try:
        database = _database(reopened)
        for turn in range(12):
            await reopened.append_messages(KEY, [NewMessage("user", f"turn {turn}")], now_ms=T0 + turn)
            if database._checkpointing is not None:
                await database._checkpointing
        assert database._checkpointer is not None  # checkpoints ran
        assert not _engine_made(database)
        assert len(await reopened.history(KEY)) == 12
    finally:
        await reopened.stop()
    assert database._checkpointer is None  # closed with the store


async def test_warm_makes_now_what_a_turn_would_make_on_first_need(
    store: SqlSessionStore, tmp_path: Path
) -> None:
    """``modelbot run`` warms the store before it serves chats: the engine and the loop's SQLAlchemy
    connections exist, so no turn's compaction or checkpoint imports SQLAlchemy on the event loop."""
    await store.stop()
    reopened = SqlSessionStore(sqlite_url(tmp_path / "modelbot.sqlite"))
    await reopened.start()
    try:
        database = _database(reopened)
        assert not _engine_made(database)
        await reopened.warm()
        assert _engine_made(database)
        on_loop = database._loop_connections
        assert on_loop is not None and on_loop._sqlalchemy is not None
        assert await database.run(_thread_of, write=True, quick=True) == threading.get_ident()
        await reopened.warm()  # twice is harmless
        assert await database.run(_thread_of) != threading.get_ident()
    finally:
        await reopened.stop()


async def test_a_loop_connection_that_cannot_open_is_a_store_error(tmp_path: Path) -> None:
    """sqlite3's own error opening the loop's connections becomes the store's, as SQLAlchemy's did."""
    (tmp_path / "dir.sqlite").mkdir()  # a directory where the file should be
    store = SqlSessionStore(sqlite_url(tmp_path / "dir.sqlite"))
    with pytest.raises(StoreError, match=r"Cannot migrate the session database \(OperationalError\)"):
        await store.start()


def _write_lock_taken(path: Path) -> bool:
    """Whether another connection is refused SQLite's write lock right now."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None, timeout=0)) as other:
        try:
            other.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:
            return True
        other.execute("ROLLBACK")
        return False


async def test_writes_hold_the_write_lock_from_their_first_statement(
    store: SqlSessionStore, tmp_path: Path
) -> None:
    """BEGIN IMMEDIATE for writes, BEGIN for reads, on the loop's connections whether the body is SQL text or
    SQLAlchemy (over the same sqlite3 connection), and in a thread."""
    path = tmp_path / "modelbot.sqlite"
    database = _database(store)

    def locked(_conn: object) -> bool:
        return _write_lock_taken(path)

    assert await database.run_sql(locked, write=True) is True
    assert await database.run_sql(locked) is False
    assert await database.run(locked, write=True, quick=True) is True
    assert await database.run(locked, quick=True) is False
    assert await database.run(locked, write=True) is True
    assert await database.run(locked) is False


async def test_a_busy_turn_on_a_reopened_database_makes_the_engine_in_a_thread(
    store: SqlSessionStore, tmp_path: Path
) -> None:
    """The first transaction that must wait for another process is the one that makes the engine: in its
    worker thread, while the loop keeps running; the write lands once the lock is free."""
    path = tmp_path / "modelbot.sqlite"
    await store.stop()
    reopened = SqlSessionStore(sqlite_url(path))
    await reopened.start()
    other = sqlite3.connect(path, isolation_level=None)
    try:
        assert await reopened.get(KEY) is not None
        assert not _engine_made(_database(reopened))
        other.execute("BEGIN IMMEDIATE")
        write = asyncio.create_task(reopened.append_messages(KEY, [NewMessage("user", "hi")], now_ms=T0))
        await asyncio.sleep(0.1)
        assert not write.done()
        other.execute("COMMIT")
        assert [m.content for m in await asyncio.wait_for(write, 5)] == ["hi"]
        assert _engine_made(_database(reopened))
    finally:
        other.close()
        await reopened.stop()
