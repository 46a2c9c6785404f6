"""The Discord channel (discord.py): ``adapters.discord.plugin.PLUGIN`` is what ``modelbot run`` starts."""
