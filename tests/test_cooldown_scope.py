"""docs/failover.md §6 on the fake clock: what a failure cools, the configurable ladder, bursts, late successes."""

from __future__ import annotations

import pytest

from bot.auth.cooldowns import CooldownPolicy, clear_cooldown, cooldown_ms, record_failure, record_success
from bot.auth.types import ModelStats, UsageStats
from bot.clock import MINUTE_MS
from bot.failover.reasons import Reason
from tests.fakes.clock import FakeClock

POLICY = CooldownPolicy()
GPT, MINI = "gpt-5.2", "gpt-5-mini"


def fail(
    stats: UsageStats,
    reason: Reason,
    clock: FakeClock,
    *,
    model: str | None = GPT,
    policy: CooldownPolicy = POLICY,
    retry_after_ms: int | None = None,
) -> UsageStats:
    return record_failure(
        stats,
        reason,
        provider="openai",
        now_ms=clock.now_ms(),
        policy=policy,
        model=model,
        retry_after_ms=retry_after_ms,
    )


@pytest.mark.parametrize("reason", [Reason.RATE_LIMIT, Reason.TIMEOUT, Reason.EMPTY])
def test_model_reasons_cool_the_pair_and_leave_the_key_for_other_models(
    clock: FakeClock, reason: Reason
) -> None:
    """rate_limit, timeout and empty cool (profile, model): the key stays usable for the other models."""
    stats = fail(UsageStats(), reason, clock)
    now = clock.now_ms()
    assert stats.models == {
        GPT: ModelStats(cooldown_until=now + MINUTE_MS, error_count=1, last_failure_at=now)
    }
    assert (stats.cooldown_until, stats.error_count, stats.failure_counts, stats.last_failure_at) == (
        None,
        0,
        {},
        None,
    )
    assert stats.unavailable_until(now, GPT) == now + MINUTE_MS
    assert stats.unavailable_until(now, MINI) is None
    assert stats.unavailable_until(now) is None  # the profile as a whole is fine


@pytest.mark.parametrize("reason", [Reason.AUTH, Reason.BILLING])
def test_key_reasons_cool_the_whole_profile(clock: FakeClock, reason: Reason) -> None:
    """auth and billing are about the key: every model of the profile rests, and no pair is written."""
    stats = fail(UsageStats(), reason, clock)
    now = clock.now_ms()
    assert stats.models == {}
    assert stats.unavailable_until(now, MINI) == stats.unavailable_until(now) is not None


def test_scope_profile_restores_the_whole_profile_cooldown(clock: FakeClock) -> None:
    """``auth.cooldowns.scope: "profile"``: a rate limit cools the profile for every model, as in the seed."""
    stats = fail(UsageStats(), Reason.RATE_LIMIT, clock, policy=CooldownPolicy(scope="profile"))
    now = clock.now_ms()
    assert stats.models == {}
    assert stats.cooldown_until == now + MINUTE_MS and stats.failure_counts == {"rate_limit": 1}
    assert stats.unavailable_until(now, MINI) == now + MINUTE_MS


def test_an_unknown_model_falls_back_to_the_profile(clock: FakeClock) -> None:
    """A failure recorded without a model (an old caller, a probe) can only cool the profile."""
    stats = fail(UsageStats(), Reason.RATE_LIMIT, clock, model=None)
    assert stats.models == {} and stats.cooldown_until == clock.now_ms() + MINUTE_MS


def test_pairs_climb_the_ladder_on_their_own(clock: FakeClock) -> None:
    """Each pair has its own count: gpt-5.2 climbs 1m, 5m, 25m, 1h, 1h while gpt-5-mini starts at 1m."""
    stats = UsageStats()
    for n, length in enumerate([1, 5, 25, 60, 60], start=1):
        stats = fail(stats, Reason.RATE_LIMIT, clock)
        assert stats.model(GPT).cooldown_until == clock.now_ms() + length * MINUTE_MS
        assert stats.model(GPT).error_count == n
        clock.advance(minutes=length)
    stats = fail(stats, Reason.RATE_LIMIT, clock, model=MINI)
    assert stats.model(MINI).cooldown_until == clock.now_ms() + MINUTE_MS


def test_the_configured_ladder_is_used_and_its_last_step_repeats(clock: FakeClock) -> None:
    """``backoffMinutes: [0.5, 2]``: 30s, 2m, 2m, … for pairs and profiles alike."""
    policy = CooldownPolicy(backoff_minutes=(0.5, 2.0))
    assert [cooldown_ms(n, policy.backoff_minutes) for n in (1, 2, 3, 9)] == [30_000, 120_000] + [120_000] * 2
    stats = UsageStats()
    for length in (30_000, 120_000, 120_000):
        stats = fail(stats, Reason.RATE_LIMIT, clock, policy=policy)
        stats = fail(stats, Reason.AUTH, clock, policy=policy)
        assert stats.model(GPT).cooldown_until == stats.cooldown_until == clock.now_ms() + length
        clock.advance(ms=length)


@pytest.mark.parametrize("reason", [Reason.RATE_LIMIT, Reason.AUTH])
def test_a_burst_escalates_once(clock: FakeClock, reason: Reason) -> None:
    """Ten chats hitting one limit together (or within its cooldown) give one 1-minute cooldown, not an hour."""
    first = clock.now_ms()
    stats = UsageStats()
    for _ in range(10):
        stats = fail(stats, reason, clock)
        clock.advance(ms=300)
    scope = stats.model(GPT) if reason is Reason.RATE_LIMIT else stats
    assert (scope.cooldown_until, scope.error_count) == (first + MINUTE_MS, 1)
    assert scope.last_failure_at == clock.now_ms() - 300  # the latest failure: a success must not outrun it
    if reason is Reason.AUTH:
        assert stats.failure_counts == {"auth": 1}
    clock.set(first + MINUTE_MS)  # the cooldown is over: the next failure is a new step
    stats = fail(stats, reason, clock)
    scope = stats.model(GPT) if reason is Reason.RATE_LIMIT else stats
    assert (scope.cooldown_until, scope.error_count) == (clock.now_ms() + 5 * MINUTE_MS, 2)


