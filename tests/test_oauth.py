"""The pure OAuth parts: presets and config, PKCE, the login URL, pasted codes, token answers, who logged in."""

from __future__ import annotations

import base64
import hashlib
import json
from urllib.parse import parse_qs, urlsplit

import pytest

from bot.auth.oauth import (
    DEFAULT_LIFETIME_S,
    PastedCode,
    authorization_url,
    code_grant,
    login_email,
    new_login,
    parse_pasted_code,
    parse_token_answer,
    refresh_grant,
    token_request,
)
from bot.auth.oauth_presets import ANTHROPIC, oauth_settings
from bot.auth.oauth_settings import OAuthClientSettings
from bot.config.loader import parse_config_text
from bot.errors import ConfigError, OAuthError

NOW = 1_700_000_000_000
SETTINGS = OAuthClientSettings(
    provider="acme",
    token_url="https://auth.acme.test/token",
    client_id="cid",
    authorize_url="https://auth.acme.test/authorize?prompt=consent",
    scopes=("a", "b:c"),
    redirect_uri="http://127.0.0.1:8765/cb",
)


def answer(data: object, status: int = 200) -> tuple[int, bytes]:
    return status, json.dumps(data).encode()


# -- presets and config ------------------------------------------------------------------------------


def test_anthropic_has_a_preset_and_config_overrides_it_key_by_key() -> None:
    """No config: the preset. A config block changes only the keys it sets."""
    assert oauth_settings("anthropic", parse_config_text("{}").config) == ANTHROPIC
    assert ANTHROPIC.body_format == "json"
    assert ANTHROPIC.authorize_params == {"code": "true"}
    config = parse_config_text(
        '{models: {providers: {Anthropic: {oauth: {tokenUrl: "https://x.test/t", scopes: "user:inference"}}}}}'
    ).config
    merged = oauth_settings("anthropic", config)
    assert merged is not None
    assert (merged.token_url, merged.scopes) == ("https://x.test/t", ("user:inference",))
    assert (merged.client_id, merged.authorize_url) == (ANTHROPIC.client_id, ANTHROPIC.authorize_url)


def test_a_provider_without_a_preset_gets_its_settings_from_config() -> None:
    """Any provider may log in with tokenUrl and clientId; one without either has no OAuth at all."""
    text = """{models: {providers: {acme: {baseUrl: "https://api.acme.test/v1", api: "openai-completions",
        oauth: {tokenUrl: "https://auth.acme.test/token", clientId: "cid", extraHeaders: {"X-Org": "7"},
                timeoutSeconds: 5}}}}}"""
    settings = oauth_settings("acme", parse_config_text(text).config)
    assert settings is not None
    assert (settings.token_url, settings.client_id, settings.body_format) == (
        "https://auth.acme.test/token",
        "cid",
        "form",
    )
    assert (dict(settings.extra_headers), settings.timeout_s) == ({"X-Org": "7"}, 5)
    assert oauth_settings("openai", parse_config_text(text).config) is None


@pytest.mark.parametrize(
    ("oauth", "key", "expected"),
    [
        ('{clientId: "x"}', "oauth.tokenUrl", "missing required key `tokenUrl`"),
        ('{tokenUrl: "https://a.test/t"}', "oauth.clientId", "missing required key `clientId`"),
        (
            '{tokenUrl: "http://auth.acme.test/t", clientId: "x"}',
            "oauth.tokenUrl",
            "expected an https:// URL",
        ),
        ('{tokenUrl: "token", clientId: "x"}', "oauth.tokenUrl", "expected an absolute URL"),
        ('{tokenUrl: "https://a.test/t", clientId: ""}', "oauth.clientId", "expected a non-empty string"),
        (
            '{tokenUrl: "https://a.test/t", clientId: "x", bodyFormat: "xml"}',
            "oauth.bodyFormat",
            "form, json",
        ),
        ('{tokenUrl: "https://a.test/t", clientId: "x", scopes: ["a b"]}', "oauth.scopes", "one word each"),
        ('{tokenUrl: "https://a.test/t", clientId: "x", tokenurl: 1}', "oauth.tokenurl", "did you mean"),
        (
            '{tokenUrl: "https://a.test/t", clientId: "x", extraHeaders: {Authorization: "Bearer abc"}}',
            "oauth.extraHeaders.Authorization",
            "must not contain secrets",
        ),
    ],
)
def test_bad_oauth_config_is_a_clear_error(oauth: str, key: str, expected: str) -> None:
    """The error names the file, the exact key and what was expected."""
    text = f'{{models: {{providers: {{acme: {{baseUrl: "https://x.test", api: "openai-completions", oauth: {oauth}}}}}}}}}'
    with pytest.raises(ConfigError) as info:
        parse_config_text(text, file="c.json5")
    assert info.value.key_path == f"models.providers.acme.{key}"
    assert expected in str(info.value)


