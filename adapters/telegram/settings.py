"""``channels.telegram``: the Telegram channel's settings (no python-telegram-bot here: loading a config is cheap)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator, model_validator

from bot.channels import ChannelSettings
from bot.config.schema import ConfigSection


class TelegramWebhook(ConfigSection):
    url: str
    listen: str = "127.0.0.1"
    port: Annotated[int, Field(gt=0, lt=65536)] = 8443
    secret_token: str | None = None


class TelegramChannel(ChannelSettings):
    bot_token: str | None = None
    api_base_url: str = "https://api.telegram.org"
    allow_from: tuple[str, ...] | None = None  # None: everyone; ids or @usernames
    admins: tuple[str, ...] = ()
    require_mention: bool = True
    silent_refusal_in_groups: bool = False
    webhook: TelegramWebhook | None = None

    @field_validator("allow_from", "admins", mode="before")
    @classmethod
    def _ids_as_strings(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return [str(item) for item in value]
        return value

    @model_validator(mode="after")
    def _token_when_enabled(self) -> TelegramChannel:
        if self.enabled and not self.bot_token:
            raise ValueError("botToken is required when the Telegram channel is enabled")
        return self
