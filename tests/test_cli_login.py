"""``modelbot auth login`` end to end: the real console script against the loopback fake OAuth server.

A test plays the user: it reads the printed URL, "logs in" at the fake's authorize page, and pastes the
code the page shows (or lets the browser redirect to the CLI's loopback server). It then checks the stored
profile and that no token was ever printed.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.auth import doc_edits
from bot.auth.cooldowns import CooldownPolicy
from bot.auth.store import AuthStore
from bot.auth.types import Credential
from bot.clock import HOUR_MS
from bot.failover.reasons import Reason
from tests.app_helpers import AUTH_STORES, AuthStoreKind, auth_env
from tests.auth_stores import auth_of
from tests.cli_helpers import run_cli
from tests.e2e_helpers import child_env, modelbot_command
from tests.fakes.oauth_server import FakeOAuthServer

pytestmark = pytest.mark.slow


def auth_file(state_dir: Path) -> AuthStore:
    return AuthStore(state_dir / "agents" / "main" / "agent" / "auth-profiles.json")


def write_config(state_dir: Path, oauth: dict[str, Any], store: AuthStoreKind = "file") -> None:
    provider = {"baseUrl": "https://api.acme.test/v1", "api": "openai-completions", "oauth": oauth}
    config = {"models": {"providers": {"acme": provider}}, "auth": {"store": store}}
    (state_dir / "config.json5").write_text(json.dumps(config))


class Login:
    """A running ``modelbot auth login``: its printed URL, a line of stdin, its exit."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.out: list[str] = []

    @classmethod
    async def start(cls, state_dir: Path, *args: str) -> Login:
        proc = await asyncio.create_subprocess_exec(
            *modelbot_command(),
            "auth",
            "login",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=child_env({"MODELBOT_STATE_DIR": str(state_dir)}),
        )
        return cls(proc)

    async def url(self) -> str:
        assert self.proc.stdout is not None
        while True:
            raw = await asyncio.wait_for(self.proc.stdout.readline(), 60)
            assert raw, "the login ended before printing its URL:\n" + "".join(self.out)
            line = raw.decode()
            self.out.append(line)
            if line.strip().startswith("http"):
                return line.strip()

    async def finish(self, stdin: str = "") -> tuple[int, str, str]:
        assert self.proc.stdin is not None and self.proc.stdout is not None and self.proc.stderr is not None
        if stdin:
            self.proc.stdin.write(stdin.encode())
            await self.proc.stdin.drain()
        rest, err = await asyncio.wait_for(
            asyncio.gather(self.proc.stdout.read(), self.proc.stderr.read()), 60
        )
        code = await asyncio.wait_for(self.proc.wait(), 60)
        return code, "".join(self.out) + rest.decode(), err.decode()


async def visit(url: str) -> tuple[int, str]:
    """The browser: open the authorize URL, following a redirect to a loopback address."""
    async with aiohttp.ClientSession() as session, session.get(url) as response:
        return response.status, await response.text()


def assert_no_secret(oauth: FakeOAuthServer, *texts: str) -> None:
    leaked = [s for s in oauth.all_secrets() for text in texts if s in text]
    assert leaked == []


@pytest.mark.parametrize("kind", AUTH_STORES)
async def test_login_with_a_pasted_code(
    state_dir: Path, kind: AuthStoreKind, monkeypatch: pytest.MonkeyPatch
) -> None:
    """URL printed, code#state pasted, tokens exchanged (PKCE checked by the fake), provider:<email> stored
    in place of the dead login it replaces, whose cooldown ends; in either auth store."""
    for name, value in auth_env(kind).items():
        monkeypatch.setenv(name, value)
    auth = auth_of(state_dir, kind)
    dead = Credential("oauth", "acme", "dead-access-0123456789", refresh="dead-refresh", expires=1)
    auth.update(doc_edits.with_profile("acme:me@example.com", dead))
    auth.record_failure(
        "acme:me@example.com",
        Reason.AUTH,
        provider="acme",
        now_ms=int(time.time() * 1000),
        policy=CooldownPolicy(),
    )
    async with FakeOAuthServer(email="me@example.com") as oauth:
        write_config(state_dir, oauth.oauth_config(), kind)
        login = await Login.start(state_dir, "--provider", "acme")
        status, page = await visit(await login.url())
        assert status == 200 and "#" in page
        started = int(time.time() * 1000)
        code, out, err = await login.finish(page + "\n")
    assert code == 0, err
    doc = auth.load()
    cred = doc.profiles["acme:me@example.com"]
    assert (cred.type, cred.provider, cred.email) == ("oauth", "acme", "me@example.com")
    assert (cred.secret, cred.refresh) == (oauth.issued.access[0], oauth.issued.refresh[0])
    assert started + HOUR_MS <= (cred.expires or 0) <= int(time.time() * 1000) + HOUR_MS
    assert "Logged in to acme as me@example.com." in out
    assert "Replaced acme:me@example.com (oauth, fake-a…" in out
    assert doc.stats("acme:me@example.com").cooldown_until is None  # a fresh start
    assert "modelbot refreshes it before then" in out
    grant = oauth.grants[0]
    assert grant["grant_type"] == "authorization_code" and grant["code_verifier"]
    assert_no_secret(oauth, out, err)


