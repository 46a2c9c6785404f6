"""The failover policy: a table from failure reason to what the engine does next (docs/failover.md §5)."""

from __future__ import annotations

from enum import StrEnum

from bot.failover.reasons import Reason


class Action(StrEnum):
    """What a failed attempt advances."""

    COOLDOWN_NEXT_PROFILE = "cooldown_next_profile"  # cooldown, then the provider's next profile
    DISABLE_NEXT_PROFILE = "disable_next_profile"  # billing: disable for hours, try the next profile
    RETRY_ONCE_THEN_NEXT_MODEL = "retry_once_then_next_model"  # the key is not at fault: no cooldown
    COMPACT_AND_RETRY = "compact_and_retry"  # the session is too long: compact once, then retry the turn
    STOP = "stop"  # the turn ends with a plain sentence to the user


POLICY: dict[Reason, Action] = {
    Reason.AUTH: Action.COOLDOWN_NEXT_PROFILE,
    Reason.RATE_LIMIT: Action.COOLDOWN_NEXT_PROFILE,
    Reason.TIMEOUT: Action.COOLDOWN_NEXT_PROFILE,
    Reason.EMPTY: Action.COOLDOWN_NEXT_PROFILE,
    Reason.BILLING: Action.DISABLE_NEXT_PROFILE,
    Reason.SERVER: Action.RETRY_ONCE_THEN_NEXT_MODEL,
    Reason.CONTEXT_OVERFLOW: Action.COMPACT_AND_RETRY,
    Reason.CONTENT_FILTER: Action.STOP,
    Reason.BAD_REQUEST: Action.STOP,
    Reason.CANCELLED: Action.STOP,
}


def action_for(reason: Reason) -> Action:
    """The action for a reason; every reason has one (a test walks the enum)."""
    return POLICY[reason]


def records_profile_failure(reason: Reason) -> bool:
    """Whether the failure is the credential's fault and so goes into its usage stats."""
    return POLICY[reason] in (Action.COOLDOWN_NEXT_PROFILE, Action.DISABLE_NEXT_PROFILE)


STOP_MESSAGES: dict[Reason, str] = {
    Reason.CONTEXT_OVERFLOW: (
        "This conversation is too long for the model, even after compacting it. Start a new one with /new."
    ),
    Reason.CONTENT_FILTER: "The model's content filter blocked this request.",
    Reason.BAD_REQUEST: "The model rejected this request as invalid.",
    Reason.CANCELLED: "Cancelled.",
}

# When the one compaction could not happen (too little history to summarise, or the summary call failed).
OVERFLOW_NOT_COMPACTED = (
    "This message is too long for the model together with the conversation so far, and the conversation "
    "could not be compacted. Send a shorter message, or start a new conversation with /new."
)
