"""The failover engine: chains, rotation within a provider, pins, stops, streams and the summary."""

from __future__ import annotations

import asyncio

import pytest

from bot.auth.availability import Candidates, ProfileAvailability
from bot.clock import format_wait
from bot.errors import AllCandidatesFailed, StreamInterrupted, TurnStopped
from bot.failover.chain import candidate_chain, plan_chain
from bot.failover.engine import (
    AttemptFailed,
    Engine,
    Pin,
    TextDelta,
    TurnDone,
    TurnInput,
    TurnResult,
    profiles_to_try,
)
from bot.failover.policy import POLICY, Action
from bot.failover.reasons import Reason
from bot.models.refs import ModelRef
from bot.providers.base import ChatMessage, Endpoint
from tests.fakes.clock import FakeClock
from tests.fakes.scripted import Fail, MemoryAuth, ScriptedClient, ok

SONNET = ModelRef("anthropic", "claude-sonnet-4-5")
OPUS = ModelRef("anthropic", "claude-opus-4-5")
GPT = ModelRef("openai", "gpt-5.2")
HELLO = (ChatMessage("user", "hello"),)


def make_engine(
    clock: FakeClock, profiles: dict[str, list[str]]
) -> tuple[Engine, MemoryAuth, ScriptedClient]:
    auth = MemoryAuth(clock=clock, profiles=profiles)
    client = ScriptedClient()
    engine = Engine(
        auth=auth,
        clients={"fake": client},
        endpoint_for=lambda provider: Endpoint(provider, "http://unused", "fake"),
        clock=clock,
    )
    return engine, auth, client


PROFILES = {"anthropic": ["anthropic:a", "anthropic:b"], "openai": ["openai:x"]}


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


def test_every_reason_has_an_action() -> None:
    """The policy table covers the whole Reason enum."""
    assert set(POLICY) == set(Reason)
    assert all(isinstance(action, Action) for action in POLICY.values())


def test_chain_appends_primary_last_and_dedupes() -> None:
    """Override first, then fallbacks, then the primary; duplicates removed."""
    assert candidate_chain(GPT, primary=SONNET, fallbacks=[OPUS, GPT]) == [GPT, OPUS, SONNET]
    assert candidate_chain(None, primary=SONNET, fallbacks=[OPUS, SONNET]) == [SONNET, OPUS]
    assert candidate_chain(None, primary=SONNET, fallbacks=[]) == [SONNET]


def test_image_routing_uses_image_chain_only_when_needed() -> None:
    """Images go to the image chain if the session's model cannot see them; text turns keep the chain."""
    vision = ModelRef("openai", "gpt-4o")
    kwargs = {"primary": SONNET, "fallbacks": [GPT], "image_primary": vision, "image_fallbacks": [SONNET]}
    plan = plan_chain(GPT, has_images=True, accepts_images=lambda r: r != GPT, **kwargs)  # type: ignore[arg-type]
    assert plan.chain == (vision, SONNET) and plan.image_routed
    plan = plan_chain(GPT, has_images=False, accepts_images=lambda r: False, **kwargs)  # type: ignore[arg-type]
    assert plan.chain == (GPT, SONNET) and not plan.image_routed
    plan = plan_chain(SONNET, has_images=True, accepts_images=lambda r: True, **kwargs)  # type: ignore[arg-type]
    assert plan.chain == (SONNET, GPT)


def test_image_without_image_model_is_a_clear_stop() -> None:
    """No vision and no imageModel: the user is told, no call is made."""
    with pytest.raises(TurnStopped, match="cannot see images"):
        plan_chain(
            GPT,
            primary=GPT,
            fallbacks=[],
            image_primary=None,
            image_fallbacks=[],
            has_images=True,
            accepts_images=lambda r: False,
        )


def _candidates(ready: list[str], resting: dict[str, int] | None = None) -> Candidates:
    rests = tuple(
        ProfileAvailability(pid, until, "rate_limit", "model") for pid, until in (resting or {}).items()
    )
    return Candidates("p", "m", (*(ProfileAvailability(pid) for pid in ready), *rests))


