"""``channels.telegram``: the Telegram channel's settings (no python-telegram-bot here: loading a config is cheap)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from bot.channels import ChannelSettings
from bot.config.schema import ConfigSection, Ids


class TelegramWebhook(ConfigSection):
    url: str
    listen: str = "127.0.0.1"
    port: Annotated[int, Field(gt=0, lt=65536)] = 8443
    secret_token: str | None = None


class TelegramChannel(ChannelSettings):
    bot_token: str | None = None
    api_base_url: str = "https://api.telegram.org"
    allow_from: Ids | None = None  # None: everyone; ids or @usernames
    admins: Ids = ()
    require_mention: bool = True
    silent_refusal_in_groups: bool = False
    webhook: TelegramWebhook | None = None

    @model_validator(mode="after")
    def _token_when_enabled(self) -> TelegramChannel:
        if self.enabled and not self.bot_token:
            raise ValueError("botToken is required when the Telegram channel is enabled")
        return self
