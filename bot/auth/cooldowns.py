"""Cooldown and billing-disable arithmetic on a profile's usage stats (spec §6); pure, ``now_ms`` passed in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from bot.auth.types import UsageStats
from bot.clock import HOUR_MS, MINUTE_MS
from bot.config.schema import Cooldowns
from bot.policy import Action, action_for
from bot.reasons import Reason

COOLDOWN_BASE_MS = MINUTE_MS
COOLDOWN_FACTOR = 5
COOLDOWN_MAX_MS = HOUR_MS
BILLING_REASON = Reason.BILLING.value


@dataclass(frozen=True)
class CooldownPolicy:
    """The tunable part of the formulas: ``auth.cooldowns`` of the config."""

    billing_backoff_hours: float = 5.0
    billing_backoff_hours_by_provider: Mapping[str, float] = field(default_factory=dict)
    billing_max_hours: float = 24.0
    failure_window_hours: float = 24.0

    @classmethod
    def from_config(cls, c: Cooldowns) -> CooldownPolicy:
        return cls(
            billing_backoff_hours=c.billing_backoff_hours,
            billing_backoff_hours_by_provider={
                p.strip().lower(): hours for p, hours in c.billing_backoff_hours_by_provider.items()
            },
            billing_max_hours=c.billing_max_hours,
            failure_window_hours=c.failure_window_hours,
        )

    def billing_base_hours(self, provider: str) -> float:
        return self.billing_backoff_hours_by_provider.get(provider.lower(), self.billing_backoff_hours)


def cooldown_ms(error_count: int) -> int:
    """``min(1h, 1m × 5^(errorCount−1))``: 1m, 5m, 25m, 1h, 1h, …"""
    exponent = max(0, error_count - 1)
    if exponent >= 3:  # 5^3 minutes already exceeds the cap; avoid huge powers for long-failing keys
        return COOLDOWN_MAX_MS
    return min(COOLDOWN_MAX_MS, COOLDOWN_BASE_MS * int(COOLDOWN_FACTOR**exponent))


def billing_disable_ms(billing_failures: int, *, provider: str, policy: CooldownPolicy) -> int:
    """``min(billingMaxHours, base × 2^(n−1))`` hours: 5h, 10h, 20h, 24h with the defaults."""
    exponent = min(max(0, billing_failures - 1), 64)  # 2^64 hours exceeds any sane cap
    hours = min(policy.billing_max_hours, policy.billing_base_hours(provider) * 2.0**exponent)
    return round(hours * HOUR_MS)


def _window_expired(stats: UsageStats, now_ms: int, policy: CooldownPolicy) -> bool:
    if stats.last_failure_at is None:
        return False
    return now_ms - stats.last_failure_at >= policy.failure_window_hours * HOUR_MS


def _later(current: int | None, candidate: int, now_ms: int) -> int:
    """A new failure never shortens a cooldown that is still running (e.g. one set by a long Retry-After)."""
    if current is not None and current > now_ms:
        return max(current, candidate)
    return candidate


def record_failure(
    stats: UsageStats,
    reason: Reason,
    *,
    provider: str,
    now_ms: int,
    policy: CooldownPolicy,
    retry_after_ms: int | None = None,
) -> UsageStats:
    """The stats after one failure of ``reason``; only reasons the policy blames on the credential are valid."""
    action = action_for(reason)
    if action not in (Action.COOLDOWN_NEXT_PROFILE, Action.DISABLE_NEXT_PROFILE):
        raise ValueError(f"{reason.value} is not a credential failure and has no cooldown")
    if _window_expired(stats, now_ms, policy):
        stats = replace(stats, error_count=0, failure_counts={})
    counts = dict(stats.failure_counts)
    counts[reason.value] = counts.get(reason.value, 0) + 1
    if action is Action.DISABLE_NEXT_PROFILE:
        until = now_ms + billing_disable_ms(counts[reason.value], provider=provider, policy=policy)
        return replace(
            stats,
            failure_counts=counts,
            disabled_until=_later(stats.disabled_until, until, now_ms),
            disabled_reason=reason.value,
            last_failure_at=now_ms,
        )
    error_count = stats.error_count + 1
    until = now_ms + cooldown_ms(error_count)
    if retry_after_ms is not None and retry_after_ms > 0:
        until = max(until, now_ms + retry_after_ms)  # the provider knows best; only ever lengthens
    return replace(
        stats,
        error_count=error_count,
        failure_counts=counts,
        cooldown_until=_later(stats.cooldown_until, until, now_ms),
        last_failure_at=now_ms,
    )


def failed_since(stats: UsageStats, now_ms: int) -> bool:
    """Whether a failure was recorded after ``now_ms``."""
    return stats.last_failure_at is not None and stats.last_failure_at > now_ms


def record_success(stats: UsageStats, *, now_ms: int) -> UsageStats:
    """A successful call: used now, every counter and cooldown cleared.

    Unless a failure was recorded after ``now_ms``: success bookkeeping is written in the background and by
    other processes too, so it can land after a newer failure, which must stand (its cooldown).
    """
    if failed_since(stats, now_ms):
        return replace(stats, last_used=max(stats.last_used or 0, now_ms))
    return replace(
        stats,
        last_used=now_ms,
        error_count=0,
        failure_counts={},
        cooldown_until=None,
        disabled_until=None,
        disabled_reason=None,
    )


def clear_cooldown(stats: UsageStats) -> UsageStats:
    """An operator's reset: cooldown, billing disable and the counters behind them; ``lastUsed`` stays."""
    # The counters go too, or the next failure would jump straight back to a long cooldown.
    return replace(
        stats,
        error_count=0,
        failure_counts={},
        cooldown_until=None,
        disabled_until=None,
        disabled_reason=None,
    )


def remaining_ms(stats: UsageStats, now_ms: int) -> int:
    """How long until the profile is usable again; 0 when it is usable now."""
    until = stats.unavailable_until(now_ms)
    return 0 if until is None else until - now_ms


_UNITS = (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1))


def format_duration(ms: int) -> str:
    """A short duration for people, at most two units: ``59s``, ``4m12s``, ``1h``, ``2h30m``, ``1d3h``."""
    # Round up so a profile that is still cooling never shows "0s".
    seconds = max(0, -(-ms // 1000))
    if seconds == 0:
        return "0s"
    parts: list[str] = []
    for unit, size in _UNITS:
        value, seconds = divmod(seconds, size)
        if parts:
            if value:
                parts.append(f"{value}{unit}")
            break
        if value:
            parts.append(f"{value}{unit}")
    return "".join(parts)
