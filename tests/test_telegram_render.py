"""The Telegram adapter's pure parts: pieces and keyboards, reading messages, access and its gate."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest
from telegram import Chat, Message, MessageEntity, User

from adapters.common.split import utf16_len
from adapters.telegram import incoming as read
from adapters.telegram.access import AccessPolicy, ChatAdmins, Gate
from adapters.telegram.render import (
    EMPTY_ANSWER,
    Piece,
    answer_pieces,
    parse_page_token,
    picker_keyboard,
    plain_pieces,
    reply_pieces,
)
from bot.chat import PickerView, Reply
from bot.models.picker import PickerEntry, picker_token
from bot.models.refs import parse_model_ref

BOT_ID, BOT = 555, "modelbot_test_bot"
ME = User(BOT_ID, "Modelbot", is_bot=True, username=BOT)
ALICE = User(1, "Alice", is_bot=False, username="alice")
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _message(text: str, *, group: bool = True, reply_to: Message | None = None) -> Message:
    chat = Chat(-100 if group else ALICE.id, "supergroup" if group else "private")
    entities = [
        MessageEntity(kind, text.index(word), len(word))
        for kind, word in (("bot_command", w) for w in text.split() if w.startswith("/"))
    ] + [MessageEntity("mention", text.index(w), len(w)) for w in text.split() if w.startswith("@")]
    return Message(1, NOW, chat, from_user=ALICE, text=text, entities=entities, reply_to_message=reply_to)


# -- pieces -------------------------------------------------------------------------------------------------


def test_quiet_lines_close_the_last_piece_in_escaped_italics() -> None:
    """The note goes under the answer as <i>…</i>, HTML-escaped; the plain fallback carries it too."""
    [piece] = answer_pieces("**Yes.**", ["↪ answered by a<b> — x & y"])
    assert piece == Piece(
        "<b>Yes.</b>\n\n<i>↪ answered by a&lt;b&gt; — x &amp; y</i>", "Yes.\n\n↪ answered by a<b> — x & y"
    )


def test_pieces_with_a_tail_still_fit_the_limit() -> None:
    """A long answer plus its note: every piece, tail included, stays within 4096 units."""
    pieces = answer_pieces(("word " * 1500 + "\n\n") * 3, ["↪ " + "n" * 500])
    assert len(pieces) >= 3
    assert all(utf16_len(p.html or "") <= 4096 and utf16_len(p.plain) <= 4096 for p in pieces)
    assert pieces[-1].plain.endswith("n…")


def test_empty_bodies() -> None:
    """No text: the tail alone, or a placeholder — never an empty message Telegram would refuse."""
    assert answer_pieces("  ", ["Stopped."]) == [Piece("<i>Stopped.</i>", "Stopped.")]
    assert answer_pieces("") == [Piece(None, EMPTY_ANSWER)]


def test_command_replies_are_plain_text() -> None:
    """Command replies keep their characters (masked keys, ids with '_'): no parse mode, split when long."""
    assert plain_pieces("key sk-…_ab_*") == [Piece(None, "key sk-…_ab_*")]
    long = plain_pieces("line\n" * 2000)
    assert len(long) == 3 and all(p.html is None and len(p.plain) <= 4096 for p in long)


@pytest.mark.parametrize(
    ("reply", "streamed", "expected"),
    [
        (Reply("Hi", kind="answer", note="↪ note"), None, Piece("Hi\n\n<i>↪ note</i>", "Hi\n\n↪ note")),
        (
            Reply("Half\n\n⚠ The answer was interrupted.", kind="interrupted"),
            "Half",
            Piece("Half\n\n<i>⚠ The answer was interrupted.</i>", "Half\n\n⚠ The answer was interrupted."),
        ),
        (Reply("Stopped.", kind="error"), "So far", Piece("So far\n\n<i>Stopped.</i>", "So far\n\nStopped.")),
        (Reply("Stopped.", kind="error"), None, Piece(None, "Stopped.")),
        (Reply("Model set.", kind="command"), "", Piece(None, "Model set.")),
    ],
)
def test_reply_pieces_by_kind(reply: Reply, streamed: str | None, expected: Piece) -> None:
    """Answers: Markdown + note; interrupted: the warning as a quiet line; text already streamed stays."""
    assert reply_pieces(reply, streamed=streamed) == [expected]


def _view(families: list[str], *, page: int = 1, total: int = 1, current: int | None = None) -> PickerView:
    entries = tuple(
        PickerEntry(n, family, (parse_model_ref(f"p/{family}"),)) for n, family in enumerate(families, 1)
    )
    return PickerView(entries, page, total, current, tuple(picker_token(e) for e in entries))


def test_picker_keyboard_rows_marks_and_pages() -> None:
    """Two buttons a row, the current one ticked, ‹ › for the neighbouring pages; data = the core's tokens."""
    view = _view(["a", "b", "c"], page=2, total=3, current=2)
    rows = picker_keyboard(view).inline_keyboard
    assert [[b.text for b in row] for row in rows] == [["1. a", "2. b ✓"], ["3. c"], ["‹ Prev", "Next ›"]]
    assert [b.callback_data for b in rows[0]] == list(view.tokens[:2])
    assert [b.callback_data for b in rows[2]] == ["p:1", "p:3"]
    wide = picker_keyboard(_view(["claude-sonnet-4-5-20250929", "b"])).inline_keyboard
    assert [len(row) for row in wide] == [1, 1]


@pytest.mark.parametrize(
    ("data", "page"),
    [("p:2", 2), ("p:10", 10), ("p:", None), ("p:-1", None), ("m:2:abcd", None), ("p:1234567", None)],
)
def test_page_tokens(data: str, page: int | None) -> None:
    """Only "p:<digits>" turns a page; anything else is left to the core as a picker token."""
    assert parse_page_token(data) == page


