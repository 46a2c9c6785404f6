"""A turn's answer saved: the user's message and the answer, with the session's bookkeeping, in one write."""

from __future__ import annotations

import dataclasses

from bot.chat import Incoming
from bot.conversation.compaction import estimate_tokens
from bot.conversation.history import HistoryCache
from bot.conversation.sessions import Sessions
from bot.failover.engine import TurnResult
from bot.store.types import Attachment, NewMessage, SessionPatch, SessionRecord


def turn_patch(session: SessionRecord, result: TurnResult) -> SessionPatch:
    """Who answered, and the auto pin the engine chose when it differs from the session's (or was set before
    the last compaction, which re-picks it)."""
    patch = SessionPatch(
        last_model=str(result.ref),
        last_profile=result.profile_id,
        last_fallback=result.fell_back or result.rotated,
    )
    pin = result.pin
    if pin is None or pin.source != "auto":
        return patch
    if pin.profile_id == session.pin_profile and session.pin_compaction == session.compaction_count:
        return patch
    return dataclasses.replace(
        patch, pin_profile=pin.profile_id, pin_source="auto", pin_compaction=session.compaction_count
    )


async def save_turn(
    sessions: Sessions,
    history: HistoryCache,
    session: SessionRecord,
    msg: Incoming,
    result: TurnResult,
    *,
    now_ms: int,
) -> None:
    """Both messages and the patch in one transaction (which also gives the session's lease back); the
    history kept for the session grows with them."""
    attachments = tuple(Attachment(i.media_type, len(i.data)) for i in msg.images)
    stored = await sessions.save(
        session.key,
        [
            NewMessage("user", msg.text, attachments, estimate_tokens(msg.text)),
            NewMessage("assistant", result.text, (), estimate_tokens(result.text)),
        ],
        now_ms=now_ms,
        patch=turn_patch(session, result),
    )
    history.appended(session, stored, now_ms=now_ms)
