"""The fake Telegram Bot API, proven against the real python-telegram-bot stack over loopback HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import ssl
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from telegram import BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, MessageEntity, Update
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken, NetworkError, RetryAfter
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)
from telegram.request import HTTPXRequest

from tests.fakes.telegram_server import FakeTelegramServer, HtmlParseError, make_png, parse_html

TOKEN = "123456:TEST-fake-telegram-token"
BOT = "modelbot_test_bot"
USER = 42  # a private chat's id is its user's id
GROUP = -100_200_300
App = Application[Any, Any, Any, Any, Any, Any]
Context = ContextTypes.DEFAULT_TYPE


@pytest.fixture(scope="session")
def tls() -> ssl.SSLContext:
    """One TLS context for all clients: each costs ~80 ms to build, and loopback HTTP never uses it."""
    return ssl.create_default_context()


@pytest.fixture
async def tg() -> AsyncIterator[FakeTelegramServer]:
    """A fresh fake Bot API server."""
    async with FakeTelegramServer(TOKEN, username=BOT) as server:
        yield server


def build_app(tg: FakeTelegramServer, tls: ssl.SSLContext) -> App:
    """A real PTB application pointed at the fake, ignoring proxy settings."""
    httpx_kwargs: dict[str, Any] = {"trust_env": False, "verify": tls}
    return (
        Application.builder()
        .token(TOKEN)
        .base_url(tg.api_url)
        .base_file_url(tg.file_url)
        .request(HTTPXRequest(httpx_kwargs=httpx_kwargs))
        .get_updates_request(HTTPXRequest(httpx_kwargs=httpx_kwargs))
        .build()
    )


@contextlib.asynccontextmanager
async def running(app: App, *, poll_timeout: int = 1) -> AsyncIterator[App]:
    """Start the application as the adapter will; stop it in reverse; fail on any handler error."""
    errors: list[BaseException] = []

    async def on_error(update: object, context: Context) -> None:
        assert context.error is not None
        errors.append(context.error)

    app.add_error_handler(on_error)
    await app.initialize()
    await app.bot.set_my_commands(
        [BotCommand("start", "Start a conversation"), BotCommand("help", "Show help")]
    )
    await app.start()
    assert app.updater is not None
    await app.updater.start_polling(timeout=poll_timeout)
    try:
        yield app
    finally:
        await app.updater.stop()
        await app.stop()
        await app.shutdown()
    assert not errors, errors


@pytest.fixture
async def app(tg: FakeTelegramServer, tls: ssl.SSLContext) -> AsyncIterator[App]:
    """A running application polling the fake."""
    async with running(build_app(tg, tls)) as application:
        yield application


async def test_command_handler_receives_plain_and_addressed_commands(
    tg: FakeTelegramServer, app: App
) -> None:
    """/start and /start@thisbot reach the CommandHandler; /start@otherbot does not."""
    seen: list[tuple[str, list[str]]] = []

    async def start(update: Update, context: Context) -> None:
        assert update.message is not None and update.message.text is not None
        seen.append((update.message.text, list(context.args or [])))

    async def help_(update: Update, context: Context) -> None:
        seen.append(("help", []))

    app.add_handler(CommandHandler("start", start))
    app.add_handler(CommandHandler("help", help_))
    tg.send_user_message(USER, "/start", user_id=USER)
    tg.send_user_message(USER, f"/start@{BOT} now please", user_id=USER)
    tg.send_user_message(USER, "/start@some_other_bot", user_id=USER)
    tg.send_user_message(USER, "/help", user_id=USER)  # updates are handled in order: this comes last

    await tg.wait_for(lambda: ("help", []) in seen)

    assert seen == [("/start", []), (f"/start@{BOT} now please", ["now", "please"]), ("help", [])]
    assert tg.commands() == [
        {"command": "start", "description": "Start a conversation"},
        {"command": "help", "description": "Show help"},
    ]


async def test_message_handler_echo_is_a_reply_in_a_group(tg: FakeTelegramServer, app: App) -> None:
    """Text with an @mention reaches a MessageHandler with a mention entity; the echo quotes it."""
    mentions: list[str] = []

    async def echo(update: Update, context: Context) -> None:
        assert update.message is not None and update.message.text is not None
        mentions.extend(update.message.parse_entities([MessageEntity.MENTION]).values())
        await update.message.reply_text(update.message.text)

    app.add_handler(MessageHandler(filters.TEXT & ~filters.COMMAND, echo))
    sent = tg.send_user_message(GROUP, f"@{BOT} hello there", user_id=USER, chat_type="supergroup")

    await tg.wait_for_call("sendMessage", chat_id=GROUP)

    [reply] = tg.sent_messages(GROUP)
    assert reply.text == f"@{BOT} hello there"
    assert reply.reply_to_message_id == sent.message_id
    assert mentions == [f"@{BOT}"]


async def test_button_press_reaches_callback_handler_and_is_answered(
    tg: FakeTelegramServer, app: App
) -> None:
    """An inline keyboard button press is answered and the edit (which drops the keyboard) recorded."""

    async def on_button(update: Update, context: Context) -> None:
        query = update.callback_query
        assert query is not None
        await query.answer(f"Picked {query.data}")
        await query.edit_message_text(f"You chose <b>{query.data}</b>", parse_mode="HTML")

    app.add_handler(CallbackQueryHandler(on_button))
    tg.add_chat(USER)
    keyboard = InlineKeyboardMarkup(
        [[InlineKeyboardButton("A", callback_data="a")], [InlineKeyboardButton("B", callback_data="b")]]
    )
    message = await app.bot.send_message(USER, "Choose", reply_markup=keyboard)
    with pytest.raises(ValueError, match="no button"):
        tg.press_button(USER, message.message_id, "c", user_id=USER)

    query_id = tg.press_button(USER, message.message_id, "b", user_id=USER)
    await tg.wait_for(lambda: tg.edits(USER, message.message_id))

    [answer] = tg.answered_callbacks
    assert (answer.query_id, answer.text, answer.data) == (query_id, "Picked b", "b")
    current = tg.message(USER, message.message_id)
    assert (current.text, current.plain_text, current.reply_markup) == (
        "You chose <b>b</b>",
        "You chose b",
        None,
    )
    assert [e.method for e in tg.edits(USER, message.message_id)] == ["editMessageText"]


async def test_identical_edit_is_rejected_as_not_modified(tg: FakeTelegramServer, app: App) -> None:
    """Editing to the same content fails like Telegram; changing only the keyboard is an edit."""
    tg.add_chat(USER)
    keyboard = InlineKeyboardMarkup([[InlineKeyboardButton("Stop", callback_data="stop")]])
    message = await app.bot.send_message(USER, "<i>thinking</i>", parse_mode="HTML", reply_markup=keyboard)

    with pytest.raises(BadRequest, match=r"(?i)message is not modified"):
        await app.bot.edit_message_text(
            "<em>thinking</em>", USER, message.message_id, parse_mode="HTML", reply_markup=keyboard
        )
    await app.bot.edit_message_reply_markup(USER, message.message_id, reply_markup=None)

    [edit] = tg.edits(USER, message.message_id)
    assert (edit.method, edit.plain_text, edit.reply_markup) == ("editMessageReplyMarkup", "thinking", None)
    assert [c.error_code for c in tg.calls_to("editMessageText")] == [400]


async def test_flood_control_surfaces_as_retry_after(tg: FakeTelegramServer, app: App) -> None:
    """A scripted 429 is telegram.error.RetryAfter with the server's retry_after; the next call passes."""
    tg.add_chat(USER)
    tg.fail_next("sendMessage", retry_after=3)

    with pytest.raises(RetryAfter) as caught:
        await app.bot.send_message(USER, "hello")
    await app.bot.send_message(USER, "hello")

    assert caught.value.retry_after == dt.timedelta(seconds=3)
    assert [c.error_code for c in tg.calls_to("sendMessage")] == [429, None]
    assert [m.text for m in tg.sent_messages(USER)] == ["hello"]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("<b>bold", 'can\'t find end tag corresponding to start tag "b"'),
        ("a <script>x</script>", 'unsupported start tag "script" at byte offset 2'),
        ("1 < 2", 'unsupported start tag "" at byte offset 2'),
        ("<b>x</i>", 'unmatched end tag at byte offset 4, expected "</b>", found "</i>"'),
    ],
)
async def test_malformed_html_surfaces_as_bad_request(
    tg: FakeTelegramServer, app: App, text: str, reason: str
) -> None:
    """Telegram rejects HTML it cannot parse; PTB raises BadRequest with the reason."""
    tg.add_chat(USER)

    with pytest.raises(BadRequest) as caught:
        await app.bot.send_message(USER, text, parse_mode="HTML")

    assert caught.value.message.lower() == f"can't parse entities: {reason}".lower()
    assert tg.sent_messages(USER) == []


