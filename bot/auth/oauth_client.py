"""Token endpoint calls: exchanging a login's code and refreshing a login, over httpx2 with a hard deadline.

httpx2 is the HTTP client the provider SDKs already bring; it is imported on the first call only, so the
CLI's other commands do not pay for it. Every failure is an ``OAuthError`` whose message holds no token.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from bot.auth.oauth import (
    LoginStart,
    PastedCode,
    TokenGrant,
    code_grant,
    parse_token_answer,
    refresh_grant,
    token_request,
)
from bot.auth.oauth_settings import OAuthClientSettings
from bot.errors import OAuthError

log = logging.getLogger("modelbot.auth")

CONNECT_TIMEOUT_S = 10.0
MAX_ANSWER_BYTES = 1 << 20  # a token answer is a few hundred bytes; anything huge is not one


class TokenEndpointClient:
    """One provider's token endpoint (RFC 6749 §3.2). Stateless: a connection per call, as calls are rare."""

    def __init__(self, settings: OAuthClientSettings) -> None:
        self.settings = settings

    async def exchange_code(self, pasted: PastedCode, login: LoginStart, *, now_ms: int) -> TokenGrant:
        """The login's authorization code for tokens (RFC 6749 §4.1.3, with the PKCE verifier)."""
        grant = code_grant(pasted, login, self.settings)
        return await self._call(grant, now_ms=now_ms, sent=(pasted.code, login.verifier))

    async def refresh(self, refresh_token: str, *, now_ms: int) -> TokenGrant:
        """New tokens for a refresh token (RFC 6749 §6); the old refresh token is spent either way."""
        grant = refresh_grant(refresh_token, self.settings)
        return await self._call(grant, now_ms=now_ms, sent=(refresh_token,))

    async def _call(self, grant: Mapping[str, str], *, now_ms: int, sent: tuple[str, ...]) -> TokenGrant:
        import httpx2  # noqa: PLC0415 - 0.15 s of imports that only a login or a refresh needs

        headers, body = token_request(self.settings, grant)
        deadline = self.settings.timeout_s
        timeout = httpx2.Timeout(deadline, connect=min(CONNECT_TIMEOUT_S, deadline))
        try:
            # asyncio.timeout bounds the whole exchange: httpx's timeouts are per read, and a server that
            # trickles bytes would never trip them.
            async with asyncio.timeout(deadline), httpx2.AsyncClient(timeout=timeout) as client:
                response = await client.post(self.settings.token_url, content=body, headers=headers)
                answer = response.content[:MAX_ANSWER_BYTES]
        except (TimeoutError, httpx2.TimeoutException):
            raise OAuthError("timeout", f"The token endpoint did not answer within {deadline:g} s.") from None
        except httpx2.HTTPError as exc:
            raise OAuthError(
                "network", f"Could not reach the token endpoint ({type(exc).__name__})."
            ) from None
        return parse_token_answer(response.status_code, answer, now_ms=now_ms, sent=sent)
