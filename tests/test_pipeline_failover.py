"""Failover through the wired pipeline (docs/failover.md §5–§8): pins after rotation and compaction, overflow, note, Retry-After.

Each test runs ``build_app`` in-process, with a fake clock, against the loopback fake provider server: the
real OpenAI client, engine, pipeline and file-backed auth store. It checks the replies, the requests the fake
saw (by credential), the stored session and ``auth-profiles.json``. Nothing sleeps: cooldowns pass on the clock.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.app import App, auth_store_for
from bot.auth.types import Credential
from bot.conversation.compaction import SUMMARY_INSTRUCTION
from bot.failover.policy import OVERFLOW_NOT_COMPACTED, STOP_MESSAGES
from bot.failover.reasons import Reason
from bot.store.types import SessionRecord
from tests.app_helpers import running_app
from tests.fakes.clock import FakeClock
from tests.fakes.provider_server import FakeProviderServer, RecordedRequest, ok, status
from tests.test_pipeline import msg, say, usage

GPT = "openai/gpt-5.2"
MINI = "openai/gpt-5-mini"
KEY_A = "sk-failover-a-1111"
KEY_B = "sk-failover-b-2222"
PROFILES = {"openai:a": KEY_A, "openai:b": KEY_B}  # also the configured rotation order: a, then b

# OpenAI's answer to a prompt longer than the model's window (a 400 the classifier calls context_overflow).
OVERFLOW = status(
    400,
    body={
        "error": {
            "message": "This model's maximum context length is 128000 tokens. "
            "However, your messages resulted in 131072 tokens.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    },
)


@asynccontextmanager
async def running_bot(
    state_dir: Path, clock: FakeClock, *, context_window: int | None = None, **defaults: object
) -> AsyncIterator[tuple[App, FakeProviderServer]]:
    """The bot on ``openai`` (profiles a, b in ``auth.order``; chain gpt-5.2 → gpt-5-mini) and its fake server.

    ``defaults`` are extra ``agents.defaults`` keys; ``context_window`` shrinks gpt-5.2's window.
    """
    async with FakeProviderServer() as server:
        provider: dict[str, Any] = {"baseUrl": server.openai_base_url, "api": "openai-completions"}
        if context_window is not None:
            provider["models"] = [{"id": "gpt-5.2", "contextWindow": context_window}]
        config = {
            "models": {"providers": {"openai": provider}},
            "auth": {"order": {"openai": list(PROFILES)}},
            "agents": {
                "defaults": {"model": {"primary": GPT, "fallbacks": [MINI]}, "timeoutSeconds": 10, **defaults}
            },
        }
        creds = {profile_id: Credential("api_key", "openai", key) for profile_id, key in PROFILES.items()}
        async with running_app(state_dir, clock, config=config, profiles=creds) as app:
            yield app, server


async def session(app: App) -> SessionRecord:
    """The stored session of the chat ``say`` talks in."""
    record = await app.store.get(app.chat().session_key(msg("x")))
    assert record is not None
    return record


def keys(requests: list[RecordedRequest]) -> list[str]:
    return [r.key for r in requests]


def is_summary(request: RecordedRequest) -> bool:
    """Whether the request is a compaction's summary call rather than a user's turn."""
    return any(str(m["content"]).startswith(SUMMARY_INSTRUCTION) for m in request.json["messages"])


def padded(label: str) -> str:
    """About 120 tokens: four such turns reach 80 % of a 600-token window (a compaction), a short fifth does not."""
    return label + " pad" * 116


async def pinned_turns(app: App) -> None:
    """Three turns answered by openai:a, which becomes the session's auto pin (compaction count 0)."""
    for label in ("one", "two", "three"):
        assert (await say(app, padded(label))).profile == "openai:a"
    stored = await session(app)
    assert (stored.pin_profile, stored.pin_source, stored.compaction_count) == ("openai:a", "auto", 0)