def test_profiles_to_try_pins() -> None:
    """Auto pin goes first; a user pin allows only itself; a cooling pin is not tried."""
    everyone = _candidates(["p:a", "p:b", "p:c"])
    without_b = _candidates(["p:a", "p:c"], {"p:b": 5})
    assert profiles_to_try(everyone, Pin("p:b", "auto")) == ["p:b", "p:a", "p:c"]
    assert profiles_to_try(everyone, Pin("p:b", "user")) == ["p:b"]
    assert profiles_to_try(without_b, Pin("p:b", "user")) == []
    assert profiles_to_try(without_b, Pin("p:b", "auto")) == ["p:a", "p:c"]
    assert profiles_to_try(everyone, Pin("q:z", "user")) == ["p:a", "p:b", "p:c"]


async def test_plain_turn_streams_and_pins_the_profile(clock: FakeClock) -> None:
    """A healthy turn streams deltas, records the success and auto-pins the profile."""
    engine, auth, client = make_engine(clock, PROFILES)
    client.script(str(SONNET), "anthropic:a", ok("hi there friend"))
    result, deltas, failures = await run(engine, TurnInput(chain=[SONNET, GPT], messages=HELLO))
    assert "".join(deltas) == "hi there friend" == result.text
    assert (result.ref, result.profile_id) == (SONNET, "anthropic:a")
    assert result.pin == Pin("anthropic:a", "auto")
    assert not result.fell_back and not result.rotated and result.note is None
    assert auth.successes == ["anthropic:a"] and not failures


@pytest.mark.parametrize("reason", [Reason.RATE_LIMIT, Reason.AUTH, Reason.TIMEOUT, Reason.EMPTY])
async def test_cooldown_reasons_rotate_to_the_next_profile(clock: FakeClock, reason: Reason) -> None:
    """auth, rate_limit, timeout and empty put the profile in cooldown and try the provider's next one."""
    engine, auth, client = make_engine(clock, PROFILES)
    bad = Fail(reason) if reason is not Reason.EMPTY else ok("")
    client.script(str(SONNET), "anthropic:a", bad)
    result, _, failures = await run(engine, TurnInput(chain=[SONNET, GPT], messages=HELLO))
    assert (result.ref, result.profile_id) == (SONNET, "anthropic:b")
    assert auth.failures == [("anthropic:a", reason)]
    assert failures[0].cooldown_until == clock.now_ms() + 60_000
    assert result.rotated and not result.fell_back
    assert result.note == f"↪ answered by {SONNET} (anthropic:b) — anthropic:a {reason.label}"
    assert result.pin == Pin("anthropic:b", "auto")


async def test_billing_disables_and_rotates(clock: FakeClock) -> None:
    """Billing disables the profile (long backoff) and moves on to the next profile."""
    engine, auth, client = make_engine(clock, PROFILES)
    client.script(str(SONNET), "anthropic:a", Fail(Reason.BILLING))
    result, _, _ = await run(engine, TurnInput(chain=[SONNET], messages=HELLO))
    assert result.profile_id == "anthropic:b"
    assert auth.failures == [("anthropic:a", Reason.BILLING)]
    assert auth.unavailable_until("anthropic:a", clock.now_ms()) == clock.now_ms() + 300 * 60_000


async def test_exhausted_provider_falls_back_to_next_model(clock: FakeClock) -> None:
    """When every profile of the provider fails, the next model answers, with the note naming the cause."""
    engine, _, client = make_engine(clock, PROFILES)
    client.script(str(SONNET), "anthropic:a", Fail(Reason.RATE_LIMIT))
    client.script(str(SONNET), "anthropic:b", Fail(Reason.RATE_LIMIT))
    result, _, _ = await run(engine, TurnInput(chain=[SONNET, GPT], messages=HELLO))
    assert (result.ref, result.profile_id) == (GPT, "openai:x")
    assert result.fell_back
    assert result.note == "↪ answered by openai/gpt-5.2 — anthropic rate-limited"
    # The pin belongs to the session's own model: a fallback answer does not move it.
    assert result.pin is None


async def test_cooling_provider_is_skipped_without_a_call(clock: FakeClock) -> None:
    """A candidate whose profiles all cool down costs no call."""
    engine, auth, client = make_engine(clock, PROFILES)
    auth.cool(["anthropic:a", "anthropic:b"], 120_000)
    result, _, _ = await run(engine, TurnInput(chain=[SONNET, GPT], messages=HELLO))
    assert client.calls == [(str(GPT), "openai:x")]
    assert result.attempts[0].skipped and result.fell_back


