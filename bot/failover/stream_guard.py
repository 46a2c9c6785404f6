"""Time limits on one provider stream (docs/failover.md §7): the first token, each gap between chunks, the whole answer.

They wrap the client's iterator, so every client (the SDK ones, the demo, an embedder's own) obeys the same
bounds; the SDKs' own HTTP timeout (``Endpoint.timeout_s``, the same number) only guards the sockets.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator

from bot.errors import ProviderError
from bot.failover.reasons import Reason


async def bounded(stream: AsyncIterator[str], *, gap_s: float, answer_s: float) -> AsyncGenerator[str, None]:
    """``stream``'s chunks, ending in a ``timeout`` ``ProviderError`` when a bound is passed.

    ``gap_s`` bounds the wait for the first chunk and for each next one (measured from the moment the next
    one is asked for, so a slow consumer does not count), ``answer_s`` the whole stream. The stream is
    closed however this ends. Iterate it from one task (the timeout cancels the task that started it).
    """
    loop = asyncio.get_running_loop()
    answer_deadline = loop.time() + answer_s
    first, whole = True, False
    try:
        # One timeout for the whole stream, armed for each wait and disarmed while the caller holds a chunk:
        # a timeout per chunk cost ~10 µs a chunk, a third of the engine's own cost per turn.
        async with asyncio.timeout(None) as limit:
            while True:
                gap_deadline = loop.time() + gap_s
                whole = answer_deadline <= gap_deadline
                limit.reschedule(min(gap_deadline, answer_deadline))
                try:
                    chunk = await anext(stream)
                except StopAsyncIteration:
                    return
                limit.reschedule(None)
                first = False
                yield chunk
    except TimeoutError:
        if not limit.expired():
            raise  # the client's own TimeoutError: it classifies its failures itself
        raise ProviderError(Reason.TIMEOUT, _message(first, whole, gap_s, answer_s)) from None
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


def _message(first: bool, whole: bool, gap_s: float, answer_s: float) -> str:
    if whole:
        return f"The answer took longer than {answer_s:g}s (maxAnswerSeconds)."
    if first:
        return f"The provider sent no answer within {gap_s:g}s (timeoutSeconds)."
    return f"The provider's stream stalled for more than {gap_s:g}s (timeoutSeconds)."
