"""Waiting instead of failing (docs/failover.md §8) and the engine's side of docs/failover.md §6, on the fake clock: no real sleep."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.auth.availability import Candidates, ProfileAvailability
from bot.errors import AllCandidatesFailed
from bot.failover.engine import (
    Engine,
    Pin,
    TurnDone,
    TurnEvent,
    TurnInput,
    Waiting,
    skip_record,
    wait_ms,
)
from bot.failover.reasons import Reason
from bot.failover.wording import waiting_text
from bot.models.refs import ModelRef
from bot.providers.base import ChatMessage, ChatRequest, Endpoint, ResolvedAuth
from tests.fakes.clock import FakeClock
from tests.fakes.scripted import Fail, MemoryAuth, ScriptedClient, ok

SONNET = ModelRef("anthropic", "claude-sonnet-4-5")
GPT = ModelRef("openai", "gpt-5.2")
HELLO = (ChatMessage("user", "hello"),)
PROFILES = {"anthropic": ["anthropic:a", "anthropic:b"], "openai": ["openai:x"]}
WAIT_MS = 20_000


def make_engine(
    clock: FakeClock, *, wait: int = WAIT_MS, client: ScriptedClient | None = None
) -> tuple[Engine, MemoryAuth, ScriptedClient]:
    auth = MemoryAuth(clock=clock, profiles=PROFILES)
    client = client if client is not None else ScriptedClient()
    engine = Engine(
        auth=auth,
        clients={"fake": client},
        endpoint_for=lambda provider: Endpoint(provider, "http://unused", "fake"),
        clock=clock,
        wait_ms=wait,
    )
    return engine, auth, client


async def events(engine: Engine, turn: TurnInput) -> list[TurnEvent]:
    return [event async for event in engine.run(turn)]


def test_wait_ms_only_within_the_deadline() -> None:
    """A pass waits until the first resting profile is back, if that is before the deadline."""
    back_at = ProfileAvailability("p:a", 1_500, "rate_limit")
    assert wait_ms(back_at, 1_000, 2_000) == 500
    assert wait_ms(back_at, 1_000, 1_499) is None  # back too late
    assert wait_ms(back_at, 1_500, 2_000) is None  # back already: nothing to wait for
    assert wait_ms(None, 1_000, 2_000) is None
    assert wait_ms(ProfileAvailability("p:a"), 1_000, 2_000) is None


def test_waiting_text_names_what_is_waited_for() -> None:
    """``waiting 12s for a rate limit…``; a pair's cooldown is a rate limit, an unknown one a cooldown."""
    assert (
        waiting_text(12_000, ProfileAvailability("p:a", 1, "rate_limit")) == "waiting 12s for a rate limit…"
    )
    assert waiting_text(1_200, ProfileAvailability("p:a", 1, None, "model")) == "waiting 2s for a rate limit…"
    assert waiting_text(65_000, ProfileAvailability("p:a", 1, "auth")).endswith(
        "1m05s for a cooldown after an auth error…"
    )
    assert waiting_text(5_000, ProfileAvailability("p:a", 1, None, "profile")) == "waiting 5s for a cooldown…"


def test_a_user_pin_waits_for_its_own_profile_only() -> None:
    """The skip of a user-pinned model offers only the pinned profile's return, even if another is sooner."""
    candidates = Candidates(
        "anthropic",
        SONNET.model,
        (ProfileAvailability("anthropic:b", 2_000, "rate_limit"), ProfileAvailability("anthropic:a", 9_000)),
    )
    record, rest = skip_record(SONNET, candidates, Pin("anthropic:a", "user"))
    assert rest == ProfileAvailability("anthropic:a", 9_000)
    assert record.detail == "pinned anthropic:a cooling down" and record.skipped
    _, rest = skip_record(SONNET, candidates, Pin("anthropic:a", "auto"))
    assert rest is not None and rest.profile_id == "anthropic:b"


async def test_a_turn_whose_only_profile_cools_briefly_waits_and_answers(clock: FakeClock) -> None:
    """Every candidate rests, the first is back in 12 s: the turn says so, waits on the clock, then answers."""
    engine, auth, client = make_engine(clock)
    auth.cool(["openai:x"], 12_000)
    start = clock.now_ms()
    seen = await events(engine, TurnInput(chain=[GPT], messages=HELLO))
    waiting = [e for e in seen if isinstance(e, Waiting)]
    assert waiting == [Waiting(start + 12_000, "waiting 12s for a rate limit…")]
    assert clock.slept == [12.0]
    done = seen[-1]
    assert isinstance(done, TurnDone) and done.result.profile_id == "openai:x"
    assert done.result.note is None and not done.result.rotated  # same model, same profile: nothing to note
    assert client.calls == [(str(GPT), "openai:x")]


