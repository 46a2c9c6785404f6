"""Reading a Telegram message: is it for us, its text without our @mention, its image, its reply target."""

from __future__ import annotations

import re
from dataclasses import dataclass

from telegram import Message, MessageEntity, User
from telegram.constants import ChatType

# As the core's parser reads a command: '/name' with an optional '@botname', then whitespace or the end.
_COMMAND_RE = re.compile(r"/([A-Za-z][A-Za-z0-9_]{0,31})(?:@([A-Za-z0-9_]{1,64}))?(?=\s|\Z)")
_LEADING_JUNK = " \t\n,:;"
IMAGE_TYPES = {
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"\xff\xd8\xff": "image/jpeg",
    b"GIF87a": "image/gif",
    b"GIF89a": "image/gif",
}
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024  # the Bot API serves files up to 20 MB
_UNSUPPORTED = (
    "voice", "audio", "video", "video_note", "sticker", "animation", "document", "contact", "location",
    "venue", "poll", "dice", "game", "story",
)  # fmt: skip


@dataclass(frozen=True)
class Command:
    """The command a message starts with: ``/name@bot rest``."""

    name: str
    bot: str | None


@dataclass(frozen=True)
class ImageSource:
    """An image to download: the largest photo size, or a document whose MIME type is image/*."""

    file_id: str
    media_type: str
    size: int | None


def in_group(message: Message) -> bool:
    return message.chat.type in (ChatType.GROUP, ChatType.SUPERGROUP)


def topic(message: Message) -> int | None:
    """The forum topic to answer in (plain reply threads in groups are not topics)."""
    return message.message_thread_id if message.is_topic_message else None


def body(message: Message) -> str:
    return message.text or message.caption or ""


def leading_command(message: Message) -> Command | None:
    match = _COMMAND_RE.match(body(message).lstrip())
    return Command(match.group(1).lower(), match.group(2)) if match else None


def for_other_bot(message: Message, username: str) -> bool:
    """``/cmd@otherbot``: Telegram delivers it to every bot in the group; only that one should answer."""
    command = leading_command(message)
    return command is not None and command.bot is not None and command.bot.lower() != username.lower()


def concerns_us(message: Message, bot_id: int, username: str, *, require_mention: bool) -> bool:
    """Whether to handle a message at all: content (not a service message), not for another bot, addressed."""
    if not (body(message) or image_source(message) or has_unsupported_media(message)):
        return False  # someone joined, a title changed…
    if for_other_bot(message, username):
        return False
    return not require_mention or addressed_to_us(message, bot_id, username)


def addressed_to_us(message: Message, bot_id: int, username: str) -> bool:
    """In a group: a command, an @mention of the bot, or a reply to one of its messages."""
    if leading_command(message) is not None:
        return True
    kinds: list[str | None] = [MessageEntity.MENTION, MessageEntity.TEXT_MENTION]
    entities = message.parse_entities(kinds) if message.text else message.parse_caption_entities(kinds)
    for entity, text in entities.items():
        if entity.type == MessageEntity.MENTION and text.lower() == f"@{username.lower()}":
            return True
        if entity.type == MessageEntity.TEXT_MENTION and entity.user is not None and entity.user.id == bot_id:
            return True
    author = replied_to(message)
    return author is not None and author.id == bot_id


def replied_to(message: Message) -> User | None:
    """The author of the message this one answers; a forum topic's own opening message does not count."""
    target = message.reply_to_message
    if target is None or target.forum_topic_created is not None:
        return None
    return target.from_user


def replied_to_member(message: Message) -> int | None:
    """Whom a reply is about, for the core (an admin's /reset): a person, never a bot such as us."""
    author = replied_to(message)
    return author.id if author is not None and not author.is_bot else None


def clean_text(message: Message, username: str) -> str:
    """The text (or caption) without the @mention that addressed the bot: "@bot, hi" is "hi"."""
    mention = re.compile(rf"(?<![\w/@])@{re.escape(username)}(?!\w)", re.IGNORECASE)
    return mention.sub("", body(message)).strip().lstrip(_LEADING_JUNK).strip()


def image_source(message: Message) -> ImageSource | None:
    if message.photo:
        largest = max(message.photo, key=lambda p: (p.width * p.height, p.file_size or 0))
        return ImageSource(largest.file_id, "image/jpeg", largest.file_size)
    document = message.document
    if document is not None and (document.mime_type or "").lower().startswith("image/"):
        return ImageSource(document.file_id, document.mime_type or "image/*", document.file_size)
    return None


def has_unsupported_media(message: Message) -> bool:
    """Voice, stickers, video, other files…: the bot can only read text and images."""
    return image_source(message) is None and any(getattr(message, kind, None) for kind in _UNSUPPORTED)


def sniff_image(data: bytes) -> str | None:
    """PNG, JPEG, GIF or WebP by their magic bytes (what every model API accepts); None otherwise."""
    for magic, media_type in IMAGE_TYPES.items():
        if data.startswith(magic):
            return media_type
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None
