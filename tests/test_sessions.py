"""The sessions service (bot/conversation/sessions.py): one message of a session at a time, /stop, and memory
that stays bounded however many sessions and users come by. Gates and events, no sleeps."""

from __future__ import annotations

import asyncio

import pytest

from bot.chat import ImagePart, Incoming
from bot.config.schema import Config
from bot.conversation.context import turn_context
from bot.conversation.sessions import (
    KNOWN_USERS,
    RETRY_IMAGE_BYTES,
    RETRY_SESSIONS,
    KeyedLock,
    Recent,
    Sessions,
)
from bot.store.lease import LeaseKeeper, LeaseTiming
from bot.store.memory import InMemorySessionStore
from bot.store.types import NewMessage, SessionPatch
from tests.fakes.clock import FakeClock
from tests.fakes.timer import FakeTimer, settle


def _msg(
    text: str = "hi", *, chat: str = "c1", user: str = "u1", name: str | None = None, image: int = 0
) -> Incoming:
    images = (ImagePart("image/png", b"x" * image),) if image else ()
    return Incoming(platform="telegram", chat_id=chat, user_id=user, text=text, user_name=name, images=images)


def _sessions(
    *,
    retry_sessions: int = RETRY_SESSIONS,
    retry_image_bytes: int = RETRY_IMAGE_BYTES,
    known_users: int = KNOWN_USERS,
) -> Sessions:
    return Sessions(
        InMemorySessionStore(),
        clock=FakeClock(),
        retry_sessions=retry_sessions,
        retry_image_bytes=retry_image_bytes,
        known_users=known_users,
    )


# -- the bounded map ------------------------------------------------------------------------------------


def test_recent_keeps_the_most_recently_used() -> None:
    """Past its size the least recently used entry goes; reading an entry makes it recent."""
    recent: Recent[str, int] = Recent(3)
    for n, key in enumerate("abc"):
        recent.put(key, n)
    assert recent.get("a") == 0  # a is now the most recent
    recent.put("d", 3)
    assert len(recent) == 3 and "b" not in recent and [recent.get(k) for k in "acd"] == [0, 2, 3]
    recent.put("c", 20)  # replacing an entry does not grow the map
    assert len(recent) == 3 and recent.get("c") == 20
    assert recent.pop("c") == 20 and recent.pop("c") is None and len(recent) == 2
    with pytest.raises(ValueError, match="one entry"):
        Recent(0)


def test_recent_keeps_its_weight_under_the_budget_but_always_the_newest() -> None:
    """Oldest entries go until the total weight fits; one entry heavier than the budget stays alone."""
    recent: Recent[str, int] = Recent(100, weight=lambda v: v, max_weight=10)
    recent.put("a", 4)
    recent.put("b", 4)
    assert recent.weight == 8
    recent.put("c", 4)  # 12 > 10: a goes
    assert ("a" in recent, recent.weight) == (False, 8)
    recent.put("huge", 50)
    assert len(recent) == 1 and recent.weight == 50 and recent.get("huge") == 50
    recent.pop("huge")
    assert recent.weight == 0


# -- the keyed lock ------------------------------------------------------------------------------------


async def test_keyed_lock_orders_one_key_and_not_others() -> None:
    """A second holder of a key waits for the first; another key goes ahead meanwhile."""
    locks = KeyedLock()
    release = asyncio.Event()
    order: list[str] = []

    async def hold(key: str, name: str, gate: asyncio.Event | None = None) -> None:
        async with locks.hold(key):
            order.append(f"{name} in")
            if gate is not None:
                await gate.wait()
            order.append(f"{name} out")

    first = asyncio.create_task(hold("s1", "first", release))
    await settle()
    second = asyncio.create_task(hold("s1", "second"))
    other = asyncio.create_task(hold("s2", "other"))
    await other
    await settle()
    assert order == ["first in", "other in", "other out"] and not second.done()
    assert len(locks) == 1  # s2's entry went with its last user
    release.set()
    await asyncio.gather(first, second)
    assert order[3:] == ["first out", "second in", "second out"]
    assert len(locks) == 0


async def test_keyed_lock_entries_go_away_when_unused() -> None:
    """A thousand sessions that came and went, and a waiter cancelled in the queue, leave no entry behind."""
    locks = KeyedLock()

    async def use(key: str) -> None:
        async with locks.hold(key):
            await asyncio.sleep(0)

    await asyncio.gather(*(use(f"s{n}") for n in range(1000)))
    assert len(locks) == 0
    held = asyncio.Event()
    release = asyncio.Event()

    async def holder() -> None:
        async with locks.hold("s"):
            held.set()
            await release.wait()

    holding = asyncio.create_task(holder())
    await held.wait()
    waiter = asyncio.create_task(use("s"))
    await settle()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    release.set()
    await holding
    assert len(locks) == 0


# -- /stop -----------------------------------------------------------------------------------------------


async def test_stop_ends_the_turn_and_the_callers_task_goes_on() -> None:
    """stop() cancels the turn; leaving in_flight ends that cancellation: the task is not cancelling any more."""
    sessions = _sessions()
    assert sessions.stop("s") is False  # nothing in flight
    started = asyncio.Event()

    async def turn() -> tuple[bool, int]:
        with sessions.in_flight("s") as flight:
            started.set()
            await asyncio.Event().wait()  # an answer that never ends by itself
        await asyncio.sleep(0)  # a cancellation left behind would surface here
        task = asyncio.current_task()
        assert task is not None
        return flight.stopped, task.cancelling()

    running = asyncio.create_task(turn())
    await started.wait()
    assert sessions.stop("s") is True
    assert sessions.stop("s") is True  # a second /stop cancels nothing more
    assert await running == (True, 0)
    assert sessions.stop("s") is False  # the turn is over


