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
    closed however this ends. Iterate it from one task (a bound cancels the task that iterates it).
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None, "bounded() runs in a task"
    watch = _Watch(loop, task, gap_s, answer_s)
    cancelling = task.cancelling()
    first = True
    try:
        while True:
            if not watch.wait_begins():
                raise ProviderError(Reason.TIMEOUT, _message(first, True, gap_s, answer_s))
            try:
                chunk = await anext(stream)
            except StopAsyncIteration:
                return
            except asyncio.CancelledError:
                # Ours, unless someone else (/stop, shutdown) cancelled the task too: then theirs goes on.
                if watch.expired is None or task.uncancel() > cancelling:
                    raise
                raise ProviderError(Reason.TIMEOUT, _message(first, watch.expired, gap_s, answer_s)) from None
            watch.since = None
            first = False
            yield chunk
    finally:
        watch.close()
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


class _Watch:
    """One timer for the whole stream, which cancels the task when a wait passes a bound.

    Re-arming a timer around every chunk (``asyncio.Timeout.reschedule``: a cancelled handle, a new one and a
    heap push each time) was the largest single cost of a streamed turn (~4 µs a chunk, 65 chunks a turn on
    the demo). Instead each wait only notes when it began; the timer, when it fires, checks that note and
    either cancels the task or sets itself for the next moment a bound could be passed.
    """

    __slots__ = ("_answer_deadline", "_gap_s", "_handle", "_loop", "_task", "expired", "since")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, task: asyncio.Task[object], gap_s: float, answer_s: float
    ):
        self._loop = loop
        self._task = task
        self._gap_s = gap_s
        now = loop.time()
        self._answer_deadline = now + answer_s
        self.since: float | None = (
            None  # when the current wait for a chunk began; None while the caller holds one
        )
        self.expired: bool | None = None  # once a bound cancelled the task: whether it was the whole answer's
        self._handle: asyncio.TimerHandle | None = loop.call_at(
            min(now + gap_s, self._answer_deadline), self._check
        )

    def wait_begins(self) -> bool:
        """Note that a wait begins; False when the whole answer's time ran out while the caller held a chunk."""
        self.since = now = self._loop.time()
        return now < self._answer_deadline

    def _check(self) -> None:
        now = self._loop.time()
        if (
            self.since is None
        ):  # the caller holds a chunk: no gap can end sooner than gap_s after it asks again
            due = min(now + self._gap_s, self._answer_deadline)
            self._handle = self._loop.call_at(due, self._check) if due > now else None
            return
        gap_deadline = self.since + self._gap_s
        due = min(gap_deadline, self._answer_deadline)
        if now < due:
            self._handle = self._loop.call_at(due, self._check)
            return
        self._handle = None
        self.expired = self._answer_deadline <= gap_deadline
        self._task.cancel()

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def _message(first: bool, whole: bool, gap_s: float, answer_s: float) -> str:
    if whole:
        return f"The answer took longer than {answer_s:g}s (maxAnswerSeconds)."
    if first:
        return f"The provider sent no answer within {gap_s:g}s (timeoutSeconds)."
    return f"The provider's stream stalled for more than {gap_s:g}s (timeoutSeconds)."
