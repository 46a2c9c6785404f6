"""From a profile id to a credential ready to send: implicit profiles, rotation candidates, OAuth refresh."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Literal, NamedTuple, Protocol

from bot.auth import lockfile
from bot.auth.availability import Candidates, build_candidates
from bot.auth.rotation import order_profiles
from bot.auth.store import FILE_MODE, AuthStore
from bot.auth.types import AuthProfiles, Credential, UsageStats
from bot.clock import MINUTE_MS
from bot.config.schema import Config
from bot.errors import ProviderError, UnknownProfile
from bot.providers.base import ResolvedAuth
from bot.reasons import Reason

REFRESH_MARGIN_MS = 5 * MINUTE_MS  # refresh this long before expiry so a call never starts with a dying token

Source = Literal["stored", "env", "config", "builtin", "local"]
SOURCE_KEY = "modelbotSource"  # in Credential.extra of implicit credentials; they are never written to disk
# Built-in (demo) and no-auth profiles have no secret; a placeholder keeps them usable in rotation.
PLACEHOLDER_SECRET = "(none)"  # noqa: S105 - a marker, not a credential


def credential_source(cred: Credential) -> Source:
    """Where a credential comes from: the store, or one of the implicit kinds (for status displays)."""
    source = cred.extra.get(SOURCE_KEY)
    return source if source in ("env", "config", "builtin", "local") else "stored"


def _implicit(provider: str, source: Source, secret: str = PLACEHOLDER_SECRET) -> Credential:
    return Credential(type="api_key", provider=provider, secret=secret, extra={SOURCE_KEY: source})


def needs_refresh(cred: Credential, now_ms: int) -> bool:
    return cred.type == "oauth" and cred.expires is not None and cred.expires - now_ms <= REFRESH_MARGIN_MS


class OAuthTokens(NamedTuple):
    """What a refresh returns: ``(access, refresh, expires)``."""

    access: str
    refresh: str
    expires: int  # ms since the epoch


class OAuthRefresher(Protocol):
    """Exchanges a (single-use) refresh token for new tokens; raises on any failure."""

    async def refresh(self, provider: str, refresh_token: str) -> OAuthTokens: ...


class CredentialResolver:
    """Knows every credential of every provider: stored profiles plus the implicit fallbacks of spec §4."""

    def __init__(
        self,
        store: AuthStore,
        config: Config,
        *,
        env: Mapping[str, str],
        provider_env_vars: Mapping[str, tuple[str, ...]],
        providers_without_auth: Collection[str],
        builtin_profiles: Mapping[str, tuple[str, ...]],
        refresher: OAuthRefresher | None = None,
        refresh_lock_timeout_s: float = 60.0,
    ) -> None:
        self.store = store
        self.config = config
        self._env = env
        self._env_vars = provider_env_vars
        self._no_auth = frozenset(providers_without_auth)
        self._builtin = builtin_profiles
        self._refresher = refresher
        self._refresh_lock_timeout_s = refresh_lock_timeout_s

    def implicit_profiles(self, provider: str, doc: AuthProfiles) -> dict[str, Credential]:
        """Pseudo-profiles for a provider without a stored profile: env key, config key, built-in, no auth."""
        if any(cred.provider == provider for cred in doc.profiles.values()):
            return {}
        found: dict[str, Credential] = {
            pid: _implicit(provider, "builtin") for pid in self._builtin.get(provider, ())
        }
        env_key = next(
            (v.strip() for n in self._env_vars.get(provider, ()) if (v := self._env.get(n, "")).strip()), ""
        )
        if env_key:
            found[f"{provider}:env"] = _implicit(provider, "env", env_key)
        settings = self.config.models.providers.get(provider)
        config_key = (settings.api_key or "").strip() if settings else ""
        if config_key and config_key != env_key:  # apiKey: "${OPENAI_API_KEY}" is the same key twice
            found[f"{provider}:config"] = _implicit(provider, "config", config_key)
        if provider in self._no_auth and not found:
            found[f"{provider}:local"] = _implicit(provider, "local")
        return found

    def candidates(self, provider: str, now_ms: int, model: str | None = None) -> list[str]:
        """Usable profile ids of the provider in rotation order (for ``model``, if given; cooling ones last)."""
        return self._order(self.store.load(), provider, now_ms, model)

    def availability(self, provider: str, model: str, now_ms: int) -> Candidates:
        """The rotation for ``model`` with when each profile is usable: one read of the store."""
        doc = self.store.load()
        ordered = self._order(doc, provider, now_ms, model)
        return build_candidates(provider, model, ordered, ((p, doc.stats(p)) for p in ordered), now_ms)

    def _order(self, doc: AuthProfiles, provider: str, now_ms: int, model: str | None = None) -> list[str]:
        auth = self.config.auth
        return order_profiles(
            doc,
            provider,
            now_ms=now_ms,
            config_order=auth.order.get(provider),
            config_profile_ids=[pid for pid, meta in auth.profiles.items() if meta.provider == provider],
            implicit=self.implicit_profiles(provider, doc),
            model=model,
        )

    def all_profiles(
        self, provider: str, now_ms: int, model: str | None = None
    ) -> list[tuple[str, Credential, UsageStats]]:
        """Every credential of the provider for status displays: rotation order (for ``model``, if given),
        then unusable ones by id."""
        doc = self.store.load()
        known = {**self.implicit_profiles(provider, doc), **doc.profiles}
        ordered = self._order(doc, provider, now_ms, model)
        rest = sorted(pid for pid, cred in known.items() if cred.provider == provider and pid not in ordered)
        return [(pid, known[pid], doc.stats(pid)) for pid in [*ordered, *rest]]

    def lookup(self, profile_id: str, doc: AuthProfiles) -> Credential:
        cred = doc.profiles.get(profile_id)
        if cred is None:
            provider = profile_id.split(":", 1)[0]
            cred = self.implicit_profiles(provider, doc).get(profile_id)
        if cred is None:
            raise UnknownProfile(profile_id)
        return cred

    async def resolve(self, profile_id: str, *, now_ms: int) -> ResolvedAuth:
        """The credential to send; an OAuth token close to expiry is refreshed first (once, across processes)."""
        cred = self.lookup(profile_id, self.store.load())  # cached by file stat: no thread hop per attempt
        source = credential_source(cred)
        if source in ("builtin", "local"):
            return ResolvedAuth(profile_id, "none", "")
        if source == "env":
            return ResolvedAuth(profile_id, "env", cred.secret)
        if cred.type == "api_key":
            return ResolvedAuth(profile_id, "api_key", cred.secret)
        if cred.type == "token":
            if cred.is_expired(now_ms):
                raise ProviderError(Reason.AUTH, f'The token of profile "{profile_id}" has expired.')
            return ResolvedAuth(profile_id, "token", cred.secret)
        if needs_refresh(cred, now_ms):
            if self._refresher is not None and cred.refresh:
                cred = await self._refresh(profile_id, cred, self._refresher, now_ms)
            elif cred.is_expired(now_ms):
                raise ProviderError(Reason.AUTH, f'The login of profile "{profile_id}" has expired.')
        return ResolvedAuth(profile_id, "oauth", cred.secret)

    async def _refresh(
        self, profile_id: str, seen: Credential, refresher: OAuthRefresher, now_ms: int
    ) -> Credential:
        """Refresh under ``<store>.refresh.lock``, held across the call to the provider.

        Refresh tokens are single-use: whoever waited for the lock re-reads the store and takes the
        other process's result instead of spending the (now dead) refresh token again. A refresh that
        has started runs as its own task, so cancelling the turn cannot lose the new tokens.
        """
        task = asyncio.ensure_future(self._refresh_locked(profile_id, seen, refresher, now_ms))
        task.add_done_callback(_retrieve)
        return await asyncio.shield(task)

    async def _refresh_locked(
        self, profile_id: str, seen: Credential, refresher: OAuthRefresher, now_ms: int
    ) -> Credential:
        try:
            fd = await _acquire(self.store.refresh_lock_path, self._refresh_lock_timeout_s)
        except lockfile.LockTimeout:
            raise ProviderError(
                Reason.TIMEOUT, f'Gave up waiting for another refresh of profile "{profile_id}".'
            ) from None
        try:
            current = self.lookup(profile_id, await asyncio.to_thread(self.store.reload))
            if current.refresh == seen.refresh and needs_refresh(current, now_ms) and current.refresh:
                try:
                    tokens = await refresher.refresh(current.provider, current.refresh)
                except Exception as exc:  # any failure of the exchange is the credential's failure
                    raise ProviderError(
                        Reason.AUTH, f'Refreshing the login of profile "{profile_id}" failed.'
                    ) from exc
                current = replace(
                    current, secret=tokens.access, refresh=tokens.refresh, expires=tokens.expires
                )
                await self.store.aupdate(lambda doc: _with_tokens(doc, profile_id, tokens))
            # else: another process refreshed while we waited for the lock; its result is in the store.
            if current.is_expired(now_ms):
                raise ProviderError(Reason.AUTH, f'The login of profile "{profile_id}" has expired.')
            return current
        finally:
            lockfile.unlock(fd)


async def _acquire(path: Path, timeout_s: float) -> int:
    """Wait for the lock in a worker thread; if cancelled meanwhile, release it once the thread gets it."""
    pending = asyncio.ensure_future(asyncio.to_thread(lockfile.lock, path, timeout_s, mode=FILE_MODE))
    try:
        return await asyncio.shield(pending)
    except asyncio.CancelledError:
        pending.add_done_callback(
            lambda f: lockfile.unlock(f.result()) if not f.cancelled() and not f.exception() else None
        )
        raise


def _retrieve(task: asyncio.Future[Credential]) -> None:
    # The caller may have been cancelled and never look at the result; reading it keeps asyncio quiet.
    if not task.cancelled():
        task.exception()


def _with_tokens(doc: AuthProfiles, profile_id: str, tokens: OAuthTokens) -> AuthProfiles:
    cred = doc.profiles.get(profile_id)
    if cred is None:  # removed meanwhile (auth remove): do not bring it back
        return doc
    updated = replace(cred, secret=tokens.access, refresh=tokens.refresh, expires=tokens.expires)
    return replace(doc, profiles={**doc.profiles, profile_id: updated})
