"""Leases: the store contract (memory, SQLite, PostgreSQL), the hold_lease helper on a fake clock, and real
processes that take turns on one lease and take over from a killed holder.

Run as ``python -m tests.test_store_leases URL turns|hold NAME ARG`` this module is also the worker the tests
start as separate OS processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from bot.clock import SystemClock
from bot.errors import LeaseTimeout, StoreError
from bot.store import InMemorySessionStore, SessionStore
from bot.store.lease import HeldLease, LeaseKeeper, LeaseTiming, hold_lease, new_holder, started
from bot.store.sql import SqlSessionStore, sqlite_url
from bot.store.tables import leases
from bot.store.types import NewMessage, SessionPatch, SessionRecord
from tests.fakes.clock import FakeClock
from tests.fakes.timer import FakeTimer, settle
from tests.pg import pg_url, truncate_all  # noqa: F401

REPO = Path(__file__).resolve().parent.parent
T0 = 1_700_000_000_000
KEY = "turn:telegram:chat:1"
BACKENDS = ["memory", "sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
SQL_BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
FAST = LeaseTiming(ttl_ms=3_000, renew_every_ms=1_000, first_poll_ms=10, max_poll_ms=80)


def _url(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> str | None:
    if backend == "memory":
        return None
    if backend == "sqlite":
        return sqlite_url(tmp_path / "leases.sqlite")
    return str(request.getfixturevalue("pg_url"))


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SessionStore]:
    """A started, empty store of each backend."""
    url = _url(request.param, tmp_path, request)
    started: SessionStore = InMemorySessionStore() if url is None else SqlSessionStore(url)
    await started.start()
    if url is not None and url.startswith("postgresql"):
        await truncate_all(url)
    yield started
    await started.stop()


@pytest.fixture(params=SQL_BACKENDS)
async def sql_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty SQL database."""
    url = _url(request.param, tmp_path, request)
    assert url is not None
    store = SqlSessionStore(url)
    await store.start()
    await store.stop()
    if url.startswith("postgresql"):
        await truncate_all(url)
    return url


# --- the store contract ---------------------------------------------------------------------------------


async def test_a_free_lease_goes_to_one_holder_and_is_refused_to_others(store: SessionStore) -> None:
    """The first holder gets it; another is refused until it expires; the same holder extends it."""
    assert await store.acquire_lease(KEY, "a", ttl_ms=1_000, now_ms=T0)
    assert not await store.acquire_lease(KEY, "b", ttl_ms=1_000, now_ms=T0 + 999)
    assert await store.acquire_lease(KEY, "a", ttl_ms=1_000, now_ms=T0 + 500)  # extended to T0 + 1500
    assert not await store.acquire_lease(KEY, "b", ttl_ms=1_000, now_ms=T0 + 1_499)
    assert await store.acquire_lease("turn:other", "b", ttl_ms=1_000, now_ms=T0)  # keys are independent


async def test_an_expired_lease_is_taken_over_and_the_old_holder_knows(store: SessionStore) -> None:
    """After its expiry another holder takes the lease; the old holder can neither renew nor release it."""
    assert await store.acquire_lease(KEY, "dead", ttl_ms=1_000, now_ms=T0)
    assert await store.acquire_lease(KEY, "next", ttl_ms=1_000, now_ms=T0 + 1_000)
    assert not await store.renew_lease(KEY, "dead", ttl_ms=1_000, now_ms=T0 + 1_001)
    assert not await store.release_lease(KEY, "dead")
    assert not await store.acquire_lease(KEY, "third", ttl_ms=1_000, now_ms=T0 + 1_500)  # still next's


async def test_renewal_keeps_the_lease_and_release_frees_it_at_once(store: SessionStore) -> None:
    """A renewed lease outlives its first expiry; a released one is free at once."""
    assert await store.acquire_lease(KEY, "a", ttl_ms=1_000, now_ms=T0)
    assert await store.renew_lease(KEY, "a", ttl_ms=1_000, now_ms=T0 + 900)
    assert not await store.acquire_lease(KEY, "b", ttl_ms=1_000, now_ms=T0 + 1_800)
    assert await store.release_lease(KEY, "a")
    assert not await store.release_lease(KEY, "a")
    assert not await store.renew_lease(KEY, "a", ttl_ms=1_000, now_ms=T0 + 1_801)
    assert await store.acquire_lease(KEY, "b", ttl_ms=1_000, now_ms=T0 + 1_801)


