"""Time as an injected dependency (the core never reads the wall clock itself, nor sleeps on it), and durations as people read them."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    """Milliseconds since the epoch, the unit of every timestamp in auth-profiles.json."""

    def now_ms(self) -> int: ...

    async def sleep(self, seconds: float) -> None:
        """Wait until this clock has moved on by ``seconds`` (a turn waiting out a cooldown)."""
        ...


class SystemClock:
    """The real wall clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeClock:
    """A clock that only moves when a test moves it."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms
        self.slept: list[float] = []  # every sleep, in seconds, for tests to check

    def now_ms(self) -> int:
        return self._now

    async def sleep(self, seconds: float) -> None:
        """No real waiting: the clock jumps ahead (other tasks still get their turn once)."""
        self.slept.append(seconds)
        self._now += round(seconds * 1000)
        await asyncio.sleep(0)

    def advance(self, *, ms: int = 0, seconds: float = 0, minutes: float = 0, hours: float = 0) -> None:
        self._now += ms + int(seconds * 1000) + int(minutes * 60_000) + int(hours * 3_600_000)

    def set(self, now_ms: int) -> None:
        self._now = now_ms


MINUTE_MS = 60_000
HOUR_MS = 3_600_000


def format_wait(ms: int) -> str:
    """A short human duration: 45s, 4m12s, 2h5m."""
    seconds = max(1, -(-ms // 1000))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s" if seconds else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"
