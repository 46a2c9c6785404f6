"""auth.store "database" as the bot runs it (docs/failover.md §10): the secret key at start-up, turns that book their
failures in the database, another host's engine that sees them within a second, redaction of stored secrets.

The hosts here are two apps in one process (two engines on one database); ``test_hosts`` runs real processes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import App, build_app
from bot.auth import doc_edits
from bot.auth.types import Credential
from bot.chat import Incoming, Reply
from bot.clock import MINUTE_MS
from bot.config.paths import SECRET_KEY_ENV, auth_profiles_path
from bot.errors import SecretKeyError
from bot.store.sql import SqlSessionStore, sqlite_url
from tests.app_helpers import TEST_SECRET_KEY, running_app, with_auth_store
from tests.auth_stores import DbAuth
from tests.cli_helpers import run_cli
from tests.fakes.clock import FakeClock
from tests.fakes.provider_server import FakeProviderServer, status
from tests.pg import pg_url, truncate_all  # noqa: F401

KEY_ONE = "sk-db-mode-one-0001"
KEY_TWO = "sk-db-mode-two-0002"
OTHER_KEY = base64.urlsafe_b64encode(b"another-key-of-32-bytes-12345678").decode()
SQL_BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
PROFILES = {
    "openai:one": Credential(type="api_key", provider="openai", secret=KEY_ONE),
    "openai:two": Credential(type="api_key", provider="openai", secret=KEY_TWO),
}


def config(base_url: str, url: str | None = None) -> dict[str, Any]:
    """gpt-5.2 alone on the fake provider, two keys in that order, no waiting; auth in the database."""
    return with_auth_store(
        {
            "models": {"providers": {"openai": {"baseUrl": base_url, "api": "openai-completions"}}},
            "auth": {"order": {"openai": ["openai:one", "openai:two"]}, "waitSeconds": 0},
            "agents": {"defaults": {"model": {"primary": "openai/gpt-5.2"}}},
            "storage": {} if url is None else {"url": url},
        },
        "database",
    )


@pytest.fixture(params=SQL_BACKENDS)
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database that two "hosts" share."""
    if request.param == "sqlite":
        return sqlite_url(tmp_path / "shared.sqlite")
    found = str(request.getfixturevalue("pg_url"))
    store = SqlSessionStore(found)
    await store.start()
    await store.stop()
    await truncate_all(found)
    return found


async def say(app: App, text: str, chat: str = "c1") -> Reply:
    [reply] = await app.chat().handle(Incoming(platform="telegram", chat_id=chat, user_id="u1", text=text))
    return reply


@pytest.fixture
def state_dirs(tmp_path: Path) -> tuple[Path, Path]:
    """The state dirs of two hosts."""
    made = (tmp_path / "host-a", tmp_path / "host-b")
    for path in made:
        path.mkdir()
    return made


@contextlib.asynccontextmanager
async def host(state_dir: Path, clock: FakeClock, cfg: dict[str, Any], **kw: Any) -> AsyncIterator[App]:
    async with running_app(state_dir, clock, config=cfg, env={SECRET_KEY_ENV: TEST_SECRET_KEY}, **kw) as app:
        yield app


# --- the key ------------------------------------------------------------------------------------------------


def test_without_the_key_the_bot_and_the_cli_refuse(
    capsys: pytest.CaptureFixture[str], state_dir: Path
) -> None:
    """No MODELBOT_SECRET_KEY: build_app, `modelbot chat` and `modelbot auth list` stop with one clear
    sentence, and nothing is created."""
    (state_dir / "config.json5").write_text(json.dumps(with_auth_store(None, "database")))
    with pytest.raises(SecretKeyError, match="MODELBOT_SECRET_KEY is not set"):
        build_app(env={"MODELBOT_STATE_DIR": str(state_dir)})
    for argv in (["chat"], ["auth", "list"], ["models", "status"], ["auth", "export"]):
        result = run_cli(capsys, *argv)
        assert result.code == 2, argv
        assert "error: MODELBOT_SECRET_KEY is not set" in result.err
        assert "modelbot auth gen-key" in result.err
    assert sorted(p.name for p in state_dir.iterdir()) == ["config.json5"]