# -- reading messages ---------------------------------------------------------------------------------------


def test_what_addresses_the_bot_in_a_group() -> None:
    """A command, an @mention (any case) or a reply to the bot; not chatter or a mention of someone else."""
    mine = Message(9, NOW, Chat(-100, "supergroup"), from_user=ME, text="earlier answer")
    assert read.addressed_to_us(_message("/model"), BOT_ID, BOT)
    assert read.addressed_to_us(_message("hi @ModelBot_Test_Bot"), BOT_ID, BOT)
    assert read.addressed_to_us(_message("go on", reply_to=mine), BOT_ID, BOT)
    assert not read.addressed_to_us(_message("hello all"), BOT_ID, BOT)
    assert not read.addressed_to_us(_message("hi @alice_bot"), BOT_ID, BOT)


def test_commands_for_other_bots_and_mention_stripping() -> None:
    """/cmd@other is not ours; our @mention is removed from the text handed to the core."""
    assert read.for_other_bot(_message("/status@other_bot"), BOT)
    assert not read.for_other_bot(_message(f"/status@{BOT}"), BOT)
    assert read.clean_text(_message(f"@{BOT}, what is 2+2?"), BOT) == "what is 2+2?"
    assert read.clean_text(_message(f"/model@{BOT} list"), BOT) == f"/model@{BOT} list"


def test_reply_targets_are_people_only() -> None:
    """A reply to a member names them for the core; a reply to the bot names nobody."""
    bob = User(2, "Bob", is_bot=False)
    bobs = Message(3, NOW, Chat(-100, "supergroup"), from_user=bob, text="hi")
    mine = Message(4, NOW, Chat(-100, "supergroup"), from_user=ME, text="answer")
    assert read.replied_to_member(_message("/reset", reply_to=bobs)) == 2
    assert read.replied_to_member(_message("/reset", reply_to=mine)) is None
    assert read.replied_to_member(_message("/reset")) is None


@pytest.mark.parametrize(
    ("data", "media_type"),
    [
        (b"\x89PNG\r\n\x1a\n....", "image/png"),
        (b"\xff\xd8\xff\xe0....", "image/jpeg"),
        (b"GIF89a....", "image/gif"),
        (b"RIFF\x00\x00\x00\x00WEBPVP8 ", "image/webp"),
        (b"<svg xmlns=...>", None),
        (b"%PDF-1.7", None),
    ],
)
def test_image_types_are_sniffed(data: bytes, media_type: str | None) -> None:
    """What the model APIs accept, by magic bytes; anything else is not an image for us."""
    assert read.sniff_image(data) == media_type


# -- access -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_id", "username", "chat_id", "allowed"),
    [
        (1, "alice", 1, True),
        (2, "Bob", 2, True),  # @bob, any case
        (3, None, 3, False),
        (3, "mallory", -500, True),  # a listed group: all its members
        (3, "mallory", -501, False),
        (9, "root", 9, True),  # configured admins are always allowed
    ],
)
def test_allow_from(user_id: int, username: str | None, chat_id: int, allowed: bool) -> None:
    """allowFrom holds user ids, @usernames and group chat ids; admins pass too."""
    policy = AccessPolicy(["1", "@bob", "-500"], ["@root"])
    assert policy.allowed(user_id, username, chat_id) is allowed


def test_everyone_is_allowed_without_allow_from() -> None:
    """No allowFrom: everyone may talk; only listed admins are configured admins."""
    policy = AccessPolicy(None, ["7"])
    assert (
        policy.allowed(3, None, 3)
        and policy.configured_admin(7, None)
        and not policy.configured_admin(3, "x")
    )


async def test_chat_admins_are_cached_and_failures_are_not() -> None:
    """One lookup per group per TTL (concurrent askers share it); a failed lookup means "no" and retries."""
    calls: list[int] = []
    now = [0.0]
    fail = [True]

    async def fetch(chat: int) -> list[int]:
        calls.append(chat)
        await asyncio.sleep(0)
        if fail[0]:
            raise OSError("network down")
        return [1, 2]

    admins = ChatAdmins(fetch, ttl_s=60, now=lambda: now[0])
    assert not await admins.is_admin(-1, 1)
    fail[0] = False
    assert list(await asyncio.gather(admins.is_admin(-1, 1), admins.is_admin(-1, 3))) == [True, False]
    now[0] = 59
    assert await admins.is_admin(-1, 2)
    assert calls == [-1, -1]
    now[0] = 61
    assert await admins.is_admin(-1, 2)
    assert calls == [-1, -1, -1]


async def test_the_gate_asks_a_group_for_its_admins_only_when_the_config_does_not_say() -> None:
    """Configured admins are admins everywhere without a lookup; a group's administrators only in that
    group; nobody is an admin of a private chat by lookup. Allowing follows ``allowFrom``."""
    calls: list[int] = []

    async def fetch(chat_id: int) -> list[int]:
        calls.append(chat_id)
        return [5]

    gate = Gate(AccessPolicy(["5", "@root"], ["@root"]), ChatAdmins(fetch))
    assert await gate.is_admin(9, "root", -1, group=True) and calls == []
    assert await gate.is_admin(5, None, -1, group=True) and calls == [-1]
    assert not await gate.is_admin(5, None, 5, group=False) and calls == [-1]
    assert not await gate.is_admin(6, None, -1, group=True)
    assert gate.allows(5, None, 5) and gate.allows(9, "Root", 9) and not gate.allows(6, None, -1)