async def test_completed_compaction_repicks_the_auto_pin(state_dir: Path, clock: FakeClock) -> None:
    """docs/failover.md §8: an auto pin holds until a compaction completes; then the turn's profile is re-picked by rotation."""
    async with running_bot(state_dir, clock, context_window=600) as (app, server):
        assert (await say(app, "hello")).profile == "openai:a"
        # Rotation now prefers b; the auto pin on a holds while the compaction count stays the same.
        await app.backend("main").flush()  # the answer's bookkeeping is written in the background
        auth_store_for(app.paths, "main").set_order("openai", ["openai:b", "openai:a"])
        await pinned_turns(app)

        seen = len(server.requests)
        reply = await say(app, padded("four"))  # the history nears the window: this turn compacts first
        sent = server.requests[seen:]
        assert [is_summary(r) for r in sent] == [True, False]
        assert (reply.kind, reply.profile) == ("answer", "openai:b")
        assert keys(sent) == [KEY_B, KEY_B]
        after = await session(app)
        assert after.compaction_count == 1
        assert (after.pin_profile, after.pin_source, after.pin_compaction) == ("openai:b", "auto", 1)


async def test_auto_pin_repicked_after_compaction_holds_again(state_dir: Path, clock: FakeClock) -> None:
    """docs/failover.md §8: a pin re-picked after a compaction (here the same profile) is tied to the new count and holds again."""
    async with running_bot(state_dir, clock, context_window=600) as (app, server):
        await pinned_turns(app)
        assert (await say(app, padded("four"))).profile == "openai:a"  # compacts; rotation still says a
        after = await session(app)
        assert after.compaction_count == 1
        assert (after.pin_profile, after.pin_source, after.pin_compaction) == ("openai:a", "auto", 1)

        await app.backend("main").flush()  # the answer's bookkeeping is written in the background
        auth_store_for(app.paths, "main").set_order("openai", ["openai:b", "openai:a"])
        seen = len(server.requests)
        assert (await say(app, "five")).profile == "openai:a"  # no compaction this time: the pin holds
        assert keys(server.requests[seen:]) == [KEY_A]
        assert (await session(app)).compaction_count == 1


async def test_context_overflow_compacts_once_and_retries(state_dir: Path, clock: FakeClock) -> None:
    """docs/failover.md §5: context_overflow compacts the session once and retries the turn, which is then answered."""
    async with running_bot(state_dir, clock) as (app, server):
        for text in ("one", "two", "three"):  # more history than compaction keeps verbatim
            await say(app, text)
        server.script_model("gpt-5.2", OVERFLOW, ok("A short summary."), ok("Answered after compacting."))
        seen = len(server.requests)
        reply = await say(app, "and now?")
        assert (reply.kind, reply.text, reply.model) == ("answer", "Answered after compacting.", GPT)
        overflowed, summary, retried = server.requests[seen:]  # exactly three calls
        assert not is_summary(overflowed) and is_summary(summary) and not is_summary(retried)
        assert "A short summary." in json.dumps(retried.json["messages"])  # the retry carries the summary
        assert (await session(app)).compaction_count == 1


async def test_second_context_overflow_stops_without_a_second_compaction(
    state_dir: Path, clock: FakeClock
) -> None:
    """docs/failover.md §5: overflowing again after the one compaction ends the turn with one plain sentence; no more compacting."""
    async with running_bot(state_dir, clock) as (app, server):
        for text in ("one", "two", "three"):
            await say(app, text)
        server.script_model("gpt-5.2", OVERFLOW, ok("A short summary."), OVERFLOW)
        seen = len(server.requests)
        reply = await say(app, "and now?")
        assert reply.kind == "error"
        assert reply.text == STOP_MESSAGES[Reason.CONTEXT_OVERFLOW]
        assert "\n" not in reply.text and "Traceback" not in reply.text
        assert [is_summary(r) for r in server.requests[seen:]] == [False, True, False]
        assert (await session(app)).compaction_count == 1


