"""One pass of the engine for a turn, onto the reply sink: the answer's text as it streams, the waiting line,
and the failed attempts for the turn log."""

from __future__ import annotations

from collections.abc import AsyncIterator

from bot.chat import ReplySink
from bot.conversation.turn_log import TurnLog
from bot.errors import DeliveryFailed, TurnError
from bot.failover.engine import AttemptFailed, TextDelta, TurnDone, TurnEvent, TurnResult, Waiting


class AnswerStream:
    """Runs one pass of the engine for the session ``key``; ``failures`` keeps its failed attempts."""

    def __init__(self, sink: ReplySink, log: TurnLog, key: str) -> None:
        self._sink = sink
        self._log = log
        self._key = key
        self.failures: list[AttemptFailed] = []

    async def run(self, events: AsyncIterator[TurnEvent]) -> TurnResult:
        """The engine's result. Its failures (``TurnError``) and the sink's (``DeliveryFailed``) go on up,
        logged as a turn that failed (or was not delivered)."""
        try:
            return await self._run(events)
        except (TurnError, DeliveryFailed) as exc:
            self._log.turn(self._key, None, self.failures, delivered=not isinstance(exc, DeliveryFailed))
            raise

    async def _run(self, events: AsyncIterator[TurnEvent]) -> TurnResult:
        sink = self._sink
        waiting = False  # a status line is shown: the answer's first text takes it away
        try:
            async for event in events:
                if isinstance(event, TextDelta):
                    if waiting:
                        waiting = False
                        await sink.status(None)
                    await sink.delta(event.text)
                elif isinstance(event, AttemptFailed):
                    self.failures.append(event)
                    await self._log.attempt_failed(self._key, event)
                elif isinstance(event, Waiting):
                    waiting = True
                    await sink.typing()
                    await sink.status(event.text)
                elif isinstance(event, TurnDone):
                    return event.result
        finally:
            # When the sink gives up mid-stream, the provider's stream is closed now, not at garbage collection.
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()
            if waiting:  # the turn ended while waiting (/stop, or every candidate failed after the wait)
                await sink.status(None)
        raise AssertionError("the engine ended without a result")  # pragma: no cover
