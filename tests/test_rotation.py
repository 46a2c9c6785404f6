"""Rotation order of a provider's profiles (docs/failover.md §4), as tables over a fixed store."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pytest

from bot.auth.rotation import next_change_ms, order_profiles
from bot.auth.types import AuthProfiles, Credential, ModelStats, UsageStats

NOW = 1_700_000_000_000
SECRET = "sk-x"


def key(provider: str = "a", secret: str = SECRET) -> Credential:
    return Credential(type="api_key", provider=provider, secret=secret)


def token(provider: str = "a", expires: int | None = None) -> Credential:
    return Credential(type="token", provider=provider, secret="sk-ant-oat01-x", expires=expires)


def oauth(provider: str = "a", expires: int = NOW + 3_600_000, refresh: str | None = "r") -> Credential:
    return Credential(type="oauth", provider=provider, secret="acc", refresh=refresh, expires=expires)


def order(
    doc: AuthProfiles,
    *,
    config_order: Sequence[str] | None = None,
    config_profile_ids: Sequence[str] = (),
    implicit: Mapping[str, Credential] | None = None,
    provider: str = "a",
    model: str | None = None,
) -> list[str]:
    return order_profiles(
        doc,
        provider,
        now_ms=NOW,
        config_order=config_order,
        config_profile_ids=config_profile_ids,
        implicit=implicit or {},
        model=model,
    )


def cooling(until: int) -> UsageStats:
    return UsageStats(cooldown_until=until, error_count=1)


def test_round_robin_orders_by_type_then_oldest_use() -> None:
    """oauth before token before api_key; within a type never used first, then oldest lastUsed."""
    doc = AuthProfiles(
        profiles={
            "a:k-new": key(),
            "a:k-old": key(),
            "a:k-never": key(),
            "a:tok": token(),
            "a:o2": oauth(),
            "a:o1": oauth(),
        },
        usage_stats={
            "a:k-new": UsageStats(last_used=NOW - 10),
            "a:k-old": UsageStats(last_used=NOW - 1000),
            "a:o2": UsageStats(last_used=NOW - 5),
        },
    )
    assert order(doc) == ["a:o1", "a:o2", "a:tok", "a:k-never", "a:k-old", "a:k-new"]


def test_round_robin_puts_cooling_last_by_soonest_expiry() -> None:
    """Cooling and disabled profiles go last, the one back soonest first, whatever their type."""
    doc = AuthProfiles(
        profiles={"a:o": oauth(), "a:k1": key(), "a:k2": key(), "a:k3": key()},
        usage_stats={
            "a:o": cooling(NOW + 60_000),
            "a:k1": UsageStats(disabled_until=NOW + 5_000, disabled_reason="billing"),
            "a:k3": UsageStats(cooldown_until=NOW - 1),  # expired cooldown: available again
        },
    )
    assert order(doc) == ["a:k2", "a:k3", "a:k1", "a:o"]


def test_ties_break_by_id_for_the_same_order_everywhere() -> None:
    """Equal type and lastUsed fall back to the id, independent of insertion order."""
    doc = AuthProfiles(profiles={"a:z": key(), "a:m": key(), "a:b": key()})
    assert order(doc) == ["a:b", "a:m", "a:z"]


def test_explicit_store_order_is_kept_with_cooling_moved_to_the_end() -> None:
    """The store's order wins as given, except cooling profiles move to the end by soonest expiry."""
    doc = AuthProfiles(
        profiles={"a:1": key(), "a:2": oauth(), "a:3": key(), "a:4": key()},
        order={"a": ["a:3", "a:1", "a:4", "a:2"]},
        usage_stats={"a:3": cooling(NOW + 9_000), "a:4": cooling(NOW + 1_000)},
    )
    assert order(doc) == ["a:1", "a:2", "a:4", "a:3"]


def test_store_order_beats_config_order() -> None:
    """``order[provider]`` in the store comes before ``auth.order`` of the config."""
    doc = AuthProfiles(profiles={"a:1": key(), "a:2": key()}, order={"a": ["a:2", "a:1"]})
    assert order(doc, config_order=["a:1", "a:2"]) == ["a:2", "a:1"]


def test_config_order_is_explicit() -> None:
    """``auth.order`` is kept as given (no round robin) and limits the profiles used."""
    doc = AuthProfiles(
        profiles={"a:1": key(), "a:2": oauth(), "a:3": key()},
        usage_stats={"a:1": UsageStats(last_used=NOW)},
    )
    assert order(doc, config_order=["a:1", "a:3"]) == ["a:1", "a:3"]


def test_config_profiles_limit_but_do_not_order() -> None:
    """``auth.profiles`` selects profiles, which are then ordered round robin."""
    doc = AuthProfiles(profiles={"a:1": key(), "a:2": oauth(), "a:3": key()})
    assert order(doc, config_profile_ids=["a:3", "a:2"]) == ["a:2", "a:3"]


