"""Compaction (docs/failover.md §8): when history nears the model's context window, older turns become one summary."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from bot.clock import Clock
from bot.config.schema import Config
from bot.errors import TurnError
from bot.failover.engine import Engine, TurnInput
from bot.models.catalog import Catalog
from bot.models.refs import ModelRef
from bot.providers.base import ChatMessage
from bot.store.protocol import SessionStore
from bot.store.types import NewMessage, SessionRecord, StoredMessage

log = logging.getLogger("modelbot.compaction")

KEEP_LAST = 4  # at most this many of the newest messages stay verbatim: the summary replaces the rest
# ... and only as many as fit in this share of the compaction threshold, so that a compaction always makes
# room: with four huge messages kept, the history would stay over the threshold and compact on every turn.
KEPT_SHARE = 0.5
TRANSCRIPT_CHARS = 60_000  # what the summariser is given at most, newest kept

SUMMARY_INSTRUCTION = (
    "Summarise the conversation below for your own later reference. Keep facts, decisions, names, numbers, "
    "open questions and the user's preferences; drop small talk. Write plain prose, at most 300 words."
)


def estimate_tokens(text: str) -> int:
    """A cheap, provider-independent estimate: about four characters a token, plus message overhead."""
    return len(text) // 4 + 4


def transcript(messages: Sequence[StoredMessage]) -> str:
    """The older turns as plain text for the summariser (an earlier summary first, then the turns)."""
    lines = []
    for message in messages:
        who = {"summary": "Earlier summary", "user": "User", "assistant": "Assistant"}.get(
            message.role, message.role
        )
        lines.append(f"{who}: {message.content}")
    text = "\n\n".join(lines)
    return text[-TRANSCRIPT_CHARS:]


def message_tokens(message: StoredMessage) -> int:
    """A stored message's estimate (kept with the message when it was saved)."""
    return message.token_estimate or estimate_tokens(message.content)


def kept_count(history: Sequence[StoredMessage], *, window: int, threshold: float) -> int:
    """How many of the newest messages a compaction keeps verbatim: up to ``KEEP_LAST``, as long as together
    they fit in ``KEPT_SHARE`` of the threshold (none, if the newest alone does not)."""
    budget = KEPT_SHARE * threshold * window
    kept, total = 0, 0
    for message in reversed(history[-KEEP_LAST:]):
        total += message_tokens(message)
        if total > budget:
            break
        kept += 1
    return kept


def compactable(history: Sequence[StoredMessage], kept: int) -> bool:
    """Whether there is anything to fold into a summary beyond an earlier summary itself (which only ever
    leads the history, so this looks at its first messages only)."""
    return any(history[i].role != "summary" for i in range(len(history) - kept))


def over_threshold(tokens: int, pending: str, *, window: int, threshold: float) -> bool:
    """``tokens``, the history's total estimate, plus the pending message reach the threshold."""
    return tokens + estimate_tokens(pending) >= threshold * window


class Compactor:
    """Summarises a session's older history with the session's own chain of models."""

    def __init__(
        self,
        *,
        engine_for: Callable[[str], Engine],
        store: SessionStore,
        catalog: Catalog,
        clock: Clock,
        config: Config,
    ) -> None:
        self._engine_for = engine_for
        self._store = store
        self._catalog = catalog
        self._clock = clock
        self._threshold = config.agents.defaults.compaction_threshold
        self._history_limit = config.session.history_limit  # what a turn reads, so the same view

    async def maybe_compact(
        self,
        session: SessionRecord,
        chain: Sequence[ModelRef],
        history: Sequence[StoredMessage],
        *,
        tokens: int,
        pending: str,
        force: bool = False,
    ) -> tuple[SessionRecord, list[StoredMessage]] | None:
        """Compact if ``history`` (``tokens`` in all) is near the window, or ``force``; returns the session and
        history as they now are, or None when nothing was compacted. Costs nothing that grows with the
        history unless it compacts."""
        window = self._catalog.context_window(chain[0])
        if not force and not over_threshold(tokens, pending, window=window, threshold=self._threshold):
            return None
        kept = kept_count(history, window=window, threshold=self._threshold)
        if not compactable(history, kept):
            return None
        older = history[: len(history) - kept]
        request = TurnInput(
            chain=chain,
            messages=[ChatMessage("user", f"{SUMMARY_INSTRUCTION}\n\n{transcript(older)}")],
        )
        try:
            result = await self._engine_for(session.agent_id).complete(request)
        except TurnError as exc:
            log.warning("compaction of %s failed: %s", session.key, exc)
            return None
        summary = NewMessage("summary", result.text, (), estimate_tokens(result.text))
        await self._store.replace_history(
            session.key, summary, kept, now_ms=self._clock.now_ms(), through_id=older[-1].id
        )
        updated = await self._store.get(session.key)
        history = await self._store.history(session.key, limit=self._history_limit)
        return (updated if updated is not None else session), history
