"""Each active session's recent history kept between turns, so that a turn does not re-read and re-walk it.

A turn used to read the last ``history_limit`` messages from the store, sum their token estimates for the
compaction check and turn them into provider messages, on every turn: three walks of the whole conversation
before the one that serialises it. Here a session's history is read once, and then kept up to date with the
messages the pipeline itself saves; its token total and its provider messages grow with it.

The store stays the truth. An entry is used only while the session record read at the start of the turn
still has the version the entry was built for — ``(message_count, compaction_count, updated_at)``, of which
every write to a session's history moves at least one (``append_messages``, ``replace_history``, ``reset``,
``reset_all``): anything this process did not write itself (another process, a CLI reset, a compaction) makes
the entry stale and the history is read again.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

from bot.conversation.compaction import message_tokens
from bot.providers.base import ChatMessage
from bot.store.protocol import SessionStore
from bot.store.types import SessionRecord, StoredMessage

Version = tuple[int, int, int]
MAX_SESSIONS = 256  # active conversations kept; one that went quiet is read again when it comes back


def version_of(session: SessionRecord) -> Version:
    return (session.message_count, session.compaction_count, session.updated_at)


@dataclass
class SessionHistory:
    """A session's last ``limit`` messages, their token total, and the conversation as the provider sees it."""

    version: Version
    messages: list[StoredMessage] = field(default_factory=list)
    tokens: int = 0  # the sum of the messages' token estimates
    turns: list[ChatMessage] = field(default_factory=list)  # the user and assistant messages, in order
    summaries: list[str] = field(default_factory=list)  # earlier compactions, for the system prompt

    def extend(self, messages: Sequence[StoredMessage]) -> None:
        for message in messages:
            self.messages.append(message)
            self.tokens += message_tokens(message)
            if message.role in ("user", "assistant"):
                self.turns.append(ChatMessage(message.role, message.content))
            elif message.role == "summary":
                self.summaries.append(message.content)

    def trim(self, limit: int) -> None:
        """Keep the newest ``limit`` messages, as the store's ``history(limit=…)`` would."""
        excess = len(self.messages) - limit
        if excess <= 0:
            return
        dropped = self.messages[:excess]
        del self.messages[:excess]
        self.tokens -= sum(message_tokens(m) for m in dropped)
        turns = sum(1 for m in dropped if m.role in ("user", "assistant"))
        summaries = sum(1 for m in dropped if m.role == "summary")
        del self.turns[:turns]
        del self.summaries[:summaries]


class HistoryCache:
    """The histories of the most recently active sessions (at most ``MAX_SESSIONS``), over the session store."""

    def __init__(self, store: SessionStore, *, limit: int, max_sessions: int = MAX_SESSIONS) -> None:
        self._store = store
        self._limit = limit
        self._max_sessions = max_sessions
        self._entries: OrderedDict[str, SessionHistory] = OrderedDict()

    async def get(self, session: SessionRecord) -> SessionHistory:
        """The session's history as of ``session`` (a record just read from the store)."""
        entry = self._entries.get(session.key)
        if entry is not None and entry.version == version_of(session):
            self._entries.move_to_end(session.key)
            return entry
        return self.fill(session, await self._store.history(session.key, limit=self._limit))

    def fill(self, session: SessionRecord, messages: Sequence[StoredMessage]) -> SessionHistory:
        """Start over from ``messages``, the history the store holds for ``session`` (the one walk)."""
        entry = SessionHistory(version_of(session))
        entry.extend(messages)
        entry.trim(self._limit)
        self._entries[session.key] = entry
        self._entries.move_to_end(session.key)
        while len(self._entries) > self._max_sessions:
            self._entries.popitem(last=False)
        return entry

    def appended(self, session: SessionRecord, stored: Sequence[StoredMessage], *, now_ms: int) -> None:
        """``stored`` were appended to ``session`` (as read before the append) by ``append_messages(now_ms=…)``."""
        entry = self._entries.get(session.key)
        if entry is None or entry.version != version_of(session):
            self._entries.pop(session.key, None)  # not the history we appended to: read it next time
            return
        entry.extend(stored)
        entry.trim(self._limit)
        entry.version = (session.message_count + len(stored), session.compaction_count, now_ms)
