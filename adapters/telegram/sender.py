"""Every Bot API call the adapter makes, with one retry policy chosen by error type (after PTB's own).

- ``RetryAfter`` (flood control): the chat is closed for exactly that long; every later call in that chat
  waits for it, then the call is repeated.
- ``TimedOut``/``NetworkError`` (not ``BadRequest``, which PTB derives from it): retried with backoff, a
  few times. A send whose response was lost may then arrive twice; a missing answer is worse.
- ``Forbidden`` (the user blocked the bot, it was removed from the group): ``ChatUnavailable``, not retried.
- ``ChatMigrated`` (a group became a supergroup): repeated in the new chat, which is remembered.
- ``BadRequest``: "can't parse entities" sends the plain text instead; "not modified" is success.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from telegram import Bot, InlineKeyboardMarkup, LinkPreviewOptions, Message, ReplyParameters
from telegram.constants import ChatAction, ParseMode
from telegram.error import BadRequest, ChatMigrated, Forbidden, NetworkError, RetryAfter, TelegramError
from telegram.warnings import PTBDeprecationWarning

from adapters.telegram.render import Piece

log = logging.getLogger("modelbot.telegram")

_T = TypeVar("_T")
MAX_FLOOD_WAITS = 5  # a call that keeps hitting flood control gives up after this many waits
_NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


class ChatUnavailable(Exception):
    """The bot may not write to this chat any more (blocked by the user, removed from the group)."""


@dataclass(frozen=True)
class Target:
    """Where replies go: the chat, its forum topic, and the user's message to quote (in groups)."""

    chat_id: int
    thread_id: int | None = None
    reply_to: int | None = None