async def test_blocked_user_surfaces_as_forbidden(tg: FakeTelegramServer, app: App) -> None:
    """A user who blocked the bot yields Forbidden until unblocked; a scripted 403 does the same once."""
    tg.add_chat(USER)
    tg.set_blocked(USER)
    with pytest.raises(Forbidden, match="blocked by the user"):
        await app.bot.send_message(USER, "hi")
    tg.set_blocked(USER, blocked=False)
    tg.fail_next("sendChatAction", error_code=403)
    with pytest.raises(Forbidden):
        await app.bot.send_chat_action(USER, "typing")
    await app.bot.send_chat_action(USER, "typing")

    assert [(a.chat_id, a.action) for a in tg.chat_actions] == [(USER, "typing")]


async def test_photo_is_downloaded_through_get_file(tg: FakeTelegramServer, app: App) -> None:
    """getFile + the file endpoint serve the photo's bytes for the largest size, not the thumbnails."""
    image = make_png(1000, 750)
    downloads: list[tuple[bytes, bytes]] = []

    async def on_photo(update: Update, context: Context) -> None:
        assert update.message is not None
        largest = await (await update.message.photo[-1].get_file()).download_as_bytearray()
        smallest = await (await update.message.photo[0].get_file()).download_as_bytearray()
        downloads.append((bytes(largest), bytes(smallest)))

    app.add_handler(MessageHandler(filters.PHOTO, on_photo))
    tg.send_photo(USER, user_id=USER, image_bytes=image, caption="what is this?")

    [(largest, smallest)] = await tg.wait_for(lambda: downloads)

    assert largest == image
    assert smallest != image
    sizes = tg.message(USER, 1).media["photo"]
    assert (sizes[-1]["width"], sizes[-1]["height"]) == (1000, 750)


