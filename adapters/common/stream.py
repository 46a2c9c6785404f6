"""The reply sink both chat platforms share: typing, a status line, one answer edited as it streams, the end.

A platform implements two small protocols: ``Surface`` (send, edit, delete, typing in one place, and what a
failure of its client means) and ``Look`` (how text and replies become its messages). ``ReplyStream`` does
the rest: text so far shown at most once per interval, a final render that edits what changed, sends what is
missing and deletes extras, and a delivery failure handled once — logged, no more of the answer sent (never
twice), one line to the user if the place still takes messages, and ``DeliveryFailed`` for the pipeline,
which counts the turn as undelivered.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from adapters.common.timer import LOOP_TIMER, Timer, wait_for_event
from bot.chat import UNDELIVERED, Reply
from bot.errors import DeliveryFailed

H = TypeVar("H")  # the platform's handle on one message it sent (a message id, a discord.Message)
P = TypeVar("P")  # one message's content as the platform renders it (compared to skip unchanged edits)
M = TypeVar("M")  # what goes under a message: a keyboard, a view
M_co = TypeVar("M_co", covariant=True)
P_contra = TypeVar("P_contra", contravariant=True)
M_contra = TypeVar("M_contra", contravariant=True)


class Fault(enum.Enum):
    """What a failed call of the platform's client means for the answer."""

    REFUSED = "refused"  # a known refusal, nothing shown: while streaming the next render tries again
    FAILED = "failed"  # a known refusal that ends the answer (one line to the user)
    UNKNOWN = "unknown"  # an answer the client could not read: sent or not, unknown; ends the answer
    GONE = "gone"  # the place takes no messages from us any more: the answer ends, no line to the user


class Surface(Protocol[H, P_contra, M_contra]):
    """One place on a platform (a chat, a channel) and the user's message a reply answers."""

    platform: str  # "telegram": the start of every log line
    place: str  # "chat 42": where, in log lines and errors

    async def send(self, piece: P_contra, *, markup: M_contra | None, quote: bool) -> H:
        """A new message; ``quote``: as a reply to the user's message."""
        ...

    async def edit(self, message: H, piece: P_contra, *, markup: M_contra | None) -> H | None:
        """Show ``piece`` in a message of ours; the message showing it, or None when it is gone (deleted)."""
        ...

    async def delete(self, message: H) -> None: ...

    async def typing(self) -> None:
        """One typing indicator (the platform shows it for a few seconds)."""
        ...

    def fault(self, error: Exception) -> Fault: ...


class Look(Protocol[P, M_co]):
    """How the platform renders text as messages, each list at least one piece long."""

    def draft(self, text: str) -> list[P]:
        """The answer so far, while it streams."""
        ...

    def plain(self, text: str) -> list[P]:
        """A status line, a notice: plain text."""
        ...

    def reply(self, reply: Reply, streamed: str) -> list[P]:
        """A reply of the core; ``streamed``: the text already shown of this turn ("" when none)."""
        ...

    def markup(self, reply: Reply) -> M_co | None: ...


@dataclass(frozen=True)
class Pace:
    """How often a stream may touch the platform."""

    interval_s: float  # at most one edit per interval while the answer streams
    typing_interval_s: float  # the typing indicator is renewed this often until the reply is shown
    final_edit_waits: bool = False  # the final edit keeps the interval too (platforms that count it)


