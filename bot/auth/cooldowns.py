"""Cooldown and billing-disable arithmetic on a profile's usage stats (docs/failover.md §5–§6); pure, ``now_ms`` passed in.

A failure cools one **scope**: the (profile, model) pair for rate limits, timeouts and empty replies, the
whole profile for auth and billing failures. Concurrent attempts meet here: a failure while its scope is
already cooling (or disabled) is the same burst and never escalates, and a success clears only what was
recorded before its attempt started.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from bot.auth.types import ModelStats, UsageStats
from bot.clock import HOUR_MS, MINUTE_MS
from bot.config.schema import Cooldowns
from bot.failover.policy import Action, action_for
from bot.failover.reasons import Reason

Scope = Literal["model", "profile"]
DEFAULT_LADDER_MINUTES: tuple[float, ...] = (1.0, 5.0, 25.0, 60.0)
# Failures that say something about one model's use of a key (its rate limit, its slowness), not the key.
PAIR_REASONS = frozenset({Reason.RATE_LIMIT, Reason.TIMEOUT, Reason.EMPTY})
BILLING_REASON = Reason.BILLING.value


@dataclass(frozen=True)
class CooldownPolicy:
    """The tunable part of the formulas: ``auth.cooldowns`` of the config."""

    billing_backoff_hours: float = 5.0
    billing_backoff_hours_by_provider: Mapping[str, float] = field(default_factory=dict)
    billing_max_hours: float = 24.0
    failure_window_hours: float = 24.0
    backoff_minutes: tuple[float, ...] = DEFAULT_LADDER_MINUTES
    scope: Scope = "model"

    @classmethod
    def from_config(cls, c: Cooldowns) -> CooldownPolicy:
        return cls(
            billing_backoff_hours=c.billing_backoff_hours,
            billing_backoff_hours_by_provider={
                p.strip().lower(): hours for p, hours in c.billing_backoff_hours_by_provider.items()
            },
            billing_max_hours=c.billing_max_hours,
            failure_window_hours=c.failure_window_hours,
            backoff_minutes=tuple(c.backoff_minutes),
            scope=c.scope,
        )

    def billing_base_hours(self, provider: str) -> float:
        return self.billing_backoff_hours_by_provider.get(provider.lower(), self.billing_backoff_hours)

    def scope_of(self, reason: Reason) -> Scope:
        """What a failure of ``reason`` cools; ``scope: "profile"`` puts every reason on the profile."""
        return "model" if self.scope == "model" and reason in PAIR_REASONS else "profile"


def cooldown_ms(error_count: int, ladder: Sequence[float] = DEFAULT_LADDER_MINUTES) -> int:
    """The ladder's step for the nth failure in a row, the last step repeating: 1m, 5m, 25m, 1h, 1h, …"""
    step = ladder[min(max(error_count, 1), len(ladder)) - 1]
    return round(step * MINUTE_MS)


def billing_disable_ms(billing_failures: int, *, provider: str, policy: CooldownPolicy) -> int:
    """``min(billingMaxHours, base × 2^(n−1))`` hours: 5h, 10h, 20h, 24h with the defaults."""
    exponent = min(max(0, billing_failures - 1), 64)  # 2^64 hours exceeds any sane cap
    hours = min(policy.billing_max_hours, policy.billing_base_hours(provider) * 2.0**exponent)
    return round(hours * HOUR_MS)


def _window_expired(last_failure_at: int | None, now_ms: int, policy: CooldownPolicy) -> bool:
    if last_failure_at is None:
        return False
    return now_ms - last_failure_at >= policy.failure_window_hours * HOUR_MS


def _running(until: int | None, now_ms: int) -> bool:
    return until is not None and until > now_ms


def _latest(previous: int | None, now_ms: int) -> int:
    return now_ms if previous is None else max(previous, now_ms)


def _cool(
    until: int | None,
    error_count: int,
    *,
    now_ms: int,
    policy: CooldownPolicy,
    retry_after_ms: int | None,
) -> tuple[int, int, bool]:
    """``(cooldownUntil, errorCount, escalated)`` of a scope after one more failure.

    While the scope is still cooling, the failure belongs to the same burst (other chats or processes hit
    the limit together, or started before it was recorded): the count stays, and the cooldown may only
    grow, to a longer Retry-After. Otherwise the count grows and the ladder gives the next step.
    """
    wanted = now_ms + retry_after_ms if retry_after_ms is not None and retry_after_ms > 0 else None
    if until is not None and until > now_ms:
        return (until if wanted is None else max(until, wanted)), error_count, False
    error_count += 1
    step = now_ms + cooldown_ms(error_count, policy.backoff_minutes)
    return (step if wanted is None else max(step, wanted)), error_count, True


