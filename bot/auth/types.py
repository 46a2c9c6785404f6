"""The data of auth-profiles.json (docs/failover.md §3), as typed values that round-trip the file faithfully.

Unknown keys are kept in ``extra`` so that a file written by a newer version (or by hand) loses nothing
when this version rewrites it. Timestamps are milliseconds since the epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

CredentialType = Literal["api_key", "token", "oauth"]
TYPE_PRIORITY: dict[str, int] = {"oauth": 0, "token": 1, "api_key": 2}  # round robin: oauth first


@dataclass(frozen=True)
class Credential:
    """One stored credential. ``secret`` is the key, the static token, or the OAuth access token."""

    type: CredentialType
    provider: str
    secret: str
    email: str | None = None
    expires: int | None = None  # token / oauth expiry, ms
    refresh: str | None = None  # oauth only
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. projectId, enterpriseUrl

    def is_expired(self, now_ms: int) -> bool:
        return self.expires is not None and self.expires <= now_ms

    def is_usable(self, now_ms: int) -> bool:
        """Empty secrets and expired tokens that cannot be refreshed are dropped from rotation."""
        if not self.secret.strip() and not (self.type == "oauth" and self.refresh):
            return False
        if self.is_expired(now_ms):
            return self.type == "oauth" and bool(self.refresh)
        return True


@dataclass(frozen=True)
class ModelStats:
    """The cooldown state of one (profile, model) pair (docs/failover.md §6): ``usageStats[id].models[modelId]``."""

    cooldown_until: int | None = None
    error_count: int = 0
    last_failure_at: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def cooling_until(self, now_ms: int) -> int | None:
        """When the pair is usable again, or None if it is usable now."""
        return (
            self.cooldown_until if self.cooldown_until is not None and self.cooldown_until > now_ms else None
        )


@dataclass(frozen=True)
class UsageStats:
    """Per-profile rotation state; every field optional, as in the file. ``models`` holds the pairs' state."""

    last_used: int | None = None
    cooldown_until: int | None = None
    disabled_until: int | None = None
    disabled_reason: str | None = None
    error_count: int = 0
    failure_counts: dict[str, int] = field(default_factory=dict)
    last_failure_at: int | None = None
    models: dict[str, ModelStats] = field(default_factory=dict)  # model id as sent to the provider
    extra: dict[str, Any] = field(default_factory=dict)

    def model(self, model_id: str) -> ModelStats:
        return self.models.get(model_id, ModelStats())

    def unavailable_until(self, now_ms: int, model: str | None = None) -> int | None:
        """When the profile (for ``model``: the profile and that pair) is usable again; None: usable now."""
        ends = [t for t in (self.cooldown_until, self.disabled_until) if t is not None and t > now_ms]
        if model is not None and (pair := self.model(model).cooling_until(now_ms)) is not None:
            ends.append(pair)
        return max(ends) if ends else None


@dataclass(frozen=True)
class AuthProfiles:
    """The whole file: ``{version, profiles, order?, lastGood?, usageStats?}``."""

    profiles: dict[str, Credential] = field(default_factory=dict)
    order: dict[str, list[str]] = field(default_factory=dict)
    last_good: dict[str, str] = field(default_factory=dict)
    usage_stats: dict[str, UsageStats] = field(default_factory=dict)
    version: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    def stats(self, profile_id: str) -> UsageStats:
        return self.usage_stats.get(profile_id, UsageStats())

    def provider_of(self, profile_id: str) -> str | None:
        cred = self.profiles.get(profile_id)
        return cred.provider if cred else None
