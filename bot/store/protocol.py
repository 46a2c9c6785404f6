"""The session store port: every method is one short transaction, so none can be held across an LLM call.

A message to a session in a store that other processes share runs in two of them: ``begin_turn`` (its lease
and its session) and, when it ran a turn that answered, ``end_turn`` (the turn saved, the lease given back).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from bot.errors import StoreError
from bot.store.types import FailoverEvent, NewMessage, SessionPatch, SessionRecord, StoredMessage


def unknown_session(key: str) -> StoreError:
    """The error every store raises when asked to change a session that does not exist."""
    return StoreError(f'No session "{key}".')


class SessionStore(Protocol):
    """Sessions, their history and the failover event log; SQL-backed or in memory.

    Methods that change a session raise ``StoreError`` when the session does not exist, and so does any
    failure of the backend. Timestamps are ms since the epoch and always passed in (``now_ms``).
    """

    async def start(self) -> None:
        """Open the backend (and bring its schema up to date)."""

    async def stop(self) -> None:
        """Release the backend; the store can be started again."""

    async def warm(self) -> None:
        """Load now what the backend's rarer work needs (after ``start``, before a long-running process serves
        chats), rather than in the middle of a turn that first needs it."""

    async def get(self, key: str) -> SessionRecord | None:
        """The session, or None."""

    async def get_or_create(
        self,
        key: str,
        *,
        agent_id: str,
        platform: str,
        chat_id: str,
        user_id: str | None = None,
        thread_id: str | None = None,
        now_ms: int,
    ) -> SessionRecord:
        """The session, created if missing; safe when several processes create the same key at once."""

    async def update(self, key: str, patch: SessionPatch, *, now_ms: int) -> SessionRecord:
        """Apply ``patch`` (its non-UNCHANGED fields) and return the session as it now is."""

    async def append_messages(
        self, key: str, messages: Sequence[NewMessage], *, now_ms: int, patch: SessionPatch | None = None
    ) -> list[StoredMessage]:
        """Append to the history, in order, and apply ``patch`` in the same transaction (a whole turn is
        saved in one write); returns the stored messages with their ids."""

    async def history(self, key: str, *, limit: int | None = None) -> list[StoredMessage]:
        """The last ``limit`` messages (all when None), oldest first."""

    async def replace_history(
        self,
        key: str,
        summary: NewMessage,
        keep_last: int,
        *,
        now_ms: int,
        through_id: int | None = None,
    ) -> int:
        """Compaction: keep the last ``keep_last`` messages behind ``summary``, delete the rest.

        Messages with an id above ``through_id`` (the newest message the summary covers) are kept too, so
        a turn appended while the summary was being written is never lost. Returns the new compaction count.
        """

    async def reset(
        self, key: str, *, keep_model: bool, model_override: str | None = None, now_ms: int
    ) -> SessionRecord:
        """``/new``, ``/reset``: empty history, no pins, compaction count 0.

        ``model_override`` set: it becomes the session's model (source "user"); else the model override
        survives only when ``keep_model``.
        """

    async def list_sessions(
        self,
        *,
        platform: str | None = None,
        chat_id: str | None = None,
        user_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[SessionRecord]:
        """Sessions matching every given filter, most recently updated first."""

    async def delete_older_than(self, cutoff_ms: int) -> int:
        """Delete sessions last updated before ``cutoff_ms`` with their messages; returns how many."""

    async def reset_all(self, *, older_than_ms: int | None = None) -> int:
        """Clear history and pins of every session (last updated before ``older_than_ms``, a timestamp,
        when given), keeping the rows and model overrides; returns how many were reset."""

    async def record_event(self, event: FailoverEvent) -> None:
        """Append to the failover log."""

    async def events(
        self, *, since_ms: int | None = None, profile_id: str | None = None, limit: int = 100
    ) -> list[FailoverEvent]:
        """Failover events at or after ``since_ms`` (and of ``profile_id``), newest first."""

    async def prune_events(self, before_ms: int) -> int:
        """Delete failover events older than ``before_ms``; returns how many."""

    async def count_sessions(self) -> int:
        """How many sessions exist."""

    async def acquire_lease(self, key: str, holder: str, *, ttl_ms: int, now_ms: int) -> bool:
        """Take the lease ``key`` for ``ttl_ms`` if it is free, expired, or already ``holder``'s (then it is
        extended); True when ``holder`` holds it now. One statement, so two processes never both get it."""

    async def renew_lease(self, key: str, holder: str, *, ttl_ms: int, now_ms: int) -> bool:
        """Extend ``holder``'s lease to ``now_ms + ttl_ms``; False when someone else has taken it over."""

    async def release_lease(self, key: str, holder: str) -> bool:
        """End ``holder``'s lease at once; False when it was not (or no longer) theirs."""

    async def begin_turn(
        self,
        key: str,
        *,
        lease_key: str,
        holder: str,
        ttl_ms: int,
        agent_id: str,
        platform: str,
        chat_id: str,
        user_id: str | None = None,
        thread_id: str | None = None,
        now_ms: int,
    ) -> SessionRecord | None:
        """A message's first transaction in a shared store: ``acquire_lease(lease_key, holder, …)`` and, when
        that took the lease, ``get_or_create(key, …)``; None, with nothing done, when another holder has it."""

    async def end_turn(
        self,
        key: str,
        messages: Sequence[NewMessage],
        *,
        now_ms: int,
        patch: SessionPatch | None = None,
        lease_key: str,
        holder: str,
    ) -> list[StoredMessage]:
        """A turn's last transaction: ``append_messages(key, …)``, then ``release_lease(lease_key, holder)``;
        when the append fails, nothing is done (the lease stays held)."""