SESSION = "telegram:chat:1"
LEASE = f"session:{SESSION}"
TURN = [NewMessage("user", "hi", (), 1), NewMessage("assistant", "hello", (), 2)]


async def _begin(store: SessionStore, holder: str, now_ms: int) -> SessionRecord | None:
    return await store.begin_turn(
        SESSION, lease_key=LEASE, holder=holder, ttl_ms=1_000, agent_id="main", platform="telegram",
        chat_id="1", user_id="u1", now_ms=now_ms,
    )  # fmt: skip


async def test_begin_turn_takes_the_lease_and_opens_the_session_in_one_call(store: SessionStore) -> None:
    """The lease is taken, the session created on the first call and found on later ones (untouched)."""
    created = await _begin(store, "a", T0)
    assert created == await store.get(SESSION)
    assert created is not None
    assert (created.user_id, created.created_at, created.message_count) == ("u1", T0, 0)
    assert not await store.acquire_lease(LEASE, "b", ttl_ms=1_000, now_ms=T0 + 999)
    assert await store.release_lease(LEASE, "a")
    assert await _begin(store, "b", T0 + 5) == created


async def test_begin_turn_refused_the_lease_does_nothing(store: SessionStore) -> None:
    """Another holder has the lease: None, no session created, the lease still theirs; once it expires, the
    next call takes it over."""
    assert await store.acquire_lease(LEASE, "other", ttl_ms=1_000, now_ms=T0)
    assert await _begin(store, "me", T0 + 999) is None
    assert await store.get(SESSION) is None
    assert not await store.acquire_lease(LEASE, "third", ttl_ms=1_000, now_ms=T0 + 999)
    assert await _begin(store, "me", T0 + 1_000) is not None
    assert not await store.renew_lease(LEASE, "other", ttl_ms=1_000, now_ms=T0 + 1_001)


async def test_end_turn_saves_the_turn_and_gives_the_lease_back(store: SessionStore) -> None:
    """The messages and the patch are saved as ``append_messages`` saves them, and the lease is free at once."""
    assert await _begin(store, "a", T0) is not None
    patch = SessionPatch(last_model="openai/gpt-5.2")
    stored = await store.end_turn(SESSION, TURN, now_ms=T0 + 10, patch=patch, lease_key=LEASE, holder="a")
    assert [(m.role, m.content) for m in stored] == [("user", "hi"), ("assistant", "hello")]
    assert await store.history(SESSION) == stored
    session = await store.get(SESSION)
    assert session is not None and (session.message_count, session.last_model) == (2, "openai/gpt-5.2")
    assert not await store.release_lease(LEASE, "a")
    assert await store.acquire_lease(LEASE, "b", ttl_ms=1_000, now_ms=T0 + 11)


async def test_end_turn_of_a_lost_lease_still_saves_and_spares_the_new_holder(store: SessionStore) -> None:
    """The lease was taken over meanwhile: the turn is saved all the same, the new holder keeps the lease."""
    assert await _begin(store, "a", T0) is not None
    assert await store.acquire_lease(LEASE, "b", ttl_ms=1_000, now_ms=T0 + 1_000)
    await store.end_turn(SESSION, TURN, now_ms=T0 + 1_001, lease_key=LEASE, holder="a")
    assert len(await store.history(SESSION)) == 2
    assert not await store.acquire_lease(LEASE, "c", ttl_ms=1_000, now_ms=T0 + 1_002)


async def test_end_turn_on_an_unknown_session_fails_and_keeps_the_lease(store: SessionStore) -> None:
    """Nothing is done when the append fails: the holder still has the lease, to give back itself."""
    assert await store.acquire_lease(LEASE, "a", ttl_ms=1_000, now_ms=T0)
    with pytest.raises(StoreError, match="No session"):
        await store.end_turn("nobody", TURN, now_ms=T0 + 1, lease_key=LEASE, holder="a")
    assert not await store.acquire_lease(LEASE, "b", ttl_ms=1_000, now_ms=T0 + 2)
    assert await store.release_lease(LEASE, "a")


