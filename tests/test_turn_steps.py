"""The steps of a turn outside the pipeline (bot/conversation/): what is saved, what the engine's events do to
the sink and the turn log, and what the user is told. Pure, or on the in-memory store; no sockets, no sleeps."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Sequence
from typing import Any

import pytest

from bot.chat import UNDELIVERED, Incoming, Reply
from bot.conversation.replies import answer_reply, failure_reply, redacted, unfit
from bot.conversation.saving import turn_patch
from bot.conversation.streaming import AnswerStream
from bot.conversation.turn_log import TurnLog
from bot.errors import (
    AllCandidatesFailed,
    AttemptRecord,
    DeliveryFailed,
    StreamInterrupted,
    TurnError,
    TurnStopped,
)
from bot.failover.engine import AttemptFailed, Pin, TextDelta, TurnDone, TurnEvent, TurnResult, Waiting
from bot.failover.reasons import Reason
from bot.models.refs import ModelRef
from bot.providers.base import ImagePart
from bot.store.memory import InMemorySessionStore
from bot.store.types import UNCHANGED
from tests.fakes.clock import FakeClock
from tests.test_turn_plan import BLANK

RESULT = TurnResult(
    text="Hello.",
    ref=ModelRef("demo", "echo"),
    profile_id="demo:main",
    attempts=(),
    fell_back=False,
    rotated=False,
    note=None,
    pin=None,
)
FAILED = AttemptFailed(AttemptRecord("demo/echo", "demo:busy", Reason.RATE_LIMIT), cooldown_until=60_000)


# -- what a turn saves ----------------------------------------------------------------------------------

AUTO_A = {"pin_profile": "demo:a", "pin_source": "auto", "pin_compaction": 1, "compaction_count": 1}


@pytest.mark.parametrize(
    ("session", "result", "pin"),
    [
        ({}, {}, None),  # the engine chose no pin: the session's stays
        ({}, {"pin": Pin("demo:a", "user")}, None),  # a user pin is the session's own already
        (AUTO_A, {"pin": Pin("demo:a", "auto")}, None),  # the same auto pin, still current
        (AUTO_A, {"pin": Pin("demo:b", "auto")}, ("demo:b", "auto", 1)),  # another profile answered
        (
            {**AUTO_A, "compaction_count": 2},
            {"pin": Pin("demo:a", "auto")},
            ("demo:a", "auto", 2),
        ),  # compacted
        ({}, {"pin": Pin("demo:a", "auto")}, ("demo:a", "auto", 0)),  # the first auto pin
    ],
)
def test_the_saved_bookkeeping(
    session: dict[str, Any], result: dict[str, Any], pin: tuple[str, str, int] | None
) -> None:
    """Who answered, always; the auto pin only when it changed or a compaction made the old one stale."""
    patch = turn_patch(dataclasses.replace(BLANK, **session), dataclasses.replace(RESULT, **result))
    assert (patch.last_model, patch.last_profile, patch.last_fallback) == ("demo/echo", "demo:main", False)
    written = (patch.pin_profile, patch.pin_source, patch.pin_compaction)
    assert written == (pin if pin is not None else (UNCHANGED,) * 3)


@pytest.mark.parametrize(("fell_back", "rotated"), [(True, False), (False, True), (True, True)])
def test_a_fallback_or_a_rotation_marks_the_last_answer(fell_back: bool, rotated: bool) -> None:
    """/status says "(fallback)" after an answer that another model or profile gave."""
    result = dataclasses.replace(RESULT, fell_back=fell_back, rotated=rotated)
    assert turn_patch(BLANK, result).last_fallback is True


# -- the engine's events onto the sink and the log ---------------------------------------------------------


class Sink:
    """Writes down what the stream asked the platform to show; ``broken`` makes ``delta`` fail."""

    def __init__(self, *, broken: bool = False) -> None:
        self.shown: list[tuple[str, str | None]] = []
        self.broken = broken

    async def typing(self) -> None:
        self.shown.append(("typing", None))

    async def status(self, text: str | None) -> None:
        self.shown.append(("status", text))

    async def delta(self, text: str) -> None:
        if self.broken:
            raise DeliveryFailed("the chat went away")
        self.shown.append(("delta", text))

    async def deliver(self, replies: Sequence[Reply]) -> None:
        raise AssertionError("a stream never delivers")


class EnginePass:
    """An engine pass that yields ``events``, then raises ``error`` if given; knows whether it was closed."""

    def __init__(self, *events: TurnEvent, error: Exception | None = None) -> None:
        self.events, self.error, self.closed = events, error, False

    async def run(self) -> AsyncIterator[TurnEvent]:
        try:
            for event in self.events:
                yield event
            if self.error is not None:
                raise self.error
        finally:
            self.closed = True


def _logged() -> tuple[TurnLog, InMemorySessionStore, list[tuple[Any, ...]]]:
    store, seen = InMemorySessionStore(), []
    log = TurnLog(store, clock=FakeClock(), observer=lambda *turn: seen.append(turn))
    return log, store, seen


async def test_a_wait_then_the_answer() -> None:
    """The waiting line shows with the typing indicator and goes with the answer's first text; a failed attempt
    is booked in the failover log; a turn that answers is not reported here (handle does, once delivered)."""
    log, store, seen = _logged()
    sink = Sink()
    engine = EnginePass(
        FAILED, Waiting(6_000, "waiting 6s…"), TextDelta("Hel"), TextDelta("lo."), TurnDone(RESULT)
    )
    stream = AnswerStream(sink, log, "s1")
    assert await stream.run(engine.run()) == RESULT
    assert sink.shown == [
        ("typing", None),
        ("status", "waiting 6s…"),
        ("status", None),
        ("delta", "Hel"),
        ("delta", "lo."),
    ]
    assert stream.failures == [FAILED] and seen == []
    [event] = await store.events()
    assert (event.session_key, event.ref, event.profile_id, event.reason) == (
        "s1",
        "demo/echo",
        "demo:busy",
        "rate_limit",
    )


async def test_a_failed_pass_is_reported_and_its_waiting_line_goes() -> None:
    """Every model failed after a wait: the status line is taken away and the turn is reported as failed."""
    log, _, seen = _logged()
    sink = Sink()
    error = AllCandidatesFailed("All models failed.", [], None)
    engine = EnginePass(FAILED, Waiting(6_000, "waiting 6s…"), error=error)
    stream = AnswerStream(sink, log, "s1")
    with pytest.raises(AllCandidatesFailed):
        await stream.run(engine.run())
    assert sink.shown[-1] == ("status", None)
    assert seen == [("s1", None, [FAILED], 0.0, True)]


async def test_a_broken_delivery_closes_the_engines_stream_and_counts_as_undelivered() -> None:
    """The chat stopped taking the answer: the provider's stream is closed now, the turn counted undelivered."""
    log, _, seen = _logged()
    engine = EnginePass(TextDelta("Hel"), TextDelta("lo."), TurnDone(RESULT))
    with pytest.raises(DeliveryFailed):
        await AnswerStream(Sink(broken=True), log, "s1").run(engine.run())
    assert engine.closed and seen == [("s1", None, [], 0.0, False)]


