"""The lifecycle every platform adapter offers to ``modelbot run`` (and to the tests, which use the same calls)."""

from __future__ import annotations

from typing import Protocol


class ChannelAdapter(Protocol):
    """A running connection to one platform; ``start`` returns once it is receiving messages."""

    name: str

    async def start(self) -> None:
        """Connect, register commands, begin receiving; raise ``bot.errors.ModelbotError`` on a setup problem."""
        ...

    async def stop(self) -> None:
        """Stop receiving, let in-flight turns finish or cancel them cleanly, disconnect. Idempotent."""
        ...
