"""The adapter kit on a fake platform: the streaming reply (on a fake clock) and the background jobs."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from adapters.common.jobs import CHATS_AT_ONCE, Jobs
from adapters.common.stream import Fault, Pace, ReplyStream
from bot.chat import UNDELIVERED, PickerView, Reply, ReplySink
from bot.errors import DeliveryFailed
from tests import log_guard
from tests.fakes.clock import FakeClock
from tests.fakes.timer import FakeTimer, settle

PACE = Pace(interval_s=1.0, typing_interval_s=4.0)
PIECE = 10  # the fake platform's message size


@pytest.fixture(autouse=True)
def fail_on_error_logs() -> Iterator[None]:
    """No task of the kit ends with an exception nobody retrieved."""
    with log_guard.fail_on_error_logs(["asyncio"]):
        yield


class Refused(Exception):
    """The fake platform said no; nothing changed."""


class Failed(Exception):
    """The fake platform said no for good."""


class Gone(Exception):
    """The fake place takes no messages from the bot any more."""


@dataclass
class FakePlace:
    """A chat on a fake platform: messages by id, every call recorded, failures and holds on demand."""

    platform: str = "fake"
    place: str = "room 7"
    messages: dict[int, str] = field(default_factory=dict)
    numbers: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    calls: list[tuple[object, ...]] = field(default_factory=list)
    failures: dict[str, list[Exception]] = field(default_factory=dict)
    gone: set[int] = field(default_factory=set)  # messages someone deleted
    hold: asyncio.Event | None = None  # sends and edits wait for it when set up

    async def _call(self, *call: object) -> None:
        self.calls.append(call)
        if self.hold is not None:
            await self.hold.wait()
        queue = self.failures.get(str(call[0]))
        if queue:
            raise queue.pop(0)

    async def send(self, piece: str, *, markup: str | None, quote: bool) -> int:
        await self._call("send", piece, markup, quote)
        number = next(self.numbers)
        self.messages[number] = piece
        return number

    async def edit(self, message: int, piece: str, *, markup: str | None) -> int | None:
        await self._call("edit", message, piece, markup)
        if message in self.gone:
            return None
        self.messages[message] = piece
        return message

    async def delete(self, message: int) -> None:
        await self._call("delete", message)
        del self.messages[message]

    async def typing(self) -> None:
        await self._call("typing")

    def fault(self, error: Exception) -> Fault:
        kinds = {Refused: Fault.REFUSED, Failed: Fault.FAILED, Gone: Fault.GONE}
        return kinds.get(type(error), Fault.UNKNOWN)

    def fail(self, operation: str, error: Exception) -> None:
        self.failures.setdefault(operation, []).append(error)

    def made(self, operation: str) -> list[tuple[object, ...]]:
        return [call for call in self.calls if call[0] == operation]

    @property
    def shown(self) -> list[str]:
        return [self.messages[number] for number in sorted(self.messages)]


class FakeLook:
    """Pieces of ``PIECE`` characters; a reply of the core shows its text (after what streamed, if any)."""

    def draft(self, text: str) -> list[str]:
        return [text[i : i + PIECE] for i in range(0, len(text), PIECE)] or ["…"]

    def plain(self, text: str) -> list[str]:
        return [text]

    def reply(self, reply: Reply, streamed: str) -> list[str]:
        text = reply.text if reply.kind == "answer" or not streamed else f"{streamed} / {reply.text}"
        return self.draft(text)

    def markup(self, reply: Reply) -> str | None:
        return "keyboard" if reply.picker is not None else None


class Clock:
    """The kit's timer on a fake clock: sleepers wake only when the test advances it."""

    def __init__(self) -> None:
        self._timer = FakeTimer(FakeClock(start_ms=0))

    def now(self) -> float:
        return self._timer.clock.now_ms() / 1000

    async def sleep(self, seconds: float) -> None:
        await self._timer.sleep(seconds)

    async def advance(self, seconds: float) -> None:
        await self._timer.advance(round(seconds * 1000))


@pytest.fixture
def place() -> FakePlace:
    return FakePlace()


@pytest.fixture
def clock() -> Clock:
    """The kit's timer on a fake clock at 0 (this module's clock; conftest's FakeClock is not used here)."""
    return Clock()


def stream(place: FakePlace, clock: Clock, pace: Pace = PACE) -> ReplyStream[int, str, str]:
    sink = ReplyStream(place, FakeLook(), pace, timer=clock)
    _: ReplySink = sink  # the kit's stream is what the pipeline expects of a sink
    return sink


def answer(text: str) -> Reply:
    return Reply(text, kind="answer", model="fake/model")