async def test_documents_and_unsupported_media_reach_their_filters(tg: FakeTelegramServer, app: App) -> None:
    """Images sent as files are Document.IMAGE with their own bytes; stickers and voice notes arrive as such."""
    kinds: list[str] = []

    async def on_media(update: Update, context: Context) -> None:
        message = update.message
        assert message is not None
        if message.document is not None:
            data = await (await message.document.get_file()).download_as_bytearray()
            kinds.append(f"{message.document.mime_type} {bytes(data) == images[len(kinds)]}")
        else:
            kinds.append("sticker" if message.sticker else "voice" if message.voice else "other")

    app.add_handler(MessageHandler(filters.Document.IMAGE | filters.Sticker.ALL | filters.VOICE, on_media))
    images = [make_png(8, 8), make_png(9, 9)]
    for image in images:  # same file name, different files
        tg.send_document(USER, user_id=USER, data=image, file_name="image.png")
    tg.send_sticker(USER, user_id=USER)
    tg.send_voice(USER, user_id=USER)

    await tg.wait_for(lambda: len(kinds) == 4)

    assert kinds == ["image/png True", "image/png True", "sticker", "voice"]


async def test_long_poll_answers_as_soon_as_an_update_arrives(
    tg: FakeTelegramServer, tls: ssl.SSLContext
) -> None:
    """An update injected while getUpdates is parked is delivered at once, not at the poll timeout."""
    handled = asyncio.Event()

    async def on_text(update: Update, context: Context) -> None:
        handled.set()

    application = build_app(tg, tls)
    application.add_handler(MessageHandler(filters.TEXT, on_text))
    async with running(application, poll_timeout=10):
        await tg.wait_for(lambda: tg.parked_polls == 1)
        started = time.monotonic()
        tg.send_user_message(USER, "ping", user_id=USER)
        await asyncio.wait_for(handled.wait(), timeout=2)
        elapsed = time.monotonic() - started

    assert elapsed < 0.5
    assert [c.params.get("offset") for c in tg.calls_to("getUpdates")][:2] == [0, 2]


