"""The Telegram adapter end to end: the real python-telegram-bot against the loopback fake Bot API."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.telegram.access import REFUSAL
from adapters.telegram.adapter import TelegramAdapter
from adapters.telegram.client import TelegramSetupError, Timings
from adapters.telegram.plugin import PLUGIN
from adapters.telegram.render import UNSUPPORTED
from adapters.telegram.settings import TelegramChannel, TelegramWebhook
from bot.app import App, build_app
from bot.chat import Incoming
from bot.conversation.help import COMMAND_DESCRIPTIONS
from bot.failover.reasons import Reason
from bot.providers.base import ChatRequest, Endpoint, ResolvedAuth
from bot.store.memory import InMemorySessionStore
from cli.channels import BUILTIN_CHANNELS
from cli.run_cmd import serve
from tests import log_guard
from tests.fakes.clock import FakeClock
from tests.fakes.scripted import Fail, ScriptedClient, ok
from tests.fakes.scripted import Reply as ScriptedReply
from tests.fakes.telegram_server import ChatType, FakeMessage, FakeTelegramServer, make_png, utf16_len

TOKEN = "123456:TEST-fake-telegram-token"
BOT = "modelbot_test_bot"
BOT_ID = 123456
USER = 42  # a private chat's id is its user's id
ALICE, BOB, MALLORY = 1001, 1002, 1003
GROUP = -100_200_300
OTHER = 77  # a second private chat
FAST = Timings(
    edit_interval_s=0.05,
    group_edit_interval_s=0.05,
    typing_interval_s=0.05,
    poll_timeout_s=1,
    retry_backoff_s=0.01,
    stop_grace_s=2.0,
)


def _retried_bad_gateway(record: logging.LogRecord) -> bool:
    # PTB logs a non-JSON error page (a proxy's 502) before raising NetworkError, which is retried.
    return record.name == "telegram.request.BaseRequest" and "invalid JSON" in record.getMessage()


@pytest.fixture(autouse=True)
def fail_on_error_logs() -> Iterator[None]:
    """PTB and the adapter only log what goes wrong in handlers: any ERROR record fails the test."""
    with log_guard.fail_on_error_logs(["telegram", "modelbot.telegram"], ignore=_retried_bad_gateway):
        yield


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegramServer]:
    """A fresh fake Bot API server."""
    async with FakeTelegramServer(TOKEN, username=BOT) as server:
        yield server


def _make_app(state_dir: Path, config: str | None = None) -> App:
    if config is not None:
        (state_dir / "config.json5").write_text(config)
    return build_app(
        env={"MODELBOT_STATE_DIR": str(state_dir), "TELEGRAM_BOT_TOKEN": TOKEN},
        clock=FakeClock(),
        store=InMemorySessionStore(),
        channels=BUILTIN_CHANNELS,
    )


@pytest.fixture
async def app(state_dir: Path) -> AsyncIterator[App]:
    """The bot on the built-in demo provider, in-memory sessions, a fake clock."""
    built = _make_app(state_dir)
    await built.start()
    yield built
    await built.stop()


def _settings(tg: FakeTelegramServer, **overrides: Any) -> TelegramChannel:
    return TelegramChannel(enabled=True, bot_token=TOKEN, api_base_url=tg.root, **overrides)


@contextlib.asynccontextmanager
async def _running(
    app: App, tg: FakeTelegramServer, *, timings: Timings = FAST, **overrides: Any
) -> AsyncIterator[TelegramAdapter]:
    adapter = TelegramAdapter(app.chat(), _settings(tg, **overrides), timings=timings)
    await adapter.start()
    try:
        yield adapter
    finally:
        await adapter.stop()


@pytest.fixture
async def bot(app: App, tg: FakeTelegramServer) -> AsyncIterator[TelegramAdapter]:
    """The adapter polling the fake with short timings; stopped before the fake."""
    async with _running(app, tg) as adapter:
        yield adapter


async def _reply(tg: FakeTelegramServer, chat: int, *, count: int = 1) -> FakeMessage:
    """The ``count``-th message the bot sent in ``chat``."""
    await tg.wait_for(lambda: len(tg.sent_messages(chat)) >= count)
    return tg.sent_messages(chat)[count - 1]


async def _quoting(tg: FakeTelegramServer, sent: FakeMessage) -> FakeMessage:
    """The bot's reply quoting ``sent`` (groups)."""
    return await tg.wait_for(
        lambda: next(
            (m for m in tg.sent_messages(sent.chat_id) if m.reply_to_message_id == sent.message_id), None
        )
    )


