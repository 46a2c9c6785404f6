"""A loopback fake of the Telegram Bot API (aiohttp) that the real python-telegram-bot can drive."""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import re
import socket
import struct
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from types import TracebackType
from typing import Any, Literal, Self, TypedDict, TypeVar, Unpack

from aiohttp import web

Json = dict[str, Any]
ChatType = Literal["private", "group", "supergroup"]
NetworkFailure = Literal["disconnect", "bad_gateway", "lost_response", "unexpected_result"]
_T = TypeVar("_T")

DEFAULT_TOKEN = "123456:TEST-fake-telegram-token"
MAX_TEXT_UTF16 = 4096
MAX_CALLBACK_DATA_BYTES = 64
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
CHAT_ACTIONS = frozenset(
    {
        "typing", "upload_photo", "record_video", "upload_video", "record_voice", "upload_voice",
        "upload_document", "choose_sticker", "find_location", "record_video_note", "upload_video_note",
    }
)  # fmt: skip
_BUTTON_ACTIONS = (
    "url", "callback_data", "web_app", "login_url", "switch_inline_query",
    "switch_inline_query_current_chat", "switch_inline_query_chosen_chat", "copy_text", "callback_game", "pay",
)  # fmt: skip
# PTB posts form bodies where every value is a string; these are decoded back to their API types.
_INT_PARAMS = frozenset(
    {
        "chat_id", "message_id", "user_id", "offset", "limit", "timeout", "cache_time",
        "message_thread_id", "reply_to_message_id", "max_connections",
    }
)  # fmt: skip
_BOOL_PARAMS = frozenset(
    {
        "disable_notification", "protect_content", "show_alert", "drop_pending_updates",
        "allow_sending_without_reply", "disable_web_page_preview", "allow_paid_broadcast",
    }
)  # fmt: skip
_JSON_PARAMS = frozenset(
    {
        "reply_markup", "commands", "scope", "reply_parameters", "entities", "caption_entities",
        "link_preview_options", "allowed_updates",
    }
)  # fmt: skip


# ---------------------------------------------------------------------------------------------- HTML


class HtmlParseError(ValueError):
    """Telegram's "can't parse entities" reason, worded as the server words it."""


_HTML_ENTITY_TYPES = {
    "b": "bold", "strong": "bold", "i": "italic", "em": "italic", "u": "underline", "ins": "underline",
    "s": "strikethrough", "strike": "strikethrough", "del": "strikethrough", "code": "code", "pre": "pre",
    "a": "text_link", "blockquote": "blockquote", "tg-spoiler": "spoiler", "span": "spoiler",
    "tg-emoji": "custom_emoji",
}  # fmt: skip
_CHAR_REF = re.compile(r"&(lt|gt|amp|quot|#[0-9]{1,7}|#[xX][0-9a-fA-F]{1,6});")
_TAG_NAME = re.compile(r"[^\s>]*")
_ATTRIBUTE = re.compile(r"""\s*([A-Za-z-]+)\s*(?:=\s*("[^"]*"|'[^']*'|[^\s>"']+))?""")


def utf16_len(text: str) -> int:
    """Length in UTF-16 code units: the unit of Telegram's length limits and entity offsets."""
    return len(text.encode("utf-16-le")) // 2


def parse_html(text: str) -> tuple[str, list[Json]]:
    """Parse Telegram-flavoured HTML into (plain text, entities) or raise HtmlParseError, like tdlib."""
    out: list[str] = []
    pos = 0  # UTF-16 offset in the plain text
    open_tags: list[tuple[str, int, Json]] = []  # (tag, start, entity fields)
    entities: list[tuple[int, Json]] = []  # (opening order, entity): an outer tag sorts first on ties
    opened = 0

    def offset(index: int) -> int:
        return len(text[:index].encode())

    i = 0
    while i < len(text):
        char = text[i]
        if char != "<":
            ref = _CHAR_REF.match(text, i) if char == "&" else None
            piece = html.unescape(ref.group()) if ref else char  # an unknown "&foo;" stays literal
            out.append(piece)
            pos += utf16_len(piece)
            i = ref.end() if ref else i + 1
            continue
        begin = i
        if text.startswith("</", i):
            end = text.find(">", i)
            if end == -1:
                raise HtmlParseError(f"Unclosed end tag at byte offset {offset(begin)}")
            name = text[i + 2 : end].strip().lower()
            if not open_tags:
                raise HtmlParseError(f"Unexpected end tag at byte offset {offset(begin)}")
            tag, start, attrs = open_tags.pop()
            if name != tag:
                raise HtmlParseError(
                    f'Unmatched end tag at byte offset {offset(begin)}, expected "</{tag}>", found "</{name}>"'
                )
            seq, merged = attrs.pop("opened"), attrs.pop("merged", 0)
            if pos > start and not merged:  # <pre><code class="language-x"> is one pre entity
                entity = {"type": _HTML_ENTITY_TYPES[tag], "offset": start, "length": pos - start, **attrs}
                entities.append((seq, entity))
            i = end + 1
            continue
        name_match = _TAG_NAME.match(text, i + 1)
        assert name_match is not None  # the pattern matches the empty string
        tag = name_match.group().lower()
        if tag not in _HTML_ENTITY_TYPES:
            raise HtmlParseError(f'Unsupported start tag "{tag}" at byte offset {offset(begin)}')
        i = name_match.end()
        attributes: dict[str, str] = {}
        while i < len(text) and text[i] != ">":
            attribute = _ATTRIBUTE.match(text, i)
            if attribute is None or attribute.end() == i:
                raise HtmlParseError(f"Unclosed start tag at byte offset {offset(begin)}")
            value = (attribute.group(2) or "").strip("\"'")
            attributes[attribute.group(1).lower()] = html.unescape(value)
            i = attribute.end()
        if i >= len(text):
            raise HtmlParseError(f"Unclosed start tag at byte offset {offset(begin)}")
        i += 1
        extra: Json = {}
        if tag == "span" and attributes.get("class") != "tg-spoiler":
            raise HtmlParseError('Tag "span" must have class "tg-spoiler"')
        if tag == "a" and attributes.get("href"):
            extra = {"url": attributes["href"]}
        if tag == "tg-emoji":
            if "emoji-id" not in attributes:
                raise HtmlParseError('Tag "tg-emoji" must have attribute "emoji-id"')
            extra = {"custom_emoji_id": attributes["emoji-id"]}
        if tag == "code" and open_tags and open_tags[-1][0] == "pre":
            language = attributes.get("class", "")
            if language.startswith("language-"):
                open_tags[-1][2]["language"] = language.removeprefix("language-")
                extra["merged"] = 1
        opened += 1
        open_tags.append((tag, pos, {**extra, "opened": opened}))
    if open_tags:
        raise HtmlParseError(f'Can\'t find end tag corresponding to start tag "{open_tags[-1][0]}"')
    entities.sort(key=lambda pair: (pair[1]["offset"], -pair[1]["length"], pair[0]))
    return "".join(out), [e for _, e in entities if e["type"] != "text_link" or "url" in e]


