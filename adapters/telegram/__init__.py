"""The Telegram channel (python-telegram-bot): ``adapters.telegram.plugin.PLUGIN`` is what ``modelbot run`` starts."""
