"""OAuth logins in real turns: ``build_app`` on a fake clock, the loopback fake provider and fake OAuth server.

A login close to expiry is refreshed before the call and the provider sees the new token; a refused
refresh fails that profile as ``auth`` and the turn rotates to the next one; a login's extraHeaders reach
the provider; the status views say when each login expires and whether it renews itself.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.auth import doc_edits
from bot.auth.oauth_presets import ANTHROPIC
from bot.auth.store import AuthStore
from bot.auth.types import Credential
from bot.clock import HOUR_MS, MINUTE_MS, SystemClock
from tests.app_helpers import running_app
from tests.cli_helpers import run_cli
from tests.fakes.clock import FakeClock
from tests.fakes.oauth_server import Failure, FakeOAuthServer
from tests.fakes.provider_server import FakeProviderServer
from tests.test_pipeline import say, usage

SONNET = "anthropic/claude-sonnet-4-5"
OLD_ACCESS = "sk-ant-oat01-old-access-0123456789"
API_KEY = "sk-ant-api03-backup-key-0123456789"


@asynccontextmanager
async def anthropic_bot(
    state_dir: Path, clock: FakeClock, profiles: dict[str, Credential], **config: Any
) -> AsyncIterator[tuple[App, FakeProviderServer, FakeOAuthServer]]:
    """Anthropic on the fake provider, its OAuth preset pointed at the fake OAuth server (JSON bodies)."""
    async with (
        FakeProviderServer() as provider,
        FakeOAuthServer(body="json", client_id=ANTHROPIC.client_id) as oauth,
    ):
        settings = {
            "models": {
                "providers": {
                    "anthropic": {
                        "baseUrl": provider.anthropic_base_url,
                        "oauth": {"tokenUrl": oauth.token_url},
                    }
                }
            },
            "agents": {"defaults": {"model": SONNET, "timeoutSeconds": 10}},
            **config,
        }
        creds = {pid: cred(oauth) if callable(cred) else cred for pid, cred in profiles.items()}
        async with running_app(state_dir, clock, config=settings, profiles=creds) as app:
            yield app, provider, oauth


def expiring_login(expires: int) -> Any:
    """A login whose refresh token the fake OAuth server will know (made once the server runs)."""
    return lambda oauth: Credential(
        "oauth",
        "anthropic",
        OLD_ACCESS,
        refresh=oauth.issue_refresh_token(),
        expires=expires,
        email="me@x.test",
    )


async def test_a_login_about_to_expire_is_refreshed_before_the_call(
    state_dir: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """The provider sees the new access token as a bearer with the OAuth beta; the login then shows an hour."""
    caplog.set_level(logging.DEBUG)
    profiles = {"anthropic:me@x.test": expiring_login(clock.now_ms() + 2 * MINUTE_MS)}
    async with anthropic_bot(state_dir, clock, profiles) as (app, provider, oauth):
        reply = await say(app, "hello")
        assert (reply.kind, reply.profile) == ("answer", "anthropic:me@x.test")
        assert oauth.refreshes == 1
        request = provider.requests[-1]
        assert request.key == oauth.issued.access[-1]
        assert "oauth-2025-04-20" in request.headers["anthropic-beta"]
        status = await say(app, "/model status")
        assert "login expires in 1h, refreshes itself" in status.text
        assert OLD_ACCESS[-4:] not in status.text
    assert [s for s in oauth.all_secrets() if s in caplog.text] == []


async def test_a_refused_refresh_fails_the_profile_as_auth_and_the_turn_rotates(
    state_dir: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """invalid_grant: the login gets an auth cooldown, the API key behind it answers, no token is logged."""
    caplog.set_level(logging.DEBUG)
    profiles = {
        "anthropic:me": expiring_login(clock.now_ms() + MINUTE_MS),
        "anthropic:key": Credential("api_key", "anthropic", API_KEY),
    }
    order = {"auth": {"order": {"anthropic": ["anthropic:me", "anthropic:key"]}}}
    async with anthropic_bot(state_dir, clock, profiles, **order) as (app, provider, oauth):
        oauth.fail_next(Failure(400, "invalid_grant"))
        reply = await say(app, "hello")
        assert (reply.kind, reply.profile) == ("answer", "anthropic:key")
        assert [r.key for r in provider.requests] == [API_KEY]  # the dead login never reached the provider
        stats: dict[str, Any] = dict(usage(state_dir)["anthropic:me"])
        assert stats["failureCounts"] == {"auth": 1}
        assert stats["cooldownUntil"] == clock.now_ms() + MINUTE_MS
        assert len(oauth.grants) == 1
    assert "refreshing the OAuth login of anthropic:me failed" in caplog.text
    # (the anthropic SDK itself logs an x-api-key at DEBUG: not an OAuth token, outside this test)
    assert [s for s in [OLD_ACCESS, *oauth.all_secrets()] if s in caplog.text] == []


async def test_a_login_s_extra_headers_reach_the_provider(state_dir: Path, clock: FakeClock) -> None:
    """oauth.extraHeaders ride on calls made with the login (and win over the provider's headers)."""
    async with FakeProviderServer() as provider, FakeOAuthServer() as oauth:
        acme = {
            "baseUrl": provider.openai_base_url,
            "api": "openai-completions",
            "headers": {"X-Org": "from-endpoint", "X-Other": "kept"},
            "oauth": oauth.oauth_config(extraHeaders={"X-Org": "from-login"}),
        }
        config = {"models": {"providers": {"acme": acme}}, "agents": {"defaults": {"model": "acme/m1"}}}
        login = Credential(
            "oauth", "acme", "acme-access-0123456789", refresh="r", expires=clock.now_ms() + HOUR_MS
        )
        async with running_app(state_dir, clock, config=config, profiles={"acme:me": login}) as app:
            reply = await say(app, "hello")
        assert reply.kind == "answer"
        headers = provider.requests[-1].headers
        assert (headers["x-org"], headers["x-other"]) == ("from-login", "kept")
        assert provider.requests[-1].key == "acme-access-0123456789"


def test_auth_list_and_check_tell_renewing_logins_from_dying_ones(
    capsys: pytest.CaptureFixture[str], state_dir: Path
) -> None:
    """anthropic (preset) renews itself; a login of a provider without a token endpoint, or without a refresh
    token, is "cannot refresh", and one expiring within 24 h makes ``models status --check`` exit 2."""
    now = SystemClock().now_ms()  # the CLI reads the wall clock
    config = {"agents": {"defaults": {"model": {"primary": SONNET, "fallbacks": ["openai/gpt-5.2"]}}}}
    (state_dir / "config.json5").write_text(json.dumps(config))
    auth = AuthStore(state_dir / "agents/main/agent/auth-profiles.json")
    auth.update(doc_edits.with_profile("openai:key", Credential("api_key", "openai", API_KEY)))
    auth.update(
        doc_edits.with_profile(
            "anthropic:me",
            Credential("oauth", "anthropic", OLD_ACCESS, refresh="r", expires=now + 3 * HOUR_MS),
        )
    )
    rows = {r["id"]: r for r in json.loads(run_cli(capsys, "auth", "list", "--json").out)}
    assert rows["anthropic:me"]["canRefresh"] is True
    assert rows["anthropic:me"]["state"] == "login expires in 3h, refreshes itself"
    assert run_cli(capsys, "models", "status", "--check").code == 0

    auth.update(
        doc_edits.with_profile(
            "openai:me", Credential("oauth", "openai", OLD_ACCESS, refresh="r", expires=now + 3 * HOUR_MS)
        )
    )
    rows = {r["id"]: r for r in json.loads(run_cli(capsys, "auth", "list", "--json").out)}
    assert rows["openai:me"]["canRefresh"] is False
    assert rows["openai:me"]["state"] == "login expires in 3h, cannot refresh"
    result = run_cli(capsys, "models", "status", "--check", "--json")
    assert result.code == 2
    assert json.loads(result.out)["check"]["problems"] == [
        {"provider": "openai", "profile": "openai:me", "problem": "expiring", "expires": now + 3 * HOUR_MS}
    ]

    auth.update(
        doc_edits.without_profile("openai:me")
    )  # no refresh token: the anthropic login cannot renew either
    auth.update(
        doc_edits.with_profile(
            "anthropic:me", Credential("oauth", "anthropic", OLD_ACCESS, expires=now + 30 * HOUR_MS)
        )
    )
    table = run_cli(capsys, "auth", "list").out
    assert "login expires in 30h, cannot refresh" in table
    assert run_cli(capsys, "models", "status", "--check").code == 0  # more than 24 h left
