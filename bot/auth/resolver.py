"""From a profile id to a credential ready to send: implicit profiles, rotation candidates, OAuth refresh."""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal, Protocol

from bot.auth.availability import Candidates, build_candidates
from bot.auth.mask import mask_secret
from bot.auth.port import AuthStateStore
from bot.auth.refresh_lock import RefreshLock, RefreshLockTimeout
from bot.auth.rotation import next_change_ms, order_profiles
from bot.auth.types import AuthProfiles, Credential, UsageStats
from bot.clock import MINUTE_MS
from bot.config.schema import Config
from bot.errors import OAuthError, ProviderError, UnknownProfile
from bot.failover.reasons import Reason
from bot.providers.base import ResolvedAuth
from bot.providers.registry import provider_config

# asyncio is imported inside the coroutines that use it: `modelbot models list` and `auth list` read
# credentials without an event loop, and importing asyncio (with ssl) was a tenth of their start-up.
if TYPE_CHECKING:
    import asyncio

log = logging.getLogger("modelbot.auth")

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


@dataclass(frozen=True, repr=False)
class OAuthTokens:
    """What a refresh returns: ``(access, refresh, expires)``."""

    access: str
    refresh: str
    expires: int  # ms since the epoch

    def __repr__(self) -> str:  # never a token in a traceback or a log line
        return f"OAuthTokens(access={mask_secret(self.access)}, expires={self.expires})"


_FOREVER = 1 << 62


@dataclass(frozen=True)
class _Kept:
    """An availability answer and what it holds for: this document, from ``since_ms`` until ``until_ms``."""

    doc: AuthProfiles
    since_ms: int
    until_ms: int
    candidates: Candidates


class OAuthRefresher(Protocol):
    """The OAuth side of the providers: who can refresh, the refresh itself, and what a login's calls need."""

    def can_refresh(self, provider: str) -> bool:
        """Whether a token endpoint is known for the provider (a preset or ``models.providers.<id>.oauth``)."""
        ...

    def headers(self, provider: str) -> Mapping[str, str]:
        """Headers every model call made with one of the provider's OAuth logins carries."""
        ...

    async def refresh(self, provider: str, refresh_token: str, *, now_ms: int) -> OAuthTokens:
        """Exchanges a (single-use) refresh token for new tokens; raises on any failure."""
        ...