async def test_teardown_with_a_parked_poll_is_fast(tls: ssl.SSLContext) -> None:
    """Stopping the bot and then the fake while a 30 s poll is parked takes well under a second."""
    async with FakeTelegramServer(TOKEN, username=BOT) as server:
        async with running(build_app(server, tls), poll_timeout=30):
            await server.wait_for(lambda: server.parked_polls == 1)
            started = time.monotonic()
        await server.stop()
    assert time.monotonic() - started < 1.0
    # PTB cancels the parked poll on stop (recorded as 499) and then confirms with a timeout=0 poll.
    assert [(c.params["timeout"], c.error_code) for c in server.calls_to("getUpdates")][-2:] == [
        (30, 499),
        (0, None),
    ]


async def test_validation_of_lengths_commands_and_buttons(tg: FakeTelegramServer, app: App) -> None:
    """Telegram's limits: 1–4096 characters of text, 64-byte callback data, [a-z0-9_]{1,32} commands."""
    tg.add_chat(USER)
    await app.bot.send_message(USER, "x" * 4096)
    await app.bot.send_message(USER, "<b>" + "x" * 4096 + "</b>", parse_mode="HTML")  # counted after parsing
    with pytest.raises(BadRequest, match=r"(?i)message is too long"):
        await app.bot.send_message(USER, "é" * 4097)
    with pytest.raises(BadRequest, match=r"(?i)message text is empty"):
        await app.bot.send_message(USER, "<b> </b>", parse_mode="HTML")
    too_long = InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="é" * 33)]])
    with pytest.raises(BadRequest, match=r"(?i)BUTTON_DATA_INVALID"):
        await app.bot.send_message(USER, "pick", reply_markup=too_long)
    with pytest.raises(BadRequest, match=r"(?i)BOT_COMMAND_INVALID"):
        await app.bot.set_my_commands([BotCommand("Start", "Capitals are not allowed")])
    with pytest.raises(BadRequest, match=r"(?i)BOT_COMMAND_DESCRIPTION_INVALID"):
        await app.bot.set_my_commands([BotCommand("start", "d" * 257)])

    assert len(tg.sent_messages(USER)) == 2
    assert [c["command"] for c in tg.commands()] == ["start", "help"]


async def test_replies_and_forum_threads_must_exist(tg: FakeTelegramServer, app: App) -> None:
    """A reply to a missing message or a post to an unknown topic fails; a known topic works."""
    asked = tg.send_user_message(GROUP, "/start", user_id=USER, chat_type="supergroup", message_thread_id=7)
    with pytest.raises(BadRequest, match=r"(?i)message to be replied not found"):
        await app.bot.send_message(GROUP, "hi", reply_to_message_id=999)
    with pytest.raises(BadRequest, match=r"(?i)message thread not found"):
        await app.bot.send_message(GROUP, "hi", message_thread_id=8)

    sent = await app.bot.send_message(GROUP, "hi", message_thread_id=7, reply_to_message_id=asked.message_id)

    assert sent.message_thread_id == 7
    assert sent.reply_to_message is not None and sent.reply_to_message.text == "/start"
    assert sent.chat.is_forum is True


