"""(profile, model) pairs in auth-profiles.json (docs/failover.md §6) and concurrent attempts on one store."""

from __future__ import annotations

import asyncio
import copy
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.auth import codec, doc_edits
from bot.auth.availability import ProfileAvailability
from bot.auth.cooldowns import CooldownPolicy
from bot.auth.store import AuthStore
from bot.auth.types import Credential, ModelStats
from bot.chat import Incoming
from bot.clock import MINUTE_MS
from bot.errors import AuthError
from bot.failover.reasons import Reason
from tests.app_helpers import AUTH_STORES, AuthStoreKind, running_app
from tests.fakes.clock import FakeClock

POLICY = CooldownPolicy()
NOW = 1_700_000_000_000
KEY = Credential(type="api_key", provider="openai", secret="sk-pairs-0001")

WITH_PAIRS: dict[str, Any] = {
    "version": 1,
    "profiles": {"openai:a": {"type": "api_key", "provider": "openai", "key": "sk-aaaa"}},
    "usageStats": {
        "openai:a": {
            "lastUsed": NOW,
            "errorCount": 1,
            "lastFailureAt": NOW - 5,
            "models": {
                "gpt-5.2": {"cooldownUntil": NOW + 60_000, "errorCount": 1, "lastFailureAt": NOW},
                "openrouter/moonshotai/kimi-k2": {"errorCount": 2, "futurePairField": [1]},
            },
            "someFutureField": True,
        }
    },
}


def test_pairs_round_trip_with_unknown_keys() -> None:
    """``usageStats[id].models[modelId]`` decodes into typed pairs and encodes back to the same JSON."""
    doc = codec.decode(copy.deepcopy(WITH_PAIRS))
    stats = doc.stats("openai:a")
    assert stats.model("gpt-5.2") == ModelStats(
        cooldown_until=NOW + 60_000, error_count=1, last_failure_at=NOW
    )
    assert stats.model("openrouter/moonshotai/kimi-k2").extra == {"futurePairField": [1]}
    assert stats.extra == {"someFutureField": True}
    assert codec.encode(doc) == WITH_PAIRS


def test_a_malformed_pair_names_its_place() -> None:
    """A hand-edited pair with a wrong type is reported with its full path, like any other field."""
    broken = copy.deepcopy(WITH_PAIRS)
    broken["usageStats"]["openai:a"]["models"]["gpt-5.2"]["cooldownUntil"] = "soon"
    with pytest.raises(
        ValueError, match=r'usageStats\["openai:a"\]\["models"\]\["gpt-5.2"\]\["cooldownUntil"\]'
    ):
        codec.decode(broken)
    broken["usageStats"]["openai:a"]["models"] = []
    with pytest.raises(ValueError, match=r'\["models"\]: expected an object'):
        codec.decode(broken)


def test_a_cleared_pair_leaves_nothing_behind(tmp_path: Path) -> None:
    """A pair's state disappears from the file once a success clears it (old readers see the seed format)."""
    store = AuthStore(tmp_path / "auth-profiles.json")
    store.update(doc_edits.with_profile("openai:a", KEY))
    store.record_failure(
        "openai:a", Reason.RATE_LIMIT, provider="openai", now_ms=NOW, policy=POLICY, model="m"
    )
    assert json.loads(store.path.read_text())["usageStats"]["openai:a"]["models"]["m"]["errorCount"] == 1
    store.record_success("openai:a", provider="openai", now_ms=NOW + 1, model="m")
    assert json.loads(store.path.read_text())["usageStats"]["openai:a"] == {"lastUsed": NOW + 1}


def test_clear_cooldown_of_an_unknown_pair_says_which_exist(tmp_path: Path) -> None:
    """``clear_cooldown(id, model)`` for a model without state is refused and changes nothing."""
    store = AuthStore(tmp_path / "auth-profiles.json")
    store.update(doc_edits.with_profile("openai:a", KEY))
    store.record_failure(
        "openai:a", Reason.RATE_LIMIT, provider="openai", now_ms=NOW, policy=POLICY, model="m"
    )
    before = store.path.read_bytes()
    with pytest.raises(AuthError, match=r'no cooldown state for model "gpt-x" \(models: m\)'):
        store.clear_cooldown("openai:a", "gpt-x")
    assert store.path.read_bytes() == before
    assert store.clear_cooldown("openai:a", "m").models == {}