class CredentialResolver:
    """Knows every credential of every provider: stored profiles plus the implicit fallbacks of docs/failover.md §3."""

    def __init__(
        self,
        store: AuthStateStore,
        config: Config,
        *,
        env: Mapping[str, str],
        provider_env_vars: Mapping[str, tuple[str, ...]],
        providers_without_auth: Collection[str],
        builtin_profiles: Mapping[str, tuple[str, ...]],
        refresher: OAuthRefresher | None = None,
        refresh_lock: RefreshLock | None = None,
        refresh_lock_timeout_s: float = 60.0,
    ) -> None:
        self.store = store
        self.config = config
        self._env = env
        self._env_vars = provider_env_vars
        self._no_auth = frozenset(providers_without_auth)
        self._builtin = builtin_profiles
        self._refresher = refresher
        self._implicit: dict[str, dict[str, Credential]] = {}  # by provider
        self._availability: dict[tuple[str, str], _Kept] = {}  # by (provider, model)
        self._refresh_lock: RefreshLock = (
            store.refresh_lock(timeout_s=refresh_lock_timeout_s) if refresh_lock is None else refresh_lock
        )

    def implicit_profiles(self, provider: str, doc: AuthProfiles) -> dict[str, Credential]:
        """Pseudo-profiles for a provider without a stored profile: env key, config key, built-in, no auth."""
        if any(cred.provider == provider for cred in doc.profiles.values()):
            return {}
        found = self._implicit.get(provider)
        if found is None:  # the environment and the config are fixed for the resolver's life: once each
            found = self._implicit[provider] = self._find_implicit(provider)
        return dict(found)

    def _find_implicit(self, provider: str) -> dict[str, Credential]:
        found: dict[str, Credential] = {
            pid: _implicit(provider, "builtin") for pid in self._builtin.get(provider, ())
        }
        env_key = next(
            (v.strip() for n in self._env_vars.get(provider, ()) if (v := self._env.get(n, "")).strip()), ""
        )
        if env_key:
            found[f"{provider}:env"] = _implicit(provider, "env", env_key)
        found_settings = provider_config(provider, self.config)
        settings = found_settings[1] if found_settings is not None else None
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
        """The rotation for ``model`` with when each profile is usable: one read of the store.

        Asked before every attempt; the answer is kept while the store is unchanged (the same cached
        document) and no cooldown, disable or expiry has passed since it was worked out."""
        doc = self.store.load()
        kept = self._availability.get((provider, model))
        if kept is not None and kept.doc is doc and kept.since_ms <= now_ms < kept.until_ms:
            return kept.candidates
        ordered = self._order(doc, provider, now_ms, model)
        candidates = build_candidates(provider, model, ordered, ((p, doc.stats(p)) for p in ordered), now_ms)
        until = next_change_ms(
            doc, provider, now_ms=now_ms, implicit=self.implicit_profiles(provider, doc), model=model
        )
        self._availability[(provider, model)] = _Kept(doc, now_ms, until or _FOREVER, candidates)
        return candidates

    def _order(self, doc: AuthProfiles, provider: str, now_ms: int, model: str | None = None) -> list[str]:
        auth = self.config.auth
        return order_profiles(
            doc,
            provider,
            now_ms=now_ms,
            config_order=auth.order_for(provider),
            config_profile_ids=auth.profile_ids_for(provider),
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

    def can_refresh(self, cred: Credential) -> bool:
        """An OAuth login that renews itself: it has a refresh token and its provider's token endpoint is known."""
        return (
            cred.type == "oauth"
            and bool(cred.refresh)
            and self._refresher is not None
            and self._refresher.can_refresh(cred.provider)
        )

    async def resolve(self, profile_id: str, *, now_ms: int) -> ResolvedAuth:
        """The credential to send; an OAuth token close to expiry is refreshed first (once, across processes)."""
        cred = self.lookup(profile_id, self.store.load())  # the store's cache: no thread hop per attempt
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
            if self._refresher is not None and self.can_refresh(cred):
                cred = await self._refresh(profile_id, cred, self._refresher, now_ms)
            elif cred.is_expired(now_ms):
                raise ProviderError(Reason.AUTH, f'The login of profile "{profile_id}" has expired.')
        headers = self._refresher.headers(cred.provider) if self._refresher is not None else {}
        return ResolvedAuth(profile_id, "oauth", cred.secret, headers=headers)

    async def _refresh(
        self, profile_id: str, seen: Credential, refresher: OAuthRefresher, now_ms: int
    ) -> Credential:
        """Refresh under the store's refresh lock (a lock file, or a lease in the database), held across the call.

        Refresh tokens are single-use: whoever waited for the lock re-reads the store and takes the
        other process's result instead of spending the (now dead) refresh token again. A refresh that
        has started runs as its own task, so cancelling the turn cannot lose the new tokens.
        """
        import asyncio  # noqa: PLC0415 - see the module's imports

        task = asyncio.ensure_future(self._refresh_locked(profile_id, seen, refresher, now_ms))
        task.add_done_callback(_retrieve)
        return await asyncio.shield(task)

    async def _refresh_locked(
        self, profile_id: str, seen: Credential, refresher: OAuthRefresher, now_ms: int
    ) -> Credential:
        try:
            async with self._refresh_lock.hold(profile_id):
                current = self.lookup(profile_id, await self.store.areload())
                if current.refresh == seen.refresh and needs_refresh(current, now_ms) and current.refresh:
                    tokens = await _call_refresher(refresher, profile_id, current, now_ms)
                    current = replace(
                        current, secret=tokens.access, refresh=tokens.refresh, expires=tokens.expires
                    )
                    # One locked, atomic write of all three: the old refresh token is already spent.
                    await self.store.aupdate(lambda doc: _with_tokens(doc, profile_id, tokens))
                    log.info(
                        "refreshed the OAuth login of %s, valid until %s", profile_id, _iso(tokens.expires)
                    )
                # else: another process refreshed while we waited for the lock; its result is in the store.
        except RefreshLockTimeout:
            raise ProviderError(
                Reason.TIMEOUT, f'Gave up waiting for another refresh of profile "{profile_id}".'
            ) from None
        if current.is_expired(now_ms):
            raise ProviderError(Reason.AUTH, f'The login of profile "{profile_id}" has expired.')
        return current


async def _call_refresher(
    refresher: OAuthRefresher, profile_id: str, cred: Credential, now_ms: int
) -> OAuthTokens:
    """The refresh, with any failure of it made the credential's ``auth`` failure (docs/failover.md §9)."""
    assert cred.refresh is not None
    try:
        return await refresher.refresh(cred.provider, cred.refresh, now_ms=now_ms)
    except OAuthError as exc:
        log.warning("refreshing the OAuth login of %s failed: %s", profile_id, exc)
        again = f" Log in again: modelbot auth login --provider {cred.provider}."
        raise ProviderError(
            Reason.AUTH,
            f'Refreshing the login of profile "{profile_id}" failed ({exc.code}).'
            + (again if exc.code == "invalid_grant" else ""),
        ) from exc
    except Exception as exc:  # any other failure of the exchange is the credential's failure too
        log.warning("refreshing the OAuth login of %s failed: %s", profile_id, type(exc).__name__)
        raise ProviderError(Reason.AUTH, f'Refreshing the login of profile "{profile_id}" failed.') from exc


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


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
