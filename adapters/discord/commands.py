"""The native slash commands; each one becomes the text command the core already parses and decides on."""

from __future__ import annotations

from typing import Protocol

import discord
from discord import app_commands

from adapters.discord.render import LABEL_LIMIT
from bot.conversation.help import COMMAND_DESCRIPTIONS

_DESCRIPTIONS = dict(COMMAND_DESCRIPTIONS)
_MAX_PICK = 999_999


class CommandRunner(Protocol):
    """What the slash commands need from the adapter."""

    async def run_command(self, interaction: discord.Interaction, text: str, *, private: bool) -> None:
        """Hand ``text`` (a text command) to the core and answer the interaction with its replies.

        ``private``: the reply is only for the asking user (used when the answer has to be deferred).
        """
        ...

    def model_choices(self, interaction: discord.Interaction, typed: str) -> list[str]:
        """Allowed models matching what was typed, best first (at most 25)."""
        ...


AppCommand = app_commands.Command[app_commands.Group, ..., None] | app_commands.Group


def build_commands(runner: CommandRunner) -> list[AppCommand]:
    """``/model`` (show, list, status, set, pick, default), ``/new``, ``/reset``, ``/status``, ``/help``, …"""

    async def complete_model(
        interaction: discord.Interaction, current: str
    ) -> list[app_commands.Choice[str]]:
        refs = runner.model_choices(interaction, current)
        return [app_commands.Choice(name=ref, value=ref) for ref in refs if len(ref) <= LABEL_LIMIT][:25]

    model = app_commands.Group(name="model", description=_DESCRIPTIONS["model"])

    @model.command(name="show", description="The current model and the model picker")
    async def model_show(interaction: discord.Interaction) -> None:
        await runner.run_command(interaction, "/model", private=True)

    @model.command(name="list", description="List the available models, one page at a time")
    @app_commands.describe(page="Page number (from 1)")
    async def model_list(
        interaction: discord.Interaction, page: app_commands.Range[int, 1, _MAX_PICK] = 1
    ) -> None:
        await runner.run_command(interaction, f"/model list {page}", private=True)

    @model.command(name="status", description="Models, fallbacks and credentials with their cooldowns")
    async def model_status(interaction: discord.Interaction) -> None:
        await runner.run_command(interaction, "/model status", private=True)

    @model.command(name="set", description="Switch this conversation to a model")
    @app_commands.describe(model="provider/model or an alias (admins: provider/model@profile)")
    @app_commands.autocomplete(model=complete_model)
    async def model_set(interaction: discord.Interaction, model: str) -> None:
        await runner.run_command(interaction, f"/model {model}", private=False)

    @model.command(name="pick", description="Switch to a model by its number in the picker")
    @app_commands.describe(number="The number shown by /model show or /model list")
    async def model_pick(
        interaction: discord.Interaction, number: app_commands.Range[int, 1, _MAX_PICK]
    ) -> None:
        await runner.run_command(interaction, f"/model {number}", private=False)

    @model.command(name="default", description="Go back to the default model")
    async def model_default(interaction: discord.Interaction) -> None:
        await runner.run_command(interaction, "/model default", private=False)

    @app_commands.command(name="new", description=_DESCRIPTIONS["new"])
    @app_commands.describe(model="Start with this model (provider/model or an alias)")
    @app_commands.autocomplete(model=complete_model)
    async def new(interaction: discord.Interaction, model: str | None = None) -> None:
        await runner.run_command(interaction, _join("/new", model), private=False)

    @app_commands.command(name="reset", description=_DESCRIPTIONS["reset"])
    @app_commands.describe(
        model="Switch to this model too", member="Admins: reset this member's conversation"
    )
    @app_commands.autocomplete(model=complete_model)
    async def reset(
        interaction: discord.Interaction, model: str | None = None, member: discord.User | None = None
    ) -> None:
        target = f"user:{member.id}" if member is not None else None
        await runner.run_command(interaction, _join("/reset", target, model), private=False)

    @app_commands.command(name="status", description=_DESCRIPTIONS["status"])
    async def status(interaction: discord.Interaction) -> None:
        await runner.run_command(interaction, "/status", private=True)

    @app_commands.command(name="help", description=_DESCRIPTIONS["help"])
    @app_commands.describe(command="Explain one command")
    @app_commands.choices(command=[app_commands.Choice(name=n, value=n) for n, _ in COMMAND_DESCRIPTIONS])
    async def help_(
        interaction: discord.Interaction, command: app_commands.Choice[str] | None = None
    ) -> None:
        await runner.run_command(
            interaction, _join("/help", command.value if command else None), private=True
        )

    @app_commands.command(name="retry", description=_DESCRIPTIONS["retry"])
    async def retry(interaction: discord.Interaction) -> None:
        await runner.run_command(interaction, "/retry", private=False)

    @app_commands.command(name="stop", description=_DESCRIPTIONS["stop"])
    async def stop(interaction: discord.Interaction) -> None:
        await runner.run_command(interaction, "/stop", private=False)

    return [model, new, reset, status, help_, retry, stop]


def _join(*parts: str | None) -> str:
    return " ".join(part for part in parts if part)


def register(
    tree: app_commands.CommandTree[discord.Client], runner: CommandRunner, guild_ids: list[int]
) -> None:
    """Add the commands to the tree: per guild when guilds are configured (they appear at once), else global."""
    guilds = [discord.Object(guild_id) for guild_id in guild_ids]
    for command in build_commands(runner):
        if guilds:
            tree.add_command(command, guilds=guilds)
        else:
            tree.add_command(command)


async def sync(tree: app_commands.CommandTree[discord.Client], guild_ids: list[int]) -> None:
    """Publish the commands to Discord, per guild or globally."""
    if not guild_ids:
        await tree.sync()
        return
    for guild_id in guild_ids:
        await tree.sync(guild=discord.Object(guild_id))
