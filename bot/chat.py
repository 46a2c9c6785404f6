"""What adapters hand to the core and get back: incoming messages, replies and streaming hooks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from bot.providers.base import ImagePart

if TYPE_CHECKING:  # a picker is made by the first /model command, not by chat (modelbot chat's start-up)
    from bot.models.picker import PickerEntry

# ImagePart is part of this seam: adapters build Incoming.images without importing bot.providers.
__all__ = [
    "UNDELIVERED",
    "ImagePart",
    "Incoming",
    "NullSink",
    "PickerView",
    "Platform",
    "Reply",
    "ReplyKind",
    "ReplySink",
]

# The one line a user gets when the chat platform broke off the delivery of an answer.
UNDELIVERED = "⚠ This answer could not be shown completely. Send /retry to get it again."

Platform = str  # the channel plug-in's name (bot.channels), or "console" for the terminal
ReplyKind = Literal["answer", "command", "error", "interrupted"]


@dataclass(frozen=True)
class Incoming:
    """One message from a chat, already translated from the platform's payload."""

    platform: Platform
    chat_id: str
    user_id: str
    text: str
    user_name: str | None = None
    thread_id: str | None = None
    guild_id: str | None = None  # Discord server, for bindings
    is_group: bool = False
    is_admin: bool = False
    images: tuple[ImagePart, ...] = ()
    bot_username: str | None = None  # for /cmd@botname
    reply_to_user_id: str | None = None  # the author of the message this one replies to (admin /reset)
    session_name: str | None = None  # the console's --session NAME: the whole session key part
    agent_id: str | None = None  # the console's --agent ID; otherwise bindings decide


@dataclass(frozen=True)
class PickerView:
    """A page of the model picker, for platforms that show it as buttons."""

    entries: tuple[PickerEntry, ...]
    page: int
    total_pages: int
    current_number: int | None
    tokens: tuple[str, ...]  # one short callback token per entry, never a raw model id


@dataclass(frozen=True)
class Reply:
    """One message for the user. ``model``/``profile`` say who answered (None for command replies)."""

    text: str
    kind: ReplyKind = "command"
    model: str | None = None
    profile: str | None = None
    note: str | None = None  # the quiet fallback line, shown under the answer
    picker: PickerView | None = None
    ephemeral: bool = False  # status and pickers: only the asking user needs to see them

    @property
    def full_text(self) -> str:
        return f"{self.text}\n\n{self.note}" if self.note else self.text


class ReplySink(Protocol):
    """Hooks an adapter gives the pipeline for one message: typing, a status line, streaming, and showing
    the replies.

    ``delta`` and ``deliver`` raise ``bot.errors.DeliveryFailed`` when the platform broke off the delivery;
    the sink has then logged it once and, if anything can still be sent, told the user in one line.
    A turn is over (and counted) only once its replies were delivered.
    """

    async def typing(self) -> None:
        """The answer is being prepared (a typing indicator)."""
        ...

    async def status(self, text: str | None) -> None:
        """Show one short status line where the answer will appear (``waiting 12s for a rate limit…``);
        None takes it away. The answer's first text, or the final reply, replaces it in any case."""
        ...

    async def delta(self, text: str) -> None:
        """A piece of the answer arrived; adapters accumulate and render it as they like."""
        ...

    async def deliver(self, replies: Sequence[Reply]) -> None:
        """Show the message's replies (the first one over what was streamed)."""
        ...


class NullSink:
    """A sink that ignores everything (callers that render the returned replies themselves)."""

    async def typing(self) -> None:
        return None

    async def status(self, text: str | None) -> None:
        return None

    async def delta(self, text: str) -> None:
        return None

    async def deliver(self, replies: Sequence[Reply]) -> None:
        return None
