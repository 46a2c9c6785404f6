"""The auth store as the engine and the commands see it: candidates per model, bookkeeping, status.

One backend for both stores (``bot.auth.port.AuthStateStore``): auth-profiles.json, or the database shared by
every host. Reads come from the store's cache; failures are persisted before the next attempt, successes in
the background.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from bot.auth.availability import Candidates
from bot.auth.cooldowns import CooldownPolicy, failed_after
from bot.auth.mask import mask_secret
from bot.auth.port import AuthStateStore
from bot.auth.resolver import CredentialResolver, credential_source
from bot.auth.types import AuthProfiles, Credential
from bot.errors import UnknownProfile
from bot.failover.reasons import Reason
from bot.providers.base import Endpoint, ResolvedAuth

# asyncio is imported inside the coroutines that use it: `modelbot models list` and `auth list` read
# credentials without an event loop, and importing asyncio (with ssl) was a tenth of their start-up.
if TYPE_CHECKING:
    import asyncio

    from bot.conversation.status_view import ProfileLine, ProviderStatus

log = logging.getLogger("modelbot.auth")

# A success of the profile that is already the provider's last good one, with nothing to clear, changes only
# ``lastUsed``: writing that more than once a second buys round robin nothing and would put a locked, fsynced
# file write (or a row-locked transaction) on every turn.
LAST_USED_RESOLUTION_MS = 1_000


def provider_of(profile_id: str, doc: AuthProfiles) -> str:
    return doc.provider_of(profile_id) or profile_id.split(":", 1)[0].strip().lower()


class StoreAuthBackend:
    """Implements ``bot.failover.engine.AuthBackend`` and ``bot.conversation.command_handlers.AuthOverview`` over either auth store."""

    def __init__(
        self, resolver: CredentialResolver, *, policy: CooldownPolicy, endpoint_for: Callable[[str], Endpoint]
    ) -> None:
        self._resolver = resolver
        self._store = resolver.store
        self._policy = policy
        self._endpoint_for = endpoint_for
        self._booked: dict[str, int] = {}  # profile -> when its last success was handed to a write
        self._good: dict[str, str] = {}  # provider -> the profile of its last success handed to a write
        self._writing: set[asyncio.Task[object]] = set()

    @property
    def store(self) -> AuthStateStore:
        return self._store

    async def flush(self) -> None:
        """Wait for the success bookkeeping still being written (call before the process exits)."""
        import asyncio  # noqa: PLC0415 - see the module's imports

        while self._writing:
            await asyncio.wait(set(self._writing))

    # -- engine -------------------------------------------------------------------------------------------

    async def candidates(self, provider: str, model: str, *, now_ms: int) -> Candidates:
        # Read from the store's cache (one stat of the file): no thread hop on the way to every attempt.
        return self._resolver.availability(provider, model, now_ms)

    def rotation(self, provider: str, now_ms: int, model: str | None = None) -> list[str]:
        """Usable profile ids in rotation order (for ``model``, if given), resting ones last."""
        return self._resolver.candidates(provider, now_ms, model)

    def unavailable_until(self, profile_id: str, now_ms: int, model: str | None = None) -> int | None:
        return self._store.load().stats(profile_id).unavailable_until(now_ms, model)

    async def resolve(self, profile_id: str, *, now_ms: int) -> ResolvedAuth:
        return await self._resolver.resolve(profile_id, now_ms=now_ms)

    async def record_failure(
        self, profile_id: str, model: str, reason: Reason, *, now_ms: int, retry_after_ms: int | None
    ) -> int | None:
        provider = provider_of(profile_id, self._store.load())
        stats = await self._store.arecord_failure(
            profile_id,
            reason,
            provider=provider,
            now_ms=now_ms,
            policy=self._policy,
            model=model,
            retry_after_ms=retry_after_ms,
        )
        return stats.unavailable_until(now_ms, model)

    async def record_success(self, profile_id: str, model: str, *, started_ms: int, now_ms: int) -> None:
        """Book the success in the background: the answer is complete, and nothing waits for this write.

        ``cooldowns.record_success`` clears only failures recorded before ``started_ms``, so the write may
        land late: a failure recorded meanwhile, here or in another process, stands.
        """
        doc = self._store.load()
        stats = doc.stats(profile_id)
        provider = provider_of(profile_id, doc)
        good = doc.last_good.get(provider)
        if self._writing:  # a success booked but not yet written says who is the last good one
            good = self._good.get(provider, good)
        unchanged = (
            stats.error_count == 0
            and not stats.failure_counts
            and stats.cooldown_until is None
            and stats.disabled_until is None
            and model not in stats.models
            and good == profile_id
        )
        last = max(stats.last_used or 0, self._booked.get(profile_id, 0))
        if unchanged and 0 <= now_ms - last < LAST_USED_RESOLUTION_MS:
            return
        self._booked[profile_id] = now_ms
        if not failed_after(stats, started_ms, model):
            self._good[provider] = profile_id
        import asyncio  # noqa: PLC0415 - see the module's imports

        task: asyncio.Task[object] = asyncio.ensure_future(
            self._store.arecord_success(
                profile_id, provider=provider, model=model, started_ms=started_ms, now_ms=now_ms
            )
        )
        self._writing.add(task)
        task.add_done_callback(self._written)

    def _written(self, task: asyncio.Task[object]) -> None:
        self._writing.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.warning("could not record a success in %s: %s", self._store.where, exc)

    # -- commands -----------------------------------------------------------------------------------------

    def has_usable_auth(self, provider: str, now_ms: int, model: str | None = None) -> bool:
        return any(
            self.unavailable_until(p, now_ms, model) is None for p in self.rotation(provider, now_ms, model)
        )

    def has_credentials(self, provider: str) -> bool:
        doc = self._store.load()
        if any(cred.provider == provider for cred in doc.profiles.values()):
            return True
        implicit = self._resolver.implicit_profiles(provider, doc)
        return any(credential_source(cred) in ("env", "config") for cred in implicit.values())

    def profile_provider(self, profile_id: str) -> str | None:
        doc = self._store.load()
        try:
            return self._resolver.lookup(profile_id, doc).provider
        except UnknownProfile:
            return None

    def provider_status(self, provider: str, now_ms: int, model: str | None = None) -> ProviderStatus:
        """Every credential of the provider in rotation order for ``model`` (None: profile state alone)."""
        from bot.conversation.status_view import ProviderStatus  # noqa: PLC0415 - see profile_line

        endpoint = self._endpoint_for(provider)
        lines = tuple(
            profile_line(pid, cred, self._store.load(), now_ms, refreshable=self._resolver.can_refresh(cred))
            for pid, cred, _ in self._resolver.all_profiles(provider, now_ms, model)
        )
        return ProviderStatus(
            provider, endpoint.base_url, endpoint.api, lines, missing_auth=not lines, model=model
        )


def profile_line(
    profile_id: str, cred: Credential, doc: AuthProfiles, now_ms: int, *, refreshable: bool = False
) -> ProfileLine:
    """A status line for one credential: type, masked secret, cooldown and billing state, expiry.

    ``refreshable``: an OAuth login that renews itself (``CredentialResolver.can_refresh``), so its
    expiry is not the end of it."""
    # The status views only for the commands and replies that show them (`models list` does not: 2 % of its
    # start-up).
    from bot.conversation.status_view import PairLine, ProfileLine  # noqa: PLC0415

    stats = doc.stats(profile_id)
    source = credential_source(cred)
    kind = cred.type if source == "stored" else source
    secret = cred.secret if source in ("stored", "env", "config") else ""
    masked = mask_secret(secret) if secret else "(no key)"
    return ProfileLine(
        profile_id=profile_id,
        type=kind,
        masked=masked,
        cooldown_until=stats.cooldown_until,
        disabled_until=stats.disabled_until,
        disabled_reason=stats.disabled_reason,
        expired=cred.is_expired(now_ms) and not refreshable,
        expires=cred.expires,
        refreshable=refreshable,
        pairs=tuple(
            PairLine(model, pair.cooldown_until, pair.error_count, pair.last_failure_at)
            for model, pair in sorted(stats.models.items())
        ),
    )
