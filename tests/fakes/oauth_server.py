"""A loopback fake of an OAuth 2.0 provider: authorize page, token endpoint with single-use refresh tokens.

It checks what a real server checks (client id, redirect URI, PKCE S256, single-use codes and refresh
tokens, the request encoding) and answers errors the RFC 6749 §5.2 way. ``fail_next`` scripts error answers
(``invalid_grant``, a 503), ``stall_s`` holds every token answer back, and ``refresh_delay_s`` makes a
successful refresh slow so that concurrent refreshers overlap. It counts every grant it serves.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import secrets
from collections import deque
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self
from urllib.parse import parse_qsl, urlencode

from aiohttp import web

CLIENT_ID = "modelbot-test-client"
PASTE_REDIRECT = "https://oauth.invalid/code/callback"  # a page that shows code#state (Anthropic style)


@dataclass(frozen=True)
class Failure:
    """One scripted error answer of the token endpoint."""

    status: int = 400
    error: str = "invalid_grant"
    description: str = "Refresh token not found or invalid"


@dataclass
class Issued:
    """Everything the server handed out, so tests can look for it in output and logs."""

    codes: list[str] = field(default_factory=list)
    access: list[str] = field(default_factory=list)
    refresh: list[str] = field(default_factory=list)


@dataclass
class _Pending:
    client_id: str
    redirect_uri: str
    challenge: str
    state: str


class FakeOAuthServer:
    """``async with FakeOAuthServer() as oauth`` serves ``/authorize`` and ``/token`` on 127.0.0.1."""

    def __init__(
        self,
        *,
        body: Literal["form", "json"] = "form",
        email: str | None = "me@example.com",
        expires_in: int = 3600,
        redirect_uris: tuple[str, ...] = (PASTE_REDIRECT,),
        client_id: str = CLIENT_ID,
    ) -> None:
        self.client_id = client_id
        self.body = body  # the only encoding the token endpoint accepts, like Anthropic's JSON-only one
        self.email = email
        self.expires_in = expires_in
        self.redirect_uris = set(redirect_uris)
        self.stall_s = 0.0
        self.refresh_delay_s = 0.0
        self.issued = Issued()
        self.grants: list[dict[str, str]] = []  # every token request, in order
        self.refreshes = 0  # successful refresh grants
        self.reused = 0  # refresh tokens presented again after they were spent
        self._failures: deque[Failure] = deque()
        self._codes: dict[str, _Pending] = {}
        self._live_refresh: set[str] = set()
        self._spent_refresh: set[str] = set()
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._port = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/token"

    @property
    def authorize_url(self) -> str:
        return f"{self.base_url}/authorize"

    def oauth_config(self, redirect_uri: str = PASTE_REDIRECT, **extra: Any) -> dict[str, Any]:
        """A ``models.providers.<id>.oauth`` block pointing at this server."""
        return {
            "tokenUrl": self.token_url,
            "clientId": self.client_id,
            "authorizeUrl": self.authorize_url,
            "redirectUri": redirect_uri,
            "scopes": ["user:inference", "user:profile"],
            "bodyFormat": self.body,
            **extra,
        }

    def fail_next(self, *failures: Failure) -> None:
        self._failures.extend(failures)

    def issue_refresh_token(self) -> str:
        """A live refresh token, as if a login had happened earlier."""
        token = "fake-refresh-" + secrets.token_urlsafe(24)
        self._live_refresh.add(token)
        self.issued.refresh.append(token)
        return token

    def all_secrets(self) -> list[str]:
        return [*self.issued.codes, *self.issued.access, *self.issued.refresh]

    async def __aenter__(self) -> Self:
        app = web.Application()
        app.router.add_get("/authorize", self._authorize)
        app.router.add_post("/token", self._token)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._port = self._runner.addresses[0][1]
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- authorize -------------------------------------------------------------------------------------

    async def _authorize(self, request: web.Request) -> web.Response:
        """Approve at once: a paste page shows ``code#state``; a loopback redirect URI gets a 302."""
        q = request.query
        problems = [
            q.get("response_type") != "code" and "response_type",
            q.get("client_id") != self.client_id and "client_id",
            q.get("redirect_uri") not in self.redirect_uris and "redirect_uri",
            q.get("code_challenge_method") != "S256" and "code_challenge_method",
            not q.get("code_challenge") and "code_challenge",
            not q.get("state") and "state",
        ]
        if any(problems):
            return web.Response(
                status=400, text="bad authorize request: " + ", ".join(p for p in problems if p)
            )
        code = "fake-code-" + secrets.token_urlsafe(16)
        self.issued.codes.append(code)
        redirect = q["redirect_uri"]
        self._codes[code] = _Pending(q["client_id"], redirect, q["code_challenge"], q["state"])
        if redirect == PASTE_REDIRECT:
            return web.Response(text=f"{code}#{q['state']}")
        raise web.HTTPFound(f"{redirect}?{urlencode({'code': code, 'state': q['state']})}")

    # -- token -----------------------------------------------------------------------------------------

    async def _token(self, request: web.Request) -> web.Response:
        raw = await request.read()
        is_json = request.content_type == "application/json"
        if is_json != (self.body == "json"):
            return _error(400, "invalid_request", "Invalid request format")
        try:
            grant = json.loads(raw) if is_json else dict(parse_qsl(raw.decode()))
        except ValueError:
            return _error(400, "invalid_request", "Invalid request format")
        self.grants.append(grant)
        if self.stall_s:
            await self._sleep(self.stall_s)
        if self._failures:
            failure = self._failures.popleft()
            if failure.status >= 500:
                return web.Response(status=failure.status, text="upstream unavailable")
            return _error(failure.status, failure.error, failure.description)
        if grant.get("client_id") != self.client_id:
            return _error(401, "invalid_client", "Unknown client")
        if grant.get("grant_type") == "authorization_code":
            return self._code_grant(grant)
        if grant.get("grant_type") == "refresh_token":
            return await self._refresh_grant(grant)
        return _error(400, "unsupported_grant_type", "")

    def _code_grant(self, grant: dict[str, str]) -> web.Response:
        pending = self._codes.pop(grant.get("code", ""), None)  # single use
        if pending is None:
            return _error(400, "invalid_grant", "Invalid or used authorization code")
        if grant.get("redirect_uri") != pending.redirect_uri:
            return _error(400, "invalid_grant", "redirect_uri mismatch")
        if _s256(grant.get("code_verifier", "")) != pending.challenge:
            return _error(400, "invalid_grant", "PKCE verification failed")
        if grant.get("state") != pending.state:
            return _error(400, "invalid_grant", "state mismatch")
        return self._tokens()

    async def _refresh_grant(self, grant: dict[str, str]) -> web.Response:
        token = grant.get("refresh_token", "")
        if token in self._spent_refresh:
            self.reused += 1
        if token not in self._live_refresh:
            return _error(400, "invalid_grant", "Refresh token not found or invalid")
        self._live_refresh.discard(token)  # spent from the moment it arrives, like a real rotating server
        self._spent_refresh.add(token)
        if self.refresh_delay_s:
            await self._sleep(self.refresh_delay_s)
        self.refreshes += 1
        return self._tokens()

    def _tokens(self) -> web.Response:
        access = "fake-access-" + secrets.token_urlsafe(24)
        refresh = self.issue_refresh_token()
        self.issued.access.append(access)
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": refresh,
            "scope": "user:inference user:profile",
        }
        if self.email:
            body["account"] = {"uuid": "acct-1", "email_address": self.email}
        return web.json_response(body)

    async def _sleep(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._closing.wait(), seconds)


def _error(status: int, error: str, description: str) -> web.Response:
    return web.json_response({"error": error, "error_description": description}, status=status)


def _s256(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
