"""A turn does not re-read or re-walk the whole conversation (issue 15): the history kept between turns, and
every way the stored history can change behind it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.conversation import compaction, saving
from bot.conversation import history as history_module
from bot.conversation.history import HistoryCache
from bot.providers.base import ChatRequest, Endpoint, ResolvedAuth
from bot.store.memory import InMemorySessionStore
from bot.store.types import NewMessage, StoredMessage
from tests.app_helpers import running_app
from tests.fakes.clock import FakeClock
from tests.fakes.scripted import ScriptedClient
from tests.test_pipeline import msg, say


class CountingStore(InMemorySessionStore):
    """Counts what ``history`` reads: calls and messages."""

    def __init__(self) -> None:
        super().__init__()
        self.history_calls = 0
        self.messages_read = 0

    async def history(self, key: str, *, limit: int | None = None) -> list[StoredMessage]:
        found = await super().history(key, limit=limit)
        self.history_calls += 1
        self.messages_read += len(found)
        return found


class Recorder(ScriptedClient):
    """Answers "ok" and keeps every request."""

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[ChatRequest] = []

    async def stream(
        self, endpoint: Endpoint, auth: ResolvedAuth, request: ChatRequest
    ) -> AsyncIterator[str]:
        self.requests.append(request)
        yield "ok"

    def sent(self, index: int = -1) -> list[tuple[str, str]]:
        return [(m.role, m.text) for m in self.requests[index].messages]


async def started(state_dir: Path, clock: FakeClock, config: dict[str, Any] | None = None) -> Any:
    store = CountingStore()
    recorder = Recorder()
    context = running_app(state_dir, clock, config=config, store=store)
    app = await context.__aenter__()
    app.clients["demo"] = recorder
    return context, app, store, recorder


@pytest.fixture
async def bot(state_dir: Path, clock: FakeClock) -> AsyncIterator[tuple[App, CountingStore, Recorder]]:
    """The demo bot on a counting memory store, its provider replaced by a recorder."""
    context, app, store, recorder = await started(state_dir, clock)
    try:
        yield app, store, recorder
    finally:
        await context.__aexit__(None, None, None)


def conversation(turns: int) -> list[tuple[str, str]]:
    return [pair for n in range(turns) for pair in (("user", f"q{n}"), ("assistant", "ok"))]


async def test_a_warm_session_reads_no_history_per_turn(bot: tuple[App, CountingStore, Recorder]) -> None:
    """Turn after turn, the store's history is read once (when the session is first seen), and each request
    still carries the whole conversation."""
    app, store, recorder = bot
    for n in range(10):
        assert (await say(app, f"q{n}")).text == "ok"
    assert (store.history_calls, store.messages_read) == (1, 0)
    assert recorder.sent() == [*conversation(9), ("user", "q9")]


async def test_history_written_elsewhere_is_read_again(
    bot: tuple[App, CountingStore, Recorder], clock: FakeClock
) -> None:
    """Messages another process appended (same session, same store) are in the next request."""
    app, store, recorder = bot
    await say(app, "q0")
    key = app.chat().session_key(msg("x"))
    await store.append_messages(
        key, [NewMessage("user", "elsewhere"), NewMessage("assistant", "noted")], now_ms=clock.now_ms()
    )
    await say(app, "q1")
    assert recorder.sent() == [
        *conversation(1),
        ("user", "elsewhere"),
        ("assistant", "noted"),
        ("user", "q1"),
    ]


@pytest.mark.parametrize("how", ["/new", "reset_all"])
async def test_a_reset_history_is_never_sent_again(
    bot: tuple[App, CountingStore, Recorder], how: str
) -> None:
    """``/new`` and an admin's ``sessions reset --all`` (which leaves updated_at alone) both empty the next
    request's history."""
    app, store, recorder = bot
    await say(app, "q0")
    await say(app, "q1")
    if how == "/new":
        await say(app, "/new")
    else:
        await store.reset_all()
    await say(app, "fresh")
    assert recorder.sent() == [("user", "fresh")]


async def test_the_history_limit_holds_as_the_history_grows(state_dir: Path, clock: FakeClock) -> None:
    """With ``session.historyLimit`` 4, each request carries the newest four stored messages, as the store's
    own view would."""
    context, app, store, recorder = await started(state_dir, clock, {"session": {"historyLimit": 4}})
    try:
        for n in range(5):
            await say(app, f"q{n}")
        assert recorder.sent() == [*conversation(4)[-4:], ("user", "q4")]
        assert store.history_calls == 1
    finally:
        await context.__aexit__(None, None, None)


async def test_a_compaction_replaces_the_kept_history(state_dir: Path, clock: FakeClock) -> None:
    """After a compaction the summary goes in the system prompt and only the kept messages are sent; the
    next turns read nothing again."""
    config = {"models": {"providers": {"demo": {"models": [{"id": "echo", "contextWindow": 300}]}}}}
    context, app, store, recorder = await started(state_dir, clock, config)
    try:
        for n in range(6):
            await say(app, f"q{n} " + "pad " * 40)
        summaries = [r for r in recorder.requests if r.messages[0].text.startswith("Summarise")]
        assert summaries, "the history never reached the compaction threshold"
        last = recorder.requests[-1]
        assert last.system is not None and "Summary of the earlier conversation" in last.system
        reads = store.history_calls
        await say(app, "short")
        assert store.history_calls == reads
        assert recorder.sent()[-1] == ("user", "short")
    finally:
        await context.__aexit__(None, None, None)


async def test_the_cache_keeps_the_most_recent_sessions(clock: FakeClock) -> None:
    """Beyond ``max_sessions`` the least recently used session is read again when it comes back."""
    store = CountingStore()
    cache = HistoryCache(store, limit=10, max_sessions=2)
    records = [
        await store.get_or_create(f"k{n}", agent_id="main", platform="t", chat_id=str(n), now_ms=0)
        for n in range(3)
    ]
    for record in records:
        await cache.get(record)
    await cache.get(records[2])
    assert store.history_calls == 3
    await cache.get(records[0])  # evicted by the third
    assert store.history_calls == 4


async def test_token_estimates_per_turn_do_not_grow_with_the_history(
    bot: tuple[App, CountingStore, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compaction check reads the history's running token sum: a turn estimates its own two messages (and
    the pending one), never the whole conversation again."""
    app, _store, _recorder = bot
    counted = {"calls": 0}

    def counting(function: Any) -> Any:
        def wrapper(*args: Any) -> Any:
            counted["calls"] += 1
            return function(*args)

        return wrapper

    for module, name in (
        (compaction, "estimate_tokens"),
        (compaction, "message_tokens"),
        (saving, "estimate_tokens"),
        (history_module, "message_tokens"),
    ):
        monkeypatch.setattr(module, name, counting(getattr(module, name)))
    per_turn = []
    for n in range(12):
        before = counted["calls"]
        await say(app, f"q{n}")
        per_turn.append(counted["calls"] - before)
    # The same few estimates every turn (the two messages saved, the pending one, ...): the twelfth turn costs
    # what the first did.
    assert per_turn == [per_turn[0]] * len(per_turn), per_turn
    assert 0 < per_turn[0] <= 6
