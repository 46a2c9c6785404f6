"""Time for the adapters' pacing, injected: the event loop's clock when running, a fake one in tests."""

from __future__ import annotations

import asyncio
from typing import Protocol


class Timer(Protocol):
    """A monotonic clock in seconds and a sleep on it (throttled edits, typing renewals, stop grace)."""

    def now(self) -> float: ...

    async def sleep(self, seconds: float) -> None: ...


class LoopTimer:
    """The running event loop's monotonic clock."""

    def now(self) -> float:
        return asyncio.get_running_loop().time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


LOOP_TIMER = LoopTimer()


async def wait_for_event(event: asyncio.Event, seconds: float, timer: Timer) -> bool:
    """Until ``event`` is set or ``seconds`` have passed on ``timer``; True when the event was set."""
    if event.is_set():
        return True
    sleeper = asyncio.ensure_future(timer.sleep(seconds))
    waiter = asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait((sleeper, waiter), return_when=asyncio.FIRST_COMPLETED)
    finally:
        sleeper.cancel()
        waiter.cancel()
    return event.is_set()
