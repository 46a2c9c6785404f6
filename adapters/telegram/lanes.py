"""Background work per chat: one chat's messages are handled in order, different chats side by side."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any

log = logging.getLogger("modelbot.telegram")


class Lanes:
    """Each ``submit`` for a chat starts after that chat's previous job ended (however it ended).

    PTB hands updates over one at a time and returns at once; a slow or failing chat only holds up
    itself. ``spawn`` runs a job outside any lane (``/stop``, button presses: they must not queue
    behind the turn they act on). Jobs handle their own errors; anything escaping is logged here.
    """

    def __init__(self) -> None:
        self._tails: dict[int, asyncio.Task[None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def submit(self, chat_id: int, job: Coroutine[Any, Any, None]) -> None:
        previous = self._tails.get(chat_id)
        task = self._track(self._after(previous, job))
        self._tails[chat_id] = task

        def forget(done: asyncio.Task[None]) -> None:
            if self._tails.get(chat_id) is done:
                del self._tails[chat_id]

        task.add_done_callback(forget)

    def spawn(self, job: Coroutine[Any, Any, None]) -> None:
        self._track(self._guarded(job))

    @property
    def busy(self) -> int:
        """Jobs not finished yet."""
        return len(self._tasks)

    async def drain(self, grace_s: float) -> None:
        """Wait up to ``grace_s`` for the jobs in hand, then cancel the rest and wait for them to end."""
        pending = set(self._tasks)
        if not pending:
            return
        _, late = await asyncio.wait(pending, timeout=grace_s)
        if late:
            log.warning("telegram: cancelling %d unfinished job(s) on stop", len(late))
            for task in late:
                task.cancel()
            await asyncio.wait(late)

    def _track(self, job: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(job)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _after(self, previous: asyncio.Task[None] | None, job: Coroutine[Any, Any, None]) -> None:
        try:
            if previous is not None:
                await asyncio.wait([previous])  # neither its error nor our cancellation crosses over
        except BaseException:
            job.close()  # cancelled while queued: the job never starts
            raise
        await self._guarded(job)

    @staticmethod
    async def _guarded(job: Coroutine[Any, Any, None]) -> None:
        try:
            await job
        except Exception:
            log.exception("telegram: a background job failed")