async def test_admins_and_member_statuses(tg: FakeTelegramServer, app: App) -> None:
    """getChatAdministrators and getChatMember follow set_admins; a private chat has no admins."""
    tg.send_user_message(GROUP, "hello", user_id=USER, chat_type="group", username="alice")
    tg.set_admins(GROUP, [USER], creator_id=1)
    tg.add_chat(USER)

    admins = await app.bot.get_chat_administrators(GROUP)
    member = await app.bot.get_chat_member(GROUP, USER)
    other = await app.bot.get_chat_member(GROUP, 99)
    with pytest.raises(BadRequest, match=r"(?i)no administrators in the private chat"):
        await app.bot.get_chat_administrators(USER)

    assert [(a.user.id, a.status) for a in admins] == [(1, "creator"), (USER, "administrator")]
    assert (member.status, member.user.username) == ("administrator", "alice")
    assert other.status == "member"


async def test_network_failures_surface_as_network_error(tg: FakeTelegramServer, app: App) -> None:
    """A dropped connection and a 502 page are NetworkError; a lost response still sent the message."""
    tg.add_chat(USER)
    for kind in ("disconnect", "bad_gateway", "lost_response"):
        tg.fail_next("sendMessage", network=kind)
        with pytest.raises(NetworkError) as caught:
            await app.bot.send_message(USER, kind)
        assert type(caught.value) is NetworkError

    assert [m.text for m in tg.sent_messages(USER)] == ["lost_response"]


async def test_chat_actions_and_deletion(tg: FakeTelegramServer, app: App) -> None:
    """sendChatAction is recorded; deleteMessage flags the message; a second delete fails."""
    tg.add_chat(USER)
    message = await app.bot.send_message(USER, "bye")
    await app.bot.send_chat_action(USER, "typing")
    await app.bot.delete_message(USER, message.message_id)
    with pytest.raises(BadRequest, match=r"(?i)message to delete not found"):
        await app.bot.delete_message(USER, message.message_id)
    with pytest.raises(BadRequest, match=r"(?i)wrong parameter action"):
        await app.bot.send_chat_action(USER, "dancing")

    assert tg.message(USER, message.message_id).deleted
    assert [a.action for a in tg.chat_actions] == ["typing"]


async def test_get_updates_offsets_webhooks_and_conflicts(
    tg: FakeTelegramServer, tls: ssl.SSLContext
) -> None:
    """Offsets confirm updates; a second poller or an active webhook is a Conflict."""
    application = build_app(tg, tls)
    await application.initialize()
    try:
        bot = application.bot
        tg.send_user_message(USER, "one", user_id=USER)
        tg.send_user_message(USER, "two", user_id=USER)
        first = await bot.get_updates(timeout=0)
        confirmed = await bot.get_updates(offset=first[-1].update_id + 1, timeout=0)

        parked = asyncio.create_task(bot.get_updates(timeout=5))
        await tg.wait_for(lambda: tg.parked_polls == 1)
        await bot.get_updates(timeout=0)
        with pytest.raises(Conflict, match="terminated by other getUpdates"):
            await parked

        with pytest.raises(BadRequest, match=r"(?i)https url must be provided"):
            await bot.set_webhook("http://example.invalid/hook")
        await bot.set_webhook("https://example.invalid/hook")
        with pytest.raises(Conflict, match="webhook is active"):
            await bot.get_updates(timeout=0)
        await bot.delete_webhook()
    finally:
        await application.shutdown()

    assert [u.message.text for u in first if u.message] == ["one", "two"]
    assert confirmed == ()
    assert tg.pending_updates == []


