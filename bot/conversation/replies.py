"""What a turn tells the user: its answer (with the fallback note), why a message cannot be a turn, a failure in
one plain sentence, an interrupted answer, a stop; command and error replies redacted of every secret."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from bot.chat import UNDELIVERED, Incoming, Reply
from bot.errors import DeliveryFailed, StreamInterrupted, TurnError
from bot.failover.engine import TurnResult

STOPPED = Reply("Stopped. Send /retry to ask again.", kind="error")
NOTHING_TO_RETRY = Reply("There is nothing to retry.", kind="error")


def unfit(msg: Incoming, *, max_chars: int) -> Reply | None:
    """Why a chat message cannot be a turn, if it cannot."""
    if len(msg.text) > max_chars:
        return Reply(f"That message is too long (at most {max_chars} characters).", kind="error")
    if not msg.text.strip() and not msg.images:
        return Reply("Send some text or an image.", kind="error")
    return None


def stop_reply(stopping: bool) -> Reply:
    """``/stop``'s answer: whether a turn of the session was running."""
    return Reply("Stopping the current answer." if stopping else "Nothing to stop.")


def answer_reply(result: TurnResult, *, fallback_note: bool) -> Reply:
    """The answer, and who gave it; the quiet note when a failure changed that (unless switched off)."""
    note = result.note if fallback_note else None
    return Reply(result.text, kind="answer", model=str(result.ref), profile=result.profile_id, note=note)


def failure_reply(exc: TurnError | DeliveryFailed) -> Reply:
    """A turn that ended without a complete answer: an interrupted answer keeps what was shown and says so; a
    broken-off delivery has been told to the user already (by the sink), so the reply only points to /retry."""
    if isinstance(exc, StreamInterrupted):
        text = f"{exc.partial_text}\n\n⚠ {exc}"
        return Reply(text, kind="interrupted", model=exc.ref, profile=exc.profile_id)
    return Reply(UNDELIVERED if isinstance(exc, DeliveryFailed) else str(exc), kind="error")


def redacted(replies: list[Reply], redact: Callable[[str], str] | None) -> list[Reply]:
    """Command and error replies (status views, failure summaries) never show a secret the process holds."""
    if redact is None:
        return replies
    return [
        dataclasses.replace(r, text=redact(r.text)) if r.kind in ("command", "error") else r for r in replies
    ]
