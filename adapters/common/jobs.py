"""An adapter's background work: one chat's messages in order, a bounded number at once, drained on stop.

The bound (``CHATS_AT_ONCE``, the same for every platform): at most 32 chats have a message handled at the
same time; messages of further chats wait for a free place, each chat's in the order they came. A streaming
answer edits its message about once a second, so 32 answers at once stay inside what the platforms allow a
bot in total (Telegram about 30 messages a second, Discord 50 requests a second); 32 provider streams at
once are also as many as one process should hold for one channel. Jobs that must not queue (``/stop``,
which acts on the turn a chat's lane is busy with, and quick answers to buttons) run outside lanes and
outside the bound. On stop every job in hand gets ``STOP_GRACE_S`` (20 s) to finish, then is cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Coroutine, Hashable, Iterator
from typing import Any

from adapters.common.timer import LOOP_TIMER, Timer

CHATS_AT_ONCE = 32
STOP_GRACE_S = 20.0  # within the 30 s `modelbot run` gives each channel to stop

Job = Coroutine[Any, Any, None]


class Jobs:
    """``submit`` queues a job in its chat's lane; ``spawn`` runs one at once; ``drain`` ends them all.

    Jobs handle their own errors: anything escaping is logged here (once, with its traceback).
    """

    def __init__(self, platform: str, *, limit: int = CHATS_AT_ONCE, timer: Timer = LOOP_TIMER) -> None:
        self._log = logging.getLogger(f"modelbot.{platform}")
        self._platform = platform
        self.limit = limit
        self._slots = asyncio.Semaphore(limit)
        self._timer = timer
        self._lanes: dict[Hashable, deque[Job]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()

    def submit(self, lane: Hashable, job: Job) -> None:
        """Run ``job`` after the lane's earlier jobs ended (however they ended), when a place is free."""
        queue = self._lanes.get(lane)
        if queue is not None:
            queue.append(job)
            return
        self._lanes[lane] = deque([job])
        self._watch(asyncio.create_task(self._run_lane(lane)))

    def spawn(self, job: Job) -> None:
        """Run ``job`` now, outside lanes and the bound."""
        self._watch(asyncio.create_task(self._guarded(job)))

    @contextlib.contextmanager
    def track(self) -> Iterator[None]:
        """Count work that runs in a task the platform library made (a slash command) until it ends."""
        task = asyncio.current_task()
        if task is None or task in self._tasks:
            yield
            return
        self._tasks.add(task)
        try:
            yield
        finally:
            self._tasks.discard(task)

    @property
    def busy(self) -> int:
        """Jobs not finished yet: queued, running, spawned or tracked."""
        queued = sum(
            len(queue) - 1 for queue in self._lanes.values()
        )  # the first one runs in its lane's task
        return len(self._tasks) + queued

    async def wait_idle(self) -> None:
        """Until no job is queued or running (jobs started meanwhile included)."""
        while pending := self._others():
            await asyncio.wait(pending)

    async def drain(self, grace_s: float) -> None:
        """Wait up to ``grace_s`` for the jobs in hand, then cancel the rest and wait for them to end.

        A cancelled lane never starts the jobs queued in it.
        """
        pending = self._others()
        if not pending:
            return
        deadline = asyncio.ensure_future(self._timer.sleep(grace_s))
        try:
            while pending and not deadline.done():
                await asyncio.wait(pending | {deadline}, return_when=asyncio.FIRST_COMPLETED)
                pending = {task for task in pending if not task.done()}
        finally:
            deadline.cancel()
        if pending:
            self._log.warning("%s: cancelling %d unfinished job(s) on stop", self._platform, len(pending))
            for task in pending:
                task.cancel()
            await asyncio.wait(pending)

    def _others(self) -> set[asyncio.Task[Any]]:
        # The task asking (a tracked slash command that stops the bot) must not wait for itself.
        return {task for task in self._tasks if task is not asyncio.current_task()}

    def _watch(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_lane(self, lane: Hashable) -> None:
        queue = self._lanes[lane]
        try:
            while queue:
                async with self._slots:
                    await self._guarded(queue[0])
                del queue[0]  # ended (however): the next one may start
        finally:
            del self._lanes[lane]
            for job in queue:
                job.close()  # cancelled while queued: these jobs never start

    async def _guarded(self, job: Job) -> None:
        try:
            await job
        except Exception:
            self._log.exception("%s: a background job failed", self._platform)
