"""OAuth 2.0 provider logins, the pure part: settings, PKCE, the authorization URL, token requests and answers.

The authorization-code grant with PKCE (RFC 6749 §4.1, RFC 7636 S256) and the refresh-token grant (RFC 6749
§6), with errors as RFC 6749 §5.2 defines them. Nothing here does I/O or reads a clock:
``bot.auth.oauth_client`` sends the requests, ``bot.auth.oauth_presets`` says where they go.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from bot.auth.mask import mask_secret
from bot.auth.oauth_settings import OAuthClientSettings
from bot.errors import OAuthError

# RFC 6749 §5.1 only recommends expires_in; without it, assume an hour, so the login is refreshed rather
# than trusted forever.
DEFAULT_LIFETIME_S = 3600
MAX_DESCRIPTION = 200  # of a token endpoint's error_description, in a message
_ERROR_CODE = re.compile(r"[\x20-\x21\x23-\x5b\x5d-\x7e]{1,64}")  # RFC 6749 §5.2 charset
_EMAIL = re.compile(r"[^@\s]{1,64}@[^@\s]{1,190}")


@dataclass(frozen=True, repr=False)
class LoginStart:
    """One login attempt's PKCE verifier and challenge, and the state that ties the answer to it."""

    verifier: str
    challenge: str
    state: str

    def __repr__(self) -> str:
        return "LoginStart(…)"  # the verifier is what makes a stolen code useless: keep it out of tracebacks


def new_login() -> LoginStart:
    # 48 random bytes: 64 characters, inside RFC 7636 §4.1's 43-128 and as long as the widely used clients send.
    verifier = secrets.token_urlsafe(48)
    return LoginStart(verifier, s256(verifier), secrets.token_urlsafe(48))


def s256(verifier: str) -> str:
    """The PKCE S256 challenge: BASE64URL(SHA256(verifier)) without padding (RFC 7636 §4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def authorization_url(settings: OAuthClientSettings, login: LoginStart) -> str:
    """The URL the user opens to log in (RFC 6749 §4.1.1 plus the PKCE challenge)."""
    if not settings.authorize_url or not settings.redirect_uri:
        missing = "authorizeUrl" if not settings.authorize_url else "redirectUri"
        raise OAuthError(
            "not_configured",
            f"Logging in to {settings.provider} needs models.providers.{settings.provider}.oauth.{missing}.",
        )
    params: dict[str, str] = {
        **settings.authorize_params,
        "client_id": settings.client_id,
        "response_type": "code",
        "redirect_uri": settings.redirect_uri,
    }
    if settings.scopes:
        params["scope"] = " ".join(settings.scopes)
    params.update(code_challenge=login.challenge, code_challenge_method="S256", state=login.state)
    joiner = "&" if urlsplit(settings.authorize_url).query else "?"
    return settings.authorize_url + joiner + urlencode(params)


@dataclass(frozen=True, repr=False)
class PastedCode:
    """The authorization code the user brought back, and the state that came with it (if any)."""

    code: str
    state: str | None = None

    def __repr__(self) -> str:
        return "PastedCode(…)"


def parse_pasted_code(text: str) -> PastedCode:
    """What the user pasted: ``code#state`` (Anthropic's callback page), the whole redirect URL,
    ``code=…&state=…``, or the bare code."""
    text = text.strip()
    if not text:
        raise OAuthError("input", "No authorization code was given; nothing was stored.")
    query: str | None = None
    if "://" in text:
        parts = urlsplit(text)
        query = parts.query or parts.fragment
    elif "code=" in text or "error=" in text:
        query = text.lstrip("?")
    if query is not None:
        return code_from_query(query)
    code, _, state = text.partition("#")
    if not code or any(ch.isspace() or not ch.isprintable() for ch in text):
        raise OAuthError("input", "That does not look like an authorization code; nothing was stored.")
    return PastedCode(code, state or None)


def code_from_query(query: str) -> PastedCode:
    """The code and state of a redirect's query; an ``error`` there (RFC 6749 §4.1.2.1) is raised."""
    fields = {k: v[0] for k, v in parse_qs(query, keep_blank_values=True).items()}
    if "error" in fields:
        raise _answer_error(fields, None)
    code = fields.get("code", "")
    if not code:
        raise OAuthError("input", "The redirect carries no authorization code; nothing was stored.")
    return PastedCode(code, fields.get("state") or None)


def code_grant(pasted: PastedCode, login: LoginStart, settings: OAuthClientSettings) -> dict[str, str]:
    """RFC 6749 §4.1.3 with the PKCE verifier; ``state`` goes along because Anthropic's endpoint wants it
    (servers must ignore parameters they do not know, RFC 6749 §3.2)."""
    if pasted.state is not None and pasted.state != login.state:
        raise OAuthError(
            "input", "The code belongs to another login attempt (state mismatch); nothing was stored."
        )
    return {
        "grant_type": "authorization_code",
        "code": pasted.code,
        "redirect_uri": settings.redirect_uri or "",
        "client_id": settings.client_id,
        "code_verifier": login.verifier,
        "state": login.state,
    }