async def test_same_provider_later_model_does_not_retry_cooled_profile(clock: FakeClock) -> None:
    """A profile cooled earlier in the turn is not called again for the provider's next model."""
    engine, _, client = make_engine(clock, PROFILES)
    client.script(str(SONNET), "anthropic:a", Fail(Reason.RATE_LIMIT))
    client.script(str(SONNET), "anthropic:b", Fail(Reason.RATE_LIMIT))
    result, _, _ = await run(engine, TurnInput(chain=[SONNET, OPUS, GPT], messages=HELLO))
    assert (str(OPUS), "anthropic:a") not in client.calls
    assert result.ref == GPT


async def test_server_error_retries_once_then_next_model_without_cooldown(clock: FakeClock) -> None:
    """5xx: one quick retry of the same attempt, then straight to the next model; no cooldown recorded."""
    engine, auth, client = make_engine(clock, PROFILES)
    client.script(str(SONNET), "anthropic:a", Fail(Reason.SERVER), Fail(Reason.SERVER))
    result, _, _ = await run(engine, TurnInput(chain=[SONNET, GPT], messages=HELLO))
    assert client.calls == [
        (str(SONNET), "anthropic:a"),
        (str(SONNET), "anthropic:a"),
        (str(GPT), "openai:x"),
    ]
    assert auth.failures == []
    assert result.ref == GPT


async def test_server_error_then_success_on_retry(clock: FakeClock) -> None:
    """A single 5xx is absorbed by the quick retry."""
    engine, _, client = make_engine(clock, PROFILES)
    client.script(str(SONNET), "anthropic:a", Fail(Reason.SERVER))
    result, _, _ = await run(engine, TurnInput(chain=[SONNET, GPT], messages=HELLO))
    assert (result.ref, result.profile_id) == (SONNET, "anthropic:a")


@pytest.mark.parametrize("reason", [Reason.CONTENT_FILTER, Reason.BAD_REQUEST, Reason.CONTEXT_OVERFLOW])
async def test_stopping_reasons_end_the_turn(clock: FakeClock, reason: Reason) -> None:
    """Stopping reasons end the turn at once with one plain sentence; no other candidate is tried."""
    engine, auth, client = make_engine(clock, PROFILES)
    client.script(str(SONNET), "anthropic:a", Fail(reason))
    with pytest.raises(TurnStopped) as info:
        await run(engine, TurnInput(chain=[SONNET, GPT], messages=HELLO))
    assert info.value.reason is reason
    assert client.calls == [(str(SONNET), "anthropic:a")]
    assert auth.failures == []
    assert "\n" not in str(info.value) and "Traceback" not in str(info.value)


async def test_user_pin_falls_back_to_next_model_instead_of_rotating(clock: FakeClock) -> None:
    """A user-pinned profile is locked: on failure the next model is tried, never another profile."""
    engine, _, client = make_engine(clock, PROFILES)
    client.script(str(SONNET), "anthropic:b", Fail(Reason.RATE_LIMIT))
    turn = TurnInput(chain=[SONNET, GPT], messages=HELLO, pin=Pin("anthropic:b", "user"))
    result, _, _ = await run(engine, turn)
    assert (str(SONNET), "anthropic:a") not in client.calls
    assert result.ref == GPT
    assert result.pin == Pin("anthropic:b", "user")


async def test_auto_pin_is_a_preference(clock: FakeClock) -> None:
    """An auto pin is tried first but rotates on a rate limit, moving the pin."""
    engine, _, client = make_engine(clock, PROFILES)
    client.script(str(SONNET), "anthropic:b", Fail(Reason.RATE_LIMIT))
    turn = TurnInput(chain=[SONNET, GPT], messages=HELLO, pin=Pin("anthropic:b", "auto"))
    result, _, _ = await run(engine, turn)
    assert client.calls[0] == (str(SONNET), "anthropic:b")
    assert result.profile_id == "anthropic:a" and result.pin == Pin("anthropic:a", "auto")


async def test_all_fail_summary_names_attempts_and_soonest_recovery(clock: FakeClock) -> None:
    """Every candidate failing yields one short summary with each attempt and the soonest comeback."""
    engine, _, client = make_engine(clock, PROFILES)
    client.script(str(SONNET), "anthropic:a", Fail(Reason.RATE_LIMIT, retry_after_ms=250_000))
    client.script(str(SONNET), "anthropic:b", Fail(Reason.AUTH))
    client.script(str(GPT), "openai:x", Fail(Reason.BILLING))
    with pytest.raises(AllCandidatesFailed) as info:
        await run(engine, TurnInput(chain=[SONNET, GPT], messages=HELLO))
    text = str(info.value)
    assert text == (
        "All models failed: anthropic/claude-sonnet-4-5 (anthropic:a rate-limited; anthropic:b auth error), "
        "openai/gpt-5.2 (openai:x billing problem). The first profile is available again in 1m."
    )
    assert info.value.soonest_ms == clock.now_ms() + 60_000
    assert len(info.value.attempts) == 3


