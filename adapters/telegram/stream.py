"""Telegram's side of the streaming reply: a chat as the kit's ``Surface``, replies as HTML pieces.

The kit (``adapters.common.stream``) streams, throttles and handles broken deliveries; this module only says
how Telegram sends, edits and deletes (through the resilient ``Sender``), what its errors mean, and that
Telegram counts the final edit against the chat's rate like any other.
"""

from __future__ import annotations

from collections.abc import Sequence

from telegram import InlineKeyboardMarkup
from telegram.error import TelegramError

from adapters.common.stream import Fault, Pace, ReplyStream
from adapters.telegram.render import Piece, answer_pieces, picker_keyboard, plain_pieces, reply_pieces
from adapters.telegram.sender import ChatUnavailable, Sender, Target
from bot.chat import Reply

TelegramStream = ReplyStream[int, Piece, InlineKeyboardMarkup]


class ChatSurface:
    """One chat (and forum topic) of the bot; a message is known by its id."""

    platform = "telegram"

    def __init__(self, sender: Sender, target: Target) -> None:
        self._sender = sender
        self._target = target
        self.place = f"chat {target.chat_id}"

    async def send(self, piece: Piece, *, markup: InlineKeyboardMarkup | None, quote: bool) -> int:
        sent = await self._sender.send(self._target, piece, markup=markup, quote=quote)
        return sent.message_id

    async def edit(self, message: int, piece: Piece, *, markup: InlineKeyboardMarkup | None) -> int | None:
        shown = await self._sender.edit(self._target.chat_id, message, piece, markup=markup)
        return message if shown else None

    async def delete(self, message: int) -> None:
        await self._sender.delete(self._target.chat_id, message)

    async def typing(self) -> None:
        await self._sender.typing(self._target)

    def fault(self, error: Exception) -> Fault:
        """Blocked or removed: gone. A Bot API refusal (after the sender's retries): nothing was shown, so a
        later render may try again. Anything else is an answer PTB could not read: sent or not, unknown."""
        if isinstance(error, ChatUnavailable):
            return Fault.GONE
        if isinstance(error, TelegramError):
            return Fault.REFUSED
        return Fault.UNKNOWN


class HtmlLook:
    """Answers as Telegram HTML (plain when refused), commands and notices as plain text, pickers as keyboards."""

    def draft(self, text: str) -> list[Piece]:
        return answer_pieces(text)

    def plain(self, text: str) -> list[Piece]:
        return plain_pieces(text)

    def reply(self, reply: Reply, streamed: str) -> list[Piece]:
        return reply_pieces(reply, streamed=streamed)

    def markup(self, reply: Reply) -> InlineKeyboardMarkup | None:
        return picker_keyboard(reply.picker) if reply.picker is not None else None


LOOK = HtmlLook()


def reply_stream(
    sender: Sender, target: Target, *, interval_s: float, typing_interval_s: float
) -> TelegramStream:
    """The sink for one message; the final edit keeps ``interval_s`` too (Telegram counts it)."""
    pace = Pace(interval_s=interval_s, typing_interval_s=typing_interval_s, final_edit_waits=True)
    return ReplyStream(ChatSurface(sender, target), LOOK, pace)


async def send_pieces(
    sender: Sender, target: Target, pieces: Sequence[Piece], markup: InlineKeyboardMarkup | None = None
) -> list[int]:
    """Send a reply's pieces as new messages (the keyboard under the last); returns their ids."""
    ids = []
    for index, piece in enumerate(pieces):
        keyboard = markup if index == len(pieces) - 1 else None
        sent = await sender.send(target, piece, markup=keyboard, quote=index == 0)
        ids.append(sent.message_id)
    return ids