async def test_racing_acquirers_get_the_lease_once(sql_url: str) -> None:
    """Twenty acquisitions at once through two engines: exactly one holder wins."""
    stores = [SqlSessionStore(sql_url), SqlSessionStore(sql_url)]
    for s in stores:
        await s.start()
    try:
        results = await asyncio.gather(
            *(stores[i % 2].acquire_lease(KEY, f"h{i}", ttl_ms=60_000, now_ms=T0) for i in range(20))
        )
        assert results.count(True) == 1
    finally:
        for s in stores:
            await s.stop()


async def test_a_released_lease_keeps_its_row_free_for_the_next_holder(sql_url: str) -> None:
    """Release updates the row in place (held by nobody, expired) rather than deleting it, so that a session's
    lease rewrites one row each turn; the row then behaves as no row: anyone may take it, nobody renews it."""
    store = SqlSessionStore(sql_url)
    await store.start()
    try:
        for holder in ("a", "b"):
            assert await store.acquire_lease(KEY, holder, ttl_ms=1_000, now_ms=T0)
            assert await store.release_lease(KEY, holder)
        rows = await store.database.run(lambda conn: conn.execute(sa.select(leases)).all())
        assert [tuple(row) for row in rows] == [(KEY, "", 0)]
        assert not await store.renew_lease(KEY, "b", ttl_ms=1_000, now_ms=T0)
        assert not await store.release_lease(KEY, "b")
        assert await store.acquire_lease(KEY, "c", ttl_ms=1_000, now_ms=T0)
        assert not await store.acquire_lease(KEY, "d", ttl_ms=1_000, now_ms=T0 + 999)
    finally:
        await store.stop()


async def test_deleting_idle_sessions_also_drops_the_rows_of_leases_that_ran_out(sql_url: str) -> None:
    """Released leases keep their rows; pruning idle sessions takes those and expired ones, never a held one."""
    store = SqlSessionStore(sql_url)
    await store.start()
    try:
        assert await store.acquire_lease("released", "a", ttl_ms=1_000, now_ms=T0)
        assert await store.release_lease("released", "a")
        assert await store.acquire_lease("expired", "b", ttl_ms=1_000, now_ms=T0)
        assert await store.acquire_lease("held", "c", ttl_ms=60_000, now_ms=T0)
        await store.delete_older_than(T0 + 2_000)
        rows = await store.database.run(lambda conn: conn.execute(sa.select(leases.c.key)).scalars().all())
        assert rows == ["held"]
    finally:
        await store.stop()


async def test_a_stopped_sql_store_refuses_leases(tmp_path: Path) -> None:
    """Lease calls on a store that is not started are a StoreError, like every other call."""
    with pytest.raises(StoreError, match="not started"):
        await SqlSessionStore(sqlite_url(tmp_path / "x.sqlite")).acquire_lease(KEY, "a", ttl_ms=1, now_ms=T0)


# --- hold_lease on a fake clock -------------------------------------------------------------------------


@pytest.fixture
def timer(clock: FakeClock) -> FakeTimer:
    return FakeTimer(clock)


def test_timing_is_validated() -> None:
    """Renewing no more often than the TTL, or polling backwards, is refused at construction."""
    with pytest.raises(ValueError, match="renewed more often"):
        LeaseTiming(ttl_ms=1_000, renew_every_ms=1_000)
    with pytest.raises(ValueError, match="polling"):
        LeaseTiming(first_poll_ms=100, max_poll_ms=50)


def test_every_acquisition_has_its_own_holder() -> None:
    """Two tasks of one process must exclude each other: holder ids never repeat."""
    assert new_holder("host:1") != new_holder("host:1")
    assert new_holder("host:1").startswith("host:1#")


async def test_a_waiter_gets_the_lease_when_the_holder_releases(clock: FakeClock, timer: FakeTimer) -> None:
    """The second task waits (polling with backoff, never past the cap) and runs right after the first."""
    store = InMemorySessionStore()
    order: list[str] = []
    release_first = asyncio.Event()

    async def first() -> None:
        async with hold_lease(store, KEY, clock=clock, timing=FAST, sleep=timer.sleep):
            order.append("first in")
            await release_first.wait()
            order.append("first out")

    async def second() -> None:
        async with hold_lease(store, KEY, clock=clock, timing=FAST, sleep=timer.sleep):
            order.append("second in")

    one = asyncio.ensure_future(first())
    await settle()
    two = asyncio.ensure_future(second())
    await timer.advance(500)
    assert order == ["first in"]
    polls = [s for s in timer.slept if s != FAST.renew_every_ms / 1000]
    assert polls[:4] == [0.01, 0.02, 0.04, 0.08] and max(polls) == 0.08
    release_first.set()
    await timer.advance(80)
    assert order == ["first in", "first out", "second in"]
    await asyncio.gather(one, two)
    assert not await store.renew_lease(KEY, "anyone", ttl_ms=1, now_ms=clock.now_ms())


