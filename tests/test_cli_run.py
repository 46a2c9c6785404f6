"""``modelbot run``: channels start and stop in order, turns are logged and counted, signals shut it down."""

from __future__ import annotations

import argparse
import asyncio
import gc
import importlib
import io
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import App, build_app
from bot.config.paths import default_database_url, state_dir
from bot.conversation.pipeline import ChatPipeline
from bot.logging_setup import configure_logging
from bot.redaction import Redactor
from bot.store.sql import SqlSessionStore
from bot.store.sqlite_database import SqliteDatabase
from cli import chat_cmd, run_cmd
from cli.run_cmd import serve
from tests.cli_helpers import ROOT, run_cli, write_config
from tests.fakes.fake_channel import MARKER_ENV, Builder, FakeChannel, channels_with

TOKEN = "123456:SECRET-telegram-token-abcdef"
BOTH = (
    "{ channels: { telegram: { enabled: true, botToken: '${TELEGRAM_BOT_TOKEN}' },"
    " discord: { enabled: true, token: '${DISCORD_BOT_TOKEN}' } }%s }"
)


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """``run`` configures the root logger for the process; put it back for the other tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def env() -> dict[str, str]:
    return {**os.environ, "TELEGRAM_BOT_TOKEN": TOKEN, "DISCORD_BOT_TOKEN": "discord-token-0123456789"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


async def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


def test_run_refuses_to_start_without_an_enabled_channel(capsys: pytest.CaptureFixture[str]) -> None:
    """No channel enabled: a clear message pointing at the config keys and at ``modelbot chat``; exit 2."""
    result = run_cli(capsys, "run")
    assert result.code == 2
    assert "channels.telegram.enabled or channels.discord.enabled" in result.err
    assert "modelbot chat" in result.err


async def test_an_adapter_that_cannot_be_imported_is_a_clean_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An enabled channel whose platform library is missing: one sentence, exit 1, nothing started."""
    config = write_config(tmp_path / "c.json5", BOTH % "")

    def build(settings: Any, chat: ChatPipeline) -> FakeChannel:
        importlib.import_module("tests.fakes.no_such_adapter")  # as a plug-in's builder imports its library
        return FakeChannel(chat, settings)

    code = await serve(config, channels=channels_with(telegram=build), stop=asyncio.Event(), env=env())
    assert code == 1
    err = capsys.readouterr().err
    assert "The telegram channel is enabled but its adapter cannot be loaded" in err
    assert "Traceback" not in err


async def test_channels_run_until_stopped_with_turns_logged_and_counted(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Both channels start, a turn each is logged as one line and counted; stop reverses the order."""
    port = free_port()
    config = write_config(tmp_path / "c.json5", BOTH % f", metrics: {{ enabled: true, port: {port} }}")
    events: list[str] = []
    channels: list[FakeChannel] = []

    def factory(name: str) -> Builder:
        def build(settings: Any, chat: ChatPipeline) -> FakeChannel:
            channels.append(FakeChannel(chat, settings, name=name, events=events))
            return channels[-1]

        return build

    stop = asyncio.Event()
    task = asyncio.create_task(
        serve(
            config,
            channels=channels_with(telegram=factory("telegram"), discord=factory("discord")),
            stop=stop,
            env=env(),
        )
    )
    await wait_for(lambda: "discord:ready" in events)
    body = await asyncio.to_thread(scrape, port)
    stop.set()
    assert await task == 0
    assert events == [
        "telegram:start",
        "telegram:ready",
        "discord:start",
        "discord:ready",
        "discord:stop",
        "telegram:stop",
    ]
    assert all(c.replies and "[demo]" in c.replies[0] for c in channels)
    assert 'modelbot_attempts_total{reason="rate_limit"} 1.0' in body  # demo:busy, once: then it rests
    assert 'modelbot_cooldowns_total{reason="rate_limit"} 1.0' in body
    assert 'modelbot_attempts_total{reason="ok"} 2.0' in body
    err = capsys.readouterr().err
    assert "turn session=telegram:chat:42 model=demo/echo profile=demo:main" in err
    assert "attempts=demo/echo@demo:busy:rate_limit latency_ms=" in err
    assert "modelbot running: telegram, discord" in err
    assert TOKEN not in err
    assert "connecting with token [redacted]" in err
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0  # the metrics endpoint is closed


async def test_a_channel_that_fails_to_start_stops_the_others(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Discord fails at start: Telegram, already running, is stopped; exit 1."""
    config = write_config(tmp_path / "c.json5", BOTH % "")
    events: list[str] = []
    channels = channels_with(
        telegram=lambda settings, chat: FakeChannel(chat, settings, events=events),
        discord=lambda settings, chat: FakeChannel(chat, settings, name="discord", events=events, fail=True),
    )
    code = await serve(config, channels=channels, stop=asyncio.Event(), env=env())
    assert code == 1
    assert events == ["telegram:start", "telegram:ready", "discord:start", "telegram:stop"]
    assert "the fake platform refused the connection" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "logged"), [(None, False), ("INFO", True)])
