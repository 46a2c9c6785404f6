"""asyncio sleeps on a FakeClock: a sleeper wakes only when the test moves the clock past its time."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math

from tests.fakes.clock import FakeClock


async def settle(rounds: int = 50) -> None:
    """Let every task that can run do so (each await of a ready future takes a loop iteration)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


class FakeTimer:
    """``sleep`` for code under test; ``advance`` for the test, which wakes sleepers in time order."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self._sleepers: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self.slept: list[float] = []  # every duration asked for, in order

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        due = self.clock.now_ms() + math.ceil(seconds * 1000)
        heapq.heappush(self._sleepers, (due, next(self._seq), future))
        await future

    @property
    def sleeping(self) -> int:
        return sum(1 for _, _, future in self._sleepers if not future.done())

    async def advance(self, ms: int) -> None:
        """Move the clock ``ms`` forward, stopping at each sleeper's time to let it run."""
        target = self.clock.now_ms() + ms
        await settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            due, _, future = heapq.heappop(self._sleepers)
            self.clock.set(max(self.clock.now_ms(), due))
            if not future.done():
                future.set_result(None)
                await settle()
        self.clock.set(target)
        await settle()