async def test_the_lease_is_renewed_while_held_so_nobody_takes_it_over(
    clock: FakeClock, timer: FakeTimer
) -> None:
    """Work that lasts ten TTLs keeps its lease: the background renewal extends it every second."""
    store = InMemorySessionStore()
    done = asyncio.Event()

    async def long_turn() -> None:
        async with hold_lease(store, KEY, clock=clock, timing=FAST, sleep=timer.sleep) as lease:
            await done.wait()
            assert not lease.lost.is_set()

    task = asyncio.ensure_future(long_turn())
    await settle()
    for _ in range(30):
        await timer.advance(1_000)
        assert not await store.acquire_lease(KEY, "intruder", ttl_ms=1_000, now_ms=clock.now_ms())
    done.set()
    await task
    assert await store.acquire_lease(KEY, "intruder", ttl_ms=1_000, now_ms=clock.now_ms())


async def test_a_holder_that_died_is_taken_over_after_the_ttl(clock: FakeClock, timer: FakeTimer) -> None:
    """A lease whose holder stopped renewing (a killed host) goes to the waiter once it expires."""
    store = InMemorySessionStore()
    assert await store.acquire_lease(KEY, "killed-host#1", ttl_ms=FAST.ttl_ms, now_ms=clock.now_ms())
    started = clock.now_ms()
    got: list[int] = []

    async def waiter() -> None:
        async with hold_lease(store, KEY, clock=clock, timing=FAST, sleep=timer.sleep):
            got.append(clock.now_ms())

    task = asyncio.ensure_future(waiter())
    await timer.advance(FAST.ttl_ms - 1)
    assert got == []
    await timer.advance(FAST.max_poll_ms + 1)
    await task
    assert FAST.ttl_ms <= got[0] - started <= FAST.ttl_ms + FAST.max_poll_ms


async def test_a_lease_taken_over_while_held_is_reported_lost(clock: FakeClock, timer: FakeTimer) -> None:
    """If the holder stalled past its TTL and another took over, the next renewal sets ``lost``."""
    store = InMemorySessionStore()
    lost_seen = asyncio.Event()

    async def stalled() -> None:
        async with hold_lease(store, KEY, clock=clock, timing=FAST, sleep=timer.sleep) as lease:
            await lease.lost.wait()
            lost_seen.set()

    task = asyncio.ensure_future(stalled())
    await settle()
    # Nobody renewed for a whole TTL (the clock jumped, as after a long GC pause); another holder moves in.
    clock.advance(ms=FAST.ttl_ms)
    assert await store.acquire_lease(KEY, "other", ttl_ms=FAST.ttl_ms, now_ms=clock.now_ms())
    await timer.advance(FAST.renew_every_ms)
    await task
    assert lost_seen.is_set()
    assert not await store.release_lease(KEY, "nobody")
    assert not await store.acquire_lease(KEY, "third", ttl_ms=1, now_ms=clock.now_ms())  # still other's


async def test_waiting_gives_up_after_the_timeout(clock: FakeClock, timer: FakeTimer) -> None:
    """With a timeout, a lease held elsewhere the whole time ends the wait with LeaseTimeout."""
    store = InMemorySessionStore()
    assert await store.acquire_lease(KEY, "busy", ttl_ms=60_000, now_ms=clock.now_ms())

    async def wait() -> None:
        async with hold_lease(store, KEY, clock=clock, timing=FAST, timeout_ms=1_000, sleep=timer.sleep):
            raise AssertionError("never held")

    task = asyncio.ensure_future(wait())
    await timer.advance(1_000)
    with pytest.raises(LeaseTimeout, match=KEY):
        await task


