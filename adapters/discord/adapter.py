"""The Discord channel: lifecycle, and routing of messages, slash commands and components to the core."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

import discord
from discord import app_commands

from adapters.common.jobs import Jobs
from adapters.discord import commands, incoming
from adapters.discord.access import REFUSAL, AccessPolicy
from adapters.discord.client import DiscordSetupError, DiscordUrls, Timings, make_client, setup_error
from adapters.discord.render import chunks, parse_custom_id, picker_view, reply_text
from adapters.discord.settings import DiscordChannel
from adapters.discord.stream import InteractionReplies, channel_stream, reply_to
from bot.conversation.commands import Stop, parse_command
from bot.conversation.pipeline import ChatPipeline
from bot.errors import CommandError

log = logging.getLogger("modelbot.discord")

SHUTTING_DOWN = "The bot is restarting; try again in a moment."


class DiscordAdapter:
    """Connects to Discord and translates between it and the chat pipeline; decides nothing itself.

    ``apiBaseUrl``/``gatewayUrl`` are set on discord.py's class attributes while the adapter runs
    (process-wide: see ``DiscordUrls``).
    """

    name = "discord"

    def __init__(
        self, pipeline: ChatPipeline, settings: DiscordChannel, *, timings: Timings | None = None
    ) -> None:
        if not settings.token:
            raise DiscordSetupError("channels.discord.token is not set.")
        try:
            self._guild_ids = [int(g) for g in settings.guild_ids]
        except ValueError:
            raise DiscordSetupError("channels.discord.guildIds: expected numeric guild ids.") from None
        self._pipeline = pipeline
        self._settings = settings
        self._token = settings.token
        self._timings = timings if timings is not None else Timings()
        self._gate = incoming.Gate(AccessPolicy.from_config(settings.allow_from, settings.admins))
        self._urls = DiscordUrls(settings)
        self._client: discord.Client | None = None
        self._tree: app_commands.CommandTree[discord.Client] | None = None
        self._connection: asyncio.Task[None] | None = None
        self._jobs = Jobs("discord")
        self._stopping = False

    # -- lifecycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Log in, connect, wait for READY, sync the slash commands; ``DiscordSetupError`` on problems."""
        if self._client is not None:
            return
        self._stopping = False
        self._urls.apply()
        client = self._client = make_client(self._settings, self._timings)
        self._tree = app_commands.CommandTree(client)
        commands.register(self._tree, self, self._guild_ids)
        client.event(self.on_message)
        client.event(self.on_interaction)
        try:
            await client.login(self._token)
            self._connection = connection = asyncio.create_task(client.connect(reconnect=True))
            await self._wait_ready(client, connection)
            await self._sync_commands(self._tree)
        except BaseException as exc:
            await self._shutdown()
            error = setup_error(exc)
            if error is not None:
                raise error from exc
            raise
        connection.add_done_callback(self._connection_ended)
        log.info("discord: connected as %s", client.user)

    async def _wait_ready(self, client: discord.Client, connection: asyncio.Task[None]) -> None:
        """Until READY; the connection's own error (a refused intent, a bad shard) if it ends first."""
        ready = asyncio.create_task(client.wait_until_ready())
        timeout = self._timings.start_timeout_s
        try:
            await asyncio.wait({connection, ready}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if connection.done():
            raise connection.exception() or DiscordSetupError("The Discord gateway closed during start-up.")
        if not client.is_ready():
            raise DiscordSetupError(
                f"Discord did not become ready within {timeout:g} s "
                f"(apiBaseUrl {self._settings.api_base_url}, gatewayUrl {self._settings.gateway_url})."
            )

    async def _sync_commands(self, tree: app_commands.CommandTree[discord.Client]) -> None:
        """Publish the slash commands. A missing scope stops the start; any other failure is a warning,
        since the bot logged in and can answer mentions and DMs (the commands Discord knows stay)."""
        try:
            await commands.sync(tree, self._guild_ids)
        except discord.Forbidden:
            raise
        except discord.HTTPException as exc:
            log.warning("discord: could not publish the slash commands: %s; the bot runs without them", exc)

    def _connection_ended(self, connection: asyncio.Task[None]) -> None:
        # discord.py reconnects by itself; the connection only ends on stop or on an error it cannot fix.
        if self._stopping or connection.cancelled():
            return
        error = connection.exception()
        log.error("discord: the gateway connection ended and will not come back: %s", error or "closed")

    async def stop(self) -> None:
        """Stop taking new messages, let handlers finish (cancel them after a grace period), disconnect."""
        if self._client is None:
            return
        self._stopping = True
        await self._jobs.drain(self._timings.stop_grace_s)
        await self._shutdown()

    async def wait_idle(self) -> None:
        """Until no message, command or button is being handled (``stop`` waits for the same jobs)."""
        await self._jobs.wait_idle()

    async def _shutdown(self) -> None:
        client, connection = self._client, self._connection
        self._client = self._connection = None
        if client is not None:
            await client.close()
        if connection is not None:
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await connection
        self._urls.restore()

    # -- messages ---------------------------------------------------------------------------------------

    async def on_message(self, message: discord.Message) -> None:
        """DMs always; guild channels and threads when the bot is mentioned or replied to."""
        me = self._client.user if self._client is not None and not self._stopping else None
        if me is None or message.author.bot or message.author.id == me.id:
            return  # not running, or a bot (this one included: its own posts come back as MESSAGE_CREATE)
        if message.type not in (discord.MessageType.default, discord.MessageType.reply):
            return  # joins, pins, thread notices, …
        if message.guild is not None and self._settings.require_mention and not _addressed(message, me.id):
            return
        role = message.guild.self_role if message.guild is not None else None
        text = incoming.strip_mention(message.content, me.id, role.id if role is not None else None)
        job = self._handle_message(message, me, text)
        if _stops(text, me.name):
            self._jobs.spawn(job)  # must not wait behind the turn it stops
        else:
            self._jobs.submit(message.channel.id, job)  # a thread is a channel: its own lane

    async def _handle_message(self, message: discord.Message, me: discord.ClientUser, text: str) -> None:
        try:
            admitted = self._gate.admit(message)
            if admitted is None:
                await reply_to(message, REFUSAL)
                return
            images, skipped = await incoming.read_images(message.attachments)
            if skipped:
                await reply_to(message, incoming.skipped_note(skipped))
            if skipped and not text and not images:
                return
            msg = incoming.from_message(
                message,
                admitted.place,
                text=text,
                images=images,
                is_admin=admitted.is_admin,
                bot_name=me.name,
            )
            stream = channel_stream(message, interval_s=self._timings.stream_interval_s)
            try:
                await self._pipeline.handle(msg, stream)  # delivers through the stream
            finally:
                await stream.close()
        except discord.HTTPException as exc:
            log.warning("discord: could not answer in channel %s: %s", message.channel.id, exc)

    # -- slash commands (called by adapters.discord.commands) ------------------------------------------------

    async def run_command(self, interaction: discord.Interaction, text: str, *, private: bool) -> None:
        if self._stopping:
            await interaction.response.send_message(SHUTTING_DOWN, ephemeral=True)
            return
        with self._jobs.track():  # runs in discord.py's task: counted for a graceful stop
            await self._answer(interaction, text, private=private)

    def model_choices(self, interaction: discord.Interaction, typed: str) -> list[str]:
        msg = self._gate.interaction(interaction, "")
        return [] if msg is None else self._pipeline.model_choices(msg, typed, limit=25)

    async def _answer(self, interaction: discord.Interaction, text: str, *, private: bool) -> None:
        """Run a text command for an interaction; defer when the core takes longer than ``defer_after_s``."""
        msg = self._gate.interaction(interaction, text)
        if msg is None:
            await interaction.response.send_message(REFUSAL, ephemeral=True)
            return
        sink = InteractionReplies(interaction)
        work = asyncio.create_task(self._pipeline.handle(msg, sink))  # delivers through the sink
        try:
            done, _ = await asyncio.wait({work}, timeout=self._timings.defer_after_s)
            if not done:
                await sink.defer(ephemeral=private)
            await work
        finally:
            work.cancel()

    # -- components (picker menus and buttons) ----------------------------------------------------------

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Components drawn by this adapter: picker selections, page buttons, Retry."""
        if self._stopping or interaction.type is not discord.InteractionType.component:
            return
        data: Mapping[str, object] = interaction.data or {}
        action = parse_custom_id(str(data.get("custom_id", "")))
        values = data.get("values")
        value = str(values[0]) if isinstance(values, list) and values else ""
        if action is not None:
            self._jobs.spawn(self._component(interaction, action.kind, action.page, value))

    async def _component(self, interaction: discord.Interaction, kind: str, page: int, value: str) -> None:
        try:
            if kind == "retry":
                await self._answer(interaction, "/retry", private=False)
                return
            msg = self._gate.interaction(interaction, "" if kind == "pick" else f"/model list {page}")
            if msg is None:
                await interaction.response.send_message(REFUSAL, ephemeral=True)
                return
            if kind == "pick":
                reply = await self._pipeline.choose(msg, value)
                await interaction.response.edit_message(content=chunks(reply_text(reply))[0], view=None)
                return
            [reply, *_] = await self._pipeline.handle(msg)
            if reply.picker is None:  # the core refused the page: say so, keep the menu as it is
                await interaction.response.send_message(chunks(reply_text(reply))[0], ephemeral=True)
                return
            view = picker_view(reply.picker)
            await interaction.response.edit_message(content=chunks(reply_text(reply))[0], view=view)
        except discord.HTTPException as exc:
            log.warning("discord: could not answer a component interaction: %s", exc)


def _stops(text: str, bot_name: str) -> bool:
    """``/stop``: run at once, not queued behind the turn it stops (a malformed command waits its turn)."""
    try:
        return isinstance(parse_command(text, bot_username=bot_name), Stop)
    except CommandError:
        return False


def _addressed(message: discord.Message, bot_id: int) -> bool:
    """Mentioned (by user or by the bot's own role), or a reply to one of the bot's messages."""
    if any(user.id == bot_id for user in message.mentions):
        return True
    role = message.guild.self_role if message.guild is not None else None
    if role is not None and role in message.role_mentions:
        return True
    reference = message.reference.resolved if message.reference is not None else None
    return isinstance(reference, discord.Message) and reference.author.id == bot_id
