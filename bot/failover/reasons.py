"""The reasons a provider attempt can fail: the vocabulary shared by the classifier and the policy."""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """What went wrong in one attempt (docs/failover.md §5)."""

    AUTH = "auth"  # 401, 403, invalid/expired key, failed OAuth refresh
    RATE_LIMIT = "rate_limit"  # 429, overloaded, quota/usage limits, 529
    BILLING = "billing"  # 402, insufficient credits, credit balance too low
    TIMEOUT = "timeout"  # connect/read timeouts, deadline exceeded, connection reset, 408
    EMPTY = "empty"  # a 200 with no content
    SERVER = "server"  # 5xx without a rate/overload signal
    CONTEXT_OVERFLOW = "context_overflow"
    CONTENT_FILTER = "content_filter"
    BAD_REQUEST = "bad_request"
    CANCELLED = "cancelled"  # the user's own abort

    @property
    def label(self) -> str:
        """A few words for people: used in summaries, notes and status lines."""
        return _LABELS[self]


_LABELS: dict[Reason, str] = {
    Reason.AUTH: "auth error",
    Reason.RATE_LIMIT: "rate-limited",
    Reason.BILLING: "billing problem",
    Reason.TIMEOUT: "timed out",
    Reason.EMPTY: "empty reply",
    Reason.SERVER: "server error",
    Reason.CONTEXT_OVERFLOW: "conversation too long",
    Reason.CONTENT_FILTER: "blocked by the content filter",
    Reason.BAD_REQUEST: "request rejected",
    Reason.CANCELLED: "cancelled",
}