def test_threads_bursting_on_one_pair_escalate_once(tmp_path: Path) -> None:
    """Eight threads (eight chats) record a 429 on one key and model within the cooldown: one 1m step."""
    path = tmp_path / "auth-profiles.json"
    AuthStore(path).update(doc_edits.with_profile("openai:a", KEY))

    def hit(n: int) -> None:
        AuthStore(path).record_failure(
            "openai:a", Reason.RATE_LIMIT, provider="openai", now_ms=NOW + n, policy=POLICY, model="gpt-5.2"
        )

    threads = [threading.Thread(target=hit, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pair = AuthStore(path).load().stats("openai:a").model("gpt-5.2")
    assert pair.error_count == 1
    assert pair.cooldown_until is not None
    assert NOW + MINUTE_MS <= pair.cooldown_until <= NOW + 7 + MINUTE_MS  # whichever hit was recorded first


@pytest.fixture(params=AUTH_STORES)
async def app(request: pytest.FixtureRequest, state_dir: Path, clock: FakeClock) -> Any:
    """The bot on auth-profiles.json, and on the database (docs/failover.md §10): the same rules hold on both."""
    config = {"auth": {"order": {"openai": ["openai:a", "openai:b"]}}}
    profiles = {
        "openai:a": KEY,
        "openai:b": Credential(type="api_key", provider="openai", secret="sk-pairs-0002"),
    }
    async with running_app(
        state_dir, clock, config=config, profiles=profiles, auth_store=request.param
    ) as built:
        yield built


async def test_the_backend_answers_for_a_model_from_one_read(
    app: App, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``candidates`` reads the store once for all profiles, and sees a pair only for its own model."""
    backend = app.backend("main")
    await backend.record_failure(
        "openai:a", "gpt-5.2", Reason.RATE_LIMIT, now_ms=clock.now_ms(), retry_after_ms=None
    )
    loads = 0
    store_type = type(backend.store)
    real_load = store_type.load

    def counting_load(self: Any) -> Any:
        nonlocal loads
        loads += 1
        return real_load(self)

    monkeypatch.setattr(store_type, "load", counting_load)
    busy = await backend.candidates("openai", "gpt-5.2", now_ms=clock.now_ms())
    assert loads == 1
    assert busy.profiles == (
        ProfileAvailability("openai:b"),
        ProfileAvailability("openai:a", clock.now_ms() + MINUTE_MS, None, "model"),
    )
    other = await backend.candidates("openai", "gpt-5-mini", now_ms=clock.now_ms())
    assert other.ready() == ["openai:a", "openai:b"]


async def test_a_burst_of_concurrent_failures_in_one_process_escalates_once(
    app: App, clock: FakeClock
) -> None:
    """Ten chats' 429s on one key and model land together through the backend: one 1-minute cooldown."""
    backend = app.backend("main")
    untils = await asyncio.gather(
        *(
            backend.record_failure(
                "openai:a", "gpt-5.2", Reason.RATE_LIMIT, now_ms=clock.now_ms(), retry_after_ms=None
            )
            for _ in range(10)
        )
    )
    assert set(untils) == {clock.now_ms() + MINUTE_MS}
    pair = (await app.backend("main").store.areload()).stats("openai:a").model("gpt-5.2")
    assert (pair.error_count, pair.cooldown_until) == (1, clock.now_ms() + MINUTE_MS)


async def test_a_late_success_through_the_backend_keeps_the_newer_cooldown(
    app: App, clock: FakeClock
) -> None:
    """A slow answer started before another chat's 429 is booked after it: the cooldown stays on disk and in
    the answer to the next question; lastGood does not move to the cooling profile."""
    backend = app.backend("main")
    started = clock.now_ms()
    clock.advance(seconds=2)
    await backend.record_failure(
        "openai:a", "gpt-5.2", Reason.RATE_LIMIT, now_ms=clock.now_ms(), retry_after_ms=None
    )
    until = clock.now_ms() + MINUTE_MS
    clock.advance(seconds=10)
    await backend.record_success("openai:a", "gpt-5.2", started_ms=started, now_ms=clock.now_ms())
    await backend.flush()
    doc = await backend.store.areload()
    stats = doc.stats("openai:a")
    assert stats.model("gpt-5.2").cooldown_until == until
    assert stats.last_used == clock.now_ms()
    assert doc.last_good == {}
    assert (await backend.candidates("openai", "gpt-5.2", now_ms=clock.now_ms())).ready() == ["openai:b"]


@pytest.mark.parametrize("auth_store", AUTH_STORES)
async def test_model_status_names_the_model_of_a_pair_cooldown(
    state_dir: Path, clock: FakeClock, auth_store: AuthStoreKind
) -> None:
    """``/model status``: a pair's cooldown reads ``cooldown 1m (gpt-5.2)``; for the session's model the
    rotation (and ``next``) skips it, for another model the same key is next."""
    config = {
        "agents": {"defaults": {"model": {"primary": "openai/gpt-5.2", "fallbacks": ["openai/gpt-5-mini"]}}},
        "auth": {"order": {"openai": ["openai:a", "openai:b"]}},
    }
    profiles = {
        "openai:a": KEY,
        "openai:b": Credential(type="api_key", provider="openai", secret="sk-pairs-0002"),
    }
    async with running_app(state_dir, clock, config=config, profiles=profiles, auth_store=auth_store) as app:
        await app.backend("main").record_failure(
            "openai:a", "gpt-5.2", Reason.RATE_LIMIT, now_ms=clock.now_ms(), retry_after_ms=None
        )
        chat = app.chat()
        incoming = Incoming(platform="telegram", chat_id="c1", user_id="u1", text="/model status")
        [status] = await chat.handle(incoming)
        lines = [line.strip() for line in status.text.splitlines() if " openai:" in line]
        assert lines == [
            "1. openai:b (api_key) sk…02 — next",
            "2. openai:a (api_key) sk…01 — cooldown 1m (gpt-5.2)",
        ]
        await chat.handle(
            Incoming(platform="telegram", chat_id="c1", user_id="u1", text="/model openai/gpt-5-mini")
        )
        [status] = await chat.handle(incoming)
        lines = [line.strip() for line in status.text.splitlines() if " openai:" in line]
        assert lines == [
            "1. openai:a (api_key) sk…01 — next, cooldown 1m (gpt-5.2)",
            "2. openai:b (api_key) sk…02",
        ]
