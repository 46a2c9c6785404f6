"""The wired bot against the loopback provider (docs/failover.md §6, §8): a turn that waits with a status line,
/stop during the wait, a burst of chats on one rate limit, and a slow answer that lands after a 429."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bot.app import App
from bot.auth.types import Credential
from bot.chat import Incoming, Reply
from bot.clock import MINUTE_MS
from tests.app_helpers import running_app
from tests.fakes.clock import FakeClock
from tests.fakes.provider_server import FakeProviderServer, held, ok, status

GPT = "openai/gpt-5.2"
KEY_A = "sk-waiting-a-1111"
KEY_B = "sk-waiting-b-2222"


class RecordingSink:
    """A ReplySink that writes down what the pipeline asked the platform to show, in order."""

    def __init__(self) -> None:
        self.shown: list[tuple[str, str | None]] = []
        self.status_shown = asyncio.Event()
        self.delivered: list[Reply] = []

    async def typing(self) -> None:
        self.shown.append(("typing", None))

    async def status(self, text: str | None) -> None:
        self.shown.append(("status", text))
        if text is not None:
            self.status_shown.set()

    async def delta(self, text: str) -> None:
        self.shown.append(("delta", text))

    async def deliver(self, replies: Sequence[Reply]) -> None:
        self.delivered.extend(replies)  # kept apart: ``shown`` is what happened while the turn ran


class HeldClock(FakeClock):
    """A fake clock whose sleep never ends by itself: the turn stays in its wait until cancelled."""

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        await asyncio.Event().wait()


@asynccontextmanager
async def running_bot(
    state_dir: Path, clock: FakeClock, profiles: dict[str, str], **auth: Any
) -> AsyncIterator[tuple[App, FakeProviderServer]]:
    """The bot on openai/gpt-5.2 alone, with ``profiles`` (id: key) in that order."""
    async with FakeProviderServer() as server:
        config = {
            "models": {
                "providers": {"openai": {"baseUrl": server.openai_base_url, "api": "openai-completions"}}
            },
            "agents": {"defaults": {"model": {"primary": GPT}, "timeoutSeconds": 10}},
            "auth": {"order": {"openai": list(profiles)}, **auth},
        }
        creds = {
            pid: Credential(type="api_key", provider="openai", secret=key) for pid, key in profiles.items()
        }
        async with running_app(state_dir, clock, config=config, profiles=creds) as app:
            yield app, server


def msg(text: str, chat: str = "c1") -> Incoming:
    return Incoming(platform="telegram", chat_id=chat, user_id="u1", text=text)


async def say(app: App, text: str, sink: RecordingSink | None = None, chat: str = "c1") -> Reply:
    [reply] = await app.chat().handle(msg(text, chat), sink)
    return reply


def pair(state_dir: Path, profile_id: str, model: str = "gpt-5.2") -> dict[str, Any]:
    """The (profile, model) pair's state as written in auth-profiles.json."""
    doc = json.loads((state_dir / "agents/main/agent/auth-profiles.json").read_text())
    stats: dict[str, Any] = doc["usageStats"][profile_id]["models"][model]
    return stats


async def test_a_turn_waits_out_a_short_rate_limit_with_a_status_line(
    state_dir: Path, clock: FakeClock
) -> None:
    """The only key is rate-limited for 6 s (ladder [0.1]): typing, one status line, which the answer's first
    text takes away, then the answer; the success clears the pair (its failure came before the retry)."""
    cooldowns = {"backoffMinutes": [0.1]}
    async with running_bot(state_dir, clock, {"openai:a": KEY_A}, cooldowns=cooldowns) as (app, server):
        server.script(KEY_A, status(429), ok("Worth the wait."))
        sink = RecordingSink()
        reply = await say(app, "hello", sink)
        assert (reply.kind, reply.text, reply.profile, reply.note) == (
            "answer",
            "Worth the wait.",
            "openai:a",
            None,
        )
        assert clock.slept == [6.0]
        assert sink.shown[:4] == [
            ("typing", None),
            ("typing", None),
            ("status", "waiting 6s for a rate limit…"),
            ("status", None),
        ]
        assert [text for kind, text in sink.shown[4:] if kind == "delta"] == ["Worth ", "the ", "wait."]
        assert len(server.requests) == 2
        await app.backend("main").flush()  # success bookkeeping is written in the background
        doc = json.loads((state_dir / "agents/main/agent/auth-profiles.json").read_text())
        assert "models" not in doc["usageStats"]["openai:a"]