async def _settled(tg: FakeTelegramServer, adapter: TelegramAdapter) -> None:
    """Until every update the fake queued was fetched and every job the adapter started has ended."""
    await tg.wait_for(lambda: not tg.pending_updates and tg.parked_polls and not adapter.busy)


# -- lifecycle ----------------------------------------------------------------------------------------------


async def test_start_registers_commands_then_polls_and_stop_is_clean(
    app: App, tg: FakeTelegramServer
) -> None:
    """start(): getMe, setMyCommands (the core's list), deleteWebhook, getUpdates; stop() twice is fine."""
    adapter = TelegramAdapter(app.chat(), _settings(tg), timings=FAST)
    await adapter.start()
    await tg.wait_for(lambda: tg.parked_polls)
    assert bool(adapter.running) and adapter.username == BOT
    methods = [c.method for c in tg.calls]
    assert methods[:3] == ["getMe", "setMyCommands", "deleteWebhook"]
    assert "getUpdates" in methods
    assert tg.commands() == [{"command": n, "description": d} for n, d in COMMAND_DESCRIPTIONS]
    await adapter.stop()
    await adapter.stop()
    assert not adapter.running
    assert tg.parked_polls == 0
    polls = len(tg.calls_to("getUpdates"))
    tg.send_user_message(USER, "anyone there?", user_id=USER)
    assert len(tg.calls_to("getUpdates")) == polls


async def test_a_rejected_token_is_a_setup_error_without_the_token(app: App, tg: FakeTelegramServer) -> None:
    """A token the server refuses fails start() with a sentence naming the key, never the token."""
    settings = TelegramChannel(enabled=True, bot_token="999:wrong-token", api_base_url=tg.root)
    adapter = TelegramAdapter(app.chat(), settings, timings=FAST)
    with pytest.raises(TelegramSetupError, match="botToken") as caught:
        await adapter.start()
    assert "wrong-token" not in str(caught.value)
    assert not adapter.running


async def test_an_unreachable_server_is_a_setup_error(app: App) -> None:
    """Nothing listening at apiBaseUrl: start() says which URL it could not reach."""
    settings = TelegramChannel(enabled=True, bot_token=TOKEN, api_base_url=f"http://127.0.0.1:{_free_port()}")
    adapter = TelegramAdapter(app.chat(), settings, timings=FAST)
    with pytest.raises(TelegramSetupError, match=r"Cannot reach the Telegram Bot API at http://127\.0\.0\.1"):
        await adapter.start()


async def test_webhook_mode_sets_the_webhook_and_serves_updates(app: App, tg: FakeTelegramServer) -> None:
    """webhook config: setWebhook (no polling); updates POSTed with the secret are answered, others refused."""
    port = _free_port()
    hook = TelegramWebhook(url="https://bot.example.test/tg/hook", port=port, secret_token="s3cret_Token-1")
    async with _running(app, tg, webhook=hook):
        call = await tg.wait_for_call("setWebhook")
        assert call.params["url"] == hook.url and call.params["secret_token"] == hook.secret_token
        assert tg.calls_to("getUpdates") == [] and tg.webhook_url == hook.url
        tg.send_user_message(USER, "hello by webhook", user_id=USER)
        update = tg.pending_updates[-1]
        url = f"http://127.0.0.1:{port}/tg/hook"
        async with aiohttp.ClientSession() as http:
            async with http.post(url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "nope"}) as r:
                assert r.status == 403
            secret = {"X-Telegram-Bot-Api-Secret-Token": "s3cret_Token-1"}
            async with http.post(url, json=update, headers=secret) as r:
                assert r.status == 200
        reply = await _reply(tg, USER)
        await tg.wait_for(
            lambda: "hello by webhook" in (reply.plain_text or "") and "[demo]" in (reply.plain_text or "")
        )
        assert len(tg.sent_messages(USER)) == 1


