"""``channels.discord``: the Discord channel's settings (no discord.py here: loading a config is cheap)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, model_validator

from bot.channels import ChannelSettings
from bot.config.schema import Ids


class DiscordChannel(ChannelSettings):
    token: str | None = None
    api_base_url: str = "https://discord.com/api/v10"
    gateway_url: str = "wss://gateway.discord.gg"
    allow_from: Ids | None = None  # None: everyone; user ids, role:<id>, channel:<id>
    admins: Ids = ()
    guild_ids: Ids = ()  # sync slash commands per guild so they appear at once
    require_mention: bool = True
    shard_count: Annotated[int, Field(gt=0)] | None = None
    # The shards this process runs, when the shardCount shards are split over processes (or hosts).
    shard_ids: tuple[Annotated[int, Field(ge=0)], ...] | None = None

    @model_validator(mode="after")
    def _token_when_enabled(self) -> DiscordChannel:
        if self.enabled and not self.token:
            raise ValueError("token is required when the Discord channel is enabled")
        return self

    @model_validator(mode="after")
    def _shards_of_the_count(self) -> DiscordChannel:
        if self.shard_ids is None:
            return self
        if self.shard_count is None:
            raise ValueError("shardIds needs shardCount (the number of shards of the whole bot)")
        if not self.shard_ids or len(set(self.shard_ids)) != len(self.shard_ids):
            raise ValueError("expected shardIds as a non-empty list of distinct shard numbers")
        if max(self.shard_ids) >= self.shard_count:
            raise ValueError(f"expected shardIds between 0 and {self.shard_count - 1} (shardCount - 1)")
        return self