# -- streaming ----------------------------------------------------------------------------------------------


async def test_the_first_text_is_shown_at_once_and_later_text_once_per_interval(
    place: FakePlace, clock: Clock
) -> None:
    """Deltas that arrive within an interval are coalesced into one edit when the interval is over."""
    sink = stream(place, clock)
    await sink.delta("Once")
    await settle()
    assert place.shown == ["Once"] and place.made("send") == [("send", "Once", None, True)]
    for word in (" upon", " a"):
        await sink.delta(word)
    await clock.advance(0.5)
    assert place.made("edit") == []
    await clock.advance(0.5)
    assert place.made("edit") == [("edit", 1, "Once upon ", None)]
    assert place.shown == ["Once upon ", "a"]
    await clock.advance(5)
    assert len(place.calls) == 3  # nothing new arrived: nothing more is sent
    await sink.deliver([answer("Once upon a time")])
    assert place.shown == ["Once upon ", "a time"]


async def test_the_final_edit_waits_out_the_interval_where_the_platform_counts_it(
    place: FakePlace, clock: Clock
) -> None:
    """``final_edit_waits``: the final edit comes one interval after the last render, not before."""
    sink = stream(place, clock, Pace(interval_s=1.0, typing_interval_s=4.0, final_edit_waits=True))
    await sink.delta("Hello")
    await settle()
    delivering = asyncio.create_task(sink.deliver([answer("Hello world")]))
    await clock.advance(0.9)
    assert not delivering.done() and place.shown == ["Hello"]
    await clock.advance(0.1)
    await delivering
    assert place.shown == ["Hello worl", "d"]


async def test_without_waiting_the_final_edit_is_immediate(place: FakePlace, clock: Clock) -> None:
    """The default pace (Discord): the answer's last edit does not wait for the interval."""
    sink = stream(place, clock)
    await sink.delta("Hello")
    await settle()
    await sink.deliver([answer("Hi")])
    assert place.shown == ["Hi"] and clock.now() == 0


async def test_a_shorter_final_text_deletes_the_extra_messages_and_unchanged_ones_are_not_edited(
    place: FakePlace, clock: Clock
) -> None:
    """Three streamed pieces become one: the first is edited (changed), the other two deleted."""
    sink = stream(place, clock)
    await sink.delta("0123456789abcdefghijABCDE")
    await settle()
    assert place.shown == ["0123456789", "abcdefghij", "ABCDE"]
    await sink.deliver([answer("0123456789")])
    assert place.shown == ["0123456789"]
    assert place.made("edit") == [] and place.made("delete") == [("delete", 3), ("delete", 2)]


async def test_further_replies_are_new_messages_with_the_markup_under_the_last_piece(
    place: FakePlace, clock: Clock
) -> None:
    """The first reply goes over the streamed text; the second is sent anew, quoting, its markup at the end."""
    picker = PickerView(entries=(), page=1, total_pages=1, current_number=None, tokens=())
    sink = stream(place, clock)
    await sink.deliver([Reply("a command reply"), Reply("pick one of these", picker=picker)])
    assert place.made("send") == [
        ("send", "a command ", None, True),
        ("send", "reply", None, False),
        ("send", "pick one o", None, True),
        ("send", "f these", "keyboard", False),
    ]


async def test_a_message_deleted_meanwhile_is_sent_again(place: FakePlace, clock: Clock) -> None:
    """An edit of a message someone deleted shows the piece in a new message (not quoting)."""
    sink = stream(place, clock)
    await sink.delta("Hello")
    await settle()
    place.gone.add(1)
    await sink.deliver([answer("Hello there")])
    assert place.made("send")[1:] == [("send", "Hello ther", None, False), ("send", "e", None, False)]


# -- status line and typing ---------------------------------------------------------------------------------


async def test_the_status_line_is_edited_into_the_answer(place: FakePlace, clock: Clock) -> None:
    """A status line is the reply's first message; the answer replaces it one interval later."""
    sink = stream(place, clock)
    await sink.status("waiting 5s")
    await sink.status(None)  # nothing to take away: the answer replaces the line anyway
    assert place.shown == ["waiting 5s"]
    await sink.delta("Hi")
    await settle()
    assert place.shown == ["waiting 5s"]
    await clock.advance(1)
    assert place.shown == ["Hi"]
    await sink.status("waiting 3s")  # the answer has begun: no status line over it
    await sink.deliver([answer("Hi!")])
    assert place.shown == ["Hi!"] and len(place.made("send")) == 1


