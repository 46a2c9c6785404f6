"""The reply sink for one Telegram message: typing, one message edited as the answer streams, final render.

A delivery that breaks in a way the sender does not know (an unexpected Bot API answer: the message may or may
not be there) is handled once: logged, no more of the answer sent (never twice), one line to the user if the
chat still takes messages, and ``DeliveryFailed`` for the pipeline, which counts the turn as undelivered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

from telegram import InlineKeyboardMarkup
from telegram.error import TelegramError

from adapters.telegram.render import Piece, answer_pieces, picker_keyboard, plain_pieces, reply_pieces
from adapters.telegram.sender import ChatUnavailable, Sender, Target
from bot.chat import UNDELIVERED, Reply
from bot.errors import DeliveryFailed

log = logging.getLogger("modelbot.telegram")


class ReplyStream:
    """Streams a turn into messages: the text so far, edited at most once per ``interval_s``.

    Rendering goes through the same splitter as the final answer, so a long answer grows into as many
    messages as it needs; the final render edits what changed, sends what is missing, deletes extras.
    """

    def __init__(
        self, sender: Sender, target: Target, *, interval_s: float, typing_interval_s: float = 4.0
    ) -> None:
        self._sender = sender
        self._target = target
        self._interval = interval_s
        self._typing_interval = typing_interval_s
        self._text = ""
        self._ids: list[int] = []  # our messages showing this reply, in order
        self._shown: list[Piece] = []
        self._last_render = float("-inf")
        self._lock = asyncio.Lock()
        self._finishing = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._typist: asyncio.Task[None] | None = None
        self.unavailable = False  # the chat refused our messages (blocked): nothing more is sent
        self.failed = False  # a send or edit broke off unexpectedly: no more of this answer is sent

    # -- ReplySink ----------------------------------------------------------------------------------------

    async def typing(self) -> None:
        if self._typist is None and not self._finishing.is_set():
            self._typist = asyncio.create_task(self._keep_typing())

    async def status(self, text: str | None) -> None:
        """Show a status line as the reply's first message; the answer's text or the final reply edits it."""
        if text is None or self._text or self._finishing.is_set() or self.unavailable:
            return
        try:
            await self._show(plain_pieces(text), None)
        except ChatUnavailable:
            return
        except TelegramError as exc:  # only a status: the answer comes anyway
            log.warning("telegram: status line in chat %s failed: %s", self._target.chat_id, exc)
        self._last_render = asyncio.get_running_loop().time()

    async def delta(self, text: str) -> None:
        if self.failed or self.unavailable:
            raise DeliveryFailed(f"telegram: chat {self._target.chat_id} stopped taking the answer")
        self._text += text
        if self._flusher is None and not self._finishing.is_set():
            self._flusher = asyncio.create_task(self._flush())

    # -- the end of the turn ------------------------------------------------------------------------------

    async def deliver(self, replies: Sequence[Reply]) -> None:
        """Render the replies: the first into the streamed messages (when there are any), the rest anew."""
        await self.close()
        if not self.failed and not self.unavailable:
            try:
                await self._render(replies)
            except ChatUnavailable:
                pass  # logged by the sender; nothing more can be sent
            except Exception as exc:
                self._broke(exc)
            else:
                return
        if self.failed and not self.unavailable:
            await self._tell_user()
        raise DeliveryFailed(f"telegram: the answer in chat {self._target.chat_id} was not delivered")

    async def _render(self, replies: Sequence[Reply]) -> None:
        for index, reply in enumerate(replies):
            if self.unavailable:
                raise ChatUnavailable(str(self._target.chat_id))
            markup = picker_keyboard(reply.picker) if reply.picker is not None else None
            if index == 0 and self._ids:
                await self._throttle()
                await self._show(reply_pieces(reply, streamed=self._text), markup)
            else:
                await send_pieces(self._sender, self._target, reply_pieces(reply), markup)

    def _broke(self, exc: BaseException) -> None:
        """The one log line of a broken delivery; later failures of the same reply are not logged again."""
        if not self.failed:
            self.failed = True
            log.warning(
                "telegram: delivering an answer in chat %s failed: %s",
                self._target.chat_id,
                exc,
                exc_info=exc,
            )

    async def _tell_user(self) -> None:
        try:
            await send_pieces(self._sender, self._target, plain_pieces(UNDELIVERED))
        except Exception as exc:  # the chat takes nothing at all: the log line above is all there is
            log.info(
                "telegram: could not tell chat %s about the failed delivery: %s", self._target.chat_id, exc
            )

    async def close(self) -> None:
        """Stop typing and streaming; edits in flight finish first (also after an error)."""
        self._finishing.set()
        for task in (self._flusher, self._typist):
            if task is not None:
                await task

    # -- internals ----------------------------------------------------------------------------------------

    async def _keep_typing(self) -> None:
        # The first action goes out even when the answer is already complete (a turn that never waits ends
        # before this task first runs): the final message, sent after this task has ended, clears it.
        while not self.unavailable:
            try:
                await self._sender.typing(self._target)
            except ChatUnavailable:
                self.unavailable = True
                return
            except Exception as exc:  # an odd answer to a typing action is no reason to stop the answer
                log.debug("telegram: typing in chat %s failed: %s", self._target.chat_id, exc)
                return
            if self._finishing.is_set():
                return
            await self._pause(self._typing_interval)

    async def _flush(self) -> None:
        """Show the text so far; keep showing newer text, no more often than once per interval."""
        loop = asyncio.get_running_loop()
        try:
            while not self._finishing.is_set() and not self.unavailable and not self.failed:
                wait = self._last_render + self._interval - loop.time()
                if wait > 0:
                    await self._pause(wait)
                    continue
                shown = self._text
                try:
                    await self._show(answer_pieces(shown), None)
                except ChatUnavailable:
                    return
                except TelegramError as exc:  # refused, so nothing was shown: the final render tries again
                    log.warning("telegram: streaming edit in chat %s failed: %s", self._target.chat_id, exc)
                except Exception as exc:  # an answer the library could not read: sent or not, unknown
                    self._broke(exc)
                    return
                self._last_render = loop.time()
                if self._text == shown:
                    return
        finally:
            self._flusher = None

    async def _throttle(self) -> None:
        """The final edit keeps the interval too: Telegram counts it like any other."""
        wait = self._last_render + self._interval - asyncio.get_running_loop().time()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._finishing.wait(), seconds)

    async def _show(self, pieces: list[Piece], markup: InlineKeyboardMarkup | None) -> None:
        """Make our messages show ``pieces``: edit changed ones, send missing ones, delete extra ones."""
        async with self._lock:
            try:
                for index, piece in enumerate(pieces):
                    keyboard = markup if index == len(pieces) - 1 else None
                    if index >= len(self._ids):
                        sent = await self._sender.send(
                            self._target, piece, markup=keyboard, quote=not self._ids
                        )
                        self._ids.append(sent.message_id)
                        self._shown.append(piece)
                        continue
                    if self._shown[index] == piece and keyboard is None:
                        continue
                    if not await self._sender.edit(
                        self._target.chat_id, self._ids[index], piece, markup=keyboard
                    ):
                        sent = await self._sender.send(self._target, piece, markup=keyboard)
                        self._ids[index] = sent.message_id
                    self._shown[index] = piece
                while len(self._ids) > len(pieces):
                    await self._sender.delete(self._target.chat_id, self._ids.pop())
                    self._shown.pop()
            except ChatUnavailable:
                self.unavailable = True
                raise


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
