"""The channels this modelbot ships, in the order ``modelbot run`` starts them: add a plug-in's line here."""

from __future__ import annotations

from adapters.discord.plugin import PLUGIN as DISCORD
from adapters.telegram.plugin import PLUGIN as TELEGRAM
from bot.channels import ChannelRegistry

BUILTIN_CHANNELS = ChannelRegistry((TELEGRAM, DISCORD))
