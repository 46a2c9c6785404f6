"""The auth store as the engine sees it: success bookkeeping off the turn's path, failures before the next try."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import App, auth_store_for
from bot.auth import lockfile
from bot.auth.store import AuthStore
from bot.clock import MINUTE_MS
from bot.failover.reasons import Reason
from tests.app_helpers import running_app
from tests.fakes.clock import FakeClock

PROFILE = "demo:main"
MODEL = "echo"


@pytest.fixture
async def app(state_dir: Path, clock: FakeClock) -> AsyncIterator[App]:
    async with running_app(state_dir, clock) as built:
        yield built


def _file(app: App) -> AuthStore:
    return auth_store_for(app.paths, "main")


async def test_a_success_is_booked_without_waiting_for_the_file(app: App, clock: FakeClock) -> None:
    """The answer is complete: recording its success must not wait for the auth file (here: its lock)."""
    backend, store = app.backend("main"), _file(app)
    store.record_success("demo:busy", provider="demo", now_ms=clock.now_ms())  # the file and its dir exist
    holder = lockfile.lock(store.lock_path, 1)
    try:
        started = time.monotonic()
        await backend.record_success(PROFILE, MODEL, started_ms=clock.now_ms(), now_ms=clock.now_ms())
        assert time.monotonic() - started < 0.5
        assert store.reload().stats(PROFILE).last_used is None  # still waiting for the lock
    finally:
        lockfile.unlock(holder)
    await backend.flush()
    doc = store.reload()
    assert doc.stats(PROFILE).last_used == clock.now_ms()
    assert doc.last_good["demo"] == PROFILE


async def test_a_failure_after_a_pending_success_keeps_its_cooldown(app: App, clock: FakeClock) -> None:
    """Whichever of the two writes lands first, the newer failure's cooldown stands."""
    backend, store = app.backend("main"), _file(app)
    store.record_success("demo:busy", provider="demo", now_ms=clock.now_ms())
    holder = lockfile.lock(store.lock_path, 1)
    try:
        await backend.record_success(PROFILE, MODEL, started_ms=clock.now_ms(), now_ms=clock.now_ms())
        clock.advance(ms=10)
        failure = asyncio.ensure_future(
            backend.record_failure(
                PROFILE, MODEL, Reason.RATE_LIMIT, now_ms=clock.now_ms(), retry_after_ms=None
            )
        )
        await asyncio.sleep(0.05)
        assert not failure.done()  # a failure is persisted before the engine goes on: it waits
    finally:
        lockfile.unlock(holder)
    assert await failure == clock.now_ms() + MINUTE_MS
    await backend.flush()
    pair = store.reload().stats(PROFILE).model(MODEL)
    assert pair.cooldown_until == clock.now_ms() + MINUTE_MS
    assert pair.error_count == 1
    assert backend.unavailable_until(PROFILE, clock.now_ms(), MODEL) == clock.now_ms() + MINUTE_MS


async def test_last_good_follows_every_success_even_within_a_second(app: App, clock: FakeClock) -> None:
    """docs/failover.md §5: a success sets lastGood[provider]; the one-second lastUsed resolution never leaves it stale."""
    backend, store = app.backend("main"), _file(app)
    for profile_id in (PROFILE, "demo:busy", PROFILE):
        clock.advance(ms=100)
        await backend.record_success(profile_id, MODEL, started_ms=clock.now_ms(), now_ms=clock.now_ms())
        await backend.flush()
        assert store.reload().last_good == {"demo": profile_id}


async def test_successes_within_a_second_write_once(app: App, clock: FakeClock) -> None:
    """lastUsed has a one-second resolution: a busy profile does not rewrite the file on every answer."""
    backend, store = app.backend("main"), _file(app)
    await backend.record_success(PROFILE, MODEL, started_ms=clock.now_ms(), now_ms=clock.now_ms())
    first = clock.now_ms()
    for _ in range(5):
        clock.advance(ms=100)
        await backend.record_success(PROFILE, MODEL, started_ms=clock.now_ms(), now_ms=clock.now_ms())
    await backend.flush()
    assert store.reload().stats(PROFILE).last_used == first
    clock.advance(ms=600)
    await backend.record_success(PROFILE, MODEL, started_ms=clock.now_ms(), now_ms=clock.now_ms())
    await backend.flush()
    assert store.reload().stats(PROFILE).last_used == clock.now_ms()
