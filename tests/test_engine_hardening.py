"""The engine against misbehaving providers: invisible replies, stalls and slow drips, Retry-After on 5xx."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from bot.errors import StreamInterrupted
from bot.failover.engine import AttemptFailed, Engine, TextDelta, TurnDone, TurnInput, TurnResult
from bot.failover.reasons import Reason
from bot.models.refs import ModelRef
from bot.providers.base import ChatMessage, ChatRequest, Endpoint, ResolvedAuth
from bot.providers.demo import DemoClient
from tests.fakes.clock import FakeClock
from tests.fakes.scripted import Fail, MemoryAuth, Reply, ScriptedClient, ok

SONNET = ModelRef("anthropic", "claude-sonnet-4-5")
GPT = ModelRef("openai", "gpt-5.2")
HELLO = (ChatMessage("user", "hello"),)
PROFILES = {"anthropic": ["anthropic:a", "anthropic:b"], "openai": ["openai:x"]}


class Sleeps:
    """An injected sleep that records what it was asked to wait and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def make_engine(
    clock: FakeClock, client: object, *, timeout_s: float = 120.0, max_answer_s: float = 600.0
) -> tuple[Engine, MemoryAuth, Sleeps]:
    auth = MemoryAuth(clock=clock, profiles=PROFILES)
    sleeps = Sleeps()
    engine = Engine(
        auth=auth,
        clients={"fake": client},  # type: ignore[dict-item]
        endpoint_for=lambda provider: Endpoint(
            provider, "http://unused", "fake", timeout_s=timeout_s, max_answer_s=max_answer_s
        ),
        clock=clock,
        sleep=sleeps,
    )
    return engine, auth, sleeps


async def run(engine: Engine, turn: TurnInput) -> tuple[TurnResult, list[str], list[AttemptFailed]]:
    deltas: list[str] = []
    failures: list[AttemptFailed] = []
    async for event in engine.run(turn):
        if isinstance(event, TextDelta):
            deltas.append(event.text)
        elif isinstance(event, AttemptFailed):
            failures.append(event)
        elif isinstance(event, TurnDone):
            return event.result, deltas, failures
    raise AssertionError("no result")


# -- item 2: only visible text counts ------------------------------------------------------------------


@pytest.mark.parametrize("blank", [(" ", "\n", "  "), ("\u200b", "\n"), ("\t",)])
async def test_a_reply_without_visible_text_is_empty_and_rotates(
    clock: FakeClock, blank: tuple[str, ...]
) -> None:
    """Whitespace or zero-width characters only: ``empty``, a cooldown, and the healthy next profile answers."""
    client = ScriptedClient()
    client.script(str(SONNET), "anthropic:a", Reply(blank))
    engine, auth, _ = make_engine(clock, client)
    result, deltas, failures = await run(engine, TurnInput(chain=[SONNET], messages=HELLO))
    assert (result.profile_id, result.text) == ("anthropic:b", f"answer from {SONNET} via anthropic:b")
    assert auth.failures == [("anthropic:a", Reason.EMPTY)]
    assert [f.record.reason for f in failures] == [Reason.EMPTY]
    assert "".join(deltas) == result.text  # nothing of the blank reply reached the user


async def test_leading_whitespace_is_shown_with_the_first_visible_text(clock: FakeClock) -> None:
    """Whitespace before the answer is held back, then sent together with the first visible chunk."""
    client = ScriptedClient()
    client.script(str(SONNET), "anthropic:a", Reply(("\n", " ", "Hi", " there")))
    engine, _, _ = make_engine(clock, client)
    result, deltas, _ = await run(engine, TurnInput(chain=[SONNET], messages=HELLO))
    assert deltas == ["\n Hi", " there"]
    assert result.text == "\n Hi there"


async def test_whitespace_then_failure_is_not_an_interrupted_answer(clock: FakeClock) -> None:
    """A stream that broke after sending only whitespace showed nothing: the next profile is tried."""
    client = ScriptedClient()
    client.script(str(SONNET), "anthropic:a", Fail(Reason.TIMEOUT, after=("  ", "\n")))
    engine, auth, _ = make_engine(clock, client)
    result, _, _ = await run(engine, TurnInput(chain=[SONNET], messages=HELLO))
    assert result.profile_id == "anthropic:b"
    assert auth.failures == [("anthropic:a", Reason.TIMEOUT)]


# -- item 5: Retry-After on the quick retry after a server error -------------------------------------------


async def test_server_error_with_short_retry_after_waits_then_retries(clock: FakeClock) -> None:
    """A 503 asking for 2 s is retried after 2 s (through the injected sleep), and no cooldown is recorded."""
    client = ScriptedClient()
    client.script(str(SONNET), "anthropic:a", Fail(Reason.SERVER, retry_after_ms=2_000))
    engine, auth, sleeps = make_engine(clock, client)
    result, _, _ = await run(engine, TurnInput(chain=[SONNET, GPT], messages=HELLO))
    assert (result.ref, result.profile_id) == (SONNET, "anthropic:a")
    assert sleeps.waits == [2.0]
    assert client.calls == [(str(SONNET), "anthropic:a")] * 2
    assert auth.failures == []


async def test_server_error_with_long_retry_after_goes_to_the_next_model_at_once(clock: FakeClock) -> None:
    """A 503 asking for more than 2 s is not retried: the next model answers without any wait."""
    client = ScriptedClient()
    client.script(str(SONNET), "anthropic:a", Fail(Reason.SERVER, retry_after_ms=2_001))
    engine, auth, sleeps = make_engine(clock, client)
    result, _, failures = await run(engine, TurnInput(chain=[SONNET, GPT], messages=HELLO))
    assert result.ref == GPT
    assert client.calls == [(str(SONNET), "anthropic:a"), (str(GPT), "openai:x")]
    assert sleeps.waits == [] and auth.failures == []
    assert [f.record.reason for f in failures] == [Reason.SERVER]


