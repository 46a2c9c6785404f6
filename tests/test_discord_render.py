"""The Discord adapter's pure parts: access rules, reply rendering, picker components, custom ids, start-up errors."""

from __future__ import annotations

from typing import Any, cast

import discord
import pytest

from adapters.discord.access import AccessPolicy, Speaker
from adapters.discord.client import Timings, setup_error
from adapters.discord.incoming import skipped_note, strip_mention
from adapters.discord.render import (
    ComponentAction,
    chunks,
    close_open_fence,
    parse_custom_id,
    picker_view,
    reply_text,
    view_for,
)
from bot.chat import PickerView, Reply
from bot.models.picker import build_picker, picker_token
from bot.models.refs import parse_model_ref

ALLOW = AccessPolicy.from_config(
    ["11", "user:12", "role:21", "channel:31", "role:x", "bogus:41"], admins=["99"]
)


@pytest.mark.parametrize(
    ("speaker", "allowed"),
    [
        (Speaker(11), True),  # a plain user id
        (Speaker(12), True),  # user:<id>
        (Speaker(13, role_ids=frozenset({21})), True),  # role:<id>
        (Speaker(13, channel_ids=frozenset({30, 31})), True),  # channel:<id>, e.g. the parent of a thread
        (Speaker(99), True),  # configured admins are always let in
        (Speaker(13, manages_guild=True), False),  # Manage Server in some guild does not bypass allowFrom
        (Speaker(41), False),  # an entry of an unknown kind matches nobody
        (Speaker(13, role_ids=frozenset({22}), channel_ids=frozenset({32})), False),
    ],
)
def test_allow_from_matches_users_roles_and_channels(speaker: Speaker, allowed: bool) -> None:
    """allowFrom: user ids (bare or user:), role:<id>, channel:<id>; malformed entries never widen access."""
    assert ALLOW.allows(speaker) is allowed


def test_no_allow_list_lets_everyone_in_and_admins_come_from_config_or_manage_server() -> None:
    """Without allowFrom everyone may talk; admins are the configured ids plus Manage Server holders."""
    policy = AccessPolicy.from_config(None, admins=["user:7"])
    assert policy.allows(Speaker(1234))
    assert policy.is_admin(Speaker(7)) and policy.is_admin(Speaker(8, manages_guild=True))
    assert not policy.is_admin(Speaker(8, role_ids=frozenset({7})))


def test_empty_allow_list_refuses_everyone_but_admins() -> None:
    """allowFrom: [] is an explicit "nobody" (unlike a missing key)."""
    policy = AccessPolicy.from_config([], admins=["5"])
    assert not policy.allows(Speaker(1)) and policy.allows(Speaker(5))


def test_answer_gets_the_note_as_one_subtext_line() -> None:
    """The fallback note is rendered small, as a `-# ` line under the answer, and only on answers."""
    answer = Reply("Hi.", kind="answer", note="↪ answered by demo/story —\ndemo server error")
    assert reply_text(answer) == "Hi.\n-# ↪ answered by demo/story — demo server error"
    assert reply_text(Reply("Model set.", note="ignored")) == "Model set."


def test_interrupted_reply_is_marked_and_its_open_code_block_closed() -> None:
    """A stream that broke inside a code block is closed before the bold ⚠ line."""
    reply = Reply("```py\nprint(1)\n\n⚠ The answer was interrupted.", kind="interrupted")
    assert reply_text(reply) == "```py\nprint(1)\n```\n\n**⚠ The answer was interrupted.**"


def test_a_turn_that_ends_without_answer_keeps_the_streamed_text_marked() -> None:
    """/stop after some text: the text stays, marked as unfinished; with nothing shown, only the message."""
    stopped = Reply("Stopped. Send /retry to ask again.", kind="error")
    assert (
        reply_text(stopped, streamed="Once upon") == "Once upon\n\n**⚠ Stopped. Send /retry to ask again.**"
    )
    assert reply_text(stopped) == "Stopped. Send /retry to ask again."


def test_close_open_fence_leaves_balanced_text_alone() -> None:
    """Only a block still open at the end gets a closing fence of its own marker."""
    assert close_open_fence("```\na\n```\ntext") == "```\na\n```\ntext"
    assert close_open_fence("~~~~\ncode") == "~~~~\ncode\n~~~~"


def test_chunks_are_never_blank_and_stay_under_the_limit() -> None:
    """Whitespace-only text still gives one sendable message; long text stays under 2000 per message."""
    assert chunks("   ") == ["…"]
    pieces = chunks("word " * 1000)
    assert len(pieces) == 3 and all(0 < len(p) <= 2000 for p in pieces)


