"""Translation between database rows and the store's typed values, checking what the database hands back.

Plain Python, for both the SQLAlchemy bodies (``sql_ops``) and the SQL text of a SQLite turn (``sqlite_turn``).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Sequence
from typing import Any, Final, TypeVar

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

# The columns to SELECT (or RETURN) for each value, in the order its converter below unpacks the row: by
# position, because row._mapping lookups cost more than SQLite takes to find the row (history reads 200 at a
# time). ``sql_ops`` selects the SQLAlchemy columns of these names, ``sqlite_turn`` writes them out.
SESSION_FIELDS: Final = (
    "key",
    "agent_id",
    "platform",
    "chat_id",
    "user_id",
    "thread_id",
    "model_override",
    "model_source",
    "pin_profile",
    "pin_source",
    "pin_compaction",
    "compaction_count",
    "last_model",
    "last_profile",
    "last_fallback",
    "created_at",
    "updated_at",
    "message_count",
)
MESSAGE_FIELDS: Final = (
    "id",
    "session_key",
    "role",
    "content",
    "attachments",
    "token_estimate",
    "created_at",
)
EVENT_FIELDS: Final = ("at", "session_key", "ref", "profile_id", "reason", "cooldown_until")


# What the nullable source columns may hold, built once: a session is read at the start of every message.
_MODEL_SOURCES: Final = (*MODEL_SOURCES, None)
_PIN_SOURCES: Final = (*PIN_SOURCES, None)


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


def session(row: Sequence[Any]) -> SessionRecord:
    """A row of ``SESSION_COLUMNS``."""
    (
        key,
        agent_id,
        platform,
        chat_id,
        user_id,
        thread_id,
        model_override,
        model_source,
        pin_profile,
        pin_source,
        pin_compaction,
        compaction_count,
        last_model,
        last_profile,
        last_fallback,
        created_at,
        updated_at,
        message_count,
    ) = row
    return SessionRecord(
        key=key,
        agent_id=agent_id,
        platform=platform,
        chat_id=chat_id,
        user_id=user_id,
        thread_id=thread_id,
        model_override=model_override,
        model_source=_one_of(model_source, _MODEL_SOURCES, "model source"),
        pin_profile=pin_profile,
        pin_source=_one_of(pin_source, _PIN_SOURCES, "pin source"),
        pin_compaction=pin_compaction,
        compaction_count=compaction_count,
        last_model=last_model,
        last_profile=last_profile,
        last_fallback=bool(last_fallback),
        created_at=created_at,
        updated_at=updated_at,
        message_count=message_count,
    )


def _attachments(raw: Any) -> tuple[Attachment, ...]:
    # SQLite hands back the JSON text; on PostgreSQL the asyncpg codec SQLAlchemy installs decoded it already.
    if raw in ("[]", []):
        return ()
    try:
        decoded = json.loads(raw) if isinstance(raw, str) else raw
        return tuple(
            Attachment(media_type=a["media_type"], size=a["size"], name=a.get("name")) for a in decoded
        )
    except (TypeError, KeyError, AttributeError, ValueError) as exc:
        raise StoreError("The session database holds malformed attachment metadata.") from exc


def message(row: Sequence[Any]) -> StoredMessage:
    """A row of ``MESSAGE_COLUMNS``."""
    id_, session_key, role, content, attachments, token_estimate, created_at = row
    return StoredMessage(
        id=id_,
        session_key=session_key,
        role=_one_of(role, MESSAGE_ROLES, "message role"),
        content=content,
        attachments=_attachments(attachments),
        token_estimate=token_estimate,
        created_at=created_at,
    )


def as_new(row: Sequence[Any]) -> NewMessage:
    """A row of ``MESSAGE_COLUMNS`` as a message to insert again (compaction keeps it behind the summary)."""
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


def event(row: Sequence[Any]) -> FailoverEvent:
    """A row of ``EVENT_COLUMNS``."""
    at, session_key, ref, profile_id, reason, cooldown_until = row
    return FailoverEvent(
        at=at,
        session_key=session_key,
        ref=ref,
        profile_id=profile_id,
        reason=reason,
        cooldown_until=cooldown_until,
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