@pytest.mark.parametrize(
    ("cred", "kept"),
    [
        (key(secret=""), False),
        (key(secret="   "), False),
        (token(expires=NOW - 1), False),
        (token(expires=NOW + 1), True),
        (token(), True),
        (oauth(expires=NOW - 1, refresh="r"), True),  # refreshable
        (oauth(expires=NOW - 1, refresh=None), False),
        (key(provider="b"), False),  # another provider's profile listed in this provider's order
    ],
)
def test_unusable_and_foreign_profiles_are_dropped(cred: Credential, kept: bool) -> None:
    """Empty keys, expired tokens without refresh and other providers' ids never enter rotation."""
    doc = AuthProfiles(profiles={"a:ok": key(), "a:x": cred}, order={"a": ["a:x", "a:ok"]})
    assert order(doc) == (["a:x", "a:ok"] if kept else ["a:ok"])


def test_missing_ids_and_duplicates_are_dropped() -> None:
    """An order naming removed profiles, or one twice, yields each present profile once."""
    doc = AuthProfiles(profiles={"a:1": key(), "a:2": key()}, order={"a": ["a:gone", "a:2", "a:2", "a:1"]})
    assert order(doc) == ["a:2", "a:1"]


def test_other_providers_are_not_listed() -> None:
    """Without any order, only this provider's stored profiles are candidates."""
    doc = AuthProfiles(profiles={"a:1": key(), "b:1": key(provider="b")})
    assert order(doc) == ["a:1"]
    assert order(doc, provider="b") == ["b:1"]
    assert order(doc, provider="c") == []


def test_implicit_profiles_count_as_present() -> None:
    """Env/config/builtin pseudo-profiles join the list and take part in rotation and cooldown."""
    implicit = {"a:env": key(), "a:config": key(secret="sk-other")}
    doc = AuthProfiles(usage_stats={"a:config": UsageStats(last_used=NOW - 5)})
    assert order(doc, implicit=implicit) == ["a:env", "a:config"]
    cooled = AuthProfiles(usage_stats={"a:env": cooling(NOW + 1)})
    assert order(cooled, implicit=implicit) == ["a:config", "a:env"]


def test_implicit_profiles_survive_a_stale_explicit_order() -> None:
    """A config order naming only missing profiles still falls back to the environment key."""
    assert order(AuthProfiles(), config_order=["a:gone"], implicit={"a:env": key()}) == ["a:env"]


def test_explicit_cooling_ties_keep_the_given_order() -> None:
    """Two profiles back at the same moment keep their explicit order."""
    doc = AuthProfiles(
        profiles={"a:1": key(), "a:2": key(), "a:3": key()},
        order={"a": ["a:2", "a:1", "a:3"]},
        usage_stats={"a:1": cooling(NOW + 5), "a:2": cooling(NOW + 5)},
    )
    assert order(doc) == ["a:3", "a:2", "a:1"]


def test_a_cooling_pair_rests_for_its_model_only() -> None:
    """docs/failover.md §6: a (profile, model) cooldown sends the profile to the end for that model; other models, and the
    profile-only order, do not see it."""
    pair = ModelStats(cooldown_until=NOW + 5_000, error_count=1, last_failure_at=NOW - 55_000)
    doc = AuthProfiles(
        profiles={"a:1": key(), "a:2": key(), "a:3": key()},
        order={"a": ["a:1", "a:2", "a:3"]},
        usage_stats={
            "a:1": UsageStats(models={"m1": pair}),
            "a:2": UsageStats(cooldown_until=NOW + 1_000),
        },
    )
    assert order(doc, model="m1") == ["a:3", "a:2", "a:1"]  # both rest for m1: the sooner back first
    assert order(doc, model="m2") == ["a:1", "a:3", "a:2"]
    assert order(doc) == ["a:1", "a:3", "a:2"]


def test_next_change_is_the_first_moment_time_alone_changes_the_rotation() -> None:
    """The soonest future expiry, cooldown end or disable end among the provider's profiles (for the model's
    pair only); past moments, other providers and other models' pairs do not count."""
    doc = AuthProfiles(
        profiles={"a:1": key(), "a:2": token(expires=NOW + 50_000), "b:1": key("b")},
        usage_stats={
            "a:1": UsageStats(
                cooldown_until=NOW + 90_000,
                disabled_until=NOW - 1,
                models={
                    "m": ModelStats(cooldown_until=NOW + 30_000),
                    "n": ModelStats(cooldown_until=NOW + 10),
                },
            ),
            "b:1": UsageStats(cooldown_until=NOW + 5),
        },
    )
    assert next_change_ms(doc, "a", now_ms=NOW, model="m") == NOW + 30_000
    assert next_change_ms(doc, "a", now_ms=NOW) == NOW + 50_000
    assert next_change_ms(doc, "a", now_ms=NOW + 60_000, model="m") == NOW + 90_000
    assert next_change_ms(doc, "a", now_ms=NOW + 90_000, model="m") is None
    implicit = {"a:env": Credential(type="token", provider="a", secret="t", expires=NOW + 7)}
    assert next_change_ms(AuthProfiles(), "a", now_ms=NOW, implicit=implicit) == NOW + 7