async def test_modelbot_run_serves_telegram_until_stopped(state_dir: Path, tg: FakeTelegramServer) -> None:
    """`modelbot run` with channels.telegram enabled: the real composition root answers, then stops cleanly."""
    telegram = {"enabled": True, "botToken": "${TELEGRAM_BOT_TOKEN}", "apiBaseUrl": tg.root}
    (state_dir / "config.json5").write_text(json.dumps({"channels": {"telegram": telegram}}))
    stop = asyncio.Event()
    env = {"MODELBOT_STATE_DIR": str(state_dir), "TELEGRAM_BOT_TOKEN": TOKEN}
    running = asyncio.create_task(serve(None, stop=stop, env=env, log_level="WARNING"))
    try:
        await tg.wait_for(lambda: tg.parked_polls or running.done(), timeout=20)
        tg.send_user_message(USER, "/model", user_id=USER)
        picker = await _reply(tg, USER)
        assert picker.buttons and (picker.plain_text or "").startswith("Current model: demo/echo")
    finally:
        stop.set()
        assert await asyncio.wait_for(running, 20) == 0


def test_the_plugin_builds_the_adapter_from_channels_telegram(state_dir: Path) -> None:
    """The plug-in's builder is what `modelbot run` calls: it takes the pipeline and the channel settings."""
    app = _make_app(
        state_dir,
        "{channels: {telegram: {enabled: true, botToken: '${TELEGRAM_BOT_TOKEN}', requireMention: false}}}",
    )
    settings = app.loaded.config.channels.telegram
    assert isinstance(settings, TelegramChannel) and settings.require_mention is False
    adapter = PLUGIN.adapter(settings, app.chat())
    assert isinstance(adapter, TelegramAdapter) and adapter.name == "telegram" and not adapter.running


# -- private chats, commands, picker ------------------------------------------------------------------------


async def test_private_chat_round_trip_with_typing(tg: FakeTelegramServer, bot: TelegramAdapter) -> None:
    """A private message gets the model's answer (not quoted), after a typing action."""
    tg.send_user_message(USER, "hello there", user_id=USER)
    reply = await _reply(tg, USER)
    await _settled(tg, bot)
    assert "You said: “hello there”" in (reply.plain_text or "")
    assert reply.reply_to_message_id is None
    assert [a.action for a in tg.chat_actions if a.chat_id == USER][:1] == ["typing"]


async def test_commands_addressed_to_us_run_and_others_are_ignored(
    tg: FakeTelegramServer, bot: TelegramAdapter
) -> None:
    """/status@thisbot is a command; /status@otherbot is not for us; both in the order sent."""
    tg.send_user_message(USER, "/status@some_other_bot", user_id=USER)
    tg.send_user_message(USER, f"/status@{BOT}", user_id=USER)
    reply = await _reply(tg, USER)
    await _settled(tg, bot)
    assert "demo/echo" in (reply.plain_text or "") and reply.parse_mode is None
    assert len(tg.sent_messages(USER)) == 1


async def test_picker_keyboard_and_selection(app: App, tg: FakeTelegramServer, bot: TelegramAdapter) -> None:
    """/model shows token buttons; pressing one switches the session, edits the picker, answers the query."""
    tg.send_user_message(USER, "/model", user_id=USER)
    picker = await _reply(tg, USER)
    data = [b["callback_data"] for b in picker.buttons]
    assert [b["text"] for b in picker.buttons] == ["1. broken", "2. echo ✓", "3. story", "4. vision"]
    assert all(len(d.encode()) <= 64 and d.startswith("m:") and "/" not in d for d in data)

    query = tg.press_button(USER, picker.message_id, data[2], user_id=USER)
    answer = await tg.wait_for(lambda: next((a for a in tg.answered_callbacks if a.query_id == query), None))
    assert answer.text == "Model set to demo/story."
    edited = tg.message(USER, picker.message_id)
    assert (edited.plain_text, edited.reply_markup) == ("Model set to demo/story.", None)
    status = await app.chat().handle(
        Incoming(platform="telegram", chat_id=str(USER), user_id=str(USER), text="/status")
    )
    assert "demo/story" in status[0].text