async def test_the_lease_is_released_when_the_work_fails_or_is_cancelled(
    clock: FakeClock, timer: FakeTimer
) -> None:
    """An exception or a cancellation inside the body still gives the lease back at once."""
    store = InMemorySessionStore()
    with pytest.raises(RuntimeError, match="boom"):
        async with hold_lease(store, KEY, clock=clock, timing=FAST, sleep=timer.sleep):
            raise RuntimeError("boom")
    assert await store.acquire_lease(KEY, "x", ttl_ms=1, now_ms=clock.now_ms())
    assert await store.release_lease(KEY, "x")

    entered = asyncio.Event()

    async def body() -> None:
        async with hold_lease(store, KEY, clock=clock, timing=FAST, sleep=timer.sleep):
            entered.set()
            await asyncio.Event().wait()

    task = asyncio.ensure_future(body())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert timer.sleeping == 0  # the renewal stopped too
    assert await store.acquire_lease(KEY, "y", ttl_ms=1, now_ms=clock.now_ms())


class _FlakyRenewals(InMemorySessionStore):
    """The database is away for the first renewal only."""

    def __init__(self) -> None:
        super().__init__()
        self.renewals = 0

    async def renew_lease(self, key: str, holder: str, *, ttl_ms: int, now_ms: int) -> bool:
        self.renewals += 1
        if self.renewals == 1:
            raise StoreError("The session store failed (OperationalError).")
        return await super().renew_lease(key, holder, ttl_ms=ttl_ms, now_ms=now_ms)


async def test_a_failed_renewal_is_retried_and_the_lease_kept(
    clock: FakeClock, timer: FakeTimer, caplog: pytest.LogCaptureFixture
) -> None:
    """One renewal the database refused is logged; the next one keeps the lease before it expires."""
    store = _FlakyRenewals()
    done = asyncio.Event()

    async def turn() -> None:
        async with hold_lease(store, KEY, clock=clock, timing=FAST, sleep=timer.sleep) as lease:
            await done.wait()
            assert not lease.lost.is_set()

    task = asyncio.ensure_future(turn())
    await settle()
    await timer.advance(2 * FAST.renew_every_ms)
    await timer.advance(FAST.ttl_ms - FAST.renew_every_ms)
    assert not await store.acquire_lease(KEY, "intruder", ttl_ms=1, now_ms=clock.now_ms())
    done.set()
    await task
    assert store.renewals >= 3
    assert any("could not renew the lease" in r.message for r in caplog.records)


class _SlowAcquire(InMemorySessionStore):
    """Its acquisitions finish only when the test says so, as a database statement in flight would."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def acquire_lease(self, key: str, holder: str, *, ttl_ms: int, now_ms: int) -> bool:
        await self.gate.wait()
        return await super().acquire_lease(key, holder, ttl_ms=ttl_ms, now_ms=now_ms)


async def test_a_waiter_cancelled_mid_acquisition_gives_back_what_it_got(clock: FakeClock) -> None:
    """Cancelled while the acquiring statement runs: if it then succeeds, the lease is released again."""
    store = _SlowAcquire()

    async def wait() -> None:
        async with hold_lease(store, KEY, clock=clock, timing=FAST):
            raise AssertionError("cancelled before holding")

    task = asyncio.ensure_future(wait())
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    store.gate.set()
    await settle()
    assert await store.acquire_lease(KEY, "next", ttl_ms=1, now_ms=clock.now_ms())


class _SlowRelease(InMemorySessionStore):
    """Its releases finish only when the test says so."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def release_lease(self, key: str, holder: str) -> bool:
        await self.gate.wait()
        return await super().release_lease(key, holder)


async def test_a_holder_cancelled_mid_release_still_gives_the_lease_back(clock: FakeClock) -> None:
    """Cancelled again while the releasing statement runs: the statement goes on and frees the lease."""
    store = _SlowRelease()

    async def turn() -> None:
        async with hold_lease(store, KEY, clock=clock, timing=FAST):
            pass

    task = asyncio.ensure_future(turn())
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not await store.acquire_lease(KEY, "next", ttl_ms=1, now_ms=clock.now_ms())
    store.gate.set()
    await settle()
    assert await store.acquire_lease(KEY, "next", ttl_ms=1, now_ms=clock.now_ms())


def _count_tasks(loop: asyncio.AbstractEventLoop) -> list[object]:
    """Every task made on ``loop`` from now on (the list grows as they are made)."""
    made: list[object] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any) -> asyncio.Task[Any]:
        made.append(coro)
        return asyncio.Task(coro, loop=loop)

    loop.set_task_factory(factory)
    return made