def retry_after_seconds(exc: RetryAfter) -> float:
    """The server's wait, whether PTB gives it as an int or (``PTB_TIMEDELTA``) a timedelta."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PTBDeprecationWarning)  # the int form is deprecated, still common
        value = exc.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


def is_entity_error(exc: BadRequest) -> bool:
    return "can't parse entities" in exc.message.lower()


def is_not_modified(exc: BadRequest) -> bool:
    return "message is not modified" in exc.message.lower()


def is_message_gone(exc: BadRequest) -> bool:
    text = exc.message.lower()
    return "message to edit not found" in text or "message can't be edited" in text


class Sender:
    """Resilient calls on one bot; flood-control state is per chat and shared by all of the chat's replies."""

    def __init__(self, bot: Bot, *, attempts: int = 4, backoff_s: float = 0.5) -> None:
        self.bot = bot
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._closed_until: dict[int, float] = {}  # chat -> loop time when flood control ends
        self._migrated: dict[int, int] = {}

    # -- messages -----------------------------------------------------------------------------------------

    async def send(
        self, target: Target, piece: Piece, *, markup: InlineKeyboardMarkup | None = None, quote: bool = False
    ) -> Message:
        """Send one piece (HTML, or plain when Telegram rejects the entities)."""
        reply = None
        if quote and target.reply_to is not None:
            reply = ReplyParameters(target.reply_to, allow_sending_without_reply=True)

        def call(html: bool) -> Callable[[int], Awaitable[Message]]:
            return lambda chat: self.bot.send_message(
                chat,
                piece.html if html and piece.html is not None else piece.plain,
                parse_mode=ParseMode.HTML if html else None,
                reply_markup=markup,
                message_thread_id=target.thread_id,
                reply_parameters=reply,
                link_preview_options=_NO_PREVIEW,
            )

        if piece.html is None:
            return await self.call(target.chat_id, call(False))
        try:
            return await self.call(target.chat_id, call(True))
        except BadRequest as exc:
            if not is_entity_error(exc):
                raise
            log.warning("telegram: HTML rejected in chat %s (%s); sending plain text", target.chat_id, exc)
            return await self.call(target.chat_id, call(False))

    async def edit(
        self, chat_id: int, message_id: int, piece: Piece, *, markup: InlineKeyboardMarkup | None = None
    ) -> bool:
        """Show ``piece`` in a message of ours; False when that message is gone (deleted, too old)."""

        def call(html: bool) -> Callable[[int], Awaitable[object]]:
            return lambda chat: self.bot.edit_message_text(
                piece.html if html and piece.html is not None else piece.plain,
                chat,
                message_id,
                parse_mode=ParseMode.HTML if html else None,
                reply_markup=markup,
                link_preview_options=_NO_PREVIEW,
            )

        html = piece.html is not None
        for _ in range(2):
            try:
                await self.call(chat_id, call(html))
                return True
            except BadRequest as exc:
                if is_not_modified(exc):
                    return True
                if is_message_gone(exc):
                    return False
                if not (html and is_entity_error(exc)):
                    raise
                log.warning("telegram: HTML rejected in chat %s (%s); editing as plain text", chat_id, exc)
                html = False
        return True  # pragma: no cover - the loop returns or raises

    async def delete(self, chat_id: int, message_id: int) -> None:
        try:
            await self.call(chat_id, lambda chat: self.bot.delete_message(chat, message_id))
        except BadRequest as exc:
            log.info("telegram: could not delete message %s in chat %s: %s", message_id, chat_id, exc)

    async def typing(self, target: Target) -> None:
        """One typing indicator, best effort: never waits for flood control, never retried."""
        chat = self._migrated.get(target.chat_id, target.chat_id)
        if self._closed_for(chat) > 0:
            return
        try:
            await self.bot.send_chat_action(chat, ChatAction.TYPING, message_thread_id=target.thread_id)
        except RetryAfter as exc:
            self._close(chat, retry_after_seconds(exc))
        except Forbidden as exc:
            raise ChatUnavailable(str(exc)) from exc
        except TelegramError as exc:
            log.debug("telegram: typing action in chat %s failed: %s", chat, exc)

    async def answer_callback(self, query_id: str, text: str | None = None) -> None:
        """Answer a button press (the spinner on the button stops); a late or repeated answer is harmless."""
        try:
            await self.call(None, lambda _: self.bot.answer_callback_query(query_id, text=text))
        except TelegramError as exc:
            log.info("telegram: could not answer callback query: %s", exc)

    # -- the retry policy ---------------------------------------------------------------------------------

    async def call(self, chat_id: int | None, make: Callable[[int], Awaitable[_T]]) -> _T:
        """``make(chat)`` with the policy above; ``chat`` follows a group's migration to a supergroup.

        ``chat_id`` None: a call outside any chat (getFile, answerCallbackQuery); flood control is not
        waited for there but raised.
        """
        delay, failures, flood_waits = self._backoff_s, 0, 0
        while True:
            chat = self._migrated.get(chat_id, chat_id) if chat_id is not None else 0
            if chat_id is not None:
                await self._wait_open(chat)
            try:
                return await make(chat)
            except RetryAfter as exc:
                flood_waits += 1
                seconds = retry_after_seconds(exc)
                if chat_id is None or flood_waits > MAX_FLOOD_WAITS:
                    raise
                log.warning("telegram: flood control in chat %s: waiting %g s", chat, seconds)
                self._close(chat, seconds)
            except ChatMigrated as exc:
                if chat_id is None or self._migrated.get(chat_id) == exc.new_chat_id:
                    raise
                log.info("telegram: chat %s is now supergroup %s", chat_id, exc.new_chat_id)
                self._migrated[chat_id] = int(exc.new_chat_id)
            except Forbidden as exc:
                log.info("telegram: chat %s is unavailable: %s", chat, exc)
                raise ChatUnavailable(str(exc)) from exc
            except BadRequest:
                raise
            except NetworkError as exc:  # TimedOut included
                failures += 1
                if failures >= self._attempts:
                    raise
                log.info("telegram: %s; retrying in %g s", exc, delay)
                await asyncio.sleep(delay)
                delay *= 2

    def _close(self, chat: int, seconds: float) -> None:
        until = asyncio.get_running_loop().time() + seconds
        self._closed_until[chat] = max(until, self._closed_until.get(chat, 0.0))

    def _closed_for(self, chat: int) -> float:
        until = self._closed_until.get(chat)
        if until is None:
            return 0.0
        remaining = until - asyncio.get_running_loop().time()
        if remaining <= 0:
            del self._closed_until[chat]
            return 0.0
        return remaining

    async def _wait_open(self, chat: int) -> None:
        # Sleep, then look again: another call's RetryAfter may have moved the end meanwhile.
        while (remaining := self._closed_for(chat)) > 0:  # noqa: ASYNC110
            await asyncio.sleep(remaining)
