"""The discord.py client as modelbot runs it: intents, sharding, REST/gateway URLs, timings, start-up errors."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import discord
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.common.jobs import STOP_GRACE_S
from adapters.discord.settings import DiscordChannel
from bot.errors import ModelbotError

PORTAL = "https://discord.com/developers/applications"


class DiscordSetupError(ModelbotError):
    """The Discord channel cannot start: a bad token, a missing intent, an unreachable server."""


@dataclass(frozen=True)
class Timings:
    """How the adapter paces itself; the defaults suit Discord, tests shorten them."""

    stream_interval_s: float = 1.0  # at most one edit of a streaming answer per interval
    defer_after_s: float = 2.0  # a slower command is deferred ("thinking…"); Discord allows 3 s to answer
    guild_ready_timeout_s: float = 2.0  # discord.py waits this long after the last GUILD_CREATE for READY
    start_timeout_s: float = 60.0  # start() gives up when READY has not come by then
    stop_grace_s: float = STOP_GRACE_S  # on stop, answers in progress get this long, then are cancelled
    shard_identify_pause: bool = True  # discord.py's 5 s between shard IDENTIFYs (Discord's rate limit)


def setup_error(exc: BaseException) -> DiscordSetupError | None:
    """The start-up error for a failed connection; both shapes of a refused privileged intent count.

    discord.py raises ``PrivilegedIntentsRequired`` for close code 4014 when it may reconnect, and a
    bare ``ConnectionClosed`` with code 4014 from ``connect(reconnect=False)``.
    """
    closed_4014 = isinstance(exc, discord.ConnectionClosed) and exc.code == 4014
    if isinstance(exc, discord.PrivilegedIntentsRequired) or closed_4014:
        return DiscordSetupError(
            "Discord refused the connection because the Message Content intent is not enabled for this bot. "
            f"Open {PORTAL}, choose the application, go to Bot → Privileged Gateway Intents, "
            "switch on MESSAGE CONTENT INTENT, save, and start modelbot again."
        )
    if isinstance(exc, discord.LoginFailure):
        return DiscordSetupError(
            "Discord rejected the bot token (channels.discord.token). Copy a fresh token from "
            f"{PORTAL} → your application → Bot → Reset Token."
        )
    if isinstance(exc, discord.ConnectionClosed):
        return DiscordSetupError(f"The Discord gateway closed the connection (code {exc.code}).")
    if isinstance(exc, discord.Forbidden):
        return DiscordSetupError(
            "Discord refused to register the slash commands: invite the bot with the applications.commands "
            "scope (and check channels.discord.guildIds)."
        )
    if isinstance(exc, discord.HTTPException | discord.GatewayNotFound | OSError):
        return DiscordSetupError(f"Cannot reach Discord: {exc}")
    return None


class _QuickShardedClient(discord.AutoShardedClient):
    """Skips the pause between the IDENTIFYs of consecutive shards (tests; Discord would rate-limit it)."""

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        return None


def make_client(settings: DiscordChannel, timings: Timings) -> discord.Client:
    """A client with the message-content intent; an AutoShardedClient when ``shardCount`` is set, running
    only ``shardIds`` of them when the shards are split over several processes."""
    intents = discord.Intents.default()
    intents.message_content = True  # privileged: switched on in the developer portal, else start() fails
    options: dict[str, Any] = {
        "intents": intents,
        "allowed_mentions": discord.AllowedMentions.none(),  # answers quote users and models: never ping
        "guild_ready_timeout": timings.guild_ready_timeout_s,
    }
    if settings.shard_count is None:
        return discord.Client(**options)
    sharded = discord.AutoShardedClient if timings.shard_identify_pause else _QuickShardedClient
    if settings.shard_ids is not None:
        options["shard_ids"] = list(settings.shard_ids)
    return sharded(shard_count=settings.shard_count, **options)


class DiscordUrls:
    """Points discord.py at ``apiBaseUrl``/``gatewayUrl`` and back.

    discord.py reads them from class attributes (``Route.BASE``, ``DiscordWebSocket.DEFAULT_GATEWAY``),
    so they are process-wide: one process serves one Discord bot. Interaction callbacks and webhooks
    use ``Route`` too, so a REST proxy sees every call.
    """

    def __init__(self, settings: DiscordChannel) -> None:
        self._rest = settings.api_base_url.rstrip("/")
        self._gateway = yarl.URL(settings.gateway_url)
        self._saved: tuple[str, yarl.URL] | None = None

    def apply(self) -> None:
        if self._saved is None:
            self._saved = (Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)
        Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = self._rest, self._gateway

    def restore(self) -> None:
        if self._saved is not None:
            Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY = self._saved
            self._saved = None
