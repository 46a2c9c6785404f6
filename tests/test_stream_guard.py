"""``bounded``: the time limits on one provider stream, measured while the stream is waited for."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from bot.errors import ProviderError
from bot.failover.reasons import Reason
from bot.failover.stream_guard import bounded


async def chunks(*texts: str, then_stall: bool = False) -> AsyncIterator[str]:
    for text in texts:
        yield text
    if then_stall:
        await asyncio.Event().wait()


async def test_a_slow_consumer_does_not_count_against_the_gap() -> None:
    """The gap is measured from the moment the next chunk is asked for: a caller that takes three gaps to
    handle each chunk (a slow chat platform) never times the stream out."""
    received = []
    async for text in bounded(chunks("a", "b", "c"), gap_s=0.02, answer_s=5):
        received.append(text)
        await asyncio.sleep(0.06)
    assert received == ["a", "b", "c"]


async def test_a_stall_after_chunks_is_a_timeout_naming_the_stall() -> None:
    """After the first chunks, a wait longer than the gap ends the stream as a stalled one."""
    received = []
    with pytest.raises(ProviderError) as info:
        async for text in bounded(chunks("a", then_stall=True), gap_s=0.02, answer_s=5):
            received.append(text)
    assert received == ["a"]
    assert info.value.reason is Reason.TIMEOUT and "stalled for more than 0.02s" in str(info.value)


async def test_the_task_is_not_left_cancelled_after_a_timeout() -> None:
    """The timeout's cancellation is taken back: the caller goes on awaiting after the failure."""
    with pytest.raises(ProviderError):
        async for _ in bounded(chunks(then_stall=True), gap_s=0.01, answer_s=5):
            pass
    task = asyncio.current_task()
    assert task is not None and task.cancelling() == 0
    await asyncio.sleep(0)  # would raise CancelledError if a cancellation were still pending


async def test_a_timeout_error_of_the_client_itself_passes_through() -> None:
    """A ``TimeoutError`` the client raised (not the bound) is the client's to classify."""

    async def failing() -> AsyncIterator[str]:
        yield "a"
        raise TimeoutError("the client's own")

    with pytest.raises(TimeoutError, match="the client's own"):
        async for _ in bounded(failing(), gap_s=5, answer_s=5):
            pass


async def test_the_stream_is_closed_when_the_caller_stops_early() -> None:
    """Leaving the loop early closes the provider's stream at once (its connection goes back)."""
    closed = asyncio.Event()

    async def endless() -> AsyncIterator[str]:
        try:
            while True:
                yield "x"
        finally:
            closed.set()

    stream = bounded(endless(), gap_s=5, answer_s=5)
    async for _ in stream:
        break
    await stream.aclose()
    assert closed.is_set()


async def test_no_first_chunk_within_the_gap_is_a_timeout_naming_the_first_answer() -> None:
    with pytest.raises(ProviderError) as info:
        async for _ in bounded(chunks(then_stall=True), gap_s=0.01, answer_s=5):
            pass
    assert info.value.reason is Reason.TIMEOUT and "sent no answer within 0.01s" in str(info.value)


async def test_a_stream_that_keeps_coming_is_still_bounded_as_a_whole() -> None:
    """Chunks arriving well within the gap do not extend the whole answer's time."""

    async def trickle() -> AsyncIterator[str]:
        while True:
            await asyncio.sleep(0.005)
            yield "x"

    received = 0
    with pytest.raises(ProviderError) as info:
        async for _ in bounded(trickle(), gap_s=1, answer_s=0.05):
            received += 1
    assert received >= 3  # it did stream, and was cut by the whole answer's bound, not by a gap
    assert "took longer than 0.05s (maxAnswerSeconds)" in str(info.value)


async def test_the_whole_answers_time_running_out_while_the_caller_holds_a_chunk_ends_the_next_wait() -> None:
    """The caller's time counts against the whole answer (not the gap): the next request for a chunk fails."""
    received = []
    with pytest.raises(ProviderError) as info:
        async for text in bounded(chunks("a", "b"), gap_s=1, answer_s=0.02):
            received.append(text)
            await asyncio.sleep(0.05)
    assert received == ["a"]
    assert "maxAnswerSeconds" in str(info.value)


async def test_cancelling_the_task_while_it_waits_is_a_cancellation_not_a_timeout() -> None:
    """/stop cancels the turn's task: that stays a cancellation, and the stream is closed."""
    closed = asyncio.Event()
    asked = asyncio.Event()

    async def stalled() -> AsyncIterator[str]:
        try:
            asked.set()
            await asyncio.Event().wait()
            yield "never"
        finally:
            closed.set()

    async def consume() -> None:
        async for _ in bounded(stalled(), gap_s=5, answer_s=5):
            pass

    task = asyncio.create_task(consume())
    await asked.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert closed.is_set()


async def test_a_cancellation_that_comes_with_the_timeout_is_not_swallowed() -> None:
    """When the bound and /stop cancel the task in the same loop iteration (the bound first), the task still
    ends cancelled, not with a timeout."""
    asked = asyncio.Event()

    async def stalled() -> AsyncIterator[str]:
        asked.set()
        await asyncio.Event().wait()
        yield "never"

    async def consume() -> None:
        async for _ in bounded(stalled(), gap_s=0.002, answer_s=5):
            pass

    task = asyncio.create_task(consume())
    await asked.wait()
    loop = asyncio.get_running_loop()

    def busy_then_stop() -> None:
        time.sleep(0.01)  # a busy loop: the bound is passed, its timer due in the next iteration
        loop.call_at(loop.time(), task.cancel)  # due then too, after the bound's timer

    loop.call_soon(busy_then_stop)
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_the_timer_is_gone_once_the_stream_ends() -> None:
    """A finished stream leaves no timer behind to cancel the caller later."""
    async for _ in bounded(chunks("a"), gap_s=0.01, answer_s=0.02):
        pass
    await asyncio.sleep(0.04)  # would raise CancelledError if the stream's timer were still armed
