"""Inline keyboard presses: the picker's model buttons and ‹ › pages, always answered."""

from __future__ import annotations

import logging
from dataclasses import replace

from telegram import CallbackQuery, Message

from adapters.telegram import incoming as read
from adapters.telegram.access import REFUSAL, Gate
from adapters.telegram.render import (
    FAILED,
    OLD_BUTTON,
    parse_page_token,
    picker_keyboard,
    plain_pieces,
    short,
)
from adapters.telegram.sender import ChatUnavailable, Sender
from bot.chat import Incoming
from bot.conversation.pipeline import ChatPipeline

log = logging.getLogger("modelbot.telegram")


class PickerButtons:
    """A page button re-renders the picker in place; a model button asks the core and shows its answer."""

    def __init__(self, pipeline: ChatPipeline, gate: Gate, sender: Sender, username: str) -> None:
        self._pipeline = pipeline
        self._gate = gate
        self._sender = sender
        self._username = username

    async def press(self, query: CallbackQuery) -> None:
        """Handle one press; the query is answered whatever happens (the button's spinner stops)."""
        answer: str | None = None
        try:
            answer = await self._handle(query)
        except ChatUnavailable:
            pass
        except Exception:
            log.exception("telegram: handling a button press failed")
            answer = FAILED
        finally:
            await self._sender.answer_callback(query.id, short(answer) if answer else None)

    async def _handle(self, query: CallbackQuery) -> str | None:
        message, user = query.message, query.from_user
        if not isinstance(message, Message):  # too old for Telegram to send its content
            return OLD_BUTTON
        chat = message.chat
        if not self._gate.allows(user.id, user.username, chat.id):
            return REFUSAL
        topic = read.topic(message)
        msg = Incoming(
            platform="telegram",
            chat_id=str(chat.id),
            user_id=str(user.id),
            text="",
            user_name=user.username,
            thread_id=str(topic) if topic is not None else None,
            is_group=read.in_group(message),
            bot_username=self._username,
        )
        page = parse_page_token(query.data or "")
        if page is not None:
            [reply, *_] = await self._pipeline.handle(replace(msg, text=f"/model list {page}"))
            if reply.picker is None:
                return reply.text
            text, keyboard = plain_pieces(reply.text)[0], picker_keyboard(reply.picker)
            await self._sender.edit(chat.id, message.message_id, text, markup=keyboard)
            return None
        reply = await self._pipeline.choose(msg, query.data or "")
        if reply.kind != "error":  # a stale button changes nothing: the picker stays as it is
            await self._sender.edit(chat.id, message.message_id, plain_pieces(reply.text)[0])
        return reply.text