# ------------------------------------------------------------------------------------------- records


class _ApiError(Exception):
    """A Bot API error reply: HTTP status = error_code, body {"ok": false, ...}."""

    def __init__(self, error_code: int, description: str, parameters: Json | None = None) -> None:
        super().__init__(description)
        self.error_code = error_code
        self.description = description
        self.parameters = parameters


def _bad_request(reason: str) -> _ApiError:
    return _ApiError(400, f"Bad Request: {reason}")


@dataclass
class Call:
    """One Bot API method call as the fake received it, with params decoded to their API types."""

    method: str
    params: Json
    at: float
    done: bool = False
    error_code: int | None = None
    description: str | None = None
    result: Any = None

    @property
    def ok(self) -> bool:
        return self.done and self.error_code is None


@dataclass(frozen=True)
class Edit:
    """The content of a message after one edit (editMessageText or editMessageReplyMarkup)."""

    method: str
    text: str | None
    parse_mode: str | None
    plain_text: str | None
    reply_markup: Json | None
    at: float


@dataclass
class FakeMessage:
    """A message in a fake chat, sent by a user (injected) or by the bot, in its current state."""

    chat_id: int
    message_id: int
    from_bot: bool
    sender: Json
    date: int
    text: str | None = None  # as sent: the HTML source when parse_mode is HTML
    parse_mode: str | None = None
    plain_text: str | None = None  # as a user sees it
    entities: list[Json] = field(default_factory=list)
    reply_markup: Json | None = None
    reply_to_message_id: int | None = None
    message_thread_id: int | None = None
    media: Json = field(default_factory=dict)  # photo/document/sticker/voice/caption fields
    edits: list[Edit] = field(default_factory=list)
    edit_date: int | None = None
    deleted: bool = False

    @property
    def buttons(self) -> list[Json]:
        """The inline keyboard's buttons, row by row, flattened."""
        rows = (self.reply_markup or {}).get("inline_keyboard", [])
        return [button for row in rows for button in row]


@dataclass(frozen=True)
class AnsweredCallback:
    """An answerCallbackQuery call for a button the fake's user pressed."""

    query_id: str
    chat_id: int
    message_id: int
    data: str
    text: str | None
    show_alert: bool
    url: str | None
    at: float


@dataclass(frozen=True)
class ChatAction:
    """A sendChatAction call ("typing", ...)."""

    chat_id: int
    action: str
    message_thread_id: int | None
    at: float


@dataclass(frozen=True)
class _Failure:
    error_code: int
    description: str
    parameters: Json | None
    network: NetworkFailure | None


@dataclass
class _Chat:
    id: int
    type: ChatType
    title: str | None = None
    user: Json | None = None
    threads: set[int] = field(default_factory=set)
    messages: dict[int, FakeMessage] = field(default_factory=dict)
    admins: list[int] = field(default_factory=list)
    creator_id: int | None = None
    blocked: bool = False

    def to_api(self) -> Json:
        if self.type == "private":
            assert self.user is not None
            user = {k: v for k, v in self.user.items() if k in ("first_name", "last_name", "username")}
            return {"id": self.id, "type": "private", **user}
        chat: Json = {"id": self.id, "type": self.type, "title": self.title or f"Test {self.type} {self.id}"}
        if self.type == "supergroup" and self.threads:
            chat["is_forum"] = True
        return chat


class Sender(TypedDict, total=False):
    """Who injects a message and where: keyword arguments shared by every ``send_*`` helper."""

    username: str | None
    first_name: str
    chat_type: ChatType
    title: str | None
    reply_to_message_id: int | None
    message_thread_id: int | None