def record_failure(
    stats: UsageStats,
    reason: Reason,
    *,
    provider: str,
    now_ms: int,
    policy: CooldownPolicy,
    model: str | None = None,
    retry_after_ms: int | None = None,
) -> UsageStats:
    """The stats after one failure of ``reason`` calling ``model`` (None: not known, the profile's scope).

    Only reasons the policy blames on the credential are valid.
    """
    action = action_for(reason)
    if action not in (Action.COOLDOWN_NEXT_PROFILE, Action.DISABLE_NEXT_PROFILE):
        raise ValueError(f"{reason.value} is not a credential failure and has no cooldown")
    if action is Action.DISABLE_NEXT_PROFILE:
        return _disable(stats, reason, provider=provider, now_ms=now_ms, policy=policy)
    if model is not None and policy.scope_of(reason) == "model":
        pair = stats.model(model)
        expired = _window_expired(pair.last_failure_at, now_ms, policy) and not _running(
            pair.cooldown_until, now_ms
        )
        count = 0 if expired else pair.error_count
        until, count, _ = _cool(
            pair.cooldown_until, count, now_ms=now_ms, policy=policy, retry_after_ms=retry_after_ms
        )
        cooled = replace(
            pair,
            cooldown_until=until,
            error_count=count,
            last_failure_at=_latest(pair.last_failure_at, now_ms),
        )
        return replace(stats, models={**stats.models, model: cooled})
    if _window_expired(stats.last_failure_at, now_ms, policy) and not _running(stats.cooldown_until, now_ms):
        stats = replace(stats, error_count=0, failure_counts={})
    until, count, escalated = _cool(
        stats.cooldown_until, stats.error_count, now_ms=now_ms, policy=policy, retry_after_ms=retry_after_ms
    )
    counts = dict(stats.failure_counts)
    if escalated:
        counts[reason.value] = counts.get(reason.value, 0) + 1
    return replace(
        stats,
        error_count=count,
        failure_counts=counts,
        cooldown_until=until,
        last_failure_at=_latest(stats.last_failure_at, now_ms),
    )


def _disable(
    stats: UsageStats, reason: Reason, *, provider: str, now_ms: int, policy: CooldownPolicy
) -> UsageStats:
    """Billing: disable the profile for hours; a failure while it is disabled is the same incident."""
    last = _latest(stats.last_failure_at, now_ms)
    if _running(stats.disabled_until, now_ms):
        return replace(stats, last_failure_at=last)
    if _window_expired(stats.last_failure_at, now_ms, policy):
        stats = replace(stats, error_count=0, failure_counts={})
    counts = dict(stats.failure_counts)
    counts[reason.value] = counts.get(reason.value, 0) + 1
    until = now_ms + billing_disable_ms(counts[reason.value], provider=provider, policy=policy)
    return replace(
        stats, failure_counts=counts, disabled_until=until, disabled_reason=reason.value, last_failure_at=last
    )


def _after(last_failure_at: int | None, started_ms: int) -> bool:
    return last_failure_at is not None and last_failure_at > started_ms


def failed_after(stats: UsageStats, started_ms: int, model: str | None = None) -> bool:
    """Whether the profile (or the pair with ``model``) recorded a failure after ``started_ms``."""
    return _after(stats.last_failure_at, started_ms) or (
        model is not None and _after(stats.model(model).last_failure_at, started_ms)
    )


def record_success(
    stats: UsageStats, *, started_ms: int, now_ms: int, model: str | None = None
) -> UsageStats:
    """A call to ``model`` that started at ``started_ms`` answered at ``now_ms``.

    It clears the failure state of the profile and of that pair, but only what was recorded before the
    attempt started: a newer failure (another chat's, another process's) stands, however late this
    success is booked. ``lastUsed`` only moves forward; other models' pairs are not this call's business.
    """
    out = replace(stats, last_used=now_ms if stats.last_used is None else max(stats.last_used, now_ms))
    if not _after(stats.last_failure_at, started_ms):
        out = _clear_profile(out)
    pair = stats.models.get(model) if model is not None else None
    if model is not None and pair is not None and not _after(pair.last_failure_at, started_ms):
        out = replace(out, models=_with_pair(stats.models, model, ModelStats(extra=pair.extra)))
    return out


def _clear_profile(stats: UsageStats) -> UsageStats:
    """The profile-wide counters, cooldown and disable cleared; ``lastUsed``, ``lastFailureAt`` and pairs stay."""
    return replace(
        stats,
        error_count=0,
        failure_counts={},
        cooldown_until=None,
        disabled_until=None,
        disabled_reason=None,
    )


def _with_pair(models: Mapping[str, ModelStats], model: str, pair: ModelStats) -> dict[str, ModelStats]:
    """``models`` with the pair replaced; a pair left with nothing to say is dropped."""
    rest = {m: p for m, p in models.items() if m != model}
    return {**rest, model: pair} if pair != ModelStats() else rest


def clear_cooldown(stats: UsageStats, model: str | None = None) -> UsageStats:
    """An operator's reset: cooldown, billing disable and the counters behind them; ``lastUsed`` stays.

    Without ``model``, the profile and every pair; with it, that pair only.
    """
    # The counters go too, or the next failure would jump straight back to a long cooldown.
    if model is not None:
        pair = stats.model(model)
        return replace(stats, models=_with_pair(stats.models, model, ModelStats(extra=pair.extra)))
    models: dict[str, ModelStats] = {}
    for name, pair in stats.models.items():
        models = _with_pair(models, name, ModelStats(extra=pair.extra))
    return _clear_profile(replace(stats, models=models))