async def test_picker_pages_turn_and_stale_buttons_are_answered(
    state_dir: Path, tg: FakeTelegramServer
) -> None:
    """A long picker pages with ‹ › (the message is edited); a button from an older list gets a polite answer."""
    models = ", ".join(f"{{id: 'model-{n:02d}'}}" for n in range(1, 26))
    config = f"{{models: {{providers: {{acme: {{baseUrl: 'http://127.0.0.1:9/v1', api: 'openai-completions', models: [{models}]}}}}}}}}"
    app = _make_app(state_dir, config)
    await app.start()
    try:
        async with _running(app, tg) as adapter:
            tg.send_user_message(USER, "/model", user_id=USER)
            picker = await _reply(tg, USER)
            assert [b["text"] for b in picker.buttons][-1] == "Next ›"
            assert "Page 1 of 2" in (picker.plain_text or "")
            tg.press_button(USER, picker.message_id, "p:2", user_id=USER)
            await tg.wait_for(lambda: "Page 2 of 2" in (tg.message(USER, picker.message_id).plain_text or ""))
            page2 = tg.message(USER, picker.message_id)
            assert page2.buttons[-1]["text"] == "‹ Prev" and "9. vision" not in [
                b["text"] for b in page2.buttons
            ]
            tg.press_button(USER, picker.message_id, "p:1", user_id=USER)
            await tg.wait_for(lambda: "Page 1 of 2" in (tg.message(USER, picker.message_id).plain_text or ""))
            await _settled(tg, adapter)
            assert len(tg.answered_callbacks) == 2

            # A keyboard drawn before the config changed: entry 3 was another family then.
            tg.message(USER, picker.message_id).reply_markup = {
                "inline_keyboard": [[{"text": "3. gone", "callback_data": "m:3:00000000"}]]
            }
            query = tg.press_button(USER, picker.message_id, "m:3:00000000", user_id=USER)
            answer = await tg.wait_for(
                lambda: next((a for a in tg.answered_callbacks if a.query_id == query), None)
            )
            assert answer.text == "That list is out of date. Send /model to see the current one."
            await _settled(tg, adapter)
            assert len(tg.edits(USER, picker.message_id)) == 2  # the two page turns, nothing more
    finally:
        await app.stop()


# -- groups and access --------------------------------------------------------------------------------------


async def test_group_answers_mentions_replies_and_commands_only(
    tg: FakeTelegramServer, bot: TelegramAdapter
) -> None:
    """In a group: plain chatter is ignored; @mention, a reply to the bot and a command are answered."""
    tg.send_user_message(GROUP, "just chatting", user_id=ALICE, username="alice", chat_type="supergroup")
    mention = tg.send_user_message(
        GROUP, f"@{BOT} hello bot", user_id=ALICE, username="alice", chat_type="supergroup"
    )
    first = await _quoting(tg, mention)
    assert "You said: “hello bot”" in (first.plain_text or "")
    await _settled(tg, bot)
    follow_up = tg.send_user_message(
        GROUP,
        "and more",
        user_id=ALICE,
        username="alice",
        chat_type="supergroup",
        reply_to_message_id=first.message_id,
    )
    second = await _quoting(tg, follow_up)
    command = tg.send_user_message(GROUP, "/status", user_id=ALICE, username="alice", chat_type="supergroup")
    third = await _quoting(tg, command)
    await _settled(tg, bot)
    assert "You said: “and more”" in (second.plain_text or "") and "demo/echo" in (third.plain_text or "")
    assert len(tg.sent_messages(GROUP)) == 3


async def test_group_without_require_mention_answers_everything(app: App, tg: FakeTelegramServer) -> None:
    """requireMention false: every group message is a turn."""
    async with _running(app, tg, require_mention=False):
        sent = tg.send_user_message(GROUP, "no mention here", user_id=ALICE, chat_type="group")
        reply = await _quoting(tg, sent)
        assert "no mention here" in (reply.plain_text or "")


