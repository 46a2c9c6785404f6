"""The Telegram channel adapter (python-telegram-bot): ``build_adapter(app)`` is what ``modelbot run`` starts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.telegram.adapter import TelegramAdapter
from adapters.telegram.client import TelegramSetupError, Timings

if TYPE_CHECKING:
    from adapters.base import ChannelAdapter
    from bot.app import App

__all__ = ["TelegramAdapter", "TelegramSetupError", "Timings", "build_adapter"]


def build_adapter(app: App, *, timings: Timings | None = None) -> ChannelAdapter:
    """The Telegram adapter for ``app``'s pipeline and its ``channels.telegram`` settings; starts nothing."""
    return TelegramAdapter(app.chat(), app.loaded.config.channels.telegram, timings=timings)