def refresh_grant(refresh_token: str, settings: OAuthClientSettings) -> dict[str, str]:
    """RFC 6749 §6; no scope, so the new token has the scope of the original grant."""
    return {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": settings.client_id}


def token_request(settings: OAuthClientSettings, grant: Mapping[str, str]) -> tuple[dict[str, str], bytes]:
    """Headers and body of a token request: a form (RFC 6749) or, where the provider wants it, JSON."""
    if settings.body_format == "json":
        return {"Content-Type": "application/json", "Accept": "application/json"}, json.dumps(
            dict(grant)
        ).encode()
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"}
    return headers, urlencode(dict(grant)).encode()


@dataclass(frozen=True, repr=False)
class TokenGrant:
    """A successful token answer (RFC 6749 §5.1): what the store keeps of it."""

    access: str
    refresh: str | None
    expires_ms: int
    email: str | None = None

    def __repr__(self) -> str:
        return f"TokenGrant(access={mask_secret(self.access)}, expires_ms={self.expires_ms})"


def parse_token_answer(status: int, body: bytes, *, now_ms: int, sent: tuple[str, ...] = ()) -> TokenGrant:
    """A token endpoint's answer; errors become ``OAuthError`` with the RFC 6749 §5.2 code.

    ``sent`` are the secrets of the request (code, verifier, refresh token): an error description that
    quotes one of them is not repeated.
    """
    try:
        data: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        if status >= 400:
            raise OAuthError(f"http_{status}", f"The token endpoint answered HTTP {status}.", status=status)
        raise OAuthError("bad_answer", "The token endpoint's answer is not a JSON object.", status=status)
    if status >= 400 or "error" in data:
        raise _answer_error(data, status, sent)
    access = data.get("access_token")
    if not isinstance(access, str) or not access.strip():
        raise OAuthError("bad_answer", "The token endpoint's answer holds no access_token.", status=status)
    token_type = data.get("token_type")
    if isinstance(token_type, str) and token_type.lower() != "bearer":
        raise OAuthError("bad_answer", f"Unsupported token_type {token_type[:20]!r} (bearer expected).")
    refresh = data.get("refresh_token")
    return TokenGrant(
        access=access.strip(),
        refresh=refresh.strip() if isinstance(refresh, str) and refresh.strip() else None,
        expires_ms=now_ms + _lifetime_s(data.get("expires_in")) * 1000,
        email=login_email(data),
    )


def _lifetime_s(value: object) -> int:
    if isinstance(value, bool):
        return DEFAULT_LIFETIME_S
    if isinstance(value, int | float) and value > 0:
        return int(value)
    if isinstance(value, str) and value.strip().isdigit() and int(value) > 0:
        return int(value)
    return DEFAULT_LIFETIME_S


def _answer_error(data: Mapping[str, Any], status: int | None, sent: tuple[str, ...] = ()) -> OAuthError:
    raw: object = data.get("error")
    description: object = data.get("error_description")
    if isinstance(raw, dict):  # Anthropic's API style: {"error": {"type", "message"}}
        nested: dict[str, object] = raw
        raw, description = nested.get("type"), nested.get("message")
    code = raw if isinstance(raw, str) and _ERROR_CODE.fullmatch(raw) else f"http_{status or 400}"
    text = f"The token endpoint refused the request: {code}"
    if isinstance(description, str) and description.strip():
        shown = " ".join(description.split())[:MAX_DESCRIPTION]
        if not any(len(s) >= 8 and s in shown for s in sent):
            text += f" ({shown})"
    return OAuthError(code, text + ".", status=status)


def login_email(data: Mapping[str, Any]) -> str | None:
    """Who logged in, when the answer says: ``email``, ``account.email_address`` (Anthropic), ``user.email``,
    or the ``email`` claim of an OpenID Connect ``id_token`` (read, not verified: it only names the profile)."""
    candidates: list[object] = [data.get("email")]
    for key in ("account", "user"):
        nested = data.get(key)
        if isinstance(nested, dict):
            candidates += [nested.get("email_address"), nested.get("email")]
    id_token = data.get("id_token")
    if isinstance(id_token, str):
        candidates.append(_jwt_claims(id_token).get("email"))
    for value in candidates:
        if isinstance(value, str) and _EMAIL.fullmatch(value.strip()) and value.isprintable():
            return value.strip()
    return None


def _jwt_claims(token: str) -> dict[str, Any]:
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        return {}
    return claims if isinstance(claims, dict) else {}
