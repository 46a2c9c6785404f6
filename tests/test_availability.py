"""The answer to the engine's one question: each profile's availability for one model (docs/failover.md §4, §6)."""

from __future__ import annotations

from bot.auth.availability import Candidates, ProfileAvailability, build_candidates, profile_availability
from bot.auth.types import ModelStats, UsageStats

NOW = 1_700_000_000_000


def test_availability_takes_the_latest_of_profile_and_pair() -> None:
    """Whichever rest ends last decides when the profile is back, and says which scope and reason it is."""
    pair = {"m": ModelStats(cooldown_until=NOW + 9_000, error_count=1)}
    cooling = UsageStats(cooldown_until=NOW + 5_000, failure_counts={"auth": 2, "billing": 1}, models=pair)
    assert profile_availability("p:a", cooling, "m", NOW) == ProfileAvailability(
        "p:a", NOW + 9_000, None, "model"
    )
    assert profile_availability("p:a", cooling, "other", NOW) == ProfileAvailability(
        "p:a", NOW + 5_000, "auth", "profile"
    )
    disabled = UsageStats(disabled_until=NOW + 3_600_000, disabled_reason="billing", models=pair)
    assert profile_availability("p:a", disabled, "m", NOW) == ProfileAvailability(
        "p:a", NOW + 3_600_000, "billing", "profile"
    )
    assert profile_availability("p:a", UsageStats(models=pair), "m", NOW + 9_000).ready  # just over


def test_candidates_keep_the_rotation_order_and_find_the_soonest() -> None:
    """``build_candidates`` keeps the order it is given; ``soonest`` finds the first return, or one profile's."""
    stats = {
        "p:b": UsageStats(models={"m": ModelStats(cooldown_until=NOW + 4_000)}),
        "p:c": UsageStats(cooldown_until=NOW + 2_000),
    }
    candidates = build_candidates("p", "m", ["p:a", "p:b", "p:c"], stats.items(), NOW)
    assert candidates.ready() == ["p:a"]
    assert [p.profile_id for p in candidates.profiles] == ["p:a", "p:b", "p:c"]
    soonest = candidates.soonest()
    assert soonest is not None and (soonest.profile_id, soonest.usable_at) == ("p:c", NOW + 2_000)
    only_b = candidates.soonest(only="p:b")
    assert only_b is not None and only_b.usable_at == NOW + 4_000
    assert candidates.soonest(only="p:a") is None
    assert Candidates("p", "m").soonest() is None and candidates.get("p:x") is None
