"""Time as an injected dependency (the core never reads the wall clock itself, nor sleeps on it), and durations as people read them."""

from __future__ import annotations

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
        import asyncio  # noqa: PLC0415 - reading the time needs no event loop (the CLI's reads start none)

        await asyncio.sleep(seconds)


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
