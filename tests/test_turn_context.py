"""Where a message belongs (bot/conversation/context.py): a table of messages, scopes and bindings."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from bot.chat import Incoming
from bot.config.schema import Config
from bot.conversation.context import TurnContext, turn_context


def _config(scope: str = "chat", **raw: Any) -> Config:
    return Config.model_validate({"session": {"scope": scope}, **raw})


def _msg(platform: str = "telegram", **kw: Any) -> Incoming:
    fields: dict[str, Any] = {"chat_id": "c1", "user_id": "u1", "text": "hi", **kw}
    return Incoming(platform=platform, **fields)


@dataclass(frozen=True)
class Place:
    """A message under a ``session.scope``, and where it must land."""

    name: str
    scope: str
    msg: Incoming
    key: str
    session_scope: str
    owner: str | None  # as the store keeps it: None for a group's shared session
    chat_id: str


PLACES = [
    Place("direct chat", "chat", _msg(), "telegram:chat:c1", "chat", "u1", "c1"),
    Place("direct chat, per-user scope", "user", _msg(), "telegram:chat:c1", "chat", "u1", "c1"),
    Place("group, shared", "chat", _msg(is_group=True), "telegram:chat:c1", "chat", None, "c1"),
    Place("group, per member", "user", _msg(is_group=True), "telegram:chat:c1:user:u1", "user", "u1", "c1"),
    Place(
        "thread of a group, per member",
        "user",
        _msg("discord", is_group=True, thread_id="t9"),
        "discord:chat:c1:thread:t9:user:u1",
        "user",
        "u1",
        "c1",
    ),
    Place(
        "thread, shared",
        "chat",
        _msg("discord", is_group=True, thread_id="t9"),
        "discord:chat:c1:thread:t9",
        "chat",
        None,
        "c1",
    ),
    Place(
        "console: its session name",
        "user",
        _msg("console", chat_id="notes", session_name="notes"),
        "console:notes",
        "chat",
        "u1",
        "notes",
    ),
    Place(
        "console: never per member",
        "user",
        _msg("console", chat_id="x", session_name="x", is_group=True),
        "console:x",
        "chat",
        None,
        "x",
    ),
    Place(
        "console without a name: its chat",
        "chat",
        _msg("console", chat_id="main"),
        "console:main",
        "chat",
        "u1",
        "main",
    ),
]


@pytest.mark.parametrize("place", PLACES, ids=[p.name for p in PLACES])
def test_one_rule_for_the_session(place: Place) -> None:
    """The key, the scope and whose session it is, as the store keeps it, all come from one rule."""
    ctx = turn_context(place.msg, _config(place.scope))
    assert (ctx.key, ctx.scope, ctx.owner, ctx.chat_id) == (
        place.key,
        place.session_scope,
        place.owner,
        place.chat_id,
    )
    msg = place.msg
    assert (ctx.platform, ctx.user_id, ctx.thread_id) == (msg.platform, msg.user_id, msg.thread_id)


@pytest.mark.parametrize(
    ("scope", "msg", "member_key"),
    [
        ("user", _msg(is_group=True), "telegram:chat:c1:user:42"),
        ("user", _msg("discord", is_group=True, thread_id="t9"), "discord:chat:c1:thread:t9:user:42"),
        ("chat", _msg(is_group=True), "telegram:chat:c1"),  # the member shares the chat's session
        ("user", _msg(), "telegram:chat:c1"),  # a direct chat has one session
        ("user", _msg("console", chat_id="notes", session_name="notes"), "console:notes"),
    ],
)
def test_another_members_session_follows_the_same_rule(scope: str, msg: Incoming, member_key: str) -> None:
    """An admin's ``/reset @name``: the member's session in the same chat, by the same rule as their own."""
    ctx = turn_context(msg, _config(scope))
    assert ctx.member_key("42") == member_key
    own = turn_context(_msg(msg.platform, **{**_fields(msg), "user_id": "42"}), _config(scope))
    assert own.key == member_key


def _fields(msg: Incoming) -> dict[str, Any]:
    return {
        "chat_id": msg.chat_id,
        "is_group": msg.is_group,
        "thread_id": msg.thread_id,
        "session_name": msg.session_name,
    }


BOUND: dict[str, Any] = {
    "agents": {"list": [{"id": "main", "default": True}, {"id": "coder"}]},
    "bindings": [{"agentId": "coder", "match": {"channel": "discord", "guildId": "42"}}],
}


@pytest.mark.parametrize(
    ("msg", "agent"),
    [
        (_msg("discord", guild_id="42"), "coder"),  # bound
        (_msg("discord", guild_id="7"), "main"),  # another server: the default agent
        (_msg("telegram"), "main"),
        (_msg("discord", guild_id="42", agent_id="main"), "main"),  # the console's --agent wins over bindings
    ],
)
def test_the_agent_is_chosen_once_with_the_place(msg: Incoming, agent: str) -> None:
    """Bindings pick the agent (an explicit agent on the message wins); the context carries it."""
    assert turn_context(msg, _config(**BOUND)).agent_id == agent


def test_a_context_is_a_plain_value() -> None:
    """Two messages from the same place give equal contexts (frozen, comparable, hashable)."""
    first, second = (turn_context(_msg(text=t), _config()) for t in ("a", "b"))
    assert first == second and isinstance(first, TurnContext) and hash(first) == hash(second)