async def test_a_longer_cooldown_fails_at_once_with_the_summary(state_dir: Path, clock: FakeClock) -> None:
    """1 minute away with the default 20 s: no wait, no status line, the summary of docs/failover.md §8."""
    async with running_bot(state_dir, clock, {"openai:a": KEY_A}) as (app, server):
        server.script(KEY_A, status(429))
        sink = RecordingSink()
        reply = await say(app, "hello", sink)
        assert reply.kind == "error" and reply.text.endswith("The first profile is available again in 1m.")
        assert ("status", "waiting 1m for a rate limit…") not in sink.shown and clock.slept == []


async def test_stop_ends_the_wait(state_dir: Path) -> None:
    """/stop while the turn waits: the turn ends as stopped, the status line is taken away, nothing is called."""
    clock = HeldClock()
    async with running_bot(state_dir, clock, {"openai:a": KEY_A}) as (app, server):
        server.script(KEY_A, status(429))
        assert (await say(app, "first")).kind == "error"  # a's pair cools for 1 minute
        clock.advance(seconds=50)
        sink = RecordingSink()
        turn = asyncio.create_task(say(app, "second", sink))
        await asyncio.wait_for(sink.status_shown.wait(), 5)
        assert clock.slept == [10.0]
        assert (await say(app, "/stop")).text == "Stopping the current answer."
        stopped = await turn
        assert stopped.text == "Stopped. Send /retry to ask again."
        assert sink.shown[-1] == ("status", None)
        assert len(server.requests) == 1


async def test_a_burst_of_chats_on_one_rate_limit_escalates_once(state_dir: Path, clock: FakeClock) -> None:
    """Ten chats hit one key's 429 together: one 1-minute cooldown on the pair, not an hour; all answered."""
    gate = asyncio.Event()
    async with running_bot(state_dir, clock, {"openai:a": KEY_A, "openai:b": KEY_B}) as (app, server):
        server.script(KEY_A, default=held(gate, status(429)))
        server.script(KEY_B, default=ok("From b."))
        turns = [asyncio.create_task(say(app, "hi", chat=f"chat{n}")) for n in range(10)]
        await server.wait_for_requests(10)  # every chat asked a before any 429 came back
        gate.set()
        replies = await asyncio.gather(*turns)
        assert {r.profile for r in replies} == {"openai:b"}
        assert pair(state_dir, "openai:a") == {
            "cooldownUntil": clock.now_ms() + MINUTE_MS,
            "errorCount": 1,
            "lastFailureAt": clock.now_ms(),
        }


async def test_a_slow_answer_keeps_the_cooldown_another_chat_recorded(
    state_dir: Path, clock: FakeClock
) -> None:
    """Chat 1's answer is held open; chat 2 gets a 429 on the same key; chat 1's success, booked last, must
    not wipe that cooldown (it started before the failure)."""
    gate = asyncio.Event()
    async with running_bot(state_dir, clock, {"openai:a": KEY_A, "openai:b": KEY_B}) as (app, server):
        server.script(KEY_A, held(gate, ok("Slow but sure.")), status(429))
        slow = asyncio.create_task(say(app, "take your time", chat="one"))
        await server.wait_for_requests(1)
        clock.advance(seconds=1)
        rotated = await say(app, "quick one", chat="two")
        assert rotated.profile == "openai:b"
        failed_at = clock.now_ms()
        clock.advance(seconds=5)
        gate.set()
        assert (await slow).text == "Slow but sure."
        await app.backend("main").flush()
        assert pair(state_dir, "openai:a") == {
            "cooldownUntil": failed_at + MINUTE_MS,
            "errorCount": 1,
            "lastFailureAt": failed_at,
        }
        third = await say(app, "and now?", chat="three")
        assert third.profile == "openai:b"  # a still rests for gpt-5.2