async def test_raw_json_and_form_bodies_and_bad_token(tg: FakeTelegramServer, tls: ssl.SSLContext) -> None:
    """JSON bodies and query strings work like form bodies; a wrong token is 401."""
    tg.add_chat(USER)
    markup = {"inline_keyboard": [[{"text": "Go", "callback_data": "go"}]]}
    async with aiohttp.ClientSession() as http:
        sent = await (
            await http.post(
                f"{tg.api_url}{TOKEN}/sendMessage",
                json={"chat_id": USER, "text": "hi", "reply_markup": markup},
            )
        ).json()
        me = await (await http.get(f"{tg.api_url}{TOKEN}/GETME")).json()
        formed = await http.post(
            f"{tg.api_url}{TOKEN}/sendMessage", data={"chat_id": str(USER), "text": "yo"}
        )
        wrong = await http.get(f"{tg.api_url}654321:nope/getMe")

    assert sent["ok"] and sent["result"]["reply_markup"] == markup
    assert me["result"]["username"] == BOT
    assert formed.status == 200 and formed.headers["Content-Type"] == "application/json"
    assert (wrong.status, tg.calls[-1].method) == (401, "getMe")
    async with FakeTelegramServer("654321:other") as other:
        application = build_app(other, tls)
        with pytest.raises(InvalidToken):
            await application.initialize()
        await application.bot.request.shutdown()  # a failed initialize leaves the client open


async def test_wait_for_times_out_listing_recent_calls(tg: FakeTelegramServer) -> None:
    """A wait that is never satisfied fails promptly and names the calls it saw."""
    with pytest.raises(TimeoutError, match=r"\(none\)"):
        await tg.wait_for(lambda: tg.sent_messages(USER), timeout=0.05)


@pytest.mark.parametrize(
    ("source", "plain", "entities"),
    [
        ("a &lt;b&gt; &amp; &quot;c&quot; &#33; &copy;", 'a <b> & "c" ! &copy;', []),
        ("<b>bold <i>both</i></b>", "bold both", [("bold", 0, 9), ("italic", 5, 4)]),
        ('<a href="https://x.y/?a=1&amp;b=2">link</a>', "link", [("text_link", 0, 4)]),
        (
            '<span class="tg-spoiler">s</span><tg-spoiler>t</tg-spoiler>',
            "st",
            [("spoiler", 0, 1), ("spoiler", 1, 1)],
        ),
        ('<pre><code class="language-python">x = 1</code></pre>', "x = 1", [("pre", 0, 5)]),
        ("<pre><code>x</code></pre>", "x", [("pre", 0, 1), ("code", 0, 1)]),
        ("😀<u>x</u><blockquote>q</blockquote>", "😀xq", [("underline", 2, 1), ("blockquote", 3, 1)]),
    ],
)
def test_html_parser_accepts_telegram_html(
    source: str, plain: str, entities: list[tuple[str, int, int]]
) -> None:
    """Supported tags and entities parse to Telegram's plain text and UTF-16 entity offsets."""
    text, found = parse_html(source)
    assert text == plain
    assert [(e["type"], e["offset"], e["length"]) for e in found] == entities


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("<br>", 'Unsupported start tag "br" at byte offset 0'),
        ("é<b>x", 'Can\'t find end tag corresponding to start tag "b"'),
        ("x</b>", "Unexpected end tag at byte offset 1"),
        ('<span class="x">y</span>', 'Tag "span" must have class "tg-spoiler"'),
        ("<b", "Unclosed start tag at byte offset 0"),
    ],
)
def test_html_parser_rejects_what_telegram_rejects(source: str, reason: str) -> None:
    """Unsupported, unbalanced or unclosed tags fail with tdlib's wording and byte offsets."""
    with pytest.raises(HtmlParseError) as caught:
        parse_html(source)
    assert str(caught.value) == reason