def test_loopback_http_and_native_redirects_are_accepted() -> None:
    """Plain http is fine on this machine; a native app's custom-scheme redirect is the provider's business."""
    text = """{models: {providers: {acme: {baseUrl: "https://x.test", api: "openai-completions",
        oauth: {tokenUrl: "http://127.0.0.1:9/t", clientId: "x", redirectUri: "com.acme.app:/cb"}}}}}"""
    settings = oauth_settings("acme", parse_config_text(text).config)
    assert settings is not None and settings.redirect_uri == "com.acme.app:/cb"


# -- the login URL and the code ----------------------------------------------------------------------


def test_authorization_url_carries_pkce_s256_and_state() -> None:
    """RFC 6749 §4.1.1 parameters plus the S256 challenge of the verifier; existing query kept."""
    login = new_login()
    url = authorization_url(SETTINGS, login)
    query = parse_qs(urlsplit(url).query)
    assert query["prompt"] == ["consent"]
    assert query["client_id"] == ["cid"] and query["response_type"] == ["code"]
    assert query["redirect_uri"] == ["http://127.0.0.1:8765/cb"]
    assert query["scope"] == ["a b:c"]
    assert query["code_challenge_method"] == ["S256"] and query["state"] == [login.state]
    expected = base64.urlsafe_b64encode(hashlib.sha256(login.verifier.encode()).digest()).rstrip(b"=")
    assert query["code_challenge"] == [expected.decode()]
    assert login.verifier not in url
    assert 43 <= len(login.verifier) <= 128 and login.verifier not in repr(login)


def test_anthropic_login_url_asks_for_a_code_to_paste() -> None:
    query = parse_qs(urlsplit(authorization_url(ANTHROPIC, new_login())).query)
    assert query["code"] == ["true"]
    assert query["redirect_uri"] == ["https://platform.claude.com/oauth/code/callback"]


def test_login_needs_an_authorize_url() -> None:
    settings = OAuthClientSettings(provider="acme", token_url="https://a.test/t", client_id="x")
    with pytest.raises(OAuthError, match=r"oauth\.authorizeUrl"):
        authorization_url(settings, new_login())


@pytest.mark.parametrize(
    ("pasted", "code", "state"),
    [
        ("abc123#st4te", "abc123", "st4te"),
        ("  abc123  \n", "abc123", None),
        ("https://x.test/cb?code=abc123&state=st4te", "abc123", "st4te"),
        ("http://127.0.0.1:8765/cb?state=st4te&code=abc123", "abc123", "st4te"),
        ("code=abc123&state=st4te", "abc123", "st4te"),
        ("?code=abc123", "abc123", None),
    ],
)
def test_pasted_codes(pasted: str, code: str, state: str | None) -> None:
    """Whatever the provider showed, or the address bar after the redirect."""
    result = parse_pasted_code(pasted)
    assert (result.code, result.state) == (code, state)
    assert code not in repr(result)


@pytest.mark.parametrize(
    ("pasted", "message"),
    [
        ("", "No authorization code"),
        ("two words", "does not look like"),
        ("https://x.test/cb?error=access_denied&error_description=User+said+no", "access_denied"),
        ("https://x.test/cb?state=x", "no authorization code"),
    ],
)
def test_bad_pastes_are_refused(pasted: str, message: str) -> None:
    with pytest.raises(OAuthError, match=message):
        parse_pasted_code(pasted)