def test_a_burst_only_lengthens_a_cooldown(clock: FakeClock) -> None:
    """Within a burst, a longer Retry-After lengthens the cooldown; a shorter one never shortens it."""
    stats = fail(UsageStats(), Reason.RATE_LIMIT, clock)
    until = clock.now_ms() + MINUTE_MS
    clock.advance(seconds=10)
    assert fail(stats, Reason.RATE_LIMIT, clock, retry_after_ms=5_000).model(GPT).cooldown_until == until
    longer = fail(stats, Reason.RATE_LIMIT, clock, retry_after_ms=10 * MINUTE_MS).model(GPT)
    assert (longer.cooldown_until, longer.error_count) == (clock.now_ms() + 10 * MINUTE_MS, 1)


def test_billing_while_disabled_is_the_same_incident(clock: FakeClock) -> None:
    """docs/failover.md §6 for billing: a failure while the profile is disabled neither counts nor extends the disable."""
    stats = fail(UsageStats(), Reason.BILLING, clock)
    until = stats.disabled_until
    clock.advance(hours=1)
    again = fail(stats, Reason.BILLING, clock)
    assert (again.failure_counts, again.disabled_until) == ({"billing": 1}, until)
    assert again.last_failure_at == clock.now_ms()


def test_a_late_success_keeps_a_newer_pair_cooldown(clock: FakeClock) -> None:
    """A success clears only failures recorded before its attempt started; other models' pairs are not its
    business; lastUsed moves forward."""
    stats = fail(UsageStats(), Reason.RATE_LIMIT, clock, model=MINI)  # an old mini cooldown
    clock.advance(seconds=1)
    started = clock.now_ms()  # a slow answer on gpt-5.2 starts
    clock.advance(seconds=2)
    stats = fail(stats, Reason.RATE_LIMIT, clock)  # another chat's 429 on the same key and model
    clock.advance(seconds=20)
    late = record_success(stats, model=GPT, started_ms=started, now_ms=clock.now_ms())
    assert late.models == stats.models  # the newer gpt-5.2 cooldown stands, mini's is untouched
    assert late.last_used == clock.now_ms()
    fresh = record_success(stats, model=GPT, started_ms=clock.now_ms(), now_ms=clock.now_ms())
    assert set(fresh.models) == {MINI}  # a call started after the failure clears that pair


def test_a_late_success_keeps_a_newer_profile_cooldown_and_clears_an_older_one(clock: FakeClock) -> None:
    """The same rule for profile-wide state: an auth cooldown newer than the call's start stands."""
    started = clock.now_ms()
    clock.advance(ms=5)
    failed = fail(UsageStats(), Reason.AUTH, clock)
    assert record_success(failed, model=GPT, started_ms=started, now_ms=clock.now_ms()).cooldown_until
    cleared = record_success(failed, model=GPT, started_ms=clock.now_ms(), now_ms=clock.now_ms())
    assert (cleared.cooldown_until, cleared.error_count, cleared.failure_counts) == (None, 0, {})


def test_last_used_never_moves_back(clock: FakeClock) -> None:
    """Two successes booked out of order: lastUsed keeps the later one."""
    stats = record_success(UsageStats(), model=GPT, started_ms=clock.now_ms(), now_ms=clock.now_ms() + 500)
    older = record_success(stats, model=GPT, started_ms=clock.now_ms(), now_ms=clock.now_ms() + 100)
    assert older.last_used == clock.now_ms() + 500


def test_pair_counters_reset_after_the_failure_window(clock: FakeClock) -> None:
    """A pair's count starts over when its last failure is older than failureWindowHours."""
    stats = fail(UsageStats(), Reason.RATE_LIMIT, clock)
    clock.advance(minutes=1)
    stats = fail(stats, Reason.RATE_LIMIT, clock)
    assert stats.model(GPT).error_count == 2
    clock.advance(hours=23, minutes=59)
    assert fail(stats, Reason.RATE_LIMIT, clock).model(GPT).error_count == 3  # inside the window
    clock.advance(minutes=1)
    stats = fail(stats, Reason.RATE_LIMIT, clock)
    assert (stats.model(GPT).error_count, stats.model(GPT).cooldown_until) == (1, clock.now_ms() + MINUTE_MS)


def test_clear_cooldown_of_one_pair_or_all(clock: FakeClock) -> None:
    """Without a model: the profile and every pair; with one: that pair only. Unknown pair keys survive."""
    stats = fail(fail(UsageStats(), Reason.RATE_LIMIT, clock), Reason.AUTH, clock)
    stats = fail(stats, Reason.RATE_LIMIT, clock, model=MINI)
    stats = UsageStats(
        cooldown_until=stats.cooldown_until,
        error_count=stats.error_count,
        models={**stats.models, "o3": ModelStats(cooldown_until=1, extra={"note": "kept"})},
    )
    one = clear_cooldown(stats, GPT)
    assert set(one.models) == {MINI, "o3"} and one.cooldown_until == stats.cooldown_until
    everything = clear_cooldown(stats)
    assert everything.models == {"o3": ModelStats(extra={"note": "kept"})}
    assert (everything.cooldown_until, everything.error_count) == (None, 0)
    assert everything.unavailable_until(clock.now_ms(), GPT) is None
