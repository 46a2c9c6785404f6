"""OAuth refresh as production wires it (``build_resolver``), against the loopback fake OAuth server.

Refresh before expiry on the fake clock, the three tokens stored together, failures (invalid_grant, 5xx, a
stalled endpoint) as ``auth`` failures that keep the stored login, one refresh for three processes, and no
token in any log line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from bot.app import auth_store_for, build_resolver, load
from bot.auth import doc_edits
from bot.auth.oauth_presets import ANTHROPIC
from bot.auth.resolver import REFRESH_MARGIN_MS, CredentialResolver
from bot.auth.store import AuthStore
from bot.auth.types import Credential
from bot.clock import HOUR_MS, MINUTE_MS
from bot.errors import ProviderError
from bot.failover.reasons import Reason
from tests.app_helpers import file_store
from tests.fakes.clock import FakeClock
from tests.fakes.oauth_server import Failure, FakeOAuthServer

REPO = Path(__file__).resolve().parent.parent
PROFILE = "acme:me@example.com"


def write_config(state_dir: Path, oauth: FakeOAuthServer, provider: str = "acme", **extra: Any) -> None:
    entry: dict[str, Any] = {"oauth": oauth.oauth_config(**extra)}
    if provider != "anthropic":
        entry |= {"baseUrl": "https://api.acme.test/v1", "api": "openai-completions"}
    config = {"models": {"providers": {provider: entry}}}
    (state_dir / "config.json5").write_text(json.dumps(config), encoding="utf-8")


def production_resolver(state_dir: Path) -> CredentialResolver:
    env = {"MODELBOT_STATE_DIR": str(state_dir)}
    paths, loaded = load(None, env)
    return build_resolver(loaded, auth_store_for(paths, "main"), env)


def login(oauth: FakeOAuthServer, expires: int, provider: str = "acme") -> Credential:
    """A stored login whose refresh token the fake server knows."""
    return Credential(
        type="oauth",
        provider=provider,
        secret="old-access-token-0123456789",
        refresh=oauth.issue_refresh_token(),
        expires=expires,
        email="me@example.com",
    )


async def test_a_login_is_refreshed_shortly_before_it_expires(state_dir: Path, clock: FakeClock) -> None:
    """Used as it is until five minutes before expiry; then refreshed once, the three tokens stored together."""
    async with FakeOAuthServer() as oauth:
        write_config(state_dir, oauth)
        resolver = production_resolver(state_dir)
        old = login(oauth, clock.now_ms() + 10 * MINUTE_MS)
        file_store(resolver).update(doc_edits.with_profile(PROFILE, old))
        assert (await resolver.resolve(PROFILE, now_ms=clock.now_ms())).secret == old.secret
        assert oauth.grants == []

        clock.advance(ms=10 * MINUTE_MS - REFRESH_MARGIN_MS)
        auth = await resolver.resolve(PROFILE, now_ms=clock.now_ms())
        assert oauth.refreshes == 1 and oauth.grants[0]["refresh_token"] == old.refresh
        assert auth.secret == oauth.issued.access[-1]
        stored = AuthStore(file_store(resolver).path).load().profiles[PROFILE]
        assert (stored.secret, stored.refresh) == (oauth.issued.access[-1], oauth.issued.refresh[-1])
        assert stored.expires == clock.now_ms() + HOUR_MS
        assert stored.email == "me@example.com"

        clock.advance(minutes=30)  # the new login is good for an hour: no second refresh
        assert (await resolver.resolve(PROFILE, now_ms=clock.now_ms())).secret == stored.secret
        assert oauth.refreshes == 1 and oauth.reused == 0


async def test_an_expired_login_is_refreshed_before_use(state_dir: Path, clock: FakeClock) -> None:
    """Past its expiry, a login with a refresh token still works: it is refreshed first."""
    async with FakeOAuthServer() as oauth:
        write_config(state_dir, oauth)
        resolver = production_resolver(state_dir)
        file_store(resolver).update(doc_edits.with_profile(PROFILE, login(oauth, clock.now_ms() - HOUR_MS)))
        assert (await resolver.resolve(PROFILE, now_ms=clock.now_ms())).secret == oauth.issued.access[-1]


async def test_the_anthropic_preset_refreshes_with_json(state_dir: Path, clock: FakeClock) -> None:
    """Overriding only the endpoint keeps the rest of the preset: its client id and its JSON body, which a
    JSON-only endpoint (like Anthropic's) accepts where a form is refused."""
    async with FakeOAuthServer(body="json", client_id=ANTHROPIC.client_id) as oauth:
        config = {"models": {"providers": {"anthropic": {"oauth": {"tokenUrl": oauth.token_url}}}}}
        (state_dir / "config.json5").write_text(json.dumps(config), encoding="utf-8")
        resolver = production_resolver(state_dir)
        file_store(resolver).update(
            doc_edits.with_profile("anthropic:me", login(oauth, clock.now_ms(), provider="anthropic"))
        )
        auth = await resolver.resolve("anthropic:me", now_ms=clock.now_ms())
        assert (auth.type, auth.secret) == ("oauth", oauth.issued.access[-1])
        assert oauth.grants[0]["grant_type"] == "refresh_token"


@pytest.mark.parametrize(
    ("failure", "code"),
    [(Failure(400, "invalid_grant"), "invalid_grant"), (Failure(503), "http_503")],
)
async def test_a_refused_refresh_is_an_auth_failure(
    state_dir: Path, clock: FakeClock, failure: Failure, code: str
) -> None:
    """invalid_grant and a 5xx both fail the profile as ``auth``; the stored login is left as it was."""
    async with FakeOAuthServer() as oauth:
        write_config(state_dir, oauth)
        resolver = production_resolver(state_dir)
        old = login(oauth, clock.now_ms() + MINUTE_MS)
        file_store(resolver).update(doc_edits.with_profile(PROFILE, old))
        oauth.fail_next(failure)
        with pytest.raises(ProviderError) as info:
            await resolver.resolve(PROFILE, now_ms=clock.now_ms())
        assert info.value.reason is Reason.AUTH
        assert f"({code})" in str(info.value)
        assert ("modelbot auth login --provider acme" in str(info.value)) == (code == "invalid_grant")
        assert AuthStore(file_store(resolver).path).load().profiles[PROFILE] == old


async def test_a_stalled_token_endpoint_times_out_as_auth(state_dir: Path, clock: FakeClock) -> None:
    """The refresh gives up after timeoutSeconds, fails as ``auth``, and releases the refresh lock."""
    async with FakeOAuthServer() as oauth:
        write_config(state_dir, oauth, timeoutSeconds=0.3)
        resolver = production_resolver(state_dir)
        file_store(resolver).update(doc_edits.with_profile(PROFILE, login(oauth, clock.now_ms() + MINUTE_MS)))
        oauth.stall_s = 30
        started = time.monotonic()
        with pytest.raises(ProviderError) as info:
            await resolver.resolve(PROFILE, now_ms=clock.now_ms())
        assert time.monotonic() - started < 5
        assert info.value.reason is Reason.AUTH and "(timeout)" in str(info.value)

        oauth.stall_s = 0  # the endpoint recovers: the next turn refreshes (the lock was released)
        auth = await asyncio.wait_for(resolver.resolve(PROFILE, now_ms=clock.now_ms()), 5)
        assert auth.secret == oauth.issued.access[-1]


async def test_no_token_reaches_a_log_line(
    state_dir: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Every logger at DEBUG, HTTP client included, through a refresh and a refused refresh."""
    caplog.set_level(logging.DEBUG)
    async with FakeOAuthServer() as oauth:
        write_config(state_dir, oauth)
        resolver = production_resolver(state_dir)
        old = login(oauth, clock.now_ms() + MINUTE_MS)
        file_store(resolver).update(doc_edits.with_profile(PROFILE, old))
        await resolver.resolve(PROFILE, now_ms=clock.now_ms())
        clock.advance(hours=1)
        oauth.fail_next(Failure(400, "invalid_grant", f"token {oauth.issued.refresh[-1]} was revoked"))
        with pytest.raises(ProviderError) as info:
            await resolver.resolve(PROFILE, now_ms=clock.now_ms())
    assert "refreshed the OAuth login of acme:me@example.com" in caplog.text
    assert "invalid_grant" in caplog.text
    secrets = [old.secret, *oauth.all_secrets()]
    leaked = [s for s in secrets if s in caplog.text or s in str(info.value) or s in repr(info.value)]
    assert leaked == []


WORKER = """
import asyncio, os, sys, time
from pathlib import Path
from bot.app import auth_store_for, build_resolver, load

go, now = Path(sys.argv[1]), int(sys.argv[2])
env = dict(os.environ)
paths, loaded = load(None, env)
resolver = build_resolver(loaded, auth_store_for(paths, "main"), env)
deadline = time.monotonic() + 60
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.002)
print(asyncio.run(resolver.resolve(sys.argv[3], now_ms=now)).secret)
"""


@pytest.mark.slow
async def test_three_processes_spend_the_refresh_token_once(state_dir: Path, tmp_path: Path) -> None:
    """Three bot processes need the same expiring login at once: the token endpoint sees one refresh, and
    all three use its result."""
    async with FakeOAuthServer() as oauth:
        oauth.refresh_delay_s = 0.5  # the winner holds the lock long enough for the others to queue up
        write_config(state_dir, oauth)
        now = int(time.time() * 1000)
        file_store(production_resolver(state_dir)).update(
            doc_edits.with_profile(PROFILE, login(oauth, now + MINUTE_MS))
        )
        go = tmp_path / "go"
        env = {**os.environ, "MODELBOT_STATE_DIR": str(state_dir), "PYTHONPATH": str(REPO)}
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                WORKER,
                str(go),
                str(now),
                PROFILE,
                env=env,
                cwd=REPO,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
            for _ in range(3)
        ]
        await asyncio.sleep(0.5)
        go.touch()
        results = [await asyncio.wait_for(proc.communicate(), 90) for proc in procs]
    for proc, (_, err) in zip(procs, results, strict=True):
        assert proc.returncode == 0, err.decode()[-2000:]
    secrets = {out.decode().strip() for out, _ in results}
    assert oauth.refreshes == 1 and len(oauth.grants) == 1 and oauth.reused == 0
    assert secrets == {oauth.issued.access[-1]}
    assert (
        AuthStore(state_dir / "agents/main/agent/auth-profiles.json").load().profiles[PROFILE].secret
        in secrets
    )