async def test_admin_resets_a_member_by_reply_and_by_username(
    tg: FakeTelegramServer, bot: TelegramAdapter
) -> None:
    """An administrator's /reset replying to Bob resets Bob, /reset @bob too; Bob may not; a reply to the bot is plain."""
    tg.add_chat(GROUP, "supergroup")
    tg.set_admins(GROUP, [ALICE])
    bobs = tg.send_user_message(GROUP, f"@{BOT} hi", user_id=BOB, username="bob", chat_type="supergroup")
    answer = await _quoting(tg, bobs)
    to_bot = tg.send_user_message(
        GROUP,
        "/reset",
        user_id=BOB,
        username="bob",
        chat_type="supergroup",
        reply_to_message_id=answer.message_id,
    )
    assert ((await _quoting(tg, to_bot)).plain_text or "").startswith("Session reset.")
    by_reply = tg.send_user_message(
        GROUP,
        "/reset",
        user_id=ALICE,
        username="alice",
        chat_type="supergroup",
        reply_to_message_id=bobs.message_id,
    )
    assert (await _quoting(tg, by_reply)).plain_text == f"Session of user:{BOB} reset."
    by_name = tg.send_user_message(
        GROUP, "/reset @bob", user_id=ALICE, username="alice", chat_type="supergroup"
    )
    assert (await _quoting(tg, by_name)).plain_text == "Session of @bob reset."
    not_admin = tg.send_user_message(
        GROUP, "/reset @alice", user_id=BOB, username="bob", chat_type="supergroup"
    )
    assert (await _quoting(tg, not_admin)).plain_text == "Only admins can reset another member's session."
    assert len(tg.calls_to("getChatAdministrators")) == 1  # cached


async def test_strangers_are_refused_and_silent_in_groups_when_configured(
    app: App, tg: FakeTelegramServer
) -> None:
    """allowFrom: a listed @username is served; a stranger is told so in private, ignored in groups."""
    async with _running(app, tg, allow_from=("@alice",), silent_refusal_in_groups=True) as adapter:
        tg.send_user_message(MALLORY, "let me in", user_id=MALLORY, username="mallory")
        assert (await _reply(tg, MALLORY)).plain_text == REFUSAL
        tg.send_user_message(GROUP, f"@{BOT} me too", user_id=MALLORY, username="mallory", chat_type="group")
        allowed = tg.send_user_message(
            GROUP, f"@{BOT} hello", user_id=ALICE, username="Alice", chat_type="group"
        )
        await _quoting(tg, allowed)
        await _settled(tg, adapter)
        assert len(tg.sent_messages(GROUP)) == 1
        assert tg.calls_to("getChatAdministrators")  # Alice's admin status was looked up, Mallory's never


# -- media --------------------------------------------------------------------------------------------------


async def test_photo_and_image_file_go_to_the_vision_model(
    tg: FakeTelegramServer, bot: TelegramAdapter
) -> None:
    """The largest photo size is downloaded and routed to demo/vision; an image document too."""
    photo = tg.send_photo(USER, user_id=USER, image_bytes=make_png(640, 480), caption="what is this?")
    reply = await _reply(tg, USER)
    await tg.wait_for(
        lambda: "[demo vision]" in (reply.plain_text or "") and "Caption" in (reply.plain_text or "")
    )
    assert "image/png, 640×480 px" in (reply.plain_text or "")
    largest = max(photo.media["photo"], key=lambda p: p["width"])
    assert tg.downloads == [f"photos/file_{largest['file_id'].rsplit('-', 1)[1].lstrip('0')}.jpg"]
    tg.send_document(USER, user_id=USER, data=make_png(32, 16), file_name="tiny.png")
    second = await _reply(tg, USER, count=2)
    await tg.wait_for(lambda: "32×16 px" in (second.plain_text or ""))


async def test_other_media_are_not_supported(tg: FakeTelegramServer, bot: TelegramAdapter) -> None:
    """Voice, stickers and non-image files get a short "not supported"."""
    tg.send_voice(USER, user_id=USER)
    tg.send_sticker(USER, user_id=USER)
    tg.send_document(USER, user_id=USER, data=b"%PDF-1.7", file_name="a.pdf", mime_type="application/pdf")
    await _reply(tg, USER, count=3)
    await _settled(tg, bot)
    assert [m.plain_text for m in tg.sent_messages(USER)] == [UNSUPPORTED] * 3
    assert tg.downloads == []


# -- resilience ---------------------------------------------------------------------------------------------


