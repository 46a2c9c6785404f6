"""The Discord channel adapter (discord.py): ``build_adapter(app)`` is what ``modelbot run`` starts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.discord.adapter import DiscordAdapter
from adapters.discord.client import DiscordSetupError, Timings

if TYPE_CHECKING:
    from adapters.base import ChannelAdapter
    from bot.app import App

__all__ = ["DiscordAdapter", "DiscordSetupError", "Timings", "build_adapter"]


def build_adapter(app: App, *, timings: Timings | None = None) -> ChannelAdapter:
    """The Discord adapter for ``app``'s pipeline and its ``channels.discord`` settings; starts nothing."""
    return DiscordAdapter(app.chat(), app.loaded.config.channels.discord, timings=timings)