class ReplyStream(Generic[H, P, M]):
    """A ``bot.chat.ReplySink`` for one message: streams the turn into as many messages as it needs."""

    def __init__(
        self, surface: Surface[H, P, M], look: Look[P, M], pace: Pace, *, timer: Timer = LOOP_TIMER
    ) -> None:
        self._surface = surface
        self._look = look
        self._pace = pace
        self._timer = timer
        self._log = logging.getLogger(f"modelbot.{surface.platform}")
        self._text = ""
        self._messages: list[H] = []  # ours, showing this reply, in order
        self._shown: list[P] = []
        self._last_render = float("-inf")
        self._lock = asyncio.Lock()
        self._finishing = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._typist: asyncio.Task[None] | None = None
        self.ended: Fault | None = None  # why no more of this answer is sent, once it broke off

    # -- ReplySink ----------------------------------------------------------------------------------------

    async def typing(self) -> None:
        if self._typist is None and not self._finishing.is_set():
            self._typist = asyncio.create_task(self._keep_typing())

    async def status(self, text: str | None) -> None:
        """Show a status line as the reply's first message; the answer's text or the final reply edits it."""
        if text is None or self._text or self._finishing.is_set() or self.ended is not None:
            return
        try:
            await self._show(self._look.plain(text), None)
        except Exception as exc:
            fault = self._surface.fault(exc)
            if fault in (Fault.GONE, Fault.UNKNOWN):
                self._end(exc, fault)
                return
            # only a status: the answer comes anyway
            self._log.warning("%s: status line in %s failed: %s", *self._where, exc)
        self._last_render = self._timer.now()

    async def delta(self, text: str) -> None:
        if self.ended is not None:
            raise DeliveryFailed(f"{self._surface.platform}: {self._surface.place} stopped taking the answer")
        self._text += text
        if self._flusher is None and not self._finishing.is_set():
            self._flusher = asyncio.create_task(self._flush())

    async def deliver(self, replies: Sequence[Reply]) -> None:
        """Render the replies: the first into the streamed messages (when there are any), the rest anew."""
        await self.close()
        if self.ended is None:
            try:
                await self._render(replies)
            except Exception as exc:
                fault = self._surface.fault(exc)
                self._end(exc, Fault.FAILED if fault is Fault.REFUSED else fault)  # no later render
            else:
                return
        if self.ended is not Fault.GONE:
            await self._tell_user()
        platform, place = self._where
        raise DeliveryFailed(f"{platform}: the answer in {place} was not delivered")

    async def close(self) -> None:
        """Stop typing and streaming; edits in flight finish first (also after an error).

        Nothing is cancelled mid-request: an edit in flight would leave a message we did not record.
        """
        self._finishing.set()
        for task in (self._flusher, self._typist):
            if task is not None:
                await task

    # -- internals ----------------------------------------------------------------------------------------

    @property
    def _where(self) -> tuple[str, str]:
        return self._surface.platform, self._surface.place

    async def _render(self, replies: Sequence[Reply]) -> None:
        for index, reply in enumerate(replies):
            markup = self._look.markup(reply)
            if index == 0 and self._messages:
                if self._pace.final_edit_waits:
                    wait = self._last_render + self._pace.interval_s - self._timer.now()
                    if wait > 0:
                        await self._timer.sleep(wait)
                await self._show(self._look.reply(reply, self._text), markup)
                continue
            await self._send_new(self._look.reply(reply, ""), markup)

    async def _send_new(self, pieces: list[P], markup: M | None) -> None:
        """New messages answering the user's message, ``markup`` under the last."""
        for number, piece in enumerate(pieces):
            last = number == len(pieces) - 1
            await self._surface.send(piece, markup=markup if last else None, quote=number == 0)

    def _end(self, exc: Exception, fault: Fault) -> None:
        """The one log line of a broken delivery; later failures of the same reply are not logged again."""
        if self.ended is not None:
            return
        self.ended = fault
        self._log.warning(
            "%s: delivering an answer in %s failed: %s",
            *self._where,
            exc,
            exc_info=exc if fault is Fault.UNKNOWN else None,  # a traceback only for the unexpected
        )

    async def _tell_user(self) -> None:
        try:
            await self._send_new(self._look.plain(UNDELIVERED), None)
        except Exception as exc:  # the place takes nothing at all: the log line above is all there is
            self._log.info("%s: could not tell %s about the failed delivery: %s", *self._where, exc)

    async def _keep_typing(self) -> None:
        # The first action goes out even when the answer is already complete (a turn that never waits ends
        # before this task first runs): the reply, shown after this task has ended, clears it.
        while True:
            try:
                await self._surface.typing()
            except Exception as exc:  # typing is cosmetic: only a place that is gone ends the answer
                if self._surface.fault(exc) is Fault.GONE:
                    self._end(exc, Fault.GONE)
                else:
                    self._log.debug("%s: typing in %s failed: %s", *self._where, exc)
                return
            if self._finishing.is_set() or self.ended is not None:
                return
            if await wait_for_event(self._finishing, self._pace.typing_interval_s, self._timer):
                return

    async def _flush(self) -> None:
        """Show the text so far; keep showing newer text, no more often than once per interval."""
        try:
            while not self._finishing.is_set() and self.ended is None:
                wait = self._last_render + self._pace.interval_s - self._timer.now()
                if wait > 0:
                    await wait_for_event(self._finishing, wait, self._timer)
                    continue
                shown = self._text
                try:
                    await self._show(self._look.draft(shown), None)
                except Exception as exc:
                    fault = self._surface.fault(exc)
                    if fault is not Fault.REFUSED:
                        self._end(exc, fault)
                        return
                    # refused, so nothing was shown: the next render (the final one at the latest) tries again
                    self._log.warning("%s: streaming edit in %s failed: %s", *self._where, exc)
                self._last_render = self._timer.now()
                if self._text == shown:
                    return
        finally:
            self._flusher = None

    async def _show(self, pieces: list[P], markup: M | None) -> None:
        """Make our messages show ``pieces`` (``markup`` under the last): edit changed ones, send missing
        ones, delete extra ones."""
        async with self._lock:
            for index, piece in enumerate(pieces):
                mark = markup if index == len(pieces) - 1 else None
                if index >= len(self._messages):
                    self._messages.append(
                        await self._surface.send(piece, markup=mark, quote=not self._messages)
                    )
                    self._shown.append(piece)
                    continue
                if self._shown[index] == piece and mark is None:
                    continue
                message = await self._surface.edit(self._messages[index], piece, markup=mark)
                if message is None:  # deleted meanwhile: show the piece anew
                    message = await self._surface.send(piece, markup=mark, quote=False)
                self._messages[index] = message
                self._shown[index] = piece
            while len(self._messages) > len(pieces):
                await self._surface.delete(self._messages.pop())
                self._shown.pop()
