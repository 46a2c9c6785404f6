"""The Discord channel plug-in: ``channels.discord``, its secret, and its adapter, imported when built."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.discord.settings import DiscordChannel
from bot.channels import ChannelAdapter, ChannelPlugin, SecretField

if TYPE_CHECKING:
    from bot.conversation.pipeline import ChatPipeline


def build(settings: DiscordChannel, chat: ChatPipeline) -> ChannelAdapter:
    """The Discord adapter for the pipeline; discord.py is imported only now (when enabled)."""
    from adapters.discord.adapter import DiscordAdapter  # noqa: PLC0415

    return DiscordAdapter(chat, settings)


PLUGIN = ChannelPlugin(
    name="discord",
    settings=DiscordChannel,
    build=build,
    secrets=(SecretField(("token",), "DISCORD_BOT_TOKEN"),),
)
