"""The resolver's OAuth refresher: which providers can refresh a login, and the refresh itself.

Every command that reads credentials builds one, and few ever refresh: the token endpoint client (and with
it the PKCE and token-answer code) is imported on the first refresh only.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from bot.auth.oauth_settings import OAuthClientSettings
from bot.auth.resolver import OAuthTokens
from bot.errors import OAuthError


class TokenRefresher:
    """``bot.auth.resolver.OAuthRefresher`` for every provider with a preset or an ``oauth`` config block."""

    def __init__(self, settings_for: Callable[[str], OAuthClientSettings | None]) -> None:
        self._settings_for = settings_for

    def can_refresh(self, provider: str) -> bool:
        return self._settings_for(provider) is not None

    def headers(self, provider: str) -> Mapping[str, str]:
        settings = self._settings_for(provider)
        return settings.extra_headers if settings is not None else MappingProxyType({})

    async def refresh(self, provider: str, refresh_token: str, *, now_ms: int) -> OAuthTokens:
        settings = self._settings_for(provider)
        if settings is None:
            raise OAuthError("not_configured", f"No OAuth token endpoint is known for {provider}.")
        from bot.auth.oauth_client import TokenEndpointClient  # noqa: PLC0415 - see the module's docstring

        grant = await TokenEndpointClient(settings).refresh(refresh_token, now_ms=now_ms)
        # RFC 6749 §6: a server that issues no new refresh token lets the client keep the old one.
        return OAuthTokens(grant.access, grant.refresh or refresh_token, grant.expires_ms)
