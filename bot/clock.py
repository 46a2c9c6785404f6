"""Time as an injected dependency: the core never reads the wall clock itself."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Milliseconds since the epoch, the unit of every timestamp in auth-profiles.json."""

    def now_ms(self) -> int: ...


class SystemClock:
    """The real wall clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class FakeClock:
    """A clock that only moves when a test moves it."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now = start_ms

    def now_ms(self) -> int:
        return self._now

    def advance(self, *, ms: int = 0, seconds: float = 0, minutes: float = 0, hours: float = 0) -> None:
        self._now += ms + int(seconds * 1000) + int(minutes * 60_000) + int(hours * 3_600_000)

    def set(self, now_ms: int) -> None:
        self._now = now_ms


MINUTE_MS = 60_000
HOUR_MS = 3_600_000
