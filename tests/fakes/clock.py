"""A clock that only moves when a test moves it: the ``Clock`` of bot/clock.py for tests."""

from __future__ import annotations

import asyncio


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
