"""Who is talking and where: the one value a message's session key, scope and agent are read from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bot.chat import Incoming
from bot.config.schema import Config
from bot.models.agents import agent_for
from bot.store.types import console_session_key, session_key

# "user": one session per member of a group chat (session.scope "user"); "chat": one per chat (and thread).
SessionScope = Literal["chat", "user"]


@dataclass(frozen=True)
class TurnContext:
    """A message's place: its session (key and scope), the agent that answers, the chat, sender and thread."""

    key: str
    scope: SessionScope
    agent_id: str
    platform: str
    chat_id: str  # as the session stores it: the console's is its session name
    user_id: str  # who sent the message
    owner: str | None  # whose session it is: the member, or the other side of a direct chat; None when shared
    thread_id: str | None

    def member_key(self, user_id: str) -> str:
        """The key of ``user_id``'s session here: their own with per-member sessions, else this chat's."""
        return _key(self.platform, self.chat_id, self.thread_id, user_id if self.scope == "user" else None)


def turn_context(msg: Incoming, config: Config) -> TurnContext:
    """Where ``msg`` belongs under ``config`` (its ``session.scope`` and ``bindings``)."""
    console = msg.platform == "console"
    per_member = msg.is_group and not console and config.session.scope == "user"
    scope: SessionScope = "user" if per_member else "chat"
    chat_id = (msg.session_name or msg.chat_id) if console else msg.chat_id
    agent = msg.agent_id or agent_for(
        config, channel=msg.platform, chat_id=msg.chat_id, guild_id=msg.guild_id
    )
    return TurnContext(
        key=_key(msg.platform, chat_id, msg.thread_id, msg.user_id if per_member else None),
        scope=scope,
        agent_id=agent,
        platform=msg.platform,
        chat_id=chat_id,
        user_id=msg.user_id,
        owner=None if msg.is_group and not per_member else msg.user_id,
        thread_id=msg.thread_id,
    )


def _key(platform: str, chat_id: str, thread_id: str | None, member: str | None) -> str:
    """The one rule for session keys: platform, chat (+ thread) (+ member); the console's is its name."""
    if platform == "console":
        return console_session_key(chat_id)
    return session_key(platform, chat_id, user_id=member, thread_id=thread_id)