def test_modelbot_run_refuses_without_the_key_before_connecting(
    capsys: pytest.CaptureFixture[str], state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`modelbot run` with a channel enabled stops at the missing key, before any channel starts."""
    channels = {"telegram": {"enabled": True, "botToken": "${TELEGRAM_BOT_TOKEN}"}}
    config = with_auth_store({"channels": channels}, "database")
    (state_dir / "config.json5").write_text(json.dumps(config))
    monkeypatch.setenv("TELEGRAM_BOT_TOKEN", "123456:not-a-real-token")
    result = run_cli(capsys, "run")
    assert result.code == 2
    assert "error: MODELBOT_SECRET_KEY is not set" in result.err


def test_a_malformed_key_is_named_without_echoing_it(
    capsys: pytest.CaptureFixture[str], state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value that is not a Fernet key is refused as such; the value itself is never printed."""
    (state_dir / "config.json5").write_text(json.dumps(with_auth_store(None, "database")))
    monkeypatch.setenv(SECRET_KEY_ENV, "not-a-key-but-a-secret-passphrase")
    result = run_cli(capsys, "auth", "list")
    assert result.code == 2
    assert "MODELBOT_SECRET_KEY is not a valid key" in result.err
    assert "passphrase" not in result.err


async def test_a_wrong_key_is_a_clear_error_at_start(
    capsys: pytest.CaptureFixture[str], state_dir: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Credentials sealed with one key, a bot started with another: it stops at start-up with the reason,
    before any secret could reach a provider; the CLI says the same."""
    (state_dir / "config.json5").write_text(json.dumps(with_auth_store(None, "database")))
    db = DbAuth(sqlite_url(state_dir / "modelbot.sqlite"))
    db.update(doc_edits.with_profile("openai:one", PROFILES["openai:one"]))
    app = build_app(env={"MODELBOT_STATE_DIR": str(state_dir), SECRET_KEY_ENV: OTHER_KEY}, clock=clock)
    try:
        with pytest.raises(SecretKeyError, match="does not decrypt the stored credentials"):
            await app.start()
    finally:
        await app.stop()
    monkeypatch.setenv(SECRET_KEY_ENV, OTHER_KEY)
    result = await asyncio.to_thread(run_cli, capsys, "auth", "list")
    assert result.code == 2
    assert "does not decrypt the stored credentials" in result.err
    monkeypatch.setenv(SECRET_KEY_ENV, f"{OTHER_KEY},{TEST_SECRET_KEY}")  # rotating: the old key still opens
    listed = await asyncio.to_thread(run_cli, capsys, "auth", "list", "--json")
    assert [row["id"] for row in json.loads(listed.out)] == ["openai:one"]


# --- turns --------------------------------------------------------------------------------------------------


async def test_a_turn_books_its_failure_in_the_database_and_writes_no_file(
    state_dir: Path, clock: FakeClock
) -> None:
    """A 429 on the first key: the turn rotates, the pair's cooldown is in the database (no auth-profiles.json
    is ever written), /model status shows it, and the stored secrets are redacted from replies and logs."""
    async with FakeProviderServer() as server:
        server.script(KEY_ONE, status(429))
        async with host(state_dir, clock, config(server.openai_base_url), profiles=PROFILES) as app:
            reply = await say(app, "hello")
            assert (reply.kind, reply.profile) == ("answer", "openai:two")
            await app.backend("main").flush()  # the success is booked in the background
            stored = await app.backend("main").store.areload()
            pair = stored.stats("openai:one").model("gpt-5.2")
            assert (pair.error_count, pair.cooldown_until) == (1, clock.now_ms() + MINUTE_MS)
            assert stored.last_good == {"openai": "openai:two"}
            status_reply = await say(app, "/model status")
            assert "openai:one (api_key) sk…01 — cooldown 1m (gpt-5.2)" in status_reply.text
            assert app.redactor.known(f"the key {KEY_TWO} leaked") == "the key [redacted] leaked"
    assert not auth_profiles_path(state_dir).exists()


async def test_another_hosts_engine_sees_a_cooldown_within_a_second(
    url: str, state_dirs: tuple[Path, Path], clock: FakeClock
) -> None:
    """Two hosts (separate state dirs) on one database: host A's 429 on openai:one reaches host B's cached
    reads in under a second (measured on the real clock), and B's next turn never calls that key."""
    async with FakeProviderServer() as server:
        server.script(KEY_ONE, status(429))
        cfg = config(server.openai_base_url, url)
        async with (
            host(state_dirs[0], clock, cfg, profiles=PROFILES) as a,
            host(state_dirs[1], clock, cfg) as b,
        ):
            backend_b = b.backend("main")
            assert (await backend_b.candidates("openai", "gpt-5.2", now_ms=clock.now_ms())).ready() == [
                "openai:one",
                "openai:two",
            ]
            assert (await say(a, "hello")).profile == "openai:two"
            booked = time.monotonic()
            while (
                "openai:one"
                in (await backend_b.candidates("openai", "gpt-5.2", now_ms=clock.now_ms())).ready()
            ):
                assert time.monotonic() - booked < 1.0, "host B did not see host A's cooldown within 1 s"
                await asyncio.sleep(0.005)
            print(f"cross-host cooldown visibility: {(time.monotonic() - booked) * 1000:.0f} ms")
            seen = len(server.requests)
            assert (await say(b, "hello from b", chat="c2")).profile == "openai:two"
            assert [r.key for r in server.requests[seen:]] == [KEY_TWO]