async def test_longer_waits_fail_with_the_summary(clock: FakeClock) -> None:
    """Back in 25 s with auth.waitSeconds 20: no wait, today's summary; waitSeconds 0 never waits."""
    for wait, cooling in ((WAIT_MS, 25_000), (0, 1_000)):
        engine, auth, client = make_engine(clock, wait=wait)
        auth.cool(["openai:x"], cooling)
        with pytest.raises(AllCandidatesFailed, match=r"available again in (25s|1s)\.") as failed:
            await events(engine, TurnInput(chain=[GPT], messages=HELLO))
        assert failed.value.attempts[0].skipped
        assert clock.slept == [] and client.calls == []


async def test_a_user_pin_waits_for_its_profile_though_another_is_ready(clock: FakeClock) -> None:
    """A user pin never rotates: with its profile back in 5 s and another profile ready, the turn waits."""
    engine, auth, client = make_engine(clock)
    auth.cool(["anthropic:a"], 5_000)
    seen = await events(engine, TurnInput(chain=[SONNET], messages=HELLO, pin=Pin("anthropic:a", "user")))
    assert clock.slept == [5.0]
    assert client.calls == [(str(SONNET), "anthropic:a")]
    assert isinstance(seen[-1], TurnDone) and seen[-1].result.profile_id == "anthropic:a"


async def test_a_failure_in_the_turn_itself_can_be_waited_out(clock: FakeClock) -> None:
    """A 429 with a 3 s cooldown on the only candidate: the turn waits 3 s and asks again."""
    engine, auth, client = make_engine(clock)
    auth.cooldown_ms = 3_000
    client.script(str(GPT), "openai:x", Fail(Reason.RATE_LIMIT), ok("second time lucky"))
    seen = await events(engine, TurnInput(chain=[GPT], messages=HELLO))
    assert [e.text for e in seen if isinstance(e, Waiting)] == ["waiting 3s for a rate limit…"]
    assert isinstance(seen[-1], TurnDone) and seen[-1].result.text == "second time lucky"


async def test_waits_of_one_turn_share_one_budget(clock: FakeClock) -> None:
    """Waiting 15 s, then failing again with 15 s to go: 30 s is past the 20 s budget, so the turn fails."""
    engine, auth, client = make_engine(clock)
    auth.cooldown_ms = 15_000
    auth.cool(["openai:x"], 15_000)
    client.script(str(GPT), "openai:x", Fail(Reason.RATE_LIMIT))
    with pytest.raises(
        AllCandidatesFailed, match=r"\(openai:x rate-limited\)\. The first profile is available again in 15s"
    ):
        await events(engine, TurnInput(chain=[GPT], messages=HELLO))
    assert clock.slept == [15.0]


class _SlowClient(ScriptedClient):
    """Each delta takes 400 ms of (fake) time: the answer ends well after its call started."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self._clock = clock

    async def stream(
        self, endpoint: Endpoint, auth: ResolvedAuth, request: ChatRequest
    ) -> AsyncIterator[str]:
        async for delta in super().stream(endpoint, auth, request):
            self._clock.advance(ms=400)
            yield delta


async def test_a_success_is_booked_with_the_start_of_its_attempt(clock: FakeClock) -> None:
    """docs/failover.md §6 needs the attempt's start: the engine books a success with it and with the time it ended."""
    engine, auth, _ = make_engine(clock, client=_SlowClient(clock))
    start = clock.now_ms()
    seen = await events(engine, TurnInput(chain=[GPT], messages=HELLO))
    assert isinstance(seen[-1], TurnDone)
    words = len(seen[-1].result.text.split(" "))
    assert auth.booked == [("openai:x", "gpt-5.2", start, start + 400 * words)]


async def test_one_question_to_the_backend_per_candidate_model(clock: FakeClock) -> None:
    """The engine asks once per model of the chain, naming the model, and decides from that answer alone."""
    engine, auth, client = make_engine(clock)
    client.script(str(SONNET), "anthropic:a", Fail(Reason.RATE_LIMIT))
    client.script(str(SONNET), "anthropic:b", Fail(Reason.RATE_LIMIT))
    await events(engine, TurnInput(chain=[SONNET, GPT], messages=HELLO))
    assert auth.questions == [("anthropic", SONNET.model), ("openai", GPT.model)]


async def test_stop_during_a_wait_cancels_the_turn(clock: FakeClock) -> None:
    """The wait is an ordinary await: cancelling the turn (``/stop``) ends it there, and nothing is called."""
    engine, auth, client = make_engine(clock)
    auth.cool(["openai:x"], 10_000)
    entered = asyncio.Event()

    async def held(seconds: float) -> None:
        entered.set()
        await asyncio.Event().wait()

    clock.sleep = held  # type: ignore[method-assign]
    task = asyncio.create_task(events(engine, TurnInput(chain=[GPT], messages=HELLO)))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert client.calls == []