@pytest.mark.parametrize(
    ("custom_id", "action"),
    [
        ("mb:pick:1", ComponentAction("pick", 1)),
        ("mb:page:0", ComponentAction("page", 0)),
        ("mb:retry", ComponentAction("retry")),
        ("mb:page:9999999", None),  # absurd page numbers are not ours
        ("mb:page:-1", None),
        ("mb:pick:²", None),  # a Unicode digit is not a number here
        ("picker:model", None),  # another bot's or an old component
        ("mb:nope:1", None),
    ],
)
def test_parse_custom_id(custom_id: str, action: ComponentAction | None) -> None:
    """Only ids the adapter drew are acted on."""
    assert parse_custom_id(custom_id) == action


def _picker(count: int, page: int = 1, total_pages: int = 1, current: int | None = None) -> PickerView:
    entries = build_picker(parse_model_ref(f"prov/{'family-' * 20}{i:02}") for i in range(count))
    return PickerView(tuple(entries), page, total_pages, current, tuple(picker_token(e) for e in entries))


def _components(view: discord.ui.View) -> list[dict[str, Any]]:
    return [c for row in view.to_components() for c in row["components"]]


def test_picker_view_uses_tokens_clips_labels_and_caps_options() -> None:
    """Option values are the core's tokens; labels fit in 100 characters; at most 25 options."""
    [select] = _components(picker_view(_picker(30, current=2)))
    assert select["custom_id"] == "mb:pick:1" and len(select["options"]) == 25
    assert all(o["value"].startswith("m:") and len(o["value"]) <= 100 for o in select["options"])
    assert all(len(o["label"]) <= 100 and o["label"].endswith("…") for o in select["options"])
    assert [o.get("default", False) for o in select["options"][:3]] == [False, True, False]


def test_picker_view_has_page_buttons_only_when_paged() -> None:
    """Previous/Next appear with several pages; the one leading off the ends is disabled."""
    _, previous, following = _components(picker_view(_picker(3, page=2, total_pages=2)))
    assert (previous["custom_id"], previous["disabled"]) == ("mb:page:1", False)
    assert (following["custom_id"], following["disabled"]) == ("mb:page:3", True)
    assert len(_components(picker_view(_picker(3)))) == 1


def test_views_follow_the_reply() -> None:
    """A picker reply gets the menu, an interrupted one a Retry button, anything else nothing."""
    retry = view_for(Reply("x\n\n⚠ broken", kind="interrupted"))
    assert retry is not None and _components(retry)[0]["custom_id"] == "mb:retry"
    assert view_for(Reply("done")) is None


class _Socket:
    close_code = 4014


@pytest.mark.parametrize(
    "error",
    [
        discord.PrivilegedIntentsRequired(None),  # connect(reconnect=True)
        discord.ConnectionClosed(cast(Any, _Socket()), shard_id=None, code=4014),  # connect(reconnect=False)
    ],
)
def test_both_shapes_of_a_refused_intent_become_one_clear_error(error: Exception) -> None:
    """Whatever discord.py raises for close code 4014, the user is told to enable MESSAGE CONTENT INTENT."""
    mapped = setup_error(error)
    assert mapped is not None and "MESSAGE CONTENT INTENT" in str(mapped)


def test_other_startup_failures_are_named_and_bugs_are_not_hidden() -> None:
    """A bad token and a gateway close are explained; an unrelated exception is left alone."""
    token = setup_error(discord.LoginFailure("Improper token has been passed."))
    closed = setup_error(discord.ConnectionClosed(cast(Any, _Socket()), shard_id=None, code=4004))
    assert token is not None and "channels.discord.token" in str(token)
    assert closed is not None and "4004" in str(closed)
    assert setup_error(KeyError("bug")) is None


def test_mentions_of_the_bot_are_removed_and_others_kept() -> None:
    """Both mention forms of this bot go; other users' mentions stay for the core (admin /reset)."""
    assert strip_mention("<@42> /reset <@7>", 42) == "/reset <@7>"
    assert strip_mention("hey <@!42>, hi", 42) == "hey  , hi"


def test_skipped_note_lists_a_few_names_safely() -> None:
    """At most three names, control characters removed, the rest counted."""
    note = skipped_note(["a.txt", "b\x00.pdf", "c.zip", "d.doc"])
    assert note.startswith("Sorry, I can't read a.txt, b.pdf, c.zip and 1 more:")


def test_default_timings_edit_about_once_a_second() -> None:
    """Production streams at one edit per second and defers interactions before Discord's 3 s deadline."""
    timings = Timings()
    assert timings.stream_interval_s == 1.0 and timings.defer_after_s < 3.0 and timings.shard_identify_pause