async def test_a_blocked_user_does_not_stall_other_chats(
    tg: FakeTelegramServer, bot: TelegramAdapter
) -> None:
    """403 Forbidden: logged, not retried, no crash; another chat is still answered."""
    tg.add_chat(USER)
    tg.set_blocked(USER)
    tg.send_user_message(USER, "hello?", user_id=USER)
    tg.send_user_message(OTHER, "and me?", user_id=OTHER)
    await _reply(tg, OTHER)
    await _settled(tg, bot)
    assert tg.sent_messages(USER) == []
    refused = [c for c in tg.calls if c.params.get("chat_id") == USER]
    assert refused and all(c.error_code == 403 for c in refused)
    assert len({c.method for c in refused}) == len(refused)  # none retried


async def test_network_errors_are_retried(tg: FakeTelegramServer, bot: TelegramAdapter) -> None:
    """A 502 page and a dropped connection on sendMessage: retried with backoff, the answer arrives once."""
    tg.fail_next("sendMessage", network="bad_gateway")
    tg.fail_next("sendMessage", network="disconnect")
    tg.send_user_message(USER, "/status", user_id=USER)
    await _reply(tg, USER)
    await _settled(tg, bot)
    assert [c.error_code for c in tg.calls_to("sendMessage")] == [502, 502, None]
    assert len(tg.sent_messages(USER)) == 1


class _Gate:
    """A provider that streams exactly what the test feeds it; ``None`` ends the answer."""

    def __init__(self) -> None:
        self.feeds: asyncio.Queue[asyncio.Queue[str | None]] = asyncio.Queue()

    async def stream(
        self, endpoint: Endpoint, auth: ResolvedAuth, request: ChatRequest
    ) -> AsyncIterator[str]:
        feed: asyncio.Queue[str | None] = asyncio.Queue()
        self.feeds.put_nowait(feed)
        while (delta := await feed.get()) is not None:
            yield delta

    async def aclose(self) -> None:
        return None

    async def next_feed(self) -> asyncio.Queue[str | None]:
        return await asyncio.wait_for(self.feeds.get(), 5)


