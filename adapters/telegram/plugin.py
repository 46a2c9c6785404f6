"""The Telegram channel plug-in: ``channels.telegram``, its secrets, and its adapter, imported when built."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.telegram.settings import TelegramChannel
from bot.channels import ChannelAdapter, ChannelPlugin, SecretField

if TYPE_CHECKING:
    from bot.conversation.pipeline import ChatPipeline


def build(settings: TelegramChannel, chat: ChatPipeline) -> ChannelAdapter:
    """The Telegram adapter for the pipeline; python-telegram-bot is imported only now (when enabled)."""
    from adapters.telegram.adapter import TelegramAdapter  # noqa: PLC0415

    return TelegramAdapter(chat, settings)


PLUGIN = ChannelPlugin(
    name="telegram",
    settings=TelegramChannel,
    build=build,
    secrets=(
        SecretField(("botToken",), "TELEGRAM_BOT_TOKEN"),
        SecretField(("webhook", "secretToken"), "TELEGRAM_WEBHOOK_SECRET"),
    ),
)
