"""``bounded``: the time limits on one provider stream, measured while the stream is waited for."""

from __future__ import annotations

import asyncio
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
