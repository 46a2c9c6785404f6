"""An in-memory ``SessionStore`` with the SQL stores' semantics, for tests and throwaway console sessions."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from bot.store.protocol import unknown_session
from bot.store.types import (
    FailoverEvent,
    NewMessage,
    SessionPatch,
    SessionRecord,
    StoredMessage,
)


def _fresh(record: SessionRecord, **changes: object) -> SessionRecord:
    """The record after a reset: no history, no pins, no memory of the last answer."""
    return dataclasses.replace(
        record,
        pin_profile=None,
        pin_source=None,
        pin_compaction=None,
        compaction_count=0,
        last_model=None,
        last_profile=None,
        last_fallback=False,
        message_count=0,
        **changes,  # type: ignore[arg-type]
    )


class InMemorySessionStore:
    """Everything in dicts. No method awaits, so each one is atomic within the event loop."""

    def __init__(self) -> None:
        self._sessions: dict[str, SessionRecord] = {}
        self._messages: dict[str, list[StoredMessage]] = {}
        self._events: list[FailoverEvent] = []
        self._next_id = 1
        self._leases: dict[str, tuple[str, int]] = {}  # key -> (holder, expires_at)

    async def start(self) -> None:
        """Nothing to open."""

    async def warm(self) -> None:
        """Nothing to load."""

    async def stop(self) -> None:
        """Nothing to release; the data stays for the next start (like a database would)."""

    def _require(self, key: str) -> SessionRecord:
        record = self._sessions.get(key)
        if record is None:
            raise unknown_session(key)
        return record

    def _stored(self, key: str, message: NewMessage, now_ms: int) -> StoredMessage:
        stored = StoredMessage(
            id=self._next_id,
            session_key=key,
            role=message.role,
            content=message.content,
            attachments=message.attachments,
            token_estimate=message.token_estimate,
            created_at=now_ms,
        )
        self._next_id += 1
        return stored

    async def get(self, key: str) -> SessionRecord | None:
        return self._sessions.get(key)

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
        if key not in self._sessions:
            self._sessions[key] = SessionRecord(
                key=key,
                agent_id=agent_id,
                platform=platform,
                chat_id=chat_id,
                user_id=user_id,
                thread_id=thread_id,
                model_override=None,
                model_source=None,
                pin_profile=None,
                pin_source=None,
                pin_compaction=None,
                compaction_count=0,
                last_model=None,
                last_profile=None,
                last_fallback=False,
                created_at=now_ms,
                updated_at=now_ms,
                message_count=0,
            )
            self._messages[key] = []
        return self._sessions[key]

    async def update(self, key: str, patch: SessionPatch, *, now_ms: int) -> SessionRecord:
        record = dataclasses.replace(self._require(key), updated_at=now_ms, **patch.changes())  # type: ignore[arg-type]
        self._sessions[key] = record
        return record

    async def append_messages(
        self, key: str, messages: Sequence[NewMessage], *, now_ms: int, patch: SessionPatch | None = None
    ) -> list[StoredMessage]:
        record = self._require(key)
        stored = [self._stored(key, message, now_ms) for message in messages]
        self._messages[key].extend(stored)
        changes = patch.changes() if patch is not None else {}
        self._sessions[key] = dataclasses.replace(
            record,
            updated_at=now_ms,
            message_count=record.message_count + len(stored),
            **changes,  # type: ignore[arg-type]
        )
        return stored

    async def history(self, key: str, *, limit: int | None = None) -> list[StoredMessage]:
        messages = self._messages.get(key, [])
        if limit is None:
            return list(messages)
        return list(messages[-limit:]) if limit > 0 else []

    async def replace_history(
        self,
        key: str,
        summary: NewMessage,
        keep_last: int,
        *,
        now_ms: int,
        through_id: int | None = None,
    ) -> int:
        record = self._require(key)
        messages = self._messages[key]
        tail = {m.id for m in messages[-keep_last:]} if keep_last > 0 else set()
        kept = [m for m in messages if m.id in tail or (through_id is not None and m.id > through_id)]
        # Re-number the kept messages after the summary so that id order stays history order.
        renumbered = [self._stored(key, summary, now_ms)]
        for message in kept:
            renumbered.append(dataclasses.replace(message, id=self._next_id))
            self._next_id += 1
        self._messages[key] = renumbered
        count = record.compaction_count + 1
        self._sessions[key] = dataclasses.replace(
            record, compaction_count=count, message_count=len(renumbered), updated_at=now_ms
        )
        return count

    async def reset(
        self, key: str, *, keep_model: bool, model_override: str | None = None, now_ms: int
    ) -> SessionRecord:
        record = self._require(key)
        model: dict[str, object] = {}
        if model_override is not None:
            model = {"model_override": model_override, "model_source": "user"}
        elif not keep_model:
            model = {"model_override": None, "model_source": None}
        self._messages[key] = []
        self._sessions[key] = _fresh(record, updated_at=now_ms, **model)
        return self._sessions[key]

    async def list_sessions(
        self,
        *,
        platform: str | None = None,
        chat_id: str | None = None,
        user_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[SessionRecord]:
        found = [
            r
            for r in self._sessions.values()
            if (platform is None or r.platform == platform)
            and (chat_id is None or r.chat_id == chat_id)
            and (user_id is None or r.user_id == user_id)
        ]
        found.sort(key=lambda r: r.key)
        found.sort(key=lambda r: r.updated_at, reverse=True)  # stable: equal times stay in key order
        offset = max(offset, 0)
        return found[offset : offset + max(limit, 0)]

    async def delete_older_than(self, cutoff_ms: int) -> int:
        old = [key for key, r in self._sessions.items() if r.updated_at < cutoff_ms]
        for key in old:
            del self._sessions[key]
            del self._messages[key]
        return len(old)

    async def reset_all(self, *, older_than_ms: int | None = None) -> int:
        keys = [k for k, r in self._sessions.items() if older_than_ms is None or r.updated_at < older_than_ms]
        for key in keys:
            self._messages[key] = []
            self._sessions[key] = _fresh(self._sessions[key])
        return len(keys)

    async def record_event(self, event: FailoverEvent) -> None:
        self._events.append(event)

    async def events(
        self, *, since_ms: int | None = None, profile_id: str | None = None, limit: int = 100
    ) -> list[FailoverEvent]:
        found = [
            e
            for e in self._events
            if (since_ms is None or e.at >= since_ms) and (profile_id is None or e.profile_id == profile_id)
        ]
        # Newest first; among equal times the later-recorded first, as the SQL stores order by id.
        ordered = sorted(enumerate(found), key=lambda pair: (pair[1].at, pair[0]), reverse=True)
        return [event for _, event in ordered[: max(limit, 0)]]

    async def prune_events(self, before_ms: int) -> int:
        kept = [e for e in self._events if e.at >= before_ms]
        pruned = len(self._events) - len(kept)
        self._events = kept
        return pruned

    async def count_sessions(self) -> int:
        return len(self._sessions)

    async def acquire_lease(self, key: str, holder: str, *, ttl_ms: int, now_ms: int) -> bool:
        current = self._leases.get(key)
        if current is not None and current[0] != holder and current[1] > now_ms:
            return False
        self._leases[key] = (holder, now_ms + ttl_ms)
        return True

    async def renew_lease(self, key: str, holder: str, *, ttl_ms: int, now_ms: int) -> bool:
        current = self._leases.get(key)
        if current is None or current[0] != holder:
            return False
        self._leases[key] = (holder, now_ms + ttl_ms)
        return True

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
        if not await self.acquire_lease(lease_key, holder, ttl_ms=ttl_ms, now_ms=now_ms):
            return None
        return await self.get_or_create(
            key,
            agent_id=agent_id,
            platform=platform,
            chat_id=chat_id,
            user_id=user_id,
            thread_id=thread_id,
            now_ms=now_ms,
        )

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
        stored = await self.append_messages(key, messages, now_ms=now_ms, patch=patch)
        await self.release_lease(lease_key, holder)
        return stored

    async def release_lease(self, key: str, holder: str) -> bool:
        current = self._leases.get(key)
        if current is None or current[0] != holder:
            return False
        del self._leases[key]
        return True
