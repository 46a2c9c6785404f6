"""Discord messages and interactions translated into the core's ``Incoming``, through the adapter's access gate."""

from __future__ import annotations

import re
from dataclasses import dataclass

import discord

from adapters.discord.access import AccessPolicy, Speaker
from bot.chat import ImagePart, Incoming
from bot.conversation.commands import echo

# Media types the providers accept as image input; other image formats (SVG, HEIC, …) are refused politely.
IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
MAX_IMAGE_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True)
class Place:
    """Where a message was posted: the session's chat and thread, and the ids ``channel:`` rules match."""

    chat_id: str
    thread_id: str | None
    guild_id: str | None
    channel_ids: frozenset[int]


def place_of(channel_id: int, channel: object, guild_id: int | None) -> Place:
    """A thread is its own session inside its parent channel; anything else is the channel itself."""
    if isinstance(channel, discord.Thread) and channel.parent_id is not None:
        return Place(
            chat_id=str(channel.parent_id),
            thread_id=str(channel.id),
            guild_id=str(guild_id) if guild_id is not None else None,
            channel_ids=frozenset({channel.id, channel.parent_id}),
        )
    return Place(
        chat_id=str(channel_id),
        thread_id=None,
        guild_id=str(guild_id) if guild_id is not None else None,
        channel_ids=frozenset({channel_id}),
    )


def strip_mention(text: str, bot_id: int, role_id: int | None = None) -> str:
    """The message without the mentions of this bot (as a user, or as its own managed role)."""
    role = rf"|<@&{role_id}>" if role_id is not None else ""
    return re.sub(rf"<@!?{bot_id}>{role}", " ", text).strip()


def message_speaker(message: discord.Message, place: Place) -> Speaker:
    """Roles and Manage Server come from the member; in DMs there are none."""
    author = message.author
    if isinstance(author, discord.Member):
        return Speaker(
            user_id=author.id,
            role_ids=frozenset(role.id for role in author.roles),
            channel_ids=place.channel_ids,
            manages_guild=author.guild_permissions.manage_guild,
        )
    return Speaker(user_id=author.id, channel_ids=place.channel_ids)


def interaction_speaker(interaction: discord.Interaction, place: Place) -> Speaker:
    """``interaction.permissions`` is what Discord resolved for the member (Manage Server is guild-wide)."""
    user = interaction.user
    roles = frozenset(role.id for role in user.roles) if isinstance(user, discord.Member) else frozenset()
    return Speaker(
        user_id=user.id,
        role_ids=roles,
        channel_ids=place.channel_ids,
        manages_guild=interaction.guild_id is not None and interaction.permissions.manage_guild,
    )


def message_place(message: discord.Message) -> Place:
    return place_of(message.channel.id, message.channel, message.guild.id if message.guild else None)


def interaction_place(interaction: discord.Interaction) -> Place:
    channel_id = interaction.channel_id if interaction.channel_id is not None else interaction.user.id
    return place_of(channel_id, interaction.channel, interaction.guild_id)


def from_message(
    message: discord.Message,
    place: Place,
    *,
    text: str,
    images: tuple[ImagePart, ...],
    is_admin: bool,
    bot_name: str | None,
) -> Incoming:
    reference = message.reference.resolved if message.reference is not None else None
    return Incoming(
        platform="discord",
        chat_id=place.chat_id,
        thread_id=place.thread_id,
        guild_id=place.guild_id,
        user_id=str(message.author.id),
        user_name=message.author.name,
        text=text,
        is_group=message.guild is not None,
        is_admin=is_admin,
        images=images,
        bot_username=bot_name,
        reply_to_user_id=str(reference.author.id) if isinstance(reference, discord.Message) else None,
    )


def from_interaction(
    interaction: discord.Interaction, place: Place, *, text: str, is_admin: bool
) -> Incoming:
    return Incoming(
        platform="discord",
        chat_id=place.chat_id,
        thread_id=place.thread_id,
        guild_id=place.guild_id,
        user_id=str(interaction.user.id),
        user_name=interaction.user.name,
        text=text,
        is_group=interaction.guild_id is not None,
        is_admin=is_admin,
    )


@dataclass(frozen=True)
class Admitted:
    """Someone the gate let in: where they wrote, and whether they are an admin there."""

    place: Place
    is_admin: bool


class Gate:
    """The Discord adapter's one access check: every message, slash command, component and autocomplete
    passes here before the core sees it (``allowFrom``, ``admins``, Manage Server)."""

    def __init__(self, policy: AccessPolicy) -> None:
        self._policy = policy

    def admit(self, source: discord.Message | discord.Interaction) -> Admitted | None:
        """Where and as whom ``source`` speaks; None when its author may not use the bot there."""
        if isinstance(source, discord.Interaction):
            place = interaction_place(source)
            speaker = interaction_speaker(source, place)
        else:
            place = message_place(source)
            speaker = message_speaker(source, place)
        if not self._policy.allows(speaker):
            return None
        return Admitted(place, self._policy.is_admin(speaker))

    def interaction(self, interaction: discord.Interaction, text: str) -> Incoming | None:
        """The core's message for an interaction (``text``: the command it stands for), if admitted."""
        admitted = self.admit(interaction)
        if admitted is None:
            return None
        return from_interaction(interaction, admitted.place, text=text, is_admin=admitted.is_admin)


def media_type(attachment: discord.Attachment) -> str:
    """The attachment's content type without parameters, lower-case ("" when Discord did not say)."""
    return (attachment.content_type or "").split(";", 1)[0].strip().lower()


async def read_images(
    attachments: list[discord.Attachment], *, max_bytes: int = MAX_IMAGE_BYTES
) -> tuple[tuple[ImagePart, ...], list[str]]:
    """Download the image attachments; return them and the names of the attachments that were skipped."""
    images: list[ImagePart] = []
    skipped: list[str] = []
    for attachment in attachments:
        kind = media_type(attachment)
        if kind not in IMAGE_TYPES or attachment.size > max_bytes:
            skipped.append(attachment.filename)
            continue
        images.append(ImagePart(media_type=kind, data=await attachment.read()))
    return tuple(images), skipped


def skipped_note(names: list[str]) -> str:
    """The short reply for attachments the bot cannot read."""
    listed = ", ".join(echo(name) for name in names[:3]) + (
        f" and {len(names) - 3} more" if len(names) > 3 else ""
    )
    return (
        f"Sorry, I can't read {listed}: only PNG, JPEG, GIF and WebP images "
        f"(up to {MAX_IMAGE_BYTES // (1024 * 1024)} MB) are supported."
    )
