"""The auth store port: what the engine's backend, the resolver and the CLI need of a store of auth state.

Two implementations, chosen by ``auth.store``: ``AuthStore`` (auth-profiles.json, one host) and ``DbAuthStore``
(the store's database, every host). Both keep the seed's document model (``AuthProfiles``) and apply the same
pure edits (``doc_edits``) and cooldown arithmetic (``cooldowns``); only how a change is made durable and
exclusive differs: a locked file rewrite, or row-locked transactions.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from bot.auth.cooldowns import CooldownPolicy
from bot.auth.refresh_lock import RefreshLock
from bot.auth.types import AuthProfiles, UsageStats
from bot.failover.reasons import Reason


class AuthStateStore(Protocol):
    """One agent's credentials, rotation order, ``lastGood`` and usage stats."""

    @property
    def where(self) -> str:
        """Where the state lives, for messages: the file's path, or the database and the agent."""
        ...

    def load(self) -> AuthProfiles:
        """The state from this process's cache (no thread hop, no query); treat it as read-only."""
        ...

    async def aload(self) -> AuthProfiles:
        """The state, fresh enough for a command (the cache when it is recent)."""
        ...

    async def areload(self) -> AuthProfiles:
        """The state as stored now (after waiting for another process's refresh, say)."""
        ...

    async def aupdate(self, fn: Callable[[AuthProfiles], AuthProfiles]) -> AuthProfiles:
        """Apply the pure ``fn`` to the freshest state under the store's lock; returns the result."""
        ...

    async def arecord_failure(
        self,
        profile_id: str,
        reason: Reason,
        *,
        provider: str,
        now_ms: int,
        policy: CooldownPolicy,
        model: str | None = None,
        retry_after_ms: int | None = None,
    ) -> UsageStats:
        """Persist one failure of a call to ``model`` (``cooldowns.record_failure``); the stats after it."""
        ...

    async def arecord_success(
        self,
        profile_id: str,
        *,
        provider: str,
        now_ms: int,
        started_ms: int | None = None,
        model: str | None = None,
    ) -> UsageStats:
        """Persist a success of a call started at ``started_ms`` (``cooldowns.record_success``), and the
        provider's ``lastGood`` unless a failure was recorded after the call started."""
        ...

    async def aclear_cooldown(self, profile_id: str, model: str | None = None) -> UsageStats:
        """An operator's reset of the profile and its pairs (or one pair); ``UnknownProfile``, ``AuthError``."""
        ...

    def refresh_lock(self, *, timeout_s: float) -> RefreshLock:
        """The lock one OAuth refresh holds, shared by every process that shares this state."""
        ...
