"""The order in which a provider's profiles are tried for a model (docs/failover.md §4, §6); pure, ``now_ms`` passed in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from bot.auth.types import TYPE_PRIORITY, AuthProfiles, Credential

_NO_IMPLICIT: Mapping[str, Credential] = {}


def order_profiles(
    doc: AuthProfiles,
    provider: str,
    *,
    now_ms: int,
    config_order: Sequence[str] | None,
    config_profile_ids: Sequence[str],
    implicit: Mapping[str, Credential] = _NO_IMPLICIT,
    model: str | None = None,
) -> list[str]:
    """The usable profile ids of ``provider``, best first; profiles cooling down come last.

    With ``model``, a profile rests while the profile or its pair with that model does (docs/failover.md §6); without,
    only profile-wide state counts.

    ``config_order`` is ``auth.order[provider]``; ``config_profile_ids`` the ids of ``auth.profiles`` whose
    provider is this one.
    ``implicit`` holds the pseudo-profiles (environment, config key, built-in, no-auth) that exist only
    when the provider has no stored profile; they count as present and join whatever base list applies,
    so a stale explicit order never hides a working environment key.
    """
    known: dict[str, Credential] = {**implicit, **doc.profiles}
    explicit = doc.order.get(provider) or config_order or None
    if explicit is not None:
        base: Sequence[str] = explicit
    elif config_profile_ids:
        base = config_profile_ids
    else:
        base = [pid for pid, cred in sorted(doc.profiles.items()) if cred.provider == provider]
    ids = _usable(_dedupe([*base, *implicit]), known, provider, now_ms)

    ready = [pid for pid in ids if doc.stats(pid).unavailable_until(now_ms, model) is None]
    cooling = [pid for pid in ids if doc.stats(pid).unavailable_until(now_ms, model) is not None]
    if explicit is None:
        ready.sort(key=lambda pid: _round_robin_key(doc, known[pid], pid))
    position = {pid: index for index, pid in enumerate(ids)}
    # Soonest back first; ties keep the explicit position (or the round-robin order without one).
    cooling.sort(
        key=lambda pid: (
            _until(doc, pid, now_ms, model),
            position[pid] if explicit is not None else _round_robin_key(doc, known[pid], pid),
        )
    )
    return ready + cooling


def next_change_ms(
    doc: AuthProfiles,
    provider: str,
    *,
    now_ms: int,
    implicit: Mapping[str, Credential] = _NO_IMPLICIT,
    model: str | None = None,
) -> int | None:
    """The first moment after ``now_ms`` at which time alone changes the rotation of ``provider`` (for
    ``model``): a credential expires, a cooldown or a billing disable ends. None: nothing will, until the
    store changes."""
    moments: list[int] = []
    for pid, cred in {**implicit, **doc.profiles}.items():
        if cred.provider != provider:
            continue
        stats = doc.stats(pid)
        pair = stats.models.get(model) if model is not None else None
        for moment in (
            cred.expires,
            stats.cooldown_until,
            stats.disabled_until,
            pair.cooldown_until if pair is not None else None,
        ):
            if moment is not None and moment > now_ms:
                moments.append(moment)
    return min(moments, default=None)


def _dedupe(ids: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(ids))


def _usable(ids: Iterable[str], known: Mapping[str, Credential], provider: str, now_ms: int) -> list[str]:
    result = []
    for pid in ids:
        cred = known.get(pid)
        if cred is not None and cred.provider == provider and cred.is_usable(now_ms):
            result.append(pid)
    return result


def _round_robin_key(doc: AuthProfiles, cred: Credential, profile_id: str) -> tuple[int, int, str]:
    last_used = doc.stats(profile_id).last_used
    # Never used counts as the oldest; the id breaks ties so the order is the same in every process.
    return (
        TYPE_PRIORITY.get(cred.type, len(TYPE_PRIORITY)),
        -1 if last_used is None else last_used,
        profile_id,
    )


def _until(doc: AuthProfiles, profile_id: str, now_ms: int, model: str | None) -> int:
    until = doc.stats(profile_id).unavailable_until(now_ms, model)
    return now_ms if until is None else until
