"""The answer to the engine's one question about auth: which profiles may call (provider, model), in rotation
order, and when each one that may not is usable again (docs/failover.md §4, §6). Pure values; any auth backend (the
file store, a database) builds them from one read of its state."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from bot.auth.cooldowns import Scope
from bot.auth.types import UsageStats
from bot.failover.reasons import Reason


@dataclass(frozen=True)
class ProfileAvailability:
    """One profile of the rotation, for one model: usable now, or when it is back and what it waits out."""

    profile_id: str
    usable_at: int | None = None  # None: usable now; else when it is back (ms since the epoch)
    reason: str | None = None  # what it waits out, when known: "rate_limit", "auth", "billing", …
    scope: Scope | None = None  # "model": only this (profile, model) pair rests; "profile": the whole key

    @property
    def ready(self) -> bool:
        return self.usable_at is None


@dataclass(frozen=True)
class Candidates:
    """The profiles of ``provider`` for ``model`` in rotation order: usable ones best first, then the
    resting ones, soonest back first. Profiles that can never be used (no key, expired) are not in it."""

    provider: str
    model: str
    profiles: tuple[ProfileAvailability, ...] = ()

    def ready(self) -> list[str]:
        return [p.profile_id for p in self.profiles if p.ready]

    def get(self, profile_id: str) -> ProfileAvailability | None:
        return next((p for p in self.profiles if p.profile_id == profile_id), None)

    def soonest(self, only: str | None = None) -> ProfileAvailability | None:
        """The resting profile (or just ``only``) that comes back first; None when none rests."""
        resting = [p for p in self.profiles if p.usable_at is not None and only in (None, p.profile_id)]
        return min(resting, key=lambda p: p.usable_at or 0, default=None)


def profile_availability(
    profile_id: str, stats: UsageStats, model: str | None, now_ms: int
) -> ProfileAvailability:
    """Whether the profile may call ``model`` now; if not, until when, and because of which scope."""
    rests: list[tuple[int, str | None, Scope]] = []
    if stats.disabled_until is not None and stats.disabled_until > now_ms:
        rests.append((stats.disabled_until, stats.disabled_reason, "profile"))
    if stats.cooldown_until is not None and stats.cooldown_until > now_ms:
        rests.append((stats.cooldown_until, _profile_reason(stats), "profile"))
    pair = stats.model(model).cooling_until(now_ms) if model is not None else None
    if pair is not None:
        rests.append((pair, None, "model"))  # the file keeps no reason per pair
    if not rests:
        return ProfileAvailability(profile_id)
    until, reason, scope = max(rests, key=lambda rest: rest[0])
    return ProfileAvailability(profile_id, until, reason, scope)


def build_candidates(
    provider: str,
    model: str,
    ordered: Sequence[str],
    stats_of: Iterable[tuple[str, UsageStats]],
    now_ms: int,
) -> Candidates:
    """``ordered`` (the rotation for ``model``) with each profile's availability from its stats."""
    stats = dict(stats_of)
    return Candidates(
        provider,
        model,
        tuple(profile_availability(pid, stats.get(pid, UsageStats()), model, now_ms) for pid in ordered),
    )


def _profile_reason(stats: UsageStats) -> str | None:
    """The reason behind a profile-wide cooldown: the most frequent one counted (billing disables instead)."""
    counts = {r: n for r, n in stats.failure_counts.items() if r != Reason.BILLING.value}
    return max(counts, key=lambda r: counts[r]) if counts else None
