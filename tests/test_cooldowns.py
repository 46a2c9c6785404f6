"""The cooldown and billing-disable formulas of docs/failover.md §5, step by step on a fake clock."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bot.auth.cooldowns import (
    CooldownPolicy,
    clear_cooldown,
    record_failure,
    record_success,
)
from bot.auth.types import UsageStats
from bot.clock import HOUR_MS, MINUTE_MS
from bot.config.schema import Cooldowns
from bot.failover.reasons import Reason
from tests.fakes.clock import FakeClock

POLICY = CooldownPolicy()


def fail(
    stats: UsageStats, reason: Reason, clock: FakeClock, retry_after_ms: int | None = None
) -> UsageStats:
    return record_failure(
        stats,
        reason,
        provider="anthropic",
        now_ms=clock.now_ms(),
        policy=POLICY,
        retry_after_ms=retry_after_ms,
    )


@pytest.mark.parametrize("reason", [Reason.RATE_LIMIT, Reason.AUTH, Reason.TIMEOUT, Reason.EMPTY])
def test_cooldown_steps_1m_5m_25m_1h_1h(clock: FakeClock, reason: Reason) -> None:
    """Each failure after the previous cooldown ended grows the cooldown by ×5 up to the 1h cap."""
    stats = UsageStats()
    expected = [1 * MINUTE_MS, 5 * MINUTE_MS, 25 * MINUTE_MS, HOUR_MS, HOUR_MS, HOUR_MS]
    for n, length in enumerate(expected, start=1):
        stats = fail(stats, reason, clock)
        assert stats.cooldown_until == clock.now_ms() + length
        assert stats.error_count == n
        assert stats.failure_counts == {reason.value: n}
        assert stats.last_failure_at == clock.now_ms()
        assert stats.disabled_until is None
        clock.advance(ms=length)


def test_billing_steps_5h_10h_20h_24h(clock: FakeClock) -> None:
    """Billing failures disable the profile for 5h, 10h, 20h, then the 24h cap, without touching errorCount."""
    stats = UsageStats()
    for n, hours in enumerate([5, 10, 20, 24], start=1):
        stats = fail(stats, Reason.BILLING, clock)
        assert stats.disabled_until == clock.now_ms() + hours * HOUR_MS
        assert stats.disabled_reason == "billing"
        assert stats.failure_counts == {"billing": n}
        assert stats.error_count == 0
        assert stats.cooldown_until is None
        clock.advance(hours=hours)
    # A full 24h disable is also a full failure window: the next billing failure starts over at 5h.
    stats = fail(stats, Reason.BILLING, clock)
    assert stats.disabled_until == clock.now_ms() + 5 * HOUR_MS


def test_billing_cap_while_failing_within_the_window(clock: FakeClock) -> None:
    """Billing failures each as its disable ends, within a (48h) window, stay at the 24h cap."""
    policy = CooldownPolicy(failure_window_hours=48)
    stats = UsageStats()
    for hours in [5, 10, 20, 24, 24, 24]:
        stats = record_failure(stats, Reason.BILLING, provider="x", now_ms=clock.now_ms(), policy=policy)
        assert stats.disabled_until == clock.now_ms() + hours * HOUR_MS
        clock.advance(hours=hours)


def test_billing_base_per_provider(clock: FakeClock) -> None:
    """``billingBackoffHoursByProvider`` replaces the base for that provider only."""
    policy = CooldownPolicy(billing_backoff_hours_by_provider={"openrouter": 1.0}, billing_max_hours=3.0)
    assert policy.billing_base_hours("openrouter") == 1.0
    assert policy.billing_base_hours("anthropic") == 5.0
    stats = UsageStats()
    for hours in (1, 2, 3, 3):
        stats = record_failure(
            stats, Reason.BILLING, provider="openrouter", now_ms=clock.now_ms(), policy=policy
        )
        assert stats.disabled_until == clock.now_ms() + hours * HOUR_MS
        clock.advance(hours=hours)
    other = record_failure(
        UsageStats(), Reason.BILLING, provider="anthropic", now_ms=clock.now_ms(), policy=policy
    )
    assert other.disabled_until == clock.now_ms() + 3 * HOUR_MS  # 5h base, capped at 3h


def test_counters_reset_after_the_failure_window(clock: FakeClock) -> None:
    """A failure 24h after the last one starts again at 1m; one just inside the window keeps growing."""
    stats = UsageStats()
    for minutes in (1, 5, 25):  # each failure after the previous cooldown: 3 steps up the ladder
        stats = fail(stats, Reason.RATE_LIMIT, clock)
        clock.advance(minutes=minutes)
    stats = fail(stats, Reason.BILLING, clock)
    clock.advance(hours=24)
    clock.advance(ms=-1)
    inside = fail(stats, Reason.RATE_LIMIT, clock)
    assert inside.error_count == 4
    assert inside.cooldown_until == clock.now_ms() + HOUR_MS
    clock.advance(ms=1)
    reset = fail(stats, Reason.RATE_LIMIT, clock)
    assert reset.error_count == 1
    assert reset.failure_counts == {"rate_limit": 1}  # billing's count went with the reset
    assert reset.cooldown_until == clock.now_ms() + MINUTE_MS


def test_window_follows_the_configured_hours(clock: FakeClock) -> None:
    """``failureWindowHours`` sets the window for both kinds of counter."""
    policy = CooldownPolicy(failure_window_hours=1.0)
    stats = record_failure(UsageStats(), Reason.BILLING, provider="x", now_ms=clock.now_ms(), policy=policy)
    clock.advance(hours=5)  # the disable is over, and 5 windows have passed
    stats = record_failure(stats, Reason.BILLING, provider="x", now_ms=clock.now_ms(), policy=policy)
    assert stats.failure_counts == {"billing": 1}
    assert stats.disabled_until == clock.now_ms() + 5 * HOUR_MS


def test_success_clears_everything_but_history(clock: FakeClock) -> None:
    """Success sets lastUsed and clears counters, cooldown and the billing disable."""
    stats = fail(fail(UsageStats(), Reason.RATE_LIMIT, clock), Reason.BILLING, clock)
    clock.advance(minutes=2)
    ok = record_success(stats, started_ms=clock.now_ms() - 1_000, now_ms=clock.now_ms())
    assert ok.last_used == clock.now_ms()
    assert (ok.error_count, ok.failure_counts) == (0, {})
    assert (ok.cooldown_until, ok.disabled_until, ok.disabled_reason) == (None, None, None)
    again = fail(ok, Reason.RATE_LIMIT, clock)
    assert again.cooldown_until == clock.now_ms() + MINUTE_MS


def test_success_started_before_the_last_failure_clears_nothing(clock: FakeClock) -> None:
    """docs/failover.md §6: a call that started before the latest failure only moves lastUsed: the failure's state stands,
    however late the success is booked."""
    started = clock.now_ms()
    clock.advance(ms=1)
    failed = fail(UsageStats(last_used=started - 10), Reason.RATE_LIMIT, clock)
    clock.advance(seconds=30)  # the slow answer finishes long after the failure
    late = record_success(failed, started_ms=started, now_ms=clock.now_ms())
    assert late == replace(failed, last_used=clock.now_ms())
    same_ms = record_success(failed, started_ms=started + 1, now_ms=clock.now_ms())
    assert same_ms.cooldown_until is None  # recorded at the very ms the call started: before it, cleared


def test_retry_after_lengthens_but_never_shortens(clock: FakeClock) -> None:
    """Retry-After raises the cooldown to at least its length and never below the formula."""
    long = fail(UsageStats(), Reason.RATE_LIMIT, clock, retry_after_ms=10 * MINUTE_MS)
    assert long.cooldown_until == clock.now_ms() + 10 * MINUTE_MS
    short = fail(UsageStats(), Reason.RATE_LIMIT, clock, retry_after_ms=30_000)
    assert short.cooldown_until == clock.now_ms() + MINUTE_MS
    billing = fail(UsageStats(), Reason.BILLING, clock, retry_after_ms=MINUTE_MS)
    assert billing.disabled_until == clock.now_ms() + 5 * HOUR_MS


def test_a_new_failure_never_shortens_a_running_cooldown(clock: FakeClock) -> None:
    """A 2h Retry-After still holds when a failure arrives while it runs (one burst: no new step either)."""
    stats = fail(UsageStats(), Reason.RATE_LIMIT, clock, retry_after_ms=2 * HOUR_MS)
    until = stats.cooldown_until
    clock.advance(minutes=1)
    stats = fail(stats, Reason.RATE_LIMIT, clock)
    assert stats.cooldown_until == until
    assert stats.error_count == 1
    assert stats.last_failure_at == clock.now_ms()


@pytest.mark.parametrize(
    "reason",
    [Reason.SERVER, Reason.BAD_REQUEST, Reason.CONTEXT_OVERFLOW, Reason.CONTENT_FILTER, Reason.CANCELLED],
)
def test_reasons_that_do_not_blame_the_key_are_rejected(clock: FakeClock, reason: Reason) -> None:
    """Recording a non-credential failure is a programming error, not a silent cooldown."""
    with pytest.raises(ValueError, match=reason.value):
        fail(UsageStats(), reason, clock)


def test_clear_cooldown_keeps_last_used(clock: FakeClock) -> None:
    """An operator's clear removes cooldown, disable and counters but keeps lastUsed."""
    stats = fail(fail(UsageStats(last_used=123), Reason.AUTH, clock), Reason.BILLING, clock)
    cleared = clear_cooldown(stats)
    assert cleared.last_used == 123
    assert (cleared.cooldown_until, cleared.disabled_until, cleared.disabled_reason) == (None, None, None)
    assert (cleared.error_count, cleared.failure_counts) == (0, {})
    assert cleared.unavailable_until(clock.now_ms()) is None


def test_a_profile_comes_back_at_the_later_of_cooldown_and_disable(clock: FakeClock) -> None:
    """A profile both cooling and disabled comes back when both have ended."""
    now = clock.now_ms()
    stats = UsageStats(cooldown_until=now + 1000, disabled_until=now + 5000)
    assert stats.unavailable_until(now) == now + 5000
    assert stats.unavailable_until(now + 5000) is None
    assert UsageStats(cooldown_until=now - 1).unavailable_until(now) is None


def test_policy_from_config() -> None:
    """The config's ``auth.cooldowns`` becomes the policy field by field."""
    c = Cooldowns(
        billing_backoff_hours=2,
        billing_backoff_hours_by_provider={"a": 1},
        billing_max_hours=8,
        failure_window_hours=12,
    )
    assert CooldownPolicy.from_config(c) == CooldownPolicy(2.0, {"a": 1.0}, 8.0, 12.0)
    assert CooldownPolicy.from_config(Cooldowns()) == CooldownPolicy()
    tuned = Cooldowns(scope="profile", backoff_minutes=(0.5, 2))
    assert CooldownPolicy.from_config(tuned) == CooldownPolicy(scope="profile", backoff_minutes=(0.5, 2.0))
