"""What the failover engine tells the user: the waiting line, the message when every candidate failed, and the
quiet note under an answer another model or profile gave (docs/failover.md §8)."""

from __future__ import annotations

from collections.abc import Sequence

from bot.auth.availability import ProfileAvailability
from bot.clock import format_wait
from bot.errors import AttemptRecord
from bot.failover.reasons import Reason
from bot.models.refs import ModelRef

_WAITING_FOR = {
    Reason.RATE_LIMIT.value: "a rate limit",
    Reason.TIMEOUT.value: "a cooldown after a timeout",
    Reason.EMPTY.value: "a cooldown after an empty reply",
    Reason.AUTH.value: "a cooldown after an auth error",
    Reason.BILLING.value: "a billing disable",
}


def waiting_text(ms: int, rest: ProfileAvailability) -> str:
    """The status line of a waiting turn: ``waiting 12s for a rate limit…``."""
    # The file keeps no reason per (profile, model) pair; rate limits are what cools a pair, nearly always.
    reason = rest.reason or (Reason.RATE_LIMIT.value if rest.scope == "model" else None)
    return f"waiting {format_wait(ms)} for {_WAITING_FOR.get(reason or '', 'a cooldown')}…"


def summarize(attempts: Sequence[AttemptRecord], soonest_ms: int | None, now_ms: int) -> str:
    """The one message sent when every candidate failed."""
    by_ref: dict[str, list[str]] = {}
    for attempt in attempts:
        if attempt.skipped:
            what = attempt.detail or "skipped"
        else:
            label = attempt.reason.label if attempt.reason else "failed"
            what = f"{attempt.profile_id} {label}" if attempt.profile_id else label
        by_ref.setdefault(attempt.ref, []).append(what)
    parts = [f"{ref} ({'; '.join(items)})" for ref, items in by_ref.items()]
    text = "All models failed: " + ", ".join(parts) + "."
    if soonest_ms is not None and soonest_ms > now_ms:
        text += f" The first profile is available again in {format_wait(soonest_ms - now_ms)}."
    return text


def fallback_note(
    answered: ModelRef, profile_id: str, chain_head: ModelRef, attempts: Sequence[AttemptRecord]
) -> str | None:
    """The quiet line under a reply that another model or profile gave because of a failure.

    A rotation names the failure that moved the turn off its first profile; a fallback names the last
    failure before it, the one that exhausted the previous model.
    """
    failures = [a for a in attempts if a.reason is not None or a.skipped]
    if not failures:
        return None
    if answered == chain_head:
        first = failures[0]
        return f"↪ answered by {answered} ({profile_id}) — {first.profile_id or first.ref} {_failure_label(first)}"
    # The answering model may have failed on another profile first; the note is about the model before it.
    last = next((a for a in reversed(failures) if a.ref != str(answered)), failures[-1])
    return f"↪ answered by {answered} — {last.ref.split('/', 1)[0]} {_failure_label(last)}"


def _failure_label(attempt: AttemptRecord) -> str:
    if attempt.reason is not None:
        return attempt.reason.label
    return "cooling down"
