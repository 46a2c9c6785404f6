"""Edits of a whole auth document, as pure functions ``AuthProfiles -> AuthProfiles`` any store can apply."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from bot.auth import cooldowns
from bot.auth.cooldowns import CooldownPolicy
from bot.auth.types import AuthProfiles, Credential, UsageStats
from bot.errors import AuthError, UnknownProfile
from bot.failover.reasons import Reason

Edit = Callable[[AuthProfiles], AuthProfiles]


def with_profile(profile_id: str, cred: Credential) -> Edit:
    """Add the credential, or replace the one stored under ``profile_id``."""
    return lambda doc: replace(doc, profiles={**doc.profiles, profile_id: cred})


def without_profile(profile_id: str) -> Edit:
    """Remove the credential and every reference to it (order, lastGood, usageStats)."""

    def apply(doc: AuthProfiles) -> AuthProfiles:
        if profile_id not in doc.profiles:
            raise UnknownProfile(profile_id)
        order = {p: [i for i in ids if i != profile_id] for p, ids in doc.order.items()}
        return replace(
            doc,
            profiles={k: v for k, v in doc.profiles.items() if k != profile_id},
            order={p: ids for p, ids in order.items() if ids},  # an empty order would hide every profile
            last_good={p: i for p, i in doc.last_good.items() if i != profile_id},
            usage_stats={k: v for k, v in doc.usage_stats.items() if k != profile_id},
        )

    return apply


def with_order(provider: str, ids: Sequence[str]) -> Edit:
    """Pin the rotation order of a provider (duplicates dropped); an empty list clears it."""
    unique = list(dict.fromkeys(ids))
    if not unique:
        return without_order(provider)
    return lambda doc: replace(doc, order={**doc.order, provider: unique})


def without_order(provider: str) -> Edit:
    return lambda doc: replace(doc, order={p: i for p, i in doc.order.items() if p != provider})


def without_cooldown(profile_id: str, model: str | None = None) -> Edit:
    """An operator's reset of the profile and all its pairs, or of its pair with ``model`` only; the profile
    may be an implicit one (``openai:env``) that has only usage stats."""

    def apply(doc: AuthProfiles) -> AuthProfiles:
        if profile_id not in doc.profiles and profile_id not in doc.usage_stats:
            raise UnknownProfile(profile_id)
        stats = doc.stats(profile_id)
        if model is not None and model not in stats.models:
            known = ", ".join(sorted(stats.models)) or "none"
            raise AuthError(f'{profile_id} has no cooldown state for model "{model}" (models: {known}).')
        cleared = cooldowns.clear_cooldown(stats, model)
        return _with_stats(doc, profile_id, cleared)

    return apply


def _with_stats(doc: AuthProfiles, profile_id: str, stats: UsageStats) -> AuthProfiles:
    return replace(doc, usage_stats={**doc.usage_stats, profile_id: stats})


def with_failure(
    profile_id: str,
    reason: Reason,
    *,
    provider: str,
    now_ms: int,
    policy: CooldownPolicy,
    model: str | None,
    retry_after_ms: int | None,
) -> Edit:
    """A failed call's cooldown arithmetic on the profile's usage stats (docs/failover.md §6)."""

    def apply(doc: AuthProfiles) -> AuthProfiles:
        stats = cooldowns.record_failure(
            doc.stats(profile_id),
            reason,
            provider=provider,
            now_ms=now_ms,
            policy=policy,
            model=model,
            retry_after_ms=retry_after_ms,
        )
        return _with_stats(doc, profile_id, stats)

    return apply


def with_success(profile_id: str, provider: str, model: str | None, started_ms: int, now_ms: int) -> Edit:
    """A successful call: clears what failed before it started, and makes the profile the provider's
    ``lastGood`` unless a newer failure stands."""

    def apply(doc: AuthProfiles) -> AuthProfiles:
        before = doc.stats(profile_id)
        after = cooldowns.record_success(before, model=model, started_ms=started_ms, now_ms=now_ms)
        doc = _with_stats(doc, profile_id, after)
        if cooldowns.failed_after(before, started_ms, model):  # a newer failure stands: not the last good one
            return doc
        return replace(doc, last_good={**doc.last_good, provider: profile_id})

    return apply