class _Changes:
    """A notification that survives being fired from sync code: each notify replaces the event."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._event.wait()


# -------------------------------------------------------------------------------------------- server


class FakeTelegramServer:
    """The Bot API on 127.0.0.1: ``{root}/bot{token}/{method}`` and ``{root}/file/bot{token}/{path}``.

    Usage::

        async with FakeTelegramServer(TOKEN, username="modelbot_test_bot") as tg:
            app = Application.builder().token(TOKEN).base_url(tg.api_url).base_file_url(tg.file_url).build()
            ...  # initialize, set_my_commands, start, updater.start_polling(timeout=1)
            tg.send_user_message(42, "/start", user_id=42)
            call = await tg.wait_for_call("sendMessage", chat_id=42)
            ...  # stop the bot before leaving the block

    Private chat ids are their user's id; group ids are negative. Sending to a chat the fake has not
    seen (no injected message, no ``add_chat``) is "chat not found", as on Telegram.
    """

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        username: str = "modelbot_test_bot",
        first_name: str = "Modelbot Test",
        bot_id: int | None = None,
    ) -> None:
        self.token = token
        prefix = token.partition(":")[0]
        self.bot_user: Json = {
            "id": bot_id if bot_id is not None else int(prefix) if prefix.isdigit() else 7_000_000,
            "is_bot": True,
            "first_name": first_name,
            "username": username,
        }
        self.calls: list[Call] = []
        self.answered_callbacks: list[AnsweredCallback] = []
        self.chat_actions: list[ChatAction] = []
        self.downloads: list[str] = []
        self.webhook_url = ""
        self._chats: dict[int, _Chat] = {}
        self._sent: list[FakeMessage] = []
        self._users: dict[int, Json] = {}
        self._updates: list[Json] = []
        self._update_ids = itertools.count(1)
        self._file_ids = itertools.count(1)
        self._query_ids = itertools.count(1)
        self._files: dict[str, tuple[str, str, bytes]] = {}  # file_id -> (unique id, path, bytes)
        self._paths: dict[str, bytes] = {}  # file_path -> bytes
        self._queries: dict[str, tuple[int, int, str]] = {}  # query id -> (chat, message, data)
        self._commands: dict[tuple[str, str], list[Json]] = {}
        self._failures: dict[str, list[_Failure]] = {}
        self._allowed_updates: list[str] = []
        self._poll_generation = 0
        self._parked = 0
        self._closing = False
        self._changes = _Changes()
        self._runner: web.AppRunner | None = None
        self.port = 0
        handlers: dict[str, Callable[[Json], Awaitable[Any]]] = {
            "getMe": self._get_me, "getUpdates": self._get_updates, "setWebhook": self._set_webhook,
            "deleteWebhook": self._delete_webhook, "getWebhookInfo": self._get_webhook_info,
            "setMyCommands": self._set_my_commands, "getMyCommands": self._get_my_commands,
            "deleteMyCommands": self._delete_my_commands, "sendMessage": self._send_message,
            "editMessageText": self._edit_message_text, "editMessageReplyMarkup": self._edit_reply_markup,
            "deleteMessage": self._delete_message, "answerCallbackQuery": self._answer_callback_query,
            "sendChatAction": self._send_chat_action, "getChatMember": self._get_chat_member,
            "getChatAdministrators": self._get_chat_administrators, "getFile": self._get_file,
        }  # fmt: skip
        # Telegram matches method names case-insensitively.
        self._methods = {name.lower(): (name, handler) for name, handler in handlers.items()}

    # ----------------------------------------------------------------------------------- lifecycle

    @property
    def root(self) -> str:
        """The Bot API server root, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api_url(self) -> str:
        """What PTB's ``base_url`` wants: the token is appended to it."""
        return f"{self.root}/bot"

    @property
    def file_url(self) -> str:
        """What PTB's ``base_file_url`` wants: the token is appended to it."""
        return f"{self.root}/file/bot"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle_api)
        app.router.add_get("/file/bot{token}/{path:.+}", self._handle_file)
        # handler_cancellation: a poll whose client hung up (PTB cancels it on stop) ends with it,
        # instead of lingering and later answering a dead socket.
        self._runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None, handler_cancellation=True)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def stop(self) -> None:
        """Wake parked long polls (they answer ``[]``), then close: never waits for a poll timeout."""
        self._closing = True
        self._changes.notify()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # --------------------------------------------------------------------------------- scripting

    def fail_next(
        self,
        method: str,
        *,
        error_code: int = 429,
        description: str | None = None,
        retry_after: int | None = None,
        migrate_to_chat_id: int | None = None,
        network: NetworkFailure | None = None,
        times: int = 1,
    ) -> None:
        """Make the next ``times`` calls of ``method`` fail.

        A 429 carries ``parameters.retry_after`` (3 unless given) and a matching description. ``network``
        replaces the reply: "disconnect" drops the connection unprocessed, "bad_gateway" answers an nginx
        502 page, "lost_response" performs the call and then drops the connection, "unexpected_result"
        performs it and answers ``{"ok": true, "result": true}``, which no client can read as a message.
        """
        parameters: Json = {}
        if retry_after is not None or error_code == 429:
            parameters["retry_after"] = retry_after = 3 if retry_after is None else retry_after
        if migrate_to_chat_id is not None:
            parameters["migrate_to_chat_id"] = migrate_to_chat_id
        if description is None:
            description = {
                429: f"Too Many Requests: retry after {retry_after}",
                403: "Forbidden: bot was blocked by the user",
                400: "Bad Request: group chat was upgraded to a supergroup chat"
                if migrate_to_chat_id is not None
                else "Bad Request",
            }.get(error_code, "Internal Server Error")
        failure = _Failure(error_code, description, parameters or None, network)
        self._failures.setdefault(method.lower(), []).extend([failure] * times)

    def add_chat(
        self,
        chat_id: int,
        chat_type: ChatType = "private",
        *,
        title: str | None = None,
        first_name: str = "User",
    ) -> None:
        """Make a chat known without a message in it (a private chat's id is its user's id)."""
        user = None
        if chat_type == "private":
            user = self._users.get(chat_id) or self._user(chat_id, None, first_name)
        self._chat(chat_id, chat_type, title, user)

    def set_admins(self, chat_id: int, user_ids: list[int], *, creator_id: int | None = None) -> None:
        """Set who getChatAdministrators lists and getChatMember reports as "administrator"/"creator"."""
        chat = self._known_chat(chat_id)
        chat.admins = list(user_ids)
        chat.creator_id = creator_id

    def set_blocked(self, chat_id: int, blocked: bool = True) -> None:
        """The user blocked the bot: every send to this private chat fails with 403 until unblocked."""
        self._known_chat(chat_id).blocked = blocked

    def add_file(self, data: bytes, *, folder: str = "documents", extension: str = "") -> tuple[str, str]:
        """Store bytes that getFile resolves and the file endpoint serves; return (file_id, unique id)."""
        n = next(self._file_ids)
        file_path = f"{folder}/file_{n}{extension}"  # Telegram's own shape, e.g. photos/file_3.jpg
        file_id, unique_id = f"FAKE-{folder}-{n:06d}", f"U{n:06d}"
        self._files[file_id] = (unique_id, file_path, data)
        self._paths[file_path] = data
        return file_id, unique_id

    # --------------------------------------------------------------------------------- injection

    def send_user_message(
        self,
        chat_id: int,
        text: str,
        *,
        user_id: int,
        entities: list[Json] | None = None,
        **sender: Unpack[Sender],
    ) -> FakeMessage:
        """A user sends text; ``bot_command`` and ``mention`` entities are added as Telegram would."""
        fields: Json = {"text": text}
        found = _auto_entities(text) if entities is None else entities
        if found:
            fields["entities"] = found
        return self._inject(chat_id, user_id, fields, sender)

    def send_photo(
        self,
        chat_id: int,
        *,
        user_id: int,
        image_bytes: bytes,
        caption: str | None = None,
        width: int | None = None,
        height: int | None = None,
        **sender: Unpack[Sender],
    ) -> FakeMessage:
        """A user sends a photo: thumbnails (serving a 1x1 placeholder) then the full size (the bytes)."""
        full_w, full_h = _image_size(image_bytes) or (width or 1280, height or 960)
        sizes = []
        for side in (90, 320, 800):
            if side < max(full_w, full_h):
                scale = side / max(full_w, full_h)
                file_id, unique_id = self.add_file(_PLACEHOLDER_PNG, folder="photos", extension=".jpg")
                sizes.append(
                    _photo_size(file_id, unique_id, full_w * scale, full_h * scale, _PLACEHOLDER_PNG)
                )
        file_id, unique_id = self.add_file(image_bytes, folder="photos", extension=".jpg")
        sizes.append(_photo_size(file_id, unique_id, full_w, full_h, image_bytes))
        return self._inject(chat_id, user_id, {"photo": sizes, **_caption(caption)}, sender)

    def send_document(
        self,
        chat_id: int,
        *,
        user_id: int,
        data: bytes,
        file_name: str = "image.png",
        mime_type: str = "image/png",
        caption: str | None = None,
        **sender: Unpack[Sender],
    ) -> FakeMessage:
        """A user sends a file (by default an image sent uncompressed, as a document)."""
        file_id, unique_id = self.add_file(
            data, folder="documents", extension=PurePosixPath(file_name).suffix
        )
        document = {
            "file_id": file_id,
            "file_unique_id": unique_id,
            "file_name": file_name,
            "mime_type": mime_type,
            "file_size": len(data),
        }
        return self._inject(chat_id, user_id, {"document": document, **_caption(caption)}, sender)

    def send_sticker(
        self, chat_id: int, *, user_id: int, emoji: str = "👍", **sender: Unpack[Sender]
    ) -> FakeMessage:
        """A user sends a sticker (media the bot does not support)."""
        data = b"RIFF\x00\x00\x00\x00WEBPVP8 "
        file_id, unique_id = self.add_file(data, folder="stickers", extension=".webp")
        sticker = {
            "file_id": file_id, "file_unique_id": unique_id, "type": "regular", "width": 512, "height": 512,
            "is_animated": False, "is_video": False, "emoji": emoji, "file_size": len(data),
        }  # fmt: skip
        return self._inject(chat_id, user_id, {"sticker": sticker}, sender)

    def send_voice(
        self,
        chat_id: int,
        *,
        user_id: int,
        duration: int = 2,
        data: bytes = b"OggS\x00",
        **sender: Unpack[Sender],
    ) -> FakeMessage:
        """A user sends a voice note (media the bot does not support)."""
        file_id, unique_id = self.add_file(data, folder="voice", extension=".oga")
        voice = {
            "file_id": file_id, "file_unique_id": unique_id, "duration": duration,
            "mime_type": "audio/ogg", "file_size": len(data),
        }  # fmt: skip
        return self._inject(chat_id, user_id, {"voice": voice}, sender)

    def press_button(
        self,
        chat_id: int,
        message_id: int,
        callback_data: str,
        *,
        user_id: int,
        username: str | None = None,
        first_name: str = "User",
    ) -> str:
        """A user presses an inline button the bot sent; returns the callback query id.

        Raises ValueError when that message has no such button: a user cannot press what is not there.
        """
        message = self.message(chat_id, message_id)
        if not message.from_bot or message.deleted:
            raise ValueError(f"message {message_id} in chat {chat_id} is not a live message from the bot")
        if not any(b.get("callback_data") == callback_data for b in message.buttons):
            raise ValueError(f"message {message_id} has no button with callback_data {callback_data!r}")
        query_id = f"{next(self._query_ids)}{user_id}"
        self._queries[query_id] = (chat_id, message_id, callback_data)
        query = {
            "id": query_id,
            "from": self._user(user_id, username, first_name),
            "message": self._render(message),
            "chat_instance": f"-{abs(chat_id)}42",
            "data": callback_data,
        }
        self._enqueue({"callback_query": query})
        return query_id

    # -------------------------------------------------------------------------------- inspection

    def calls_to(self, method: str) -> list[Call]:
        """Every call of ``method`` (case-insensitive), oldest first."""
        return [call for call in self.calls if call.method.lower() == method.lower()]

    def sent_messages(self, chat_id: int | None = None) -> list[FakeMessage]:
        """Messages the bot sent (deleted ones included, flagged), in order; all chats when None."""
        return [m for m in self._sent if chat_id is None or m.chat_id == chat_id]

    def message(self, chat_id: int, message_id: int) -> FakeMessage:
        """The current state of one message (KeyError when it never existed)."""
        chat = self._chats.get(chat_id)
        if chat is None or message_id not in chat.messages:
            raise KeyError(f"no message {message_id} in chat {chat_id}")
        return chat.messages[message_id]

    def edits(self, chat_id: int, message_id: int) -> list[Edit]:
        """The successful edits of one message, oldest first."""
        return self.message(chat_id, message_id).edits

    def commands(self, *, scope: Json | None = None, language_code: str = "") -> list[Json]:
        """The command list last set with setMyCommands for this scope and language."""
        return self._commands.get(_scope_key(scope, language_code), [])

    @property
    def pending_updates(self) -> list[Json]:
        """Updates not yet confirmed by a getUpdates offset."""
        return list(self._updates)

    @property
    def parked_polls(self) -> int:
        """How many getUpdates calls are waiting for an update right now."""
        return self._parked

    # ------------------------------------------------------------------------------------ waiting

    # The waits take a timeout on purpose, like asyncio.wait_for: every test passes one.
    async def wait_for(self, predicate: Callable[[], _T | None], *, timeout: float = 5.0) -> _T:  # noqa: ASYNC109
        """Return the predicate's first truthy value; re-checked on every call and injection.

        It is also re-checked every 50 ms so that predicates on state outside the fake (the adapter's)
        work too. Raises TimeoutError listing the last calls.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not (value := predicate()):
            remaining = deadline - loop.time()
            if remaining <= 0:
                recent = "\n".join(
                    f"  {c.method} {c.params} -> {c.error_code or 'ok'}" for c in self.calls[-10:]
                )
                raise TimeoutError(
                    f"condition not met within {timeout}s; last calls:\n{recent or '  (none)'}"
                )
            await self._changes.wait(min(remaining, 0.05))
        return value

    async def wait_for_call(
        self,
        method: str,
        *,
        since: int = 0,
        timeout: float = 5.0,  # noqa: ASYNC109
        **params: Any,
    ) -> Call:
        """The first finished call of ``method`` at index >= ``since`` whose params include ``params``."""

        def find() -> Call | None:
            for call in self.calls[since:]:
                wanted = call.done and call.method.lower() == method.lower()
                if wanted and all(call.params.get(k) == v for k, v in params.items()):
                    return call
            return None

        return await self.wait_for(find, timeout=timeout)

    # ------------------------------------------------------------------------------------- HTTP

    async def _handle_api(self, request: web.Request) -> web.StreamResponse:
        name, handler = self._methods.get(
            request.match_info["method"].lower(), (request.match_info["method"], None)
        )
        call = Call(name, {}, time.monotonic())
        self.calls.append(call)
        self._changes.notify()
        failure: _Failure | None = None
        try:
            if request.match_info["token"] != self.token:
                raise _ApiError(401, "Unauthorized")
            call.params = await _read_params(request)
            queue = self._failures.get(name.lower())
            failure = queue.pop(0) if queue else None
            if failure is not None and failure.network in ("disconnect", "bad_gateway"):
                call.error_code = 502
                call.description = f"network failure: {failure.network}"
                return _network_failure(request, failure.network)
            if failure is not None and failure.network is None:
                raise _ApiError(failure.error_code, failure.description, failure.parameters)
            if handler is None:
                raise _ApiError(404, "Not Found")
            call.result = await handler(call.params)
            if failure is not None and failure.network == "unexpected_result":
                return _reply({"ok": True, "result": True}, 200)
            if failure is not None:  # "lost_response": done, but the client never hears of it
                call.error_code, call.description = 502, "network failure: lost_response"
                return _network_failure(request, "disconnect")
            return _reply({"ok": True, "result": call.result}, 200)
        except _ApiError as error:
            call.error_code, call.description = error.error_code, error.description
            body: Json = {"ok": False, "error_code": error.error_code, "description": error.description}
            if error.parameters:
                body["parameters"] = error.parameters
            return _reply(body, error.error_code)
        except asyncio.CancelledError:
            call.error_code, call.description = 499, "client closed the connection"  # nginx's 499
            raise
        finally:
            call.done = True
            self._changes.notify()

    async def _handle_file(self, request: web.Request) -> web.StreamResponse:
        path = request.match_info["path"]
        self.downloads.append(path)
        self._changes.notify()
        if request.match_info["token"] == self.token and path in self._paths:
            return web.Response(body=self._paths[path], content_type="application/octet-stream")
        return _reply({"ok": False, "error_code": 404, "description": "Not Found"}, 404)

    # ---------------------------------------------------------------------------------- methods

    async def _get_me(self, p: Json) -> Json:
        return {
            **self.bot_user,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
            "can_connect_to_business": False,
            "has_main_web_app": False,
        }

    async def _get_updates(self, p: Json) -> list[Json]:
        if self.webhook_url:
            raise _ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
            )
        offset, limit = int(p.get("offset") or 0), min(max(int(p.get("limit") or 100), 1), 100)
        timeout = max(float(p.get("timeout") or 0), 0.0)
        if offset > 0:
            self._updates = [u for u in self._updates if u["update_id"] >= offset]
        elif offset < 0:
            self._updates = self._updates[offset:]
        if "allowed_updates" in p:
            self._allowed_updates = list(p["allowed_updates"] or [])
        self._poll_generation += 1
        generation = self._poll_generation
        deadline = asyncio.get_running_loop().time() + timeout
        self._parked += 1
        try:
            while True:
                if generation != self._poll_generation:
                    raise _ApiError(
                        409,
                        "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running",
                    )
                allowed = self._allowed_updates
                ready = [u for u in self._updates if not allowed or any(kind in u for kind in allowed)]
                remaining = deadline - asyncio.get_running_loop().time()
                if ready or self._closing or remaining <= 0:
                    return ready[:limit]
                await self._changes.wait(remaining)
        finally:
            self._parked -= 1

    async def _set_webhook(self, p: Json) -> bool:
        url = p.get("url", "")
        if url and not url.startswith("https://"):
            raise _bad_request("bad webhook: An HTTPS URL must be provided for webhook")
        self.webhook_url = url
        if p.get("drop_pending_updates"):
            self._updates.clear()
        self._poll_generation += 1  # a parked poll is terminated
        return True

    async def _delete_webhook(self, p: Json) -> bool:
        self.webhook_url = ""
        if p.get("drop_pending_updates"):
            self._updates.clear()
        return True

    async def _get_webhook_info(self, p: Json) -> Json:
        return {
            "url": self.webhook_url,
            "has_custom_certificate": False,
            "pending_update_count": len(self._updates),
        }

    async def _set_my_commands(self, p: Json) -> bool:
        commands = p.get("commands")
        if not isinstance(commands, list) or len(commands) > 100:
            raise _bad_request("commands must be a list of at most 100 BotCommand")
        for command in commands:
            if not re.fullmatch(r"[a-z0-9_]{1,32}", str(command.get("command", ""))):
                raise _bad_request("BOT_COMMAND_INVALID")
            if not 1 <= len(str(command.get("description", "")).strip()) <= 256:
                raise _bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
        self._commands[_scope_key(p.get("scope"), p.get("language_code", ""))] = commands
        return True

    async def _get_my_commands(self, p: Json) -> list[Json]:
        return self.commands(scope=p.get("scope"), language_code=p.get("language_code", ""))

    async def _delete_my_commands(self, p: Json) -> bool:
        self._commands.pop(_scope_key(p.get("scope"), p.get("language_code", "")), None)
        return True

    async def _send_message(self, p: Json) -> Json:
        chat = self._target_chat(p)
        text, parse_mode, plain, entities = _message_text(p)
        markup = _check_markup(p.get("reply_markup"))
        thread = p.get("message_thread_id")
        if thread is not None and thread not in chat.threads:
            raise _bad_request("message thread not found")
        reply = p.get("reply_parameters") or {}
        reply_to = reply.get("message_id", p.get("reply_to_message_id"))
        target = chat.messages.get(reply_to) if reply_to is not None else None
        if reply_to is not None and (target is None or target.deleted):
            if not (reply.get("allow_sending_without_reply") or p.get("allow_sending_without_reply")):
                raise _bad_request("message to be replied not found")
            reply_to = None
        message = FakeMessage(
            chat.id, len(chat.messages) + 1, True, self.bot_user, int(time.time()), text, parse_mode, plain,
            entities, markup, reply_to, thread,
        )  # fmt: skip
        chat.messages[message.message_id] = message
        self._sent.append(message)
        return self._render(message)

    async def _edit_message_text(self, p: Json) -> Json:
        message = self._editable(p)
        if not message.plain_text:
            raise _bad_request("there is no text in the message to edit")
        text, parse_mode, plain, entities = _message_text(p)
        markup = _check_markup(p.get("reply_markup"), inline_only=True)  # omitted => keyboard removed
        if (plain, entities, markup) == (message.plain_text, message.entities, message.reply_markup):
            raise _bad_request(
                "message is not modified: specified new message content and reply markup are exactly the same"
                " as a current content and reply markup of the message"
            )
        message.text, message.parse_mode, message.plain_text, message.entities = (
            text,
            parse_mode,
            plain,
            entities,
        )
        return self._record_edit(message, "editMessageText", markup)

    async def _edit_reply_markup(self, p: Json) -> Json:
        message = self._editable(p)
        markup = _check_markup(p.get("reply_markup"), inline_only=True)
        if markup == message.reply_markup:
            raise _bad_request(
                "message is not modified: specified new message content and reply markup are exactly the same"
                " as a current content and reply markup of the message"
            )
        return self._record_edit(message, "editMessageReplyMarkup", markup)

    async def _delete_message(self, p: Json) -> bool:
        chat = self._target_chat(p, sending=False)
        message = chat.messages.get(p.get("message_id", 0))
        if message is None or message.deleted:
            raise _bad_request("message to delete not found")
        if not message.from_bot and chat.type != "private" and self.bot_user["id"] not in chat.admins:
            raise _bad_request("message can't be deleted")
        message.deleted = True
        return True

    async def _answer_callback_query(self, p: Json) -> bool:
        query_id = str(p.get("callback_query_id", ""))
        if query_id not in self._queries:
            raise _bad_request("query is too old and response timeout expired or query ID is invalid")
        if len(p.get("text") or "") > 200:
            raise _bad_request("MESSAGE_TOO_LONG")
        chat_id, message_id, data = self._queries.pop(query_id)  # a query can be answered once
        self.answered_callbacks.append(
            AnsweredCallback(
                query_id, chat_id, message_id, data, p.get("text"), bool(p.get("show_alert")), p.get("url"),
                time.monotonic(),
            )
        )  # fmt: skip
        return True

    async def _send_chat_action(self, p: Json) -> bool:
        chat = self._target_chat(p)
        if p.get("action") not in CHAT_ACTIONS:
            raise _bad_request("wrong parameter action in request")
        self.chat_actions.append(
            ChatAction(chat.id, p["action"], p.get("message_thread_id"), time.monotonic())
        )
        return True

    async def _get_chat_member(self, p: Json) -> Json:
        chat = self._target_chat(p, sending=False)
        user_id = p.get("user_id")
        if not isinstance(user_id, int):
            raise _bad_request("invalid user_id specified")
        return self._member(chat, user_id)

    async def _get_chat_administrators(self, p: Json) -> list[Json]:
        chat = self._target_chat(p, sending=False)
        if chat.type == "private":
            raise _bad_request("there are no administrators in the private chat")
        ids = ([chat.creator_id] if chat.creator_id is not None else []) + chat.admins
        return [self._member(chat, user_id) for user_id in dict.fromkeys(ids)]

    async def _get_file(self, p: Json) -> Json:
        file_id = str(p.get("file_id", ""))
        if file_id not in self._files:
            raise _bad_request("invalid file_id")
        unique_id, path, data = self._files[file_id]
        if len(data) > MAX_DOWNLOAD_BYTES:
            raise _bad_request("file is too big")
        return {"file_id": file_id, "file_unique_id": unique_id, "file_size": len(data), "file_path": path}

    # ---------------------------------------------------------------------------------- helpers

    def _user(self, user_id: int, username: str | None, first_name: str) -> Json:
        user: Json = {"id": user_id, "is_bot": False, "first_name": first_name, "language_code": "en"}
        if username:
            user["username"] = username
        self._users[user_id] = user
        return user

    def _chat(self, chat_id: int, chat_type: ChatType, title: str | None, user: Json | None) -> _Chat:
        if chat_type == "private" and (user is None or chat_id != user["id"]):
            raise ValueError(
                f"a private chat's id is its user's id: chat {chat_id}, user {user and user['id']}"
            )
        if chat_type != "private" and chat_id >= 0:
            raise ValueError(f"group and supergroup chat ids are negative, got {chat_id}")
        chat = self._chats.setdefault(chat_id, _Chat(chat_id, chat_type, title, user))
        if chat.type != chat_type:
            raise ValueError(f"chat {chat_id} is a {chat.type}, not a {chat_type}")
        return chat

    def _known_chat(self, chat_id: int) -> _Chat:
        if chat_id not in self._chats:
            raise KeyError(f"chat {chat_id} is unknown: inject a message or call add_chat first")
        return self._chats[chat_id]

    def _inject(self, chat_id: int, user_id: int, fields: Json, sender: Sender) -> FakeMessage:
        user = self._user(user_id, sender.get("username"), sender.get("first_name", "User"))
        chat = self._chat(chat_id, sender.get("chat_type", "private"), sender.get("title"), user)
        reply_to, thread = sender.get("reply_to_message_id"), sender.get("message_thread_id")
        if reply_to is not None and reply_to not in chat.messages:
            raise ValueError(f"cannot reply to message {reply_to}: chat {chat_id} has no such message")
        if thread is not None:
            chat.threads.add(thread)
        text = fields.pop("text", None)
        message = FakeMessage(
            chat_id, len(chat.messages) + 1, False, user, int(time.time()), text, None, text,
            fields.pop("entities", []), None, reply_to, thread, fields,
        )  # fmt: skip
        chat.messages[message.message_id] = message
        self._enqueue({"message": self._render(message)})
        return message

    def _enqueue(self, payload: Json) -> None:
        self._updates.append({"update_id": next(self._update_ids), **payload})
        self._changes.notify()

    def _render(self, message: FakeMessage, *, with_reply: bool = True) -> Json:
        """The message as the Bot API returns it."""
        chat = self._chats[message.chat_id]
        api: Json = {
            "message_id": message.message_id,
            "from": message.sender,
            "chat": chat.to_api(),
            "date": message.date,
        }
        if message.message_thread_id is not None:
            api["message_thread_id"] = message.message_thread_id
            api["is_topic_message"] = chat.type == "supergroup"
        if message.reply_to_message_id is not None and with_reply:
            api["reply_to_message"] = self._render(
                chat.messages[message.reply_to_message_id], with_reply=False
            )
        if message.edit_date is not None:
            api["edit_date"] = message.edit_date
        if message.plain_text is not None:
            api["text"] = message.plain_text
        if message.entities:
            api["entities"] = message.entities
        api.update(message.media)
        if message.reply_markup is not None:
            api["reply_markup"] = message.reply_markup
        return api

    def _target_chat(self, p: Json, *, sending: bool = True) -> _Chat:
        if p.get("chat_id") in (None, ""):
            raise _bad_request("chat_id is empty")
        chat = self._chats.get(p["chat_id"])
        if chat is None:
            raise _bad_request("chat not found")
        if sending and chat.blocked:
            raise _ApiError(403, "Forbidden: bot was blocked by the user")
        return chat

    def _editable(self, p: Json) -> FakeMessage:
        if "inline_message_id" in p:
            raise _bad_request("the fake does not model inline messages")
        chat = self._target_chat(p, sending=False)
        message = chat.messages.get(p.get("message_id", 0))
        if message is None or message.deleted:
            raise _bad_request("message to edit not found")
        if not message.from_bot:
            raise _bad_request("message can't be edited")
        return message

    def _record_edit(self, message: FakeMessage, method: str, markup: Json | None) -> Json:
        message.reply_markup = markup
        message.edit_date = int(time.time())
        message.edits.append(
            Edit(method, message.text, message.parse_mode, message.plain_text, markup, time.monotonic())
        )
        return self._render(message)

    def _member(self, chat: _Chat, user_id: int) -> Json:
        user = self.bot_user if user_id == self.bot_user["id"] else self._users.get(user_id)
        if user is None:
            user = {"id": user_id, "is_bot": False, "first_name": "User"}
        if user_id == chat.creator_id:
            return {"status": "creator", "user": user, "is_anonymous": False}
        if user_id in chat.admins:
            rights = (
                "can_manage_chat", "can_delete_messages", "can_manage_video_chats", "can_restrict_members",
                "can_change_info", "can_invite_users", "can_post_stories", "can_edit_stories",
                "can_delete_stories", "can_pin_messages",
            )  # fmt: skip
            return {
                "status": "administrator", "user": user, "can_be_edited": False, "is_anonymous": False,
                "can_promote_members": False, **dict.fromkeys(rights, True),
            }  # fmt: skip
        return {"status": "member", "user": user}


# ----------------------------------------------------------------------------------- module helpers


async def _read_params(request: web.Request) -> Json:
    raw: dict[str, Any] = dict(request.query)
    if request.can_read_body:
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                body = None
            if not isinstance(body, dict):
                raise _bad_request("JSON body must be an object")
            raw.update(body)
        elif request.content_type == "application/x-www-form-urlencoded":
            raw.update((await request.post()).items())
        else:
            raise _bad_request(f"the fake accepts JSON and form bodies, not {request.content_type}")
    params: Json = {}
    for name, value in raw.items():
        params[name] = _decode(name, value) if isinstance(value, str) else value
    return params


def _decode(name: str, value: str) -> Any:
    if name in _JSON_PARAMS:
        try:
            return json.loads(value)
        except ValueError:
            raise _bad_request(f"can't parse {name} JSON object") from None
    if name in _INT_PARAMS and re.fullmatch(r"-?\d+", value):
        return int(value)
    if name in _BOOL_PARAMS:
        return value.lower() in ("true", "1")
    return value


def _reply(body: Json, status: int) -> web.Response:
    # Exactly "application/json", as Telegram sends it (json_response would add a charset).
    return web.Response(body=json.dumps(body).encode(), status=status, content_type="application/json")


def _network_failure(request: web.Request, kind: NetworkFailure) -> web.StreamResponse:
    if kind == "bad_gateway":
        page = "<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center></body></html>"
        return web.Response(body=page.encode(), status=502, content_type="text/html")
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=502)  # never reaches the client: the connection is gone


def _message_text(p: Json) -> tuple[str, str | None, str, list[Json]]:
    """Validate text and parse_mode as Telegram does: (raw text, parse mode, plain text, entities)."""
    text = p.get("text")
    if not isinstance(text, str) or not text.strip():
        raise _bad_request("message text is empty")
    parse_mode = p.get("parse_mode") or None
    entities: list[Json] = p.get("entities") or []
    plain = text
    if parse_mode is not None and parse_mode.lower() == "html":
        try:
            plain, entities = parse_html(text)
        except HtmlParseError as error:
            raise _bad_request(f"can't parse entities: {error}") from None
        if not plain.strip():
            raise _bad_request("message text is empty")
    elif parse_mode is not None and parse_mode.lower() not in ("markdown", "markdownv2"):
        raise _bad_request(f"unsupported parse_mode {parse_mode!r}")
    if utf16_len(plain) > MAX_TEXT_UTF16:
        raise _bad_request("message is too long")
    return text, parse_mode, plain, entities


def _check_markup(markup: Any, *, inline_only: bool = False) -> Json | None:
    """Validate reply_markup; an empty inline keyboard means no keyboard."""
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise _bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" not in markup:
        if inline_only:
            raise _bad_request("inline keyboard expected")
        return markup
    rows = markup["inline_keyboard"]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise _bad_request(
            "can't parse inline keyboard button: InlineKeyboardMarkup must be an Array of Arrays"
        )
    for button in (b for row in rows for b in row):
        if not isinstance(button, dict) or not str(button.get("text", "")).strip():
            raise _bad_request("can't parse inline keyboard button: Text must be non-empty")
        if sum(action in button for action in _BUTTON_ACTIONS) != 1:
            raise _bad_request(
                "can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard"
            )
        data = button.get("callback_data")
        if data is not None and not 1 <= len(str(data).encode()) <= MAX_CALLBACK_DATA_BYTES:
            raise _bad_request("BUTTON_DATA_INVALID")
        url = button.get("url")
        if url is not None and not str(url).startswith(("http://", "https://", "tg://")):
            raise _bad_request("BUTTON_URL_INVALID")
    return markup if any(rows) else None


_COMMAND = re.compile(r"(?<![\w/@])/[A-Za-z0-9_]{1,64}(?:@[A-Za-z0-9_]{3,32})?(?![\w@])")
_MENTION = re.compile(r"(?<![\w/@])@[A-Za-z0-9_]{5,32}(?!\w)")


def _auto_entities(text: str) -> list[Json]:
    """The bot_command and mention entities Telegram's clients attach to a typed text."""
    found = [("bot_command", m) for m in _COMMAND.finditer(text)] + [
        ("mention", m) for m in _MENTION.finditer(text)
    ]
    entities = [
        {"type": kind, "offset": utf16_len(text[: m.start()]), "length": utf16_len(m.group())}
        for kind, m in found
    ]
    return sorted(entities, key=lambda e: e["offset"])


def _caption(caption: str | None) -> Json:
    if caption is None:
        return {}
    entities = _auto_entities(caption)
    return {"caption": caption, **({"caption_entities": entities} if entities else {})}


def _scope_key(scope: Json | None, language_code: str) -> tuple[str, str]:
    return json.dumps(scope or {"type": "default"}, sort_keys=True), language_code


def _photo_size(file_id: str, unique_id: str, width: float, height: float, data: bytes) -> Json:
    return {
        "file_id": file_id,
        "file_unique_id": unique_id,
        "width": max(round(width), 1),
        "height": max(round(height), 1),
        "file_size": len(data),
    }


def _image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from a PNG or JPEG header, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return int(width), int(height)
    i = 2 if data.startswith(b"\xff\xd8") else len(data)
    while i + 9 < len(data) and data[i] == 0xFF:
        marker, length = data[i + 1], struct.unpack(">H", data[i + 2 : i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return int(width), int(height)
        i += 2 + length
    return None


def make_png(width: int = 640, height: int = 480) -> bytes:
    """A valid black RGB PNG of this size: real image bytes for ``send_photo``/``send_document``."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = b"".join(b"\x00" + b"\x00\x00\x00" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


_PLACEHOLDER_PNG = make_png(1, 1)
