"""Several processes and engines hammer one SQL store: nothing is locked out, nothing is lost.

Run as ``python -m tests.test_store_concurrency URL WORKER ROUNDS`` this module is also the worker that the
tests start as separate OS processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import subprocess
import sys
import traceback
from collections import defaultdict
from pathlib import Path

import pytest

from bot.store import NewMessage, SessionPatch
from bot.store.engine import prepare_sqlite_file
from bot.store.sql import SqlSessionStore, sqlite_url
from tests.migration_checks import current_revision, head_revision, schema_drift, upgrade
from tests.pg import pg_url, scratch_database, truncate_all  # noqa: F401

REPO = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000_000
APPEND = "test:chat:append"
COMPACT = "test:chat:compact"
IN_PROCESS_WORKERS = 3
SUBPROCESS_WORKERS = 2
ROUNDS = 25


async def _session(store: SqlSessionStore, key: str, now_ms: int) -> None:
    chat_id = key.split(":")[2]
    await store.get_or_create(key, agent_id="main", platform="test", chat_id=chat_id, now_ms=now_ms)


async def work(url: str, worker: str, rounds: int) -> None:
    """One worker: start (and so migrate), then create, append, compact and patch in a tight loop."""
    store = SqlSessionStore(url)
    await store.start()
    try:
        for i in range(rounds):
            now = T0 + i
            # Every worker creates the same keys at about the same time.
            await _session(store, f"test:chat:race{i}", now)
            await _session(store, APPEND, now)
            await _session(store, COMPACT, now)
            await store.append_messages(APPEND, [NewMessage("user", f"{worker}:{i}")], now_ms=now)
            await store.append_messages(COMPACT, [NewMessage("user", f"{worker}:{i}")], now_ms=now)
            await store.replace_history(COMPACT, NewMessage("summary", f"by {worker}:{i}"), 1, now_ms=now)
            await store.update(f"test:chat:race{i}", SessionPatch(last_model=f"w/{worker}"), now_ms=now)
    finally:
        await store.stop()


async def _spawn(url: str, worker: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        "-m",
        "tests.test_store_concurrency",
        url,
        worker,
        str(ROUNDS),
        cwd=REPO,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _race(url: str) -> None:
    """Start every worker at the same moment and check that each of them finished cleanly."""
    processes = [await _spawn(url, f"p{n}") for n in range(SUBPROCESS_WORKERS)]
    for process in processes:  # each says "ready" once imported, then waits for "go"
        assert process.stdout is not None
        assert await asyncio.wait_for(process.stdout.readline(), 30) == b"ready\n"
    for process in processes:
        assert process.stdin is not None
        process.stdin.write(b"go\n")
        await process.stdin.drain()
    outputs = asyncio.gather(*(p.communicate() for p in processes))
    try:
        await asyncio.gather(*(work(url, f"t{n}", ROUNDS) for n in range(IN_PROCESS_WORKERS)))
        for process, (_, stderr) in zip(processes, await outputs, strict=True):
            text = stderr.decode(errors="replace")
            assert "locked" not in text
            assert process.returncode == 0, text
    finally:
        for process in processes:  # a failed in-process worker must not leave children behind
            if process.returncode is None:
                process.kill()
        with contextlib.suppress(Exception):
            await outputs


async def _check(url: str) -> None:
    """Every append and every compaction of every worker is accounted for, exactly once and in order."""
    workers = [f"p{n}" for n in range(SUBPROCESS_WORKERS)] + [f"t{n}" for n in range(IN_PROCESS_WORKERS)]
    store = SqlSessionStore(url)
    await store.start()
    try:
        assert await store.count_sessions() == ROUNDS + 2
        appended = await store.history(APPEND)
        record = await store.get(APPEND)
        assert record is not None and record.message_count == len(appended) == len(workers) * ROUNDS
        by_worker: dict[str, list[int]] = defaultdict(list)
        for message in appended:
            worker, i = message.content.split(":")
            by_worker[worker].append(int(i))
        assert dict(by_worker) == {w: list(range(ROUNDS)) for w in workers}  # each in its own order

        compacted = await store.get(COMPACT)
        assert compacted is not None and compacted.compaction_count == len(workers) * ROUNDS
        history = await store.history(COMPACT)
        assert compacted.message_count == len(history)
        assert history[0].role == "summary"
        assert [r.last_model for r in await store.list_sessions(platform="test", limit=1000)].count(None) == 2
    finally:
        await store.stop()


@pytest.mark.slow
async def test_sqlite_file_survives_concurrent_processes_and_engines(tmp_path: Path) -> None:
    """Two processes and three engines on a fresh SQLite file: no "database is locked", no lost update."""
    url = sqlite_url(tmp_path / "state" / "modelbot.sqlite")  # fresh: the starts race to migrate too
    await asyncio.wait_for(_race(url), 120)
    await _check(url)


@pytest.mark.slow
@pytest.mark.postgres
async def test_postgresql_survives_concurrent_processes_and_engines(pg_url: str) -> None:  # noqa: F811
    """Two processes and three engines on one PostgreSQL database: every update counted exactly once."""
    store = SqlSessionStore(pg_url)
    await store.start()
    await store.stop()
    await truncate_all(pg_url)
    await asyncio.wait_for(_race(pg_url), 120)
    await _check(pg_url)


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def test_racing_starts_migrate_once(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """Five engines migrating one fresh database at once all succeed and leave exactly the head schema."""
    async with contextlib.AsyncExitStack() as stack:
        if backend == "sqlite":
            url = sqlite_url(tmp_path / "fresh.sqlite")
        else:
            url = await stack.enter_async_context(scratch_database(request.getfixturevalue("pg_url")))
        await asyncio.gather(*(upgrade(url) for _ in range(5)))
        assert await current_revision(url) == head_revision()
        assert await schema_drift(url) == []


TAKE_WRITE_LOCK = """
import sqlite3, sys
sqlite3.connect(sys.argv[1], timeout=0, isolation_level=None).execute("BEGIN IMMEDIATE")
"""


def _other_process_can_write(path: Path) -> bool:
    done = subprocess.run(
        [sys.executable, "-c", TAKE_WRITE_LOCK, str(path)], capture_output=True, check=False
    )
    assert done.returncode == 0 or b"locked" in done.stderr, done.stderr
    return done.returncode == 0


def test_preparing_a_database_in_use_keeps_this_process_locks(tmp_path: Path) -> None:
    """Opening the store's file again (another engine, the CLI's helpers) must not drop this process's
    SQLite locks: POSIX locks die with *any* closed descriptor of the file, and other processes would
    then write over a transaction in progress."""
    path = tmp_path / "modelbot.sqlite"
    prepare_sqlite_file(path)
    holder = sqlite3.connect(path, isolation_level=None)  # rollback journal: the lock is on this file
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN IMMEDIATE")
    try:
        assert not _other_process_can_write(path)
        prepare_sqlite_file(path)
        assert not _other_process_can_write(path)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert _other_process_can_write(path)
    assert path.stat().st_mode & 0o777 == 0o600


def _main(argv: list[str]) -> int:
    url, worker, rounds = argv[0], argv[1], int(argv[2])
    print("ready", flush=True)
    if sys.stdin.readline().strip() != "go":
        return 2
    try:
        asyncio.run(work(url, worker, rounds))
    except Exception:
        traceback.print_exc()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
