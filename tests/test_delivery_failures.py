"""A chat platform that breaks off a delivery, with the real client libraries against the fakes.

Each failure is handled once: logged, no text sent twice, one line to the user when the chat still takes
messages, the turn counted as ``undelivered`` (never ``ok``); a failing command menu is only a warning.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from adapters.discord.adapter import DiscordAdapter
from adapters.telegram.adapter import TelegramAdapter
from bot.app import App, build_app
from bot.chat import UNDELIVERED
from bot.metrics import Metrics
from bot.store.memory import InMemorySessionStore
from tests import log_guard
from tests.fakes.clock import FakeClock
from tests.fakes.discord_server import FakeDiscordServer
from tests.fakes.telegram_server import FakeTelegramServer
from tests.test_discord_adapter import ALICE, APP_ID, BOT_ID, DM_ALICE, _populate, _timings
from tests.test_discord_adapter import TOKEN as DISCORD_TOKEN
from tests.test_discord_adapter import _settings as discord_settings
from tests.test_telegram_adapter import BOT, FAST, TOKEN, USER, _Gate
from tests.test_telegram_adapter import _settings as telegram_settings

SORRY = "Sorry"  # the start of the adapters' generic "something went wrong" line


@pytest.fixture(autouse=True)
def fail_on_error_logs() -> Iterator[None]:
    """No ERROR record from the libraries, the adapters or asyncio ("Task exception was never retrieved")."""
    names = ["telegram", "modelbot.telegram", "discord", "modelbot.discord", "asyncio"]
    with log_guard.fail_on_error_logs(names):
        yield


def turns(metrics: Metrics, outcome: str) -> float:
    value = metrics.registry.get_sample_value("modelbot_turns_total", {"outcome": outcome})
    return value or 0.0


@pytest.fixture
async def app(state_dir: Path) -> AsyncIterator[tuple[App, Metrics]]:
    """The bot with metrics, a gate provider (the test feeds the answer), in-memory sessions."""
    metrics = Metrics()
    built = build_app(
        env={"MODELBOT_STATE_DIR": str(state_dir)},
        clock=FakeClock(),
        store=InMemorySessionStore(),
        observer=metrics.observe,
    )
    await built.start()
    try:
        yield built, metrics
    finally:
        await built.stop()


# -- Telegram ---------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def telegram(app: App, tg: FakeTelegramServer) -> AsyncIterator[TelegramAdapter]:
    adapter = TelegramAdapter(app.chat(), telegram_settings(tg), timings=FAST)
    await adapter.start()
    try:
        yield adapter
    finally:
        await adapter.stop()


async def test_telegram_unreadable_send_answer_is_handled_once_without_duplicates(
    app: tuple[App, Metrics], caplog: pytest.LogCaptureFixture
) -> None:
    """sendMessage is carried out but answered with something PTB cannot read: the answer is not sent again
    on every flush, one line tells the user, the turn counts as undelivered (before: three copies, a
    "Sorry, something went wrong", "Task exception was never retrieved" and outcome ok)."""
    bot_app, metrics = app
    gate = _Gate()
    bot_app.clients["demo"] = gate
    async with FakeTelegramServer(TOKEN, username=BOT) as tg, telegram(bot_app, tg) as adapter:
        tg.fail_next("sendMessage", network="unexpected_result")
        tg.send_user_message(USER, "tell me a story", user_id=USER)
        feed = await gate.next_feed()
        feed.put_nowait("Once")
        await tg.wait_for(lambda: [c for c in tg.calls_to("sendMessage") if c.done])
        for word in (" upon", " a", " time", " there", " was"):
            feed.put_nowait(word)
        feed.put_nowait(None)
        await tg.wait_for(lambda: UNDELIVERED in [m.plain_text for m in tg.sent_messages(USER)])
        await tg.wait_for(lambda: not adapter.busy)
        texts = [m.plain_text for m in tg.sent_messages(USER)]
    assert texts == ["Once", UNDELIVERED]
    assert not any(SORRY in (t or "") for t in texts)
    assert (turns(metrics, "undelivered"), turns(metrics, "ok")) == (1.0, 0.0)
    warnings = [r for r in caplog.records if "delivering an answer" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].levelno == logging.WARNING


async def test_telegram_unreadable_answer_to_a_command_is_one_line_not_a_crash(
    app: tuple[App, Metrics],
) -> None:
    """A command reply whose sendMessage answer is unreadable: one notice, no traceback at ERROR."""
    bot_app, _ = app
    async with FakeTelegramServer(TOKEN, username=BOT) as tg, telegram(bot_app, tg) as adapter:
        tg.fail_next("sendMessage", network="unexpected_result")
        tg.send_user_message(USER, "/status", user_id=USER)
        await tg.wait_for(lambda: len(tg.sent_messages(USER)) >= 2)
        await tg.wait_for(lambda: not adapter.busy)
        texts = [m.plain_text or "" for m in tg.sent_messages(USER)]
    assert texts[0].startswith("Session:") and texts[1:] == [UNDELIVERED]


async def test_telegram_set_my_commands_failing_is_a_warning(
    app: tuple[App, Metrics], caplog: pytest.LogCaptureFixture
) -> None:
    """A 500 on setMyCommands right after getMe worked: the bot starts (without its menu) and answers."""
    bot_app, _ = app
    async with FakeTelegramServer(TOKEN, username=BOT) as tg:
        tg.fail_next("setMyCommands", error_code=500, description="Internal Server Error", times=10)
        async with telegram(bot_app, tg) as adapter:
            tg.send_user_message(USER, "/help", user_id=USER)
            await tg.wait_for(lambda: tg.sent_messages(USER))
            assert adapter.running
    assert any("setMyCommands" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    assert not any("Cannot reach" in r.getMessage() for r in caplog.records)


# -- Discord ----------------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def discord_bot(app: App, dc: FakeDiscordServer) -> AsyncIterator[DiscordAdapter]:
    adapter = DiscordAdapter(app.chat(), discord_settings(dc), timings=_timings(stream_interval_s=0.02))
    await adapter.start()
    try:
        yield adapter
    finally:
        await adapter.stop()


@pytest.fixture
async def dc() -> AsyncIterator[FakeDiscordServer]:
    async with FakeDiscordServer(token=DISCORD_TOKEN, application_id=APP_ID, bot_user_id=BOT_ID) as server:
        await _populate(server)
        yield server


async def test_discord_unreadable_post_answer_is_handled_once_without_duplicates(
    app: tuple[App, Metrics], dc: FakeDiscordServer
) -> None:
    """The first reply is posted but its answer cannot be read: no second copy, one notice, undelivered."""
    bot_app, metrics = app
    gate = _Gate()
    bot_app.clients["demo"] = gate
    async with discord_bot(bot_app, dc) as adapter:
        dc.garble_next("POST", f"/channels/{DM_ALICE}/messages")
        await dc.user_message(DM_ALICE, "tell me a story", author_id=ALICE)
        feed = await gate.next_feed()
        feed.put_nowait("Once")
        await dc.wait_for(lambda: dc.bot_messages(DM_ALICE))
        for word in (" upon", " a", " time", " there", " was"):
            feed.put_nowait(word)
        feed.put_nowait(None)
        await dc.wait_for(lambda: UNDELIVERED in [m["content"] for m in dc.bot_messages(DM_ALICE)])
        await adapter.wait_idle()
    assert [m["content"] for m in dc.bot_messages(DM_ALICE)] == ["Once", UNDELIVERED]
    assert (turns(metrics, "undelivered"), turns(metrics, "ok")) == (1.0, 0.0)


async def test_discord_refused_edit_mid_stream_stops_the_answer_once(
    app: tuple[App, Metrics], dc: FakeDiscordServer
) -> None:
    """A 404 on an edit (a moderator deleted the reply): no more edits, one notice, undelivered."""
    bot_app, metrics = app
    gate = _Gate()
    bot_app.clients["demo"] = gate
    async with discord_bot(bot_app, dc) as adapter:
        await dc.user_message(DM_ALICE, "tell me a story", author_id=ALICE)
        feed = await gate.next_feed()
        feed.put_nowait("Once")
        [first] = await dc.wait_for(lambda: dc.bot_messages(DM_ALICE))
        dc.fail_next(
            "PATCH", f"/channels/{DM_ALICE}/messages", status=404, code=10008, message="Unknown Message"
        )
        feed.put_nowait(" upon")
        await dc.wait_for(lambda: [c for c in dc.calls if c.method == "PATCH"])
        for word in (" a", " time", None):
            feed.put_nowait(word)
        await dc.wait_for(lambda: UNDELIVERED in [m["content"] for m in dc.bot_messages(DM_ALICE)])
        await adapter.wait_idle()
    texts = [m["content"] for m in dc.bot_messages(DM_ALICE)]
    assert texts[-1] == UNDELIVERED and texts.count(UNDELIVERED) == 1 and len(texts) == 2
    assert dc.edits(int(first["id"])) == []
    assert turns(metrics, "undelivered") == 1.0 and turns(metrics, "ok") == 0.0


async def test_discord_command_sync_failing_is_a_warning(
    app: tuple[App, Metrics], dc: FakeDiscordServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Publishing the slash commands fails after login worked: the bot still starts and answers DMs."""
    bot_app, _ = app
    dc.fail_next(
        "PUT", f"/applications/{APP_ID}/commands", status=400, code=50035, message="Invalid Form Body"
    )
    async with discord_bot(bot_app, dc) as adapter:
        await dc.user_message(DM_ALICE, "hello", author_id=ALICE)
        await dc.wait_for(lambda: dc.bot_messages(DM_ALICE))
        await adapter.wait_idle()
    assert any("slash commands" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