async def test_overflow_with_nothing_to_compact_says_so(state_dir: Path, clock: FakeClock) -> None:
    """docs/failover.md §5: when the history is too short to summarise, the reply does not claim a compaction happened."""
    async with running_bot(state_dir, clock) as (app, server):
        await say(app, "one")  # two messages: less than compaction keeps verbatim
        server.script_model("gpt-5.2", OVERFLOW)
        seen = len(server.requests)
        reply = await say(app, "a very long paste")
        assert (reply.kind, reply.text) == ("error", OVERFLOW_NOT_COMPACTED)
        assert "after compacting" not in reply.text
        assert [is_summary(r) for r in server.requests[seen:]] == [False]  # no summary call, no retry
        assert (await session(app)).compaction_count == 0


@pytest.mark.parametrize(
    ("setting", "shown"), [(None, True), (True, True), (False, False)], ids=["default", "on", "off"]
)
async def test_fallback_note_follows_the_config_switch(
    state_dir: Path, clock: FakeClock, setting: bool | None, shown: bool
) -> None:
    """docs/failover.md §8: agents.defaults.fallbackNote (default on) decides whether a rotated or fallback answer has its note."""
    defaults = {} if setting is None else {"fallbackNote": setting}
    async with running_bot(state_dir, clock, **defaults) as (app, server):
        server.script(KEY_A, status(429))
        rotated = await say(app, "hello")
        assert (rotated.kind, rotated.model, rotated.profile) == ("answer", GPT, "openai:b")
        expected = "↪ answered by openai/gpt-5.2 (openai:b) — openai:a rate-limited"
        assert rotated.note == (expected if shown else None)

        server.script_model("gpt-5.2", status(500), status(500))  # a server error twice: the next model
        fallback = await say(app, "again")
        assert (fallback.kind, fallback.model) == ("answer", MINI)
        expected = "↪ answered by openai/gpt-5-mini — openai server error"
        assert fallback.note == (expected if shown else None)


async def test_auto_pin_moves_to_the_profile_that_answered(state_dir: Path, clock: FakeClock) -> None:
    """docs/failover.md §8: after a rotation the auto pin is the profile that answered, and the next turn goes there first."""
    async with running_bot(state_dir, clock) as (app, server):
        assert (await say(app, "one")).profile == "openai:a"
        server.script(KEY_A, status(429))
        rotated = await say(app, "two")
        assert rotated.profile == "openai:b"
        stored = await session(app)
        assert (stored.pin_profile, stored.pin_source) == ("openai:b", "auto")

        # a's cooldown is over and it comes first in the configured order, yet the pin sends the turn to b.
        clock.advance(minutes=2)
        seen = len(server.requests)
        assert (await say(app, "three")).profile == "openai:b"
        assert keys(server.requests[seen:]) == [KEY_B]


async def test_retry_after_lengthens_the_stored_cooldown(state_dir: Path, clock: FakeClock) -> None:
    """docs/failover.md §5: a 429's Retry-After (600 s, longer than the first 1-minute cooldown) is the cooldown stored on disk."""
    async with running_bot(state_dir, clock) as (app, server):
        server.script(KEY_A, status(429, headers={"Retry-After": "600"}))
        reply = await say(app, "hello")
        assert reply.profile == "openai:b"
        assert keys(server.requests) == [KEY_A, KEY_B]
        # A rate limit cools the pair (docs/failover.md §6).
        pair = usage(state_dir)["openai:a"]["models"]["gpt-5.2"]
        assert pair["errorCount"] == 1
        assert pair["cooldownUntil"] == clock.now_ms() + 600_000


async def test_a_huge_paste_is_compacted_once_not_on_every_following_turn(
    state_dir: Path, clock: FakeClock
) -> None:
    """docs/failover.md §8: a compaction keeps verbatim only the recent messages that leave room. Keeping the newest four
    whatever their size kept a paste near the window in the history, and every turn compacted again."""
    async with running_bot(state_dir, clock, context_window=600) as (app, server):
        for text in ("one", "two", "three"):
            await say(app, text)
        await say(app, "x" * 2_000)  # ~500 tokens: alone over the 480-token threshold
        seen = len(server.requests)
        for text in ("four", "five", "six"):
            assert (await say(app, text)).kind == "answer"
        assert [is_summary(r) for r in server.requests[seen:]] == [True, False, False, False]