async def test_a_statement_that_never_suspends_runs_at_once_without_a_task() -> None:
    """``started`` runs the work up to its first suspension: one that completes (SQLite on the loop, nearly
    always) needs no task and no loop iteration; its result or error is the future's."""

    async def answer() -> int:
        return 42

    async def broken() -> int:
        raise StoreError("away")

    loop = asyncio.get_running_loop()
    made = _count_tasks(loop)
    try:
        done, failed = started(answer()), started(broken())
    finally:
        loop.set_task_factory(None)
    assert made == []
    assert done.done() and done.result() == 42
    with pytest.raises(StoreError, match="away"):
        failed.result()


async def test_a_statement_that_suspends_goes_on_in_a_task_and_can_be_shielded() -> None:
    """Work that waits goes on in a task: its awaiter's cancellation (through a shield) leaves it running to
    its result; cancelling the future itself reaches the work where it waits."""
    gate = asyncio.Event()
    cleaned: list[str] = []

    async def slow(value: str) -> str:
        try:
            await gate.wait()
        finally:
            cleaned.append(value)
        return value

    work = started(slow("kept"))
    assert not work.done()
    awaiter = asyncio.ensure_future(asyncio.shield(work))
    await settle()
    awaiter.cancel()
    await settle()
    assert not work.done()
    gate.set()
    assert await work == "kept"

    gate.clear()
    stopped = started(slow("cancelled"))
    await settle()
    stopped.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopped
    assert cleaned == ["kept", "cancelled"]


# --- LeaseKeeper: one renewer for every lease of a kind -------------------------------------------------------


async def test_a_keeper_renews_every_held_lease_from_one_task(clock: FakeClock, timer: FakeTimer) -> None:
    """Three leases held through one keeper stay held for ten TTLs, with one sleeper between them; once all
    are released the keeper's task ends and nothing sleeps."""
    store = InMemorySessionStore()
    keeper = LeaseKeeper(store, clock=clock, timing=FAST, sleep=timer.sleep)
    done = asyncio.Event()

    async def hold(key: str) -> None:
        async with keeper.hold(key) as lease:
            await done.wait()
            assert not lease.lost.is_set()

    tasks = [asyncio.ensure_future(hold(f"session:{n}")) for n in range(3)]
    await settle()
    assert timer.sleeping == 1
    for _ in range(10):
        await timer.advance(FAST.ttl_ms)
        for n in range(3):
            assert not await store.acquire_lease(f"session:{n}", "intruder", ttl_ms=1, now_ms=clock.now_ms())
    done.set()
    await asyncio.gather(*tasks)
    assert await store.acquire_lease("session:0", "next", ttl_ms=1, now_ms=clock.now_ms())  # released
    await timer.advance(FAST.renew_every_ms)
    assert timer.sleeping == 0
    await keeper.stop()


async def test_a_lease_released_while_its_renewal_waits_is_not_reported_taken_over(
    clock: FakeClock, timer: FakeTimer, caplog: pytest.LogCaptureFixture
) -> None:
    """A renewal that waits (its statement handed to a thread) may end after the turn released the lease:
    finding it gone is then no takeover, and nothing is logged or marked lost."""
    gate = asyncio.Event()
    renewing = asyncio.Event()

    class SlowRenewals(InMemorySessionStore):
        async def renew_lease(self, key: str, holder: str, *, ttl_ms: int, now_ms: int) -> bool:
            renewing.set()
            await gate.wait()
            return await super().renew_lease(key, holder, ttl_ms=ttl_ms, now_ms=now_ms)

    keeper = LeaseKeeper(SlowRenewals(), clock=clock, timing=FAST, sleep=timer.sleep)
    release = asyncio.Event()
    held: list[HeldLease] = []

    async def turn() -> None:
        async with keeper.hold("session:a") as lease:
            held.append(lease)
            await release.wait()

    task = asyncio.ensure_future(turn())
    await settle()
    await timer.advance(FAST.renew_every_ms)
    await renewing.wait()
    release.set()
    await task  # the turn ends (and releases) while the renewal waits
    gate.set()
    await settle()
    assert not held[0].lost.is_set()
    assert "taken over" not in caplog.text
    await keeper.stop()


