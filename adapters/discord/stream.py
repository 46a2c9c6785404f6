"""Discord's side of the replies: a channel as the kit's ``Surface``, and interactions answered or deferred.

The kit (``adapters.common.stream``) streams, throttles and handles broken deliveries; this module only says
how Discord posts, edits and deletes a reply (as a reply to the user's message, in 2000-character chunks with
the components under the last), and what discord.py's errors mean.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import discord

from adapters.common.stream import Fault, Pace, ReplyStream
from adapters.discord.render import chunks, reply_text, view_for
from bot.chat import Reply
from bot.errors import DeliveryFailed

log = logging.getLogger("modelbot.discord")

TYPING_REFRESH_S = 8.0  # Discord shows "typing…" for about 10 s per trigger

ChannelStream = ReplyStream[discord.Message, str, discord.ui.View]


class ChannelSurface:
    """The channel (or thread) of one user message; replies answer that message."""

    platform = "discord"

    def __init__(self, message: discord.Message) -> None:
        self._message = message
        self.place = f"channel {message.channel.id}"

    async def send(self, piece: str, *, markup: discord.ui.View | None, quote: bool) -> discord.Message:
        extra: dict[str, Any] = {"view": markup} if markup is not None else {}
        if quote:
            return await reply_to(self._message, piece, **extra)
        return await self._message.channel.send(piece, **extra)

    async def edit(
        self, message: discord.Message, piece: str, *, markup: discord.ui.View | None
    ) -> discord.Message:
        extra: dict[str, Any] = {"view": markup} if markup is not None else {}
        return await message.edit(content=piece, **extra)

    async def delete(self, message: discord.Message) -> None:
        await message.delete()

    async def typing(self) -> None:
        await self._message.channel.typing()

    def fault(self, error: Exception) -> Fault:
        """Forbidden: we may not write here at all. Any other HTTP error is final (discord.py retried 5xx and
        429 already). Anything else is an answer discord.py could not read: sent or not, unknown."""
        if isinstance(error, discord.Forbidden):
            return Fault.GONE
        if isinstance(error, discord.HTTPException):
            return Fault.FAILED
        return Fault.UNKNOWN


class MarkdownLook:
    """Discord renders Markdown itself: text in message-sized chunks, components from the reply."""

    def draft(self, text: str) -> list[str]:
        return chunks(text)

    def plain(self, text: str) -> list[str]:
        return chunks(text)

    def reply(self, reply: Reply, streamed: str) -> list[str]:
        return chunks(reply_text(reply, streamed=streamed))

    def markup(self, reply: Reply) -> discord.ui.View | None:
        return view_for(reply)


LOOK = MarkdownLook()


def channel_stream(message: discord.Message, *, interval_s: float) -> ChannelStream:
    """The sink for one message: typing, then edits at most once per ``interval_s``, then the final text."""
    return ReplyStream(
        ChannelSurface(message), LOOK, Pace(interval_s=interval_s, typing_interval_s=TYPING_REFRESH_S)
    )


async def reply_to(message: discord.Message, content: str, **extra: Any) -> discord.Message:
    """Answer as a reply to ``message`` without pinging its author; a plain message if it was deleted."""
    reference = message.to_reference(fail_if_not_exists=False)
    return await message.channel.send(content, reference=reference, mention_author=False, **extra)


class InteractionReplies:
    """Answers one slash command or button: at once when the core is quick, else deferred ("thinking…").

    ``typing`` (an LLM turn starts) defers publicly; the adapter defers on a timeout too, privately for
    commands whose replies are private. A deferred answer edits the original response; more messages
    are follow-ups.
    """

    def __init__(self, interaction: discord.Interaction) -> None:
        self._interaction = interaction
        self._lock = asyncio.Lock()
        self._deferred = False

    async def typing(self) -> None:
        await self.defer(ephemeral=False)

    async def status(self, text: str | None) -> None:
        # A deferred interaction shows Discord's own "thinking…" until the reply: that is its status line.
        if text is not None:
            await self.defer(ephemeral=False)

    async def delta(self, text: str) -> None:
        return None  # slash commands do not stream; the final reply carries the whole text

    async def defer(self, *, ephemeral: bool) -> None:
        async with self._lock:
            if not self._interaction.response.is_done():
                await self._interaction.response.defer(thinking=True, ephemeral=ephemeral)
                self._deferred = True

    async def deliver(self, replies: Sequence[Reply]) -> None:
        async with self._lock:
            first = True
            try:
                for reply in replies:
                    pieces = LOOK.reply(reply, "")
                    view = LOOK.markup(reply)
                    for index, piece in enumerate(pieces):
                        last = index == len(pieces) - 1
                        extra: dict[str, Any] = {"view": view} if last and view is not None else {}
                        await self._send(piece, reply.ephemeral, first=first, **extra)
                        first = False
            except Exception as exc:  # an expired interaction token, a refused follow-up, …
                log.warning("discord: answering an interaction failed: %s", exc)
                raise DeliveryFailed("discord: the interaction's answer was not delivered") from exc

    async def _send(self, content: str, ephemeral: bool, *, first: bool, **extra: Any) -> None:
        interaction = self._interaction
        if first and not interaction.response.is_done():
            await interaction.response.send_message(content, ephemeral=ephemeral, **extra)
        elif first and self._deferred:
            await interaction.edit_original_response(content=content, **extra)
        else:
            await interaction.followup.send(content, ephemeral=ephemeral, **extra)