def test_code_grant_checks_the_state_and_sends_the_verifier() -> None:
    """A code from another login attempt is refused before anything is sent."""
    login = new_login()
    grant = code_grant(PastedCode("abc", login.state), login, SETTINGS)
    assert grant == {
        "grant_type": "authorization_code",
        "code": "abc",
        "redirect_uri": "http://127.0.0.1:8765/cb",
        "client_id": "cid",
        "code_verifier": login.verifier,
        "state": login.state,
    }
    assert code_grant(PastedCode("abc"), login, SETTINGS)["state"] == login.state
    with pytest.raises(OAuthError, match="state mismatch"):
        code_grant(PastedCode("abc", "other"), login, SETTINGS)


def test_token_requests_are_forms_or_json() -> None:
    grant = refresh_grant("r-1", SETTINGS)
    headers, body = token_request(SETTINGS, grant)
    assert headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert body == b"grant_type=refresh_token&refresh_token=r-1&client_id=cid"
    headers, body = token_request(ANTHROPIC, refresh_grant("r-1", ANTHROPIC))
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {
        "grant_type": "refresh_token",
        "refresh_token": "r-1",
        "client_id": ANTHROPIC.client_id,
    }


# -- token answers -----------------------------------------------------------------------------------


def test_a_token_answer() -> None:
    status, body = answer(
        {
            "access_token": "at-0123456789-abcdef",
            "token_type": "Bearer",
            "expires_in": 28800,
            "refresh_token": "rt",
        }
    )
    grant = parse_token_answer(status, body, now_ms=NOW)
    assert (grant.access, grant.refresh) == ("at-0123456789-abcdef", "rt")
    assert (grant.expires_ms, grant.email) == (NOW + 28_800_000, None)
    assert "0123456789" not in repr(grant)


@pytest.mark.parametrize("expires_in", [None, 0, -5, "soon", True])
def test_a_missing_or_odd_lifetime_counts_as_an_hour(expires_in: object) -> None:
    data = {"access_token": "acc"} | ({} if expires_in is None else {"expires_in": expires_in})
    grant = parse_token_answer(*answer(data), now_ms=NOW)
    assert grant.expires_ms == NOW + DEFAULT_LIFETIME_S * 1000
    assert grant.refresh is None


@pytest.mark.parametrize(
    ("status", "body", "code"),
    [
        (400, {"error": "invalid_grant", "error_description": "Refresh token not found"}, "invalid_grant"),
        (200, {"error": "invalid_scope"}, "invalid_scope"),
        (401, {"error": {"type": "authentication_error", "message": "bad"}}, "authentication_error"),
        (400, {"error": "bad code\nwith newline"}, "http_400"),
        (503, "<html>down</html>", "http_503"),
        (200, {"token_type": "Bearer"}, "bad_answer"),
        (200, {"access_token": "acc", "token_type": "mac"}, "bad_answer"),
        (200, "not json", "bad_answer"),
    ],
)
def test_token_errors(status: int, body: object, code: str) -> None:
    """RFC 6749 §5.2 error codes come through; anything else is named by its status."""
    raw = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    with pytest.raises(OAuthError) as info:
        parse_token_answer(status, raw, now_ms=NOW)
    assert info.value.code == code


def test_an_error_description_quoting_a_sent_secret_is_not_repeated() -> None:
    body = {"error": "invalid_grant", "error_description": "token refresh-secret-123 is revoked"}
    with pytest.raises(OAuthError) as info:
        parse_token_answer(400, json.dumps(body).encode(), now_ms=NOW, sent=("refresh-secret-123",))
    assert "refresh-secret-123" not in str(info.value)
    assert info.value.code == "invalid_grant"


def test_who_logged_in() -> None:
    """The email, from wherever the provider puts it; odd values are ignored."""
    claims = base64.urlsafe_b64encode(json.dumps({"email": "oidc@x.test"}).encode()).rstrip(b"=").decode()
    assert login_email({"account": {"email_address": "me@x.test"}}) == "me@x.test"
    assert login_email({"email": "top@x.test", "account": {"email_address": "me@x.test"}}) == "top@x.test"
    assert login_email({"user": {"email": "u@x.test"}}) == "u@x.test"
    assert login_email({"id_token": f"h.{claims}.s"}) == "oidc@x.test"
    assert login_email({"id_token": "garbage", "account": {"email_address": "not an email"}}) is None
    assert login_email({"email": "a@b c"}) is None