async def test_a_slow_chat_never_stalls_another_and_stop_cuts_in(
    app: App, tg: FakeTelegramServer, bot: TelegramAdapter
) -> None:
    """While one chat's turn hangs, another chat is answered; /stop reaches the hung turn at once."""
    gate = _Gate()
    app.clients["demo"] = gate
    tg.send_user_message(USER, "take your time", user_id=USER)
    slow = await gate.next_feed()
    slow.put_nowait("Thinking")
    await tg.wait_for(lambda: tg.sent_messages(USER))
    tg.send_user_message(OTHER, "quick one", user_id=OTHER)
    fast = await gate.next_feed()
    fast.put_nowait("done.")
    fast.put_nowait(None)
    await tg.wait_for(lambda: [m.plain_text for m in tg.sent_messages(OTHER)] == ["done."])
    await tg.wait_for(lambda: len([a for a in tg.chat_actions if a.chat_id == USER]) >= 3)  # repeated
    tg.send_user_message(USER, "/stop", user_id=USER)
    await tg.wait_for(
        lambda: any(m.plain_text == "Stopping the current answer." for m in tg.sent_messages(USER))
    )
    streamed = tg.sent_messages(USER)[0]
    await tg.wait_for(
        lambda: "Stopped. Send /retry" in (tg.message(USER, streamed.message_id).plain_text or "")
    )
    assert (
        tg.message(USER, streamed.message_id).plain_text == "Thinking\n\nStopped. Send /retry to ask again."
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# -- streaming and rendering --------------------------------------------------------------------------------


def _edit_times(tg: FakeTelegramServer, chat: int) -> list[float]:
    """When each successful send or edit in ``chat`` reached the server."""
    calls = [c for c in tg.calls if c.method in ("sendMessage", "editMessageText") and c.ok]
    return [c.at for c in calls if c.params["chat_id"] == chat]


@pytest.mark.parametrize("chat_type", ["private", "supergroup"])
async def test_answer_streams_into_one_message_with_throttled_edits(
    app: App, tg: FakeTelegramServer, chat_type: ChatType
) -> None:
    """Deltas grow one message; edits keep the interval (longer in groups) and coalesce what arrived."""
    timings = replace(FAST, edit_interval_s=0.1, group_edit_interval_s=0.25)
    interval = timings.group_edit_interval_s if chat_type == "supergroup" else timings.edit_interval_s
    chat = GROUP if chat_type == "supergroup" else USER
    gate = _Gate()
    app.clients["demo"] = gate
    async with _running(app, tg, timings=timings):
        tg.send_user_message(chat, f"@{BOT} tell me", user_id=USER, chat_type=chat_type)
        feed = await gate.next_feed()
        feed.put_nowait("Once")
        first = await _reply(tg, chat)
        for word in (" upon", " a", " time"):
            feed.put_nowait(word)
        await tg.wait_for(lambda: tg.message(chat, first.message_id).plain_text == "Once upon a time")
        feed.put_nowait(" there")
        feed.put_nowait(None)
        await tg.wait_for(
            lambda: (tg.message(chat, first.message_id).plain_text or "").startswith("Once upon a time there")
        )
    times = _edit_times(tg, chat)
    assert len(tg.sent_messages(chat)) == 1 and 2 <= len(times) <= 4
    assert all(b - a >= interval * 0.95 for a, b in itertools.pairwise(times)), times


async def test_long_answers_are_split_without_breaking_code_blocks(
    app: App, tg: FakeTelegramServer, bot: TelegramAdapter
) -> None:
    """A 10 000-character answer becomes several messages under 4096; the code block is <pre> in each."""
    code = [f"    value_{n:03d} = compute({n}, 'x' * {n})  # step {n}" for n in range(180)]
    answer = "Here is the script:\n\n```python\n" + "\n".join(code) + "\n```\n\nThat is **all**."
    scripted = ScriptedClient()
    for profile in ("demo:main", "demo:busy"):
        scripted.always("demo/echo", profile, ok(answer))
    app.clients["demo"] = scripted
    tg.send_user_message(USER, "write it", user_id=USER)
    await tg.wait_for(lambda: any("That is all." in (m.plain_text or "") for m in tg.sent_messages(USER)))
    await _settled(tg, bot)
    messages = [m for m in tg.sent_messages(USER) if not m.deleted]
    assert len(messages) >= 3
    seen = []
    for message in messages:
        plain = message.plain_text or ""
        assert utf16_len(plain) <= 4096 and message.parse_mode == "HTML" and "```" not in plain
        pre = [e for e in message.entities if e["type"] == "pre"]
        assert pre and all(e.get("language") == "python" for e in pre)
        inside = "".join(plain[e["offset"] : e["offset"] + e["length"]] for e in pre)
        seen += [line for line in inside.split("\n") if line.strip()]
    assert seen == code


async def test_rejected_html_falls_back_to_plain_text(
    app: App, tg: FakeTelegramServer, bot: TelegramAdapter
) -> None:
    """A 400 "can't parse entities" on a send or an edit is repeated as plain text without the markers."""
    rejected = 'Bad Request: can\'t parse entities: Unsupported start tag "b" at byte offset 0'
    scripted = ScriptedClient()
    for profile in ("demo:main", "demo:busy"):
        scripted.always("demo/echo", profile, ScriptedReply(("**Bold** claim with `code`",)))
    app.clients["demo"] = scripted
    tg.fail_next("sendMessage", error_code=400, description=rejected)
    tg.send_user_message(USER, "claim something", user_id=USER)
    sent = await _reply(tg, USER)
    await _settled(tg, bot)
    assert [c.error_code for c in tg.calls_to("sendMessage")] == [400, None]
    assert sent.parse_mode is None and (sent.plain_text or "").startswith("Bold claim with code")

    gate = _Gate()
    app.clients["demo"] = gate
    tg.fail_next("editMessageText", error_code=400, description=rejected)
    tg.send_user_message(USER, "again", user_id=USER)
    feed = await gate.next_feed()
    feed.put_nowait("**Hello**")
    second = await _reply(tg, USER, count=2)
    feed.put_nowait(" *world*")
    feed.put_nowait(None)
    await tg.wait_for(
        lambda: (tg.message(USER, second.message_id).plain_text or "").startswith("Hello world")
    )
    assert tg.message(USER, second.message_id).parse_mode is None
    assert [c.error_code for c in tg.calls_to("editMessageText")][:2] == [400, None]


async def test_flood_control_on_an_edit_holds_every_later_edit(
    app: App, tg: FakeTelegramServer, bot: TelegramAdapter
) -> None:
    """429 retry_after on an edit: no call in that chat reaches Telegram before the wait is over."""
    gate = _Gate()
    app.clients["demo"] = gate
    tg.send_user_message(USER, "go", user_id=USER)
    feed = await gate.next_feed()
    feed.put_nowait("one")
    sent = await _reply(tg, USER)
    tg.fail_next("editMessageText", retry_after=1)
    feed.put_nowait(" two")
    flood = await tg.wait_for_call("editMessageText")
    assert flood.error_code == 429
    feed.put_nowait(" three")
    feed.put_nowait(None)
    await tg.wait_for(
        lambda: (tg.message(USER, sent.message_id).plain_text or "").startswith("one two three")
    )
    later = [c for c in tg.calls if c.at > flood.at and c.params.get("chat_id") == USER]
    assert later and all(c.at >= flood.at + 0.95 for c in later)
    assert [c.error_code for c in tg.calls_to("editMessageText")][-1] is None


async def test_an_interrupted_stream_is_marked_as_such(
    app: App, tg: FakeTelegramServer, bot: TelegramAdapter
) -> None:
    """Text, then a failure: the message keeps the text and ends with an italic interruption notice."""
    scripted = ScriptedClient()
    for profile in ("demo:main", "demo:busy"):
        scripted.always("demo/echo", profile, Fail(Reason.TIMEOUT, after=("Half ", "an answer")))
    app.clients["demo"] = scripted
    tg.send_user_message(USER, "explain", user_id=USER)
    notice = "⚠ The answer was interrupted before it finished. Send /retry to try again."
    sent = await _reply(tg, USER)
    await tg.wait_for(lambda: tg.message(USER, sent.message_id).plain_text == f"Half an answer\n\n{notice}")
    final = tg.message(USER, sent.message_id)
    assert final.entities[-1]["type"] == "italic"
    assert final.entities[-1]["offset"] + final.entities[-1]["length"] == utf16_len(final.plain_text or "")


async def test_the_fallback_note_is_a_quiet_last_line(tg: FakeTelegramServer, bot: TelegramAdapter) -> None:
    """demo/broken fails, demo/story answers: the note "↪ answered by …" closes the message in italics."""
    tg.send_user_message(USER, "/model demo/broken", user_id=USER)
    await _reply(tg, USER)
    tg.send_user_message(USER, "a story please", user_id=USER)
    answer = await _reply(tg, USER, count=2)
    await tg.wait_for(
        lambda: "↪ answered by demo/story" in (tg.message(USER, answer.message_id).plain_text or "")
    )
    final = tg.message(USER, answer.message_id)
    plain = final.plain_text or ""
    note = plain[plain.index("↪") :]
    assert "[demo story]" in plain and "\n" not in note
    assert final.entities[-1] == {
        "type": "italic",
        "offset": utf16_len(plain) - utf16_len(note),
        "length": utf16_len(note),
    }


async def test_a_wait_shows_a_status_line_that_the_answer_replaces(
    state_dir: Path, tg: FakeTelegramServer
) -> None:
    """docs/failover.md §8: both demo profiles rest for echo, one is back in 5 s: the reply starts as the status line
    "waiting 5s for a rate limit…" and that same message becomes the answer."""
    app = _make_app(state_dir, '{agents: {defaults: {model: {primary: "demo/echo"}}}}')
    await app.start()
    try:
        for profile in ("demo:main", "demo:busy"):
            await app.backend("main").record_failure(
                profile, "echo", Reason.RATE_LIMIT, now_ms=app.clock.now_ms(), retry_after_ms=None
            )
        assert isinstance(app.clock, FakeClock)
        app.clock.advance(seconds=55)
        async with _running(app, tg):
            tg.send_user_message(USER, "anyone?", user_id=USER)
            sent = await _reply(tg, USER)
            await tg.wait_for(
                lambda: "You said: “anyone?”" in (tg.message(USER, sent.message_id).plain_text or "")
            )
    finally:
        await app.stop()
    first = [c.params["text"] for c in tg.calls if c.method == "sendMessage" and c.params["chat_id"] == USER]
    assert first == ["waiting 5s for a rate limit…"]
    assert len(tg.sent_messages(USER)) == 1 and tg.calls_to("sendChatAction")