async def test_login_through_a_loopback_redirect(state_dir: Path) -> None:
    """With a loopback redirect URI the CLI receives the code itself; nothing is typed."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    redirect = f"http://127.0.0.1:{port}/callback"
    async with FakeOAuthServer(email=None, redirect_uris=(redirect,)) as oauth:
        write_config(state_dir, oauth.oauth_config(redirect_uri=redirect))
        login = await Login.start(state_dir, "--provider", "acme", "--profile-id", "work")
        url = await login.url()
        for _ in range(100):  # the receiver starts listening right after the URL is printed
            try:
                status, page = await visit(url)
                break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.05)
        assert status == 200 and "You are logged in" in page
        code, out, err = await login.finish()
    assert code == 0, err
    profiles = auth_file(state_dir).load().profiles
    assert list(profiles) == ["acme:work"] and profiles["acme:work"].secret == oauth.issued.access[0]
    assert "Logged in to acme." in out and "Stored acme:work (oauth" in out
    assert_no_secret(oauth, out, err)


async def test_a_login_without_email_is_provider_default(state_dir: Path) -> None:
    async with FakeOAuthServer(email=None) as oauth:
        write_config(state_dir, oauth.oauth_config())
        login = await Login.start(state_dir, "--provider", "acme")
        _, page = await visit(await login.url())
        code, out, err = await login.finish(page + "\n")
    assert code == 0, err
    assert list(auth_file(state_dir).load().profiles) == ["acme:default"]
    assert "Logged in to acme.\nStored acme:default (oauth" in out


@pytest.mark.parametrize(
    ("paste", "message"),
    [
        ("wrong-code#{state}", "invalid_grant"),
        ("{code}#another-state", "state mismatch"),
        ("", "No authorization code was given"),
    ],
)
async def test_a_failed_login_stores_nothing(state_dir: Path, paste: str, message: str) -> None:
    """A refused code, a code of another login attempt, or nothing pasted: a clear error, no profile."""
    async with FakeOAuthServer() as oauth:
        write_config(state_dir, oauth.oauth_config())
        login = await Login.start(state_dir, "--provider", "acme")
        _, page = await visit(await login.url())
        real_code, state = page.split("#")
        code, out, err = await login.finish(paste.format(code=real_code, state=state) + "\n")
    assert code == 2
    assert message in err and "Traceback" not in err
    assert auth_file(state_dir).load().profiles == {}
    assert_no_secret(oauth, out, err)


def test_a_provider_without_oauth_is_refused(state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Before anything is printed or asked: no preset and no oauth block for the provider."""
    result = run_cli(capsys, "auth", "login", "--provider", "openai")
    assert result.code == 2
    assert 'Provider "openai" has no OAuth login' in result.err and "anthropic" in result.err
    assert result.out == ""
    result = run_cli(capsys, "auth", "login", "--provider", "antropic")
    assert result.code == 2 and "Did you mean: anthropic" in result.err


def test_a_bad_profile_id_is_refused_before_the_login(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_cli(capsys, "auth", "login", "--provider", "anthropic", "--profile-id", "openai:x")
    assert result.code == 2 and 'must start with "anthropic:"' in result.err
    assert result.out == ""
