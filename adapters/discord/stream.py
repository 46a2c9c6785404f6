"""Reply sinks: a channel answer streamed by editing one message, and an interaction answered or deferred.

A delivery Discord breaks off is handled once: logged, no more of the answer sent (never twice), one line to
the user when the channel still takes messages, and ``DeliveryFailed`` for the pipeline, which counts the turn
as undelivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import discord

from adapters.discord.render import chunks, reply_text, view_for
from bot.chat import UNDELIVERED, Reply
from bot.errors import DeliveryFailed

log = logging.getLogger("modelbot.discord")

TYPING_REFRESH_S = 8.0  # Discord shows "typing…" for about 10 s per trigger


class ChannelStream:
    """Streams a turn into replies to one user message: typing, then throttled edits, then the final text.

    The text grows in as few messages as Discord's 2000-character limit allows; each is edited at most
    once per ``interval_s`` while deltas arrive, and always once more at the end.
    """

    def __init__(self, message: discord.Message, *, interval_s: float = 1.0) -> None:
        self._message = message
        self._interval = interval_s
        self._text = ""
        self._sent: list[discord.Message] = []
        self._shown: list[str] = []
        self._last_render = float("-inf")
        self._lock = asyncio.Lock()
        self._flusher: asyncio.Task[None] | None = None
        self._finishing = asyncio.Event()
        self._typing: asyncio.Task[None] | None = None
        self.failed = False  # Discord refused or broke off a send or edit: no more of this answer is sent
        self._forbidden = False  # we may not write here at all: not even a notice can be sent

    # -- ReplySink --------------------------------------------------------------------------------------

    async def typing(self) -> None:
        if self._typing is None and not self._finishing.is_set():
            self._typing = asyncio.create_task(self._keep_typing())

    async def status(self, text: str | None) -> None:
        """Show a status line as the reply; the answer's text or the final reply edits it."""
        if text is None or self._text or self._finishing.is_set():
            return
        try:
            await self._render(text, None)
        except discord.HTTPException as exc:  # only a status: the answer comes anyway
            log.warning("discord: status line in channel %s failed: %s", self._message.channel.id, exc)
        self._last_render = asyncio.get_running_loop().time()

    async def delta(self, text: str) -> None:
        if self.failed:
            raise DeliveryFailed(f"discord: channel {self._message.channel.id} stopped taking the answer")
        self._text += text
        if self._flusher is None and not self._finishing.is_set():
            self._flusher = asyncio.create_task(self._flush())

    # -- the end of the turn ----------------------------------------------------------------------------

    async def deliver(self, replies: Sequence[Reply]) -> None:
        """Render the replies: the first one into the streamed messages (if any), the rest as new ones."""
        await self._stop_background()
        if not self.failed:
            try:
                for index, reply in enumerate(replies):
                    if index == 0 and self._sent:
                        await self._render(reply_text(reply, streamed=self._text), view_for(reply))
                    else:
                        await self._send_new(reply_text(reply), view_for(reply))
            except Exception as exc:
                self._broke(exc)
            else:
                return
        if not self._forbidden:
            try:
                await self._post(UNDELIVERED, first=not self._sent)
            except Exception as exc:  # the channel takes nothing at all: the log line is all there is
                log.info("discord: could not tell channel %s about it: %s", self._message.channel.id, exc)
        raise DeliveryFailed(f"discord: the answer in channel {self._message.channel.id} was not delivered")

    def _broke(self, exc: BaseException) -> None:
        """The one log line of a broken delivery; later failures of the same reply are not logged again."""
        if self.failed:
            return
        self.failed = True
        self._forbidden = isinstance(exc, discord.Forbidden)
        log.warning(
            "discord: delivering an answer in channel %s failed: %s",
            self._message.channel.id,
            exc,
            exc_info=not isinstance(exc, discord.HTTPException),  # a traceback only for the unexpected
        )

    async def close(self) -> None:
        """Stop typing and pending edits (also after an error)."""
        await self._stop_background()

    # -- internals --------------------------------------------------------------------------------------

    async def _keep_typing(self) -> None:
        # The first trigger goes out even when the answer is already complete (a turn that never waits ends
        # before this task first runs): the reply, sent after this task has ended, clears it.
        # Typing is cosmetic: whatever goes wrong with it must not touch the answer.
        with contextlib.suppress(Exception):
            await self._message.channel.typing()
            while not self._finishing.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._finishing.wait(), TYPING_REFRESH_S)
                if not self._finishing.is_set():
                    await self._message.channel.typing()

    async def _flush(self) -> None:
        """Show the text so far, then keep showing newer text no more often than once per interval."""
        loop = asyncio.get_running_loop()
        try:
            while not self._finishing.is_set() and not self.failed:
                wait = self._last_render + self._interval - loop.time()
                if wait > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._finishing.wait(), wait)
                    continue
                shown = self._text
                try:
                    await self._render(shown, None)
                except Exception as exc:  # discord.py retried 5xx and 429 already: this one is final
                    self._broke(exc)
                    return
                self._last_render = loop.time()
                if self._text == shown:
                    return
        finally:
            self._flusher = None

    async def _stop_background(self) -> None:
        # Nothing is cancelled mid-request (an edit in flight would leave a message we did not record):
        # both background tasks see ``_finishing`` and end by themselves.
        self._finishing.set()
        for task in (self._flusher, self._typing):
            if task is not None:
                await task
        self._typing = None

    async def _render(self, text: str, view: discord.ui.View | None) -> None:
        """Make the messages show ``text``: edit changed ones, send missing ones, delete extra ones."""
        async with self._lock:
            pieces = chunks(text)
            for index, piece in enumerate(pieces):
                last = index == len(pieces) - 1
                extra: dict[str, Any] = {"view": view} if last and view is not None else {}
                if index < len(self._sent):
                    if self._shown[index] != piece or extra:
                        self._sent[index] = await self._sent[index].edit(content=piece, **extra)
                        self._shown[index] = piece
                    continue
                sent = await self._post(piece, first=not self._sent, **extra)
                self._sent.append(sent)
                self._shown.append(piece)
            while len(self._sent) > len(pieces):
                await self._sent.pop().delete()
                self._shown.pop()

    async def _send_new(self, text: str, view: discord.ui.View | None) -> None:
        pieces = chunks(text)
        for index, piece in enumerate(pieces):
            extra: dict[str, Any] = {"view": view} if index == len(pieces) - 1 and view is not None else {}
            await self._post(piece, first=index == 0, **extra)

    async def _post(self, content: str, *, first: bool, **extra: Any) -> discord.Message:
        if first:
            return await reply_to(self._message, content, **extra)
        return await self._message.channel.send(content, **extra)


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
                    pieces = chunks(reply_text(reply))
                    view = view_for(reply)
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
