"""What a turn leaves for operators: the failover event log, one log line per turn, and the metrics observer."""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.clock import Clock
from bot.failover.engine import AttemptFailed, TurnResult
from bot.store.protocol import SessionStore
from bot.store.types import FailoverEvent

log = logging.getLogger("modelbot.turns")

# (session key, the result or None for a failed turn, the failed attempts, latency ms, whether it was delivered)
TurnObserver = Callable[[str, TurnResult | None, list[AttemptFailed], float, bool], None]


class TurnLog:
    """Books failed attempts in the store's failover log and reports each turn once it is over."""

    def __init__(self, store: SessionStore, *, clock: Clock, observer: TurnObserver | None = None) -> None:
        self._store = store
        self._clock = clock
        self._observer = observer

    async def attempt_failed(self, key: str, event: AttemptFailed) -> None:
        record = event.record
        await self._store.record_event(
            FailoverEvent(
                at=self._clock.now_ms(),
                session_key=key,
                ref=record.ref,
                profile_id=record.profile_id,
                reason=str(record.reason) if record.reason else "skipped",
                cooldown_until=event.cooldown_until,
            )
        )

    def turn(
        self, key: str, result: TurnResult | None, failures: list[AttemptFailed], *, delivered: bool = True
    ) -> None:
        """A turn is over: ``result`` None when it failed; ``delivered`` False when the chat broke it off."""
        latency = result.latency_ms if result is not None else 0.0
        if self._observer is not None:
            self._observer(key, result, failures, latency, delivered)
        attempts = (
            ", ".join(f"{f.record.ref}@{f.record.profile_id}:{f.record.reason}" for f in failures) or "-"
        )
        if result is not None:
            log.info(
                "turn session=%s model=%s profile=%s attempts=%s latency_ms=%.1f%s",
                key,
                result.ref,
                result.profile_id,
                attempts,
                latency,
                "" if delivered else " undelivered",
            )
        else:
            outcome = "failed" if delivered else "undelivered"
            log.info("turn session=%s model=- profile=- attempts=%s %s", key, attempts, outcome)