async def test_server_error_without_retry_after_is_retried_at_once(clock: FakeClock) -> None:
    """No Retry-After: the quick retry does not wait."""
    client = ScriptedClient()
    client.script(str(SONNET), "anthropic:a", Fail(Reason.SERVER))
    engine, _, sleeps = make_engine(clock, client)
    result, _, _ = await run(engine, TurnInput(chain=[SONNET], messages=HELLO))
    assert result.profile_id == "anthropic:a" and sleeps.waits == []


# -- item 4: timeouts around every client's stream -----------------------------------------------------------


class StallingClient:
    """Per profile: the chunks to send, then (``stall``) wait forever, or (``drip``) keep sending forever."""

    def __init__(self, plans: dict[str, tuple[tuple[str, ...], str]]) -> None:
        self._plans = plans
        self.closed: list[str] = []

    async def stream(
        self, endpoint: Endpoint, auth: ResolvedAuth, request: ChatRequest
    ) -> AsyncIterator[str]:
        chunks, then = self._plans.get(auth.profile_id, (("fine answer",), "end"))
        try:
            for chunk in chunks:
                yield chunk
            if then == "stall":
                await asyncio.Event().wait()
            while then == "drip":
                await asyncio.sleep(0.01)
                yield "."
        finally:
            self.closed.append(auth.profile_id)

    async def aclose(self) -> None:
        return None


async def test_no_first_token_in_time_is_a_timeout_and_rotates(clock: FakeClock) -> None:
    """A provider that accepts the request and then says nothing: ``timeout`` after timeoutSeconds."""
    client = StallingClient({"anthropic:a": ((), "stall")})
    engine, auth, _ = make_engine(clock, client, timeout_s=0.05)
    result, _, failures = await run(engine, TurnInput(chain=[SONNET], messages=HELLO))
    assert (result.profile_id, result.text) == ("anthropic:b", "fine answer")
    assert auth.failures == [("anthropic:a", Reason.TIMEOUT)]
    assert "no answer within 0.05s" in failures[0].record.detail
    assert client.closed == ["anthropic:a", "anthropic:b"]  # the stalled stream was closed, not left open


async def test_a_stall_after_text_is_an_interrupted_answer(clock: FakeClock) -> None:
    """Text shown, then no next chunk within timeoutSeconds: interrupted, never shown as finished."""
    client = StallingClient({"anthropic:a": (("Once ", "upon"), "stall")})
    engine, auth, _ = make_engine(clock, client, timeout_s=0.05)
    with pytest.raises(StreamInterrupted) as info:
        await run(engine, TurnInput(chain=[SONNET], messages=HELLO))
    assert info.value.partial_text == "Once upon" and info.value.reason is Reason.TIMEOUT
    assert auth.failures == [("anthropic:a", Reason.TIMEOUT)]
    assert client.closed == ["anthropic:a"]


async def test_a_slow_drip_is_cut_by_max_answer_seconds(clock: FakeClock) -> None:
    """Chunks keep coming, each well within timeoutSeconds, but the whole answer passes maxAnswerSeconds."""
    client = StallingClient({"anthropic:a": (("Dripping",), "drip")})
    engine, _, _ = make_engine(clock, client, timeout_s=0.2, max_answer_s=0.15)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(StreamInterrupted) as info:
        await run(engine, TurnInput(chain=[SONNET], messages=HELLO))
    assert 0.15 <= loop.time() - started < 1.0
    assert info.value.partial_text.startswith("Dripping.")
    assert info.value.reason is Reason.TIMEOUT
    assert client.closed == ["anthropic:a"]


async def test_max_answer_seconds_before_any_text_rotates(clock: FakeClock) -> None:
    """The whole-answer bound passing before the first token is a timeout like any other: next profile."""
    client = StallingClient({"anthropic:a": ((), "stall")})
    engine, _, _ = make_engine(clock, client, timeout_s=5.0, max_answer_s=0.05)
    result, _, failures = await run(engine, TurnInput(chain=[SONNET], messages=HELLO))
    assert result.profile_id == "anthropic:b"
    assert "maxAnswerSeconds" in failures[0].record.detail


async def test_the_demo_client_obeys_the_same_bounds(clock: FakeClock) -> None:
    """The bound wraps every client: the offline demo, typing slowly, times out too."""
    engine, auth, _ = make_engine(clock, DemoClient(delay_s=0.5), timeout_s=0.05)
    demo = ModelRef("demo", "echo")
    auth.profiles["demo"] = ["demo:main"]
    with pytest.raises(Exception) as info:  # noqa: PT011 - the summary of a chain with one failed attempt
        await run(engine, TurnInput(chain=[demo], messages=HELLO))
    assert "demo:main timed out" in str(info.value)
    assert auth.failures == [("demo:main", Reason.TIMEOUT)]


async def test_a_healthy_stream_passes_through_unchanged(clock: FakeClock) -> None:
    """Bounds that are not passed change nothing."""
    client = ScriptedClient()
    client.script(str(SONNET), "anthropic:a", ok("all is well"))
    engine, _, _ = make_engine(clock, client, timeout_s=1.0, max_answer_s=1.0)
    result, deltas, _ = await run(engine, TurnInput(chain=[SONNET], messages=HELLO))
    assert deltas == ["all ", "is ", "well"] and result.text == "all is well"