async def test_the_log_level_comes_from_the_config_or_the_flag(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, flag: str | None, logged: bool
) -> None:
    """``logging.level`` WARNING hides turn lines; ``--log-level INFO`` shows them again."""
    config = write_config(
        tmp_path / "c.json5",
        "{ channels: { telegram: { enabled: true, botToken: '${TELEGRAM_BOT_TOKEN}' } }, logging: { level: 'WARNING' } }",
    )
    stop = asyncio.Event()
    events: list[str] = []
    channels = channels_with(telegram=lambda settings, chat: FakeChannel(chat, settings, events=events))
    task = asyncio.create_task(serve(config, log_level=flag, channels=channels, stop=stop, env=env()))
    await wait_for(lambda: "telegram:ready" in events)
    stop.set()
    assert await task == 0
    assert ("turn session=telegram:chat:42" in capsys.readouterr().err) is logged


async def test_running_bot_freezes_its_start_up_heap(tmp_path: Path) -> None:
    """Once the channels run, what start-up left is frozen out of full garbage collections (0.2 s pauses)."""
    config = write_config(
        tmp_path / "c.json5",
        "{ channels: { telegram: { enabled: true, botToken: '${TELEGRAM_BOT_TOKEN}' } } }",
    )
    stop = asyncio.Event()
    events: list[str] = []
    channels = channels_with(telegram=lambda settings, chat: FakeChannel(chat, settings, events=events))
    gc.unfreeze()
    try:
        task = asyncio.create_task(serve(config, channels=channels, stop=stop, env=env()))
        await wait_for(lambda: gc.get_freeze_count() > 0)
        assert "telegram:ready" in events
        stop.set()
        assert await task == 0
    finally:
        gc.unfreeze()


