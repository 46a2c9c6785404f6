"""Translation between database rows and the store's typed values, checking what the database hands back."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, TypeVar

from sqlalchemy import Row

from bot.errors import StoreError
from bot.store.types import (
    MESSAGE_ROLES,
    MODEL_SOURCES,
    PIN_SOURCES,
    Attachment,
    FailoverEvent,
    NewMessage,
    SessionRecord,
    StoredMessage,
)

T = TypeVar("T")


def _one_of(value: Any, allowed: Collection[T], what: str) -> T:
    # CHECK constraints guard these columns; a value outside them means someone edited the database.
    if value not in allowed:
        raise StoreError(f"The session database holds an unknown {what}: {str(value)[:40]!r}.")
    return value  # type: ignore[no-any-return]


def new_session(
    key: str,
    *,
    agent_id: str,
    platform: str,
    chat_id: str,
    user_id: str | None,
    thread_id: str | None,
    now_ms: int,
) -> dict[str, Any]:
    """Column values of a fresh session; every other column has its server default or NULL."""
    return {
        "key": key,
        "agent_id": agent_id,
        "platform": platform,
        "chat_id": chat_id,
        "user_id": user_id,
        "thread_id": thread_id,
        "created_at": now_ms,
        "updated_at": now_ms,
    }


def fresh_values() -> dict[str, Any]:
    """What a reset clears: history bookkeeping, pins and the memory of the last answer."""
    return {
        "pin_profile": None,
        "pin_source": None,
        "pin_compaction": None,
        "compaction_count": 0,
        "message_count": 0,
        "last_model": None,
        "last_profile": None,
        "last_fallback": False,
    }


def session(row: Row[Any]) -> SessionRecord:
    m = row._mapping
    return SessionRecord(
        key=m["key"],
        agent_id=m["agent_id"],
        platform=m["platform"],
        chat_id=m["chat_id"],
        user_id=m["user_id"],
        thread_id=m["thread_id"],
        model_override=m["model_override"],
        model_source=_one_of(m["model_source"], (*MODEL_SOURCES, None), "model source"),
        pin_profile=m["pin_profile"],
        pin_source=_one_of(m["pin_source"], (*PIN_SOURCES, None), "pin source"),
        pin_compaction=m["pin_compaction"],
        compaction_count=m["compaction_count"],
        last_model=m["last_model"],
        last_profile=m["last_profile"],
        last_fallback=bool(m["last_fallback"]),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        message_count=m["message_count"],
    )


def _attachments(raw: Any) -> tuple[Attachment, ...]:
    try:
        return tuple(Attachment(media_type=a["media_type"], size=a["size"], name=a.get("name")) for a in raw)
    except (TypeError, KeyError, AttributeError) as exc:
        raise StoreError("The session database holds malformed attachment metadata.") from exc


def message(row: Row[Any]) -> StoredMessage:
    m = row._mapping
    return StoredMessage(
        id=m["id"],
        session_key=m["session_key"],
        role=_one_of(m["role"], MESSAGE_ROLES, "message role"),
        content=m["content"],
        attachments=_attachments(m["attachments"]),
        token_estimate=m["token_estimate"],
        created_at=m["created_at"],
    )


def as_new(row: Row[Any]) -> NewMessage:
    """A stored message as a message to insert again (compaction keeps it behind the summary)."""
    stored = message(row)
    return NewMessage(stored.role, stored.content, stored.attachments, stored.token_estimate)


def message_values(key: str, new: NewMessage, created_at: int) -> dict[str, Any]:
    attachments = [
        {"media_type": a.media_type, "size": a.size, **({"name": a.name} if a.name is not None else {})}
        for a in new.attachments
    ]
    return {
        "session_key": key,
        "role": new.role,
        "content": new.content,
        "attachments": attachments,
        "token_estimate": new.token_estimate,
        "created_at": created_at,
    }


def event(row: Row[Any]) -> FailoverEvent:
    m = row._mapping
    return FailoverEvent(
        at=m["at"],
        session_key=m["session_key"],
        ref=m["ref"],
        profile_id=m["profile_id"],
        reason=m["reason"],
        cooldown_until=m["cooldown_until"],
    )


def event_values(event: FailoverEvent) -> dict[str, Any]:
    return {
        "at": event.at,
        "session_key": event.session_key,
        "ref": event.ref,
        "profile_id": event.profile_id,
        "reason": event.reason,
        "cooldown_until": event.cooldown_until,
    }