async def test_summary_when_everything_is_cooling(clock: FakeClock) -> None:
    """Nothing callable: the summary says so and when the first profile returns."""
    engine, auth, client = make_engine(clock, PROFILES)
    auth.cool(["anthropic:a", "anthropic:b"], 252_000)
    auth.cool(["openai:x"], 600_000)
    with pytest.raises(AllCandidatesFailed, match=r"available again in 4m12s") as info:
        await run(engine, TurnInput(chain=[SONNET, GPT], messages=HELLO))
    assert client.calls == []
    assert "every profile cooling down" in str(info.value)


async def test_recovered_primary_is_used_once_cooldown_ends(clock: FakeClock) -> None:
    """Fallbacks are per turn: when the cooldown ends, the next turn uses the primary again."""
    engine, _, client = make_engine(clock, {"anthropic": ["anthropic:a"], "openai": ["openai:x"]})
    client.script(str(SONNET), "anthropic:a", Fail(Reason.RATE_LIMIT))
    first, _, _ = await run(engine, TurnInput(chain=[SONNET, GPT], messages=HELLO))
    assert first.ref == GPT
    clock.advance(seconds=30)
    second, _, _ = await run(engine, TurnInput(chain=[SONNET, GPT], messages=HELLO))
    assert second.ref == GPT and client.calls.count((str(SONNET), "anthropic:a")) == 1
    clock.advance(seconds=31)
    third, _, _ = await run(engine, TurnInput(chain=[SONNET, GPT], messages=HELLO))
    assert third.ref == SONNET


async def test_stream_cut_after_text_is_interrupted_not_finished(clock: FakeClock) -> None:
    """Text already shown then a failure: StreamInterrupted with the partial text, no fallback answer."""
    engine, auth, client = make_engine(clock, PROFILES)
    client.script(str(SONNET), "anthropic:a", Fail(Reason.TIMEOUT, after=("Once ", "upon ")))
    deltas: list[str] = []
    with pytest.raises(StreamInterrupted) as info:
        async for event in engine.run(TurnInput(chain=[SONNET, GPT], messages=HELLO)):
            if isinstance(event, TextDelta):
                deltas.append(event.text)
    assert deltas == ["Once ", "upon "]
    assert info.value.partial_text == "Once upon "
    assert "interrupted" in str(info.value)
    assert auth.failures == [("anthropic:a", Reason.TIMEOUT)]
    assert client.calls == [(str(SONNET), "anthropic:a")]


async def test_failure_is_persisted_before_the_next_attempt(clock: FakeClock) -> None:
    """The cooldown is recorded before the next profile is called."""
    engine, auth, client = make_engine(clock, PROFILES)
    seen: list[list[tuple[str, Reason]]] = []
    original = client.stream

    def spy(endpoint, auth_, request):
        seen.append(list(auth.failures))
        return original(endpoint, auth_, request)

    client.stream = spy  # type: ignore[method-assign]
    client.script(str(SONNET), "anthropic:a", Fail(Reason.RATE_LIMIT))
    await run(engine, TurnInput(chain=[SONNET], messages=HELLO))
    assert seen == [[], [("anthropic:a", Reason.RATE_LIMIT)]]


async def test_cancellation_propagates_and_records_nothing(clock: FakeClock) -> None:
    """The user's own abort cancels the turn without putting any profile in cooldown."""
    engine, auth, client = make_engine(clock, PROFILES)
    started = asyncio.Event()

    async def slow(endpoint, auth_, request):
        started.set()
        yield "partial "
        await asyncio.Event().wait()

    client.stream = slow  # type: ignore[method-assign]

    async def consume() -> None:
        async for _ in engine.run(TurnInput(chain=[SONNET], messages=HELLO)):
            pass

    task = asyncio.create_task(consume())
    await started.wait()
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert auth.failures == [] and auth.successes == []


def test_format_wait() -> None:
    """Durations read the way /model status shows them."""
    assert [format_wait(ms) for ms in (500, 45_000, 60_000, 252_000, 3_600_000, 7_500_000)] == [
        "1s",
        "45s",
        "1m",
        "4m12s",
        "1h",
        "2h5m",
    ]