async def test_modelbot_chat_freezes_its_start_up_heap(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`modelbot chat` serves turns too: its start-up heap is frozen before the first line is read."""
    monkeypatch.setenv("MODELBOT_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("MODELBOT_CONFIG", raising=False)
    frozen_when_read: list[int] = []

    class Lines(io.StringIO):
        def readline(self, size: int = -1, /) -> str:  # type: ignore[override]  # as typeshed's StringIO
            frozen_when_read.append(gc.get_freeze_count())
            return super().readline(size)

    monkeypatch.setattr(sys, "stdin", Lines(""))
    args = argparse.Namespace(config=None, session=None, user="ada", agent=None, json=True)
    gc.unfreeze()
    try:
        assert await chat_cmd._chat(args) == 0
    finally:
        gc.unfreeze()
    assert frozen_when_read and frozen_when_read[0] > 0


async def test_modelbot_chat_redacts_secrets_in_its_log_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`modelbot chat` logs warnings through the same redaction as `modelbot run`."""
    secret = "sk-test-chat-0123456789"
    monkeypatch.setenv("MODELBOT_STATE_DIR", str(tmp_path))
    monkeypatch.delenv("MODELBOT_CONFIG", raising=False)
    monkeypatch.setenv("OPENAI_API_KEY", secret)

    class Lines(io.StringIO):
        def readline(self, size: int = -1, /) -> str:  # type: ignore[override]  # as typeshed's StringIO
            logging.getLogger("modelbot.tests").warning("the provider refused key %s", secret)
            logging.getLogger("modelbot.tests").info("not shown: %s", "a turn line")
            return super().readline(size)

    monkeypatch.setattr(sys, "stdin", Lines(""))
    args = argparse.Namespace(config=None, session=None, user="ada", agent=None, json=True)
    try:
        assert await chat_cmd._chat(args) == 0
    finally:
        gc.unfreeze()
    err = capsys.readouterr().err
    assert "the provider refused key [redacted]" in err
    assert secret not in err and "not shown" not in err


async def test_the_configured_providers_clients_are_made_before_the_channels_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDKs of the API modes the config uses (chains, image models, the allowlist) are imported at start-up,
    before any chat is served, and no other: the first turn never waits seconds for an import."""
    config = write_config(
        tmp_path / "c.json5",
        "{ channels: { telegram: { enabled: true, botToken: '${TELEGRAM_BOT_TOKEN}' } },"
        " models: { providers: { local: { baseUrl: 'http://127.0.0.1:9/v1', api: 'openai-completions' } } },"
        " agents: { defaults: { model: { primary: 'demo/echo', fallbacks: ['local/m'] },"
        " models: { 'demo/echo': {}, 'local/m': {}, 'anthropic/claude-sonnet-4-5': {} } } } }",
    )
    seen: list[list[str]] = []
    apps: list[App] = []

    def recording_build_app(*args: Any, **kwargs: Any) -> App:  # the app serve builds, kept for a look inside
        apps.append(build_app(*args, **kwargs))
        return apps[-1]

    monkeypatch.setattr(run_cmd, "build_app", recording_build_app)

    engine_made: list[bool] = []
    # A database already at the schema head, as on every start but the first: nothing to migrate, so only
    # warming the store makes SQLAlchemy's engine before the channels start.
    migrated = SqlSessionStore(default_database_url(state_dir(dict(os.environ))))
    await migrated.start()
    await migrated.stop()

    class Recording(FakeChannel):
        async def start(self) -> None:
            seen.append(sorted(apps[0].clients.created()))  # what exists when the channel starts
            store = apps[0].store
            assert isinstance(store, SqlSessionStore)
            database = store.database
            assert isinstance(database, SqliteDatabase)
            engine_made.append(database._engines is not None)  # the store warmed: SQLAlchemy's engine too
            await super().start()

    stop = asyncio.Event()
    channels = channels_with(telegram=lambda settings, chat: Recording(chat, settings, events=[]))
    task = asyncio.create_task(serve(config, channels=channels, stop=stop, env=env()))
    await wait_for(lambda: bool(seen))
    stop.set()
    assert await task == 0
    assert seen == [["anthropic-messages", "demo", "openai-completions"]]
    assert engine_made == [True]


_RUNNER = """
import sys
from cli import run_cmd
from cli.main import build_parser
from tests.fakes.fake_channel import build_adapter, channels_with

args = build_parser().parse_args(["run", "--config", sys.argv[1]])
sys.exit(run_cmd.run(args, channels_with(telegram=build_adapter)))
"""


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_bot_gracefully(tmp_path: Path, sig: signal.Signals) -> None:
    """In a real process: once running, SIGTERM/SIGINT stops the channel and the app, exit 0."""
    config = write_config(
        tmp_path / "c.json5",
        "{ channels: { telegram: { enabled: true, botToken: '${TELEGRAM_BOT_TOKEN}' } } }",
    )
    marker = tmp_path / "events"
    with subprocess.Popen(
        [sys.executable, "-c", _RUNNER, config],
        cwd=ROOT,
        env={**env(), MARKER_ENV: str(marker)},
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        deadline = time.monotonic() + 60
        while "telegram:ready" not in (marker.read_text(encoding="utf-8") if marker.exists() else ""):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the bot did not start"
            time.sleep(0.05)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert marker.read_text(encoding="utf-8").splitlines() == [
        "telegram:start",
        "telegram:ready",
        "telegram:stop",
    ]
    assert "stopping" in err
    assert "modelbot.run: stopped" in err
    assert TOKEN not in err


def test_log_lines_and_tracebacks_never_carry_a_secret() -> None:
    """The run's formatter redacts known secrets everywhere, and HTTP clients' request lines are quieted."""
    stream = io.StringIO()
    configure_logging("INFO", redactor=Redactor(lambda: {TOKEN, "k3y"}), stream=stream)
    logger = logging.getLogger("tests.redaction")
    logger.info("url https://api.telegram.org/bot%s/getMe", TOKEN)
    try:
        raise RuntimeError(f"failed for {TOKEN}")
    except RuntimeError:
        logger.exception("boom k3y, not k3yboard")
    logging.getLogger("httpx").info("HTTP Request: POST https://api.telegram.org/bot%s/getUpdates", TOKEN)
    text = stream.getvalue()
    assert TOKEN not in text
    assert text.count("[redacted]") == 3
    # A short secret is redacted too (docs/failover.md §5: any length), where it stands alone.
    assert "boom [redacted], not k3yboard" in text
    assert "getUpdates" not in text