async def test_a_refused_status_line_is_only_a_warning(
    place: FakePlace, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """The platform refuses the status line: logged, and the answer still comes."""
    place.fail("send", Failed("no"))
    sink = stream(place, clock)
    await sink.status("waiting 5s")
    await sink.deliver([answer("Hi")])
    assert place.shown == ["Hi"]
    assert any("status line in room 7 failed" in r.getMessage() for r in caplog.records)


async def test_typing_is_renewed_on_the_clock_until_the_reply_is_shown(
    place: FakePlace, clock: Clock
) -> None:
    """One typing action at once, another every typing interval, none after the reply."""
    sink = stream(place, clock)
    await sink.typing()
    await sink.typing()  # already typing
    await settle()
    assert len(place.made("typing")) == 1
    await clock.advance(3.9)
    assert len(place.made("typing")) == 1
    await clock.advance(0.1)
    assert len(place.made("typing")) == 2
    await sink.deliver([answer("done")])
    await clock.advance(10)
    assert len(place.made("typing")) == 2
    await sink.typing()  # finished: no more typing
    await settle()
    assert len(place.made("typing")) == 2


async def test_a_failed_typing_action_stops_typing_but_not_the_answer(place: FakePlace, clock: Clock) -> None:
    """Typing is cosmetic: a refused action ends the indicator, the answer is still delivered."""
    place.fail("typing", Failed("slow down"))
    sink = stream(place, clock)
    await sink.typing()
    await clock.advance(10)
    assert len(place.made("typing")) == 1
    await sink.deliver([answer("still here")])
    assert place.shown == ["still here"]


async def test_a_place_gone_while_typing_ends_the_answer_without_a_notice(
    place: FakePlace, clock: Clock
) -> None:
    """The user blocked the bot: typing fails as gone; the answer is refused, nothing more is sent."""
    place.fail("typing", Gone("blocked"))
    sink = stream(place, clock)
    await sink.typing()
    await settle()
    with pytest.raises(DeliveryFailed, match="fake: room 7 stopped taking the answer"):
        await sink.delta("text")
    with pytest.raises(DeliveryFailed, match="the answer in room 7 was not delivered"):
        await sink.deliver([answer("text")])
    assert place.made("send") == [] and sink.ended is Fault.GONE


# -- broken deliveries --------------------------------------------------------------------------------------


async def test_an_unreadable_answer_mid_stream_is_handled_once(
    place: FakePlace, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """A send whose answer cannot be read: never sent again, one warning with a traceback, one notice."""
    place.fail("send", ValueError("garbled"))
    sink = stream(place, clock)
    await sink.delta("Once")
    await settle()
    with pytest.raises(DeliveryFailed):
        await sink.delta(" upon")
    with pytest.raises(DeliveryFailed):
        await sink.deliver([answer("Once upon a time")])
    assert [call[1] for call in place.made("send")] == ["Once", UNDELIVERED] and len(place.calls) == 2
    warnings = [r for r in caplog.records if "delivering an answer in room 7 failed" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING and warnings[0].exc_info


async def test_a_refused_streaming_edit_is_tried_again_by_the_final_render(
    place: FakePlace, clock: Clock
) -> None:
    """REFUSED mid-stream: nothing was shown, so the stream goes on and the final edit shows the text."""
    sink = stream(place, clock)
    await sink.delta("one")
    await settle()
    place.fail("edit", Refused("bad entities"))
    await sink.delta(" two")
    await clock.advance(1)
    assert place.shown == ["one"] and sink.ended is None
    await sink.deliver([answer("one two three")])
    assert place.shown == ["one two th", "ree"]


async def test_a_final_render_refused_for_good_tells_the_user_once(
    place: FakePlace, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    """FAILED at the end: one warning without a traceback, the notice, ``DeliveryFailed``."""
    sink = stream(place, clock)
    await sink.delta("one")
    await settle()
    place.fail("edit", Failed("404 Unknown Message"))
    with pytest.raises(DeliveryFailed):
        await sink.deliver([answer("one two")])
    assert place.shown == ["one", UNDELIVERED] and place.made("send")[-1] == ("send", UNDELIVERED, None, True)
    [warning] = [r for r in caplog.records if "delivering an answer" in r.getMessage()]
    assert warning.exc_info is None and sink.ended is Fault.FAILED


async def test_a_place_gone_at_the_final_render_gets_no_notice(place: FakePlace, clock: Clock) -> None:
    """GONE: not even the notice is tried."""
    place.fail("send", Gone("removed from the group"))
    sink = stream(place, clock)
    with pytest.raises(DeliveryFailed):
        await sink.deliver([Reply("a command reply")])
    assert len(place.made("send")) == 1 and place.messages == {}


async def test_close_waits_for_an_edit_in_flight(place: FakePlace, clock: Clock) -> None:
    """Nothing is cancelled mid-request: close returns once the send in flight has come back."""
    place.hold = asyncio.Event()
    sink = stream(place, clock)
    await sink.delta("text")
    await settle()
    closing = asyncio.create_task(sink.close())
    await settle()
    assert not closing.done()
    place.hold.set()
    await closing
    assert place.shown == ["text"]


# -- jobs ---------------------------------------------------------------------------------------------------


async def test_lanes_keep_order_per_chat_and_run_chats_side_by_side(caplog: pytest.LogCaptureFixture) -> None:
    """Chat 1's second job waits for its first; chat 2 runs meanwhile; a failing job does not block the lane
    (it is logged once, with its traceback)."""
    lanes = Jobs("fake")
    release = asyncio.Event()
    done = {name: asyncio.Event() for name in ("1b", "2a")}
    log: list[str] = []

    async def job(name: str, *, wait: bool = False, fail: bool = False) -> None:
        if wait:
            await release.wait()
        if fail:
            raise RuntimeError("boom")
        log.append(name)
        done[name].set()

    lanes.submit(1, job("1a", wait=True, fail=True))
    lanes.submit(1, job("1b"))
    lanes.submit(2, job("2a"))
    await asyncio.wait_for(done["2a"].wait(), 1)
    assert log == ["2a"]
    release.set()
    await asyncio.wait_for(done["1b"].wait(), 1)
    await lanes.drain(1)
    assert log == ["2a", "1b"] and lanes.busy == 0
    [failed] = [r for r in caplog.records if r.name == "modelbot.fake" and r.levelno == logging.ERROR]
    assert failed.getMessage() == "fake: a background job failed" and failed.exc_info


async def test_drain_cancels_what_outlives_the_grace_period(clock: Clock) -> None:
    """Stop waits for jobs in hand (on the clock), then cancels the rest; jobs queued behind never start."""
    lanes = Jobs("fake", timer=clock)
    started: list[str] = []
    cancelled = asyncio.Event()

    async def hang(name: str) -> None:
        started.append(name)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    lanes.submit(1, hang("first"))
    lanes.submit(1, hang("second"))
    draining = asyncio.create_task(lanes.drain(20))
    await clock.advance(19.9)
    assert not draining.done() and not cancelled.is_set() and lanes.busy == 2
    await clock.advance(0.1)
    await draining
    assert started == ["first"] and cancelled.is_set() and lanes.busy == 0


async def test_drain_returns_as_soon_as_the_jobs_end(clock: Clock) -> None:
    """Jobs that finish within the grace period are not waited past their end, nor cancelled."""
    lanes = Jobs("fake", timer=clock)
    release = asyncio.Event()
    finished: list[str] = []

    async def job() -> None:
        await release.wait()
        finished.append("job")

    lanes.submit(1, job())
    draining = asyncio.create_task(lanes.drain(20))
    await settle()
    release.set()
    await draining
    assert finished == ["job"] and clock.now() == 0


async def test_at_most_limit_chats_run_at_once_and_spawned_jobs_never_wait() -> None:
    """With a bound of 2, a third chat waits for a free place (and gets it); /stop-like jobs run at once."""
    lanes = Jobs("fake", limit=2)
    gates = {chat: asyncio.Event() for chat in (1, 2, 3)}
    running: list[int] = []

    async def turn(chat: int) -> None:
        running.append(chat)
        await gates[chat].wait()

    async def stop() -> None:
        running.append(0)

    for chat in (1, 2, 3):
        lanes.submit(chat, turn(chat))
    lanes.spawn(stop())
    await settle()
    assert sorted(running) == [0, 1, 2] and lanes.busy == 3
    gates[1].set()
    await settle()
    assert running[-1] == 3
    gates[2].set()
    gates[3].set()
    await lanes.wait_idle()
    assert lanes.busy == 0 and Jobs("fake").limit == CHATS_AT_ONCE


async def test_tracked_work_counts_until_it_ends() -> None:
    """Work in a task the library made (a slash command) is waited for by ``wait_idle`` and ``drain``."""
    lanes = Jobs("fake")
    release = asyncio.Event()

    async def command() -> None:
        with lanes.track():
            await release.wait()

    task = asyncio.create_task(command())
    await settle()
    assert lanes.busy == 1
    idle = asyncio.create_task(lanes.wait_idle())
    await settle()
    assert not idle.done()
    release.set()
    await idle
    await task
    assert lanes.busy == 0