async def test_a_keeper_reports_a_lease_taken_over_and_keeps_the_others(
    clock: FakeClock, timer: FakeTimer
) -> None:
    """A lease found taken over at renewal is marked lost and dropped; the keeper renews the rest."""
    store = InMemorySessionStore()
    keeper = LeaseKeeper(store, clock=clock, timing=FAST, sleep=timer.sleep)
    stop = asyncio.Event()
    leases: dict[str, HeldLease] = {}

    async def hold(key: str) -> None:
        async with keeper.hold(key) as lease:
            leases[key] = lease
            await stop.wait()

    tasks = [asyncio.ensure_future(hold(key)) for key in ("session:a", "session:b")]
    await settle()
    await store.release_lease("session:a", leases["session:a"].holder)  # as if it had expired
    assert await store.acquire_lease("session:a", "other-host#1", ttl_ms=60_000, now_ms=clock.now_ms())
    await timer.advance(FAST.renew_every_ms)
    assert leases["session:a"].lost.is_set() and not leases["session:b"].lost.is_set()
    await timer.advance(FAST.ttl_ms)
    assert not await store.acquire_lease("session:b", "intruder", ttl_ms=1, now_ms=clock.now_ms())
    stop.set()
    await asyncio.gather(*tasks)
    await keeper.stop()


# --- real processes on SQLite and PostgreSQL ------------------------------------------------------------

TURNS = 15
PROCESSES = 3


async def _turns(url: str, name: str, log_path: str) -> None:
    """``TURNS`` turns on one lease; each writes its start and end to a shared log (appends are atomic)."""
    store = SqlSessionStore(url)
    await store.start()
    try:
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            for i in range(TURNS):
                async with hold_lease(store, KEY, clock=SystemClock(), timing=FAST):
                    os.write(fd, f"start {name} {i}\n".encode())
                    await asyncio.sleep(0.003)  # the "provider call": other processes poll meanwhile
                    os.write(fd, f"end {name} {i}\n".encode())
        finally:
            os.close(fd)
    finally:
        await store.stop()


async def _hold_until_killed(url: str, name: str, ttl_ms: str) -> None:
    store = SqlSessionStore(url)
    await store.start()
    timing = LeaseTiming(
        ttl_ms=int(ttl_ms), renew_every_ms=int(ttl_ms) // 3, first_poll_ms=10, max_poll_ms=50
    )
    async with hold_lease(store, KEY, clock=SystemClock(), timing=timing, owner=name):
        print("held", flush=True)
        await asyncio.Event().wait()


async def _worker(*args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error",
        "-m",
        "tests.test_store_leases",
        *args,
        cwd=REPO,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


@pytest.mark.slow
async def test_processes_taking_turns_on_one_lease_never_overlap(sql_url: str, tmp_path: Path) -> None:
    """Three processes × 15 turns on one session lease: every turn ends before the next one starts."""
    log_path = tmp_path / "turns.log"
    workers = [await _worker(sql_url, "turns", f"p{n}", str(log_path)) for n in range(PROCESSES)]
    outputs = await asyncio.wait_for(asyncio.gather(*(w.communicate() for w in workers)), 120)
    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr.decode(errors="replace")
    lines = log_path.read_text().splitlines()
    assert len(lines) == 2 * PROCESSES * TURNS
    for start, end in zip(lines[::2], lines[1::2], strict=True):
        assert start.startswith("start ") and end == start.replace("start", "end", 1), (start, end)


@pytest.mark.slow
async def test_a_killed_holder_frees_the_lease_within_its_ttl(sql_url: str) -> None:
    """A process killed while it holds the lease (no release, no renewal) loses it after the TTL."""
    ttl_ms = 1_000
    holder = await _worker(sql_url, "hold", "doomed", str(ttl_ms))
    assert holder.stdout is not None
    try:
        assert await asyncio.wait_for(holder.stdout.readline(), 30) == b"held\n"
        killed_at = time.monotonic()
        holder.send_signal(signal.SIGKILL)
        await holder.wait()
    finally:
        if holder.returncode is None:
            holder.kill()
    store = SqlSessionStore(sql_url)
    await store.start()
    try:
        async with hold_lease(store, KEY, clock=SystemClock(), timing=FAST, timeout_ms=10_000):
            waited = time.monotonic() - killed_at
    finally:
        await store.stop()
    assert waited <= (ttl_ms + FAST.max_poll_ms) / 1000 + 0.5, waited


def _main(argv: list[str]) -> int:
    url, mode, name, arg = argv
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run((_turns if mode == "turns" else _hold_until_killed)(url, name, arg))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