# -- what the user is told ----------------------------------------------------------------------------------


def _msg(text: str, images: int = 0) -> Incoming:
    pictures = tuple(ImagePart("image/png", b"x") for _ in range(images))
    return Incoming(platform="telegram", chat_id="c1", user_id="u1", text=text, images=pictures)


@pytest.mark.parametrize(
    ("msg", "refusal"),
    [
        (_msg("hello"), None),
        (_msg("x" * 10), None),
        (_msg("x" * 11), "That message is too long (at most 10 characters)."),
        (_msg("  \n "), "Send some text or an image."),
        (_msg("", images=1), None),  # an image alone is a question
    ],
)
def test_what_cannot_be_a_turn(msg: Incoming, refusal: str | None) -> None:
    reply = unfit(msg, max_chars=10)
    assert (reply.text if reply is not None else None) == refusal
    assert reply is None or reply.kind == "error"


@pytest.mark.parametrize(
    ("error", "reply"),
    [
        (AllCandidatesFailed("All models failed: …", [], None), Reply("All models failed: …", kind="error")),
        (TurnStopped(Reason.CONTENT_FILTER, "Blocked."), Reply("Blocked.", kind="error")),
        (DeliveryFailed("gone"), Reply(UNDELIVERED, kind="error")),
        (
            StreamInterrupted("Once upon", "demo/story", "demo:main", Reason.TIMEOUT),
            Reply(
                "Once upon\n\n⚠ The answer was interrupted before it finished. Send /retry to try again.",
                kind="interrupted",
                model="demo/story",
                profile="demo:main",
            ),
        ),
    ],
)
def test_a_turn_that_did_not_answer(error: TurnError | DeliveryFailed, reply: Reply) -> None:
    """One plain sentence; an interrupted answer keeps what was shown and says it is not finished."""
    assert failure_reply(error) == reply


def test_the_answer_and_its_note() -> None:
    """Who answered is on the reply; the fallback note only when switched on."""
    noted = dataclasses.replace(RESULT, note="↪ answered by demo/echo (demo:main) — demo:busy rate-limited")
    assert answer_reply(noted, fallback_note=True) == Reply(
        "Hello.", kind="answer", model="demo/echo", profile="demo:main", note=noted.note
    )
    assert answer_reply(noted, fallback_note=False).note is None


def test_command_and_error_replies_are_redacted_answers_are_not() -> None:
    """A secret never shows in a command or error reply; the model's own answer is left as it is."""
    replies = [Reply("key sk-1"), Reply("failed: sk-1", kind="error"), Reply("sk-1", kind="answer")]
    out = redacted(replies, lambda text: text.replace("sk-1", "sk-…"))
    assert [r.text for r in out] == ["key sk-…", "failed: sk-…", "sk-1"]
    assert redacted(replies, None) is replies