async def test_a_cancellation_from_outside_goes_on_up_even_after_stop() -> None:
    """A shutdown's cancellation is never taken for /stop."""
    sessions = _sessions()
    for also_stop in (False, True):
        started = asyncio.Event()

        async def turn(started: asyncio.Event = started) -> None:
            with sessions.in_flight("s"):
                started.set()
                await asyncio.Event().wait()

        running = asyncio.create_task(turn())
        await started.wait()
        if also_stop:
            sessions.stop("s")
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running
    assert sessions.stop("s") is False


# -- what the service remembers -----------------------------------------------------------------------


def test_retry_memory_is_bounded() -> None:
    """/retry remembers the last sessions' unanswered messages, the least recently failed going first."""
    sessions = _sessions(retry_sessions=3)
    for n in range(5):
        sessions.remember_retry(f"s{n}", _msg(f"question {n}"))
    assert [sessions.retry_message(f"s{n}") is not None for n in range(5)] == [False, False, True, True, True]
    sessions.forget_retry("s4")
    assert sessions.retry_message("s4") is None


def test_retry_memory_keeps_images_within_their_budget() -> None:
    """Messages with images are forgotten oldest first once their images pass the budget; the newest stays."""
    sessions = _sessions(retry_image_bytes=1000)
    sessions.remember_retry("a", _msg(image=400))
    sessions.remember_retry("b", _msg(image=400))
    sessions.remember_retry("text", _msg("no image"))
    sessions.remember_retry("c", _msg(image=400))  # 1200 bytes: a goes
    assert [sessions.retry_message(k) is not None for k in ("a", "b", "text", "c")] == [
        False,
        True,
        True,
        True,
    ]
    sessions.remember_retry("huge", _msg(image=5000))
    assert sessions.retry_message("huge") is not None and sessions.retry_message("c") is None


def test_known_users_are_bounded() -> None:
    """Names seen for /reset @name: case and @ do not matter, per platform, the least recently seen go first."""
    sessions = _sessions(known_users=2)
    sessions.saw(_msg(user="1", name="Ann"))
    sessions.saw(_msg())  # no name: nothing to remember
    sessions.saw(_msg(user="2", name="bob"))
    assert (sessions.user_named("telegram", "@ANN"), sessions.user_named("discord", "ann")) == ("1", None)
    sessions.saw(_msg(user="3", name="cy"))  # bob was seen least recently (ann was just looked up)
    assert [sessions.user_named("telegram", n) for n in ("ann", "bob", "cy")] == ["1", None, "3"]


def test_the_default_bounds() -> None:
    """The documented sizes: 1 000 sessions' retries (64 MB of images), 10 000 user names."""
    assert (RETRY_SESSIONS, RETRY_IMAGE_BYTES, KNOWN_USERS) == (1_000, 64 * 1024 * 1024, 10_000)
    sessions = _sessions()
    for n in range(RETRY_SESSIONS + 10):
        sessions.remember_retry(f"s{n}", _msg())
    assert sessions.retry_message("s9") is None and sessions.retry_message("s10") is not None
    for n in range(KNOWN_USERS + 10):
        sessions.saw(_msg(user=str(n), name=f"user{n}"))
    assert (
        sessions.user_named("telegram", "user9") is None and sessions.user_named("telegram", "user10") == "10"
    )


# -- leases in a shared store ----------------------------------------------------------------------------


class _CountedReleases(InMemorySessionStore):
    def __init__(self) -> None:
        super().__init__()
        self.releases = 0

    async def release_lease(self, key: str, holder: str) -> bool:
        self.releases += 1
        return await super().release_lease(key, holder)


async def test_saving_a_turn_gives_the_lease_back_and_ends_its_renewal(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The save is the message's last write: its transaction releases the lease, the keeper stops renewing
    it (no renewal finds it "taken over"), and the end of the block has nothing left to release."""
    clock = FakeClock()
    timer = FakeTimer(clock)
    store = _CountedReleases()
    timing = LeaseTiming(ttl_ms=3_000, renew_every_ms=1_000)
    sessions = Sessions(
        store, clock=clock, leases=LeaseKeeper(store, clock=clock, timing=timing, sleep=timer.sleep)
    )
    ctx = turn_context(_msg(), Config())
    async with sessions.open(ctx) as session:
        assert session == await store.get(ctx.key)
        assert not await store.acquire_lease(f"session:{ctx.key}", "other", ttl_ms=1, now_ms=clock.now_ms())
        await sessions.save(
            ctx.key, [NewMessage("user", "hi", (), 1)], now_ms=clock.now_ms(), patch=SessionPatch()
        )
        assert store.releases == 1
        assert await store.acquire_lease(f"session:{ctx.key}", "other", ttl_ms=60_000, now_ms=clock.now_ms())
        await timer.advance(timing.renew_every_ms)
    assert store.releases == 1
    assert not any("taken over" in r.message for r in caplog.records)
    assert timer.sleeping == 0
    assert len(await store.history(ctx.key)) == 1
