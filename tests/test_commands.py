"""The chat command parser (a table of texts and the commands they mean) and the help texts."""

from __future__ import annotations

import re
import unicodedata

import pytest

from bot.conversation.commands import (
    COMMAND_NAMES,
    ECHO_LIMIT,
    Command,
    Help,
    ModelDefault,
    ModelList,
    ModelPick,
    ModelSet,
    ModelShow,
    ModelStatus,
    NewSession,
    ResetSession,
    Retry,
    Status,
    Stop,
    Unknown,
    echo,
    parse_command,
)
from bot.conversation.help import COMMAND_DESCRIPTIONS, help_text
from bot.errors import CommandError
from bot.models.refs import RawRef

GPT = RawRef("openai", "gpt-5.2", None)
SONNET = RawRef(None, "sonnet", None)

PARSES: list[tuple[str, Command | None]] = [
    # Plain chat, and text that only looks like a path or a slash.
    ("hello", None),
    ("", None),
    ("   \n ", None),
    ("/ hello", None),
    ("/usr/bin/python is where it lives", None),
    ("/123", None),
    ("//model", None),
    ("/model, please", None),
    ("/x@host.com", None),
    ("a /model in the middle", None),
    # /model and its forms; names and keywords are case-insensitive, whitespace around is ignored.
    ("/model", ModelShow()),
    ("  /model  \n", ModelShow()),
    ("/MODEL", ModelShow()),
    ("/model list", ModelList()),
    ("/Model LIST 3", ModelList(3)),
    ("/model 3", ModelPick(3)),
    ("/model #4", ModelPick(4)),
    ("/model 007", ModelPick(7)),
    ("/model 999999", ModelPick(999_999)),
    ("/model openai/gpt-5.2", ModelSet("openai/gpt-5.2", GPT)),
    ("/model   OpenAI/gpt-5.2  ", ModelSet("OpenAI/gpt-5.2", GPT)),
    ("/model sonnet", ModelSet("sonnet", SONNET)),
    ("/model 4o", ModelSet("4o", RawRef(None, "4o", None))),
    (
        "/model anthropic/claude-sonnet-4-5@anthropic:work",
        ModelSet(
            "anthropic/claude-sonnet-4-5@anthropic:work",
            RawRef("anthropic", "claude-sonnet-4-5", "anthropic:work"),
        ),
    ),
    (
        "/model openrouter/moonshotai/kimi-k2",
        ModelSet("openrouter/moonshotai/kimi-k2", RawRef("openrouter", "moonshotai/kimi-k2", None)),
    ),
    (
        "/model google/gemini-2.5-pro@google:me@x.com",
        ModelSet(
            "google/gemini-2.5-pro@google:me@x.com", RawRef("google", "gemini-2.5-pro", "google:me@x.com")
        ),
    ),
    (
        "/model vertex/claude-3-5-sonnet@20240620",
        ModelSet("vertex/claude-3-5-sonnet@20240620", RawRef("vertex", "claude-3-5-sonnet@20240620", None)),
    ),
    (
        "/model sonnet@anthropic:work",
        ModelSet("sonnet@anthropic:work", RawRef(None, "sonnet", "anthropic:work")),
    ),
    ("/model status", ModelStatus()),
    ("/model Status", ModelStatus()),
    ("/model default", ModelDefault()),
    # Sessions.
    ("/new", NewSession()),
    ("/new sonnet", NewSession("sonnet", SONNET)),
    ("/NEW openai/gpt-5.2", NewSession("openai/gpt-5.2", GPT)),
    ("/reset", ResetSession()),
    ("/reset openai/gpt-5.2", ResetSession("openai/gpt-5.2", GPT)),
    ("/reset @Alice_B", ResetSession(target_user="@alice_b")),
    ("/reset @alice.b", ResetSession(target_user="@alice.b")),
    ("/reset user:12345", ResetSession(target_user="user:12345")),
    ("/reset USER:12345", ResetSession(target_user="user:12345")),
    ("/reset <@1234567890123>", ResetSession(target_user="user:1234567890123")),
    ("/reset <@!42>", ResetSession(target_user="user:42")),
    ("/reset @bob openai/gpt-5.2", ResetSession("openai/gpt-5.2", GPT, "@bob")),
    # The rest.
    ("/status", Status()),
    ("/help", Help()),
    ("/help model", Help("model")),
    ("/help /Reset", Help("reset")),
    ("/start", Help()),
    ("/start deep-link_payload", Help()),
    ("/retry", Retry()),
    ("/stop", Stop()),
    ("/frobnicate", Unknown("frobnicate")),
    ("/Frob now, with ../../junk\x00", Unknown("frob")),
    ("/model_list", Unknown("model_list")),
]


@pytest.mark.parametrize(("text", "expected"), PARSES)
def test_parse(text: str, expected: Command | None) -> None:
    """Each text parses to exactly the command it means (None: plain chat)."""
    assert parse_command(text) == expected


@pytest.mark.parametrize(
    ("text", "bot_username", "expected"),
    [
        ("/model@ModelBot", "modelbot", ModelShow()),
        ("/model@modelbot list 2", "@ModelBot", ModelList(2)),
        ("/unknown@modelbot", "modelbot", Unknown("unknown")),
        ("/model@otherbot", "modelbot", None),
        ("/model@otherbot 3", "modelbot", None),
        ("/model@otherbot status@x", "modelbot", None),
        ("/model@otherbot " + "x" * 20_000, "modelbot", None),
        ("/model@anybot", None, ModelShow()),
        ("/model", "modelbot", ModelShow()),
    ],
)
def test_bot_username(text: str, bot_username: str | None, expected: Command | None) -> None:
    """``/cmd@name`` is ours when the name matches (case-insensitively) or we have no name; else ignored."""
    assert parse_command(text, bot_username=bot_username) == expected


ERRORS: list[tuple[str, str]] = [
    ("/model status@x", "profile without a model"),
    ("/model list@anthropic:work", "profile without a model"),
    ("/model default@x", "profile without a model"),
    ("/model @anthropic:work", "profile without a model"),
    ("/new @work", "profile without a model"),
    ("/model 0", "Pick a number from the /model list."),
    ("/model -1", "Pick a number from the /model list."),
    ("/model 99999999999999", "Pick a number from the /model list."),
    ("/model 1000000", "Pick a number from the /model list."),
    ("/model 3.5", "Pick a number from the /model list."),
    ("/model #-2", "Pick a number from the /model list."),
    ("/model 3@anthropic:work", "Pick a number from the /model list."),
    ("/new 3", "not a number"),
    ("/reset 2", "not a number"),
    ("/model a b", "Usage: /model"),
    ("/model status now", "Usage: /model"),
    ("/model list 1 2", "Usage: /model"),
    ("/model list x", "Usage: /model list [page]"),
    ("/model list 0", "Usage: /model list [page]"),
    ("/model list #2", "Usage: /model list [page]"),
    ("/status now", "Usage: /status"),
    ("/retry please", "Usage: /retry"),
    ("/stop it", "Usage: /stop"),
    ("/help a b", "Usage: /help"),
    ("/help !!", "Usage: /help"),
    ("/new a b", "Usage: /new"),
    ("/reset a b", "Usage: /reset"),
    ("/reset @a b c", "Usage: /reset"),
    ("/reset @bad!name", "is not a user"),
    ("/reset user:abc", "is not a user"),
    ("/reset <@123", "is not a user"),
    ("/reset @a..b", "is not a user"),
    ("/model " + "a" * 201, "too long"),
    ("/model a\x00b", "control characters"),
    ("/model a\tb", "control characters"),
    ("/model a\u200bb", "control characters"),
    ("/model evil\u202etxt.exe", "control characters"),
    ("/model a\nb", "one line"),
    ("/new\nhello there", "one line"),
    ("/model a\u2028b", "one line"),
    ("/model ../../etc/passwd", "is not a model name"),
    ("/model ..\\..\\windows\\system32", "is not a model name"),
    ("/model /etc/passwd", "is not a model name"),
    ("/model openai/../../x", "is not a model name"),
    ("/model openai//gpt", "is not a model name"),
    ("/model <script>alert(1)</script>", "is not a model name"),
    ("/model ~/.ssh/id_rsa", "is not a model name"),
    ("/new $(whoami)", "is not a model name"),
    ("/model openai/", "is not a valid model"),
    ("/model " + "x" * 10_300, "That command is too long."),
    ("/frobnicate " + "é" * 6_000, "That command is too long."),
]


@pytest.mark.parametrize(("text", "fragment"), ERRORS)
def test_errors(text: str, fragment: str) -> None:
    """Every malformed command raises a CommandError with a short message that names the problem."""
    with pytest.raises(CommandError) as caught:
        parse_command(text)
    message = str(caught.value)
    assert fragment in message
    assert len(message) <= 160
    assert not any(unicodedata.category(ch).startswith("C") for ch in message)


@pytest.mark.parametrize(
    "junk",
    [
        "openai/" + "A" * 120 + "\\",
        "a" * 60 + "<>",
        "~" + "B" * 100,
        "../" * 30,
        "/model-" + "C" * 150,
    ],
)
def test_errors_never_echo_more_than_a_little(junk: str) -> None:
    """A rejected argument is quoted at most ~40 characters long, never whole."""
    with pytest.raises(CommandError) as caught:
        parse_command(f"/model {junk}")
    message = str(caught.value)
    assert not any(junk[k : k + ECHO_LIMIT + 1] in message for k in range(len(junk) - ECHO_LIMIT))


def test_echo_strips_control_characters_and_truncates() -> None:
    """``echo`` drops control and format characters and caps the length."""
    assert echo("a\x00b\u202ec\x1b[31m") == "abc[31m"
    long = echo("x" * 100)
    assert len(long) == ECHO_LIMIT
    assert long.endswith("…")


def test_exactly_at_the_limits_is_accepted() -> None:
    """200 characters of arguments and a 10 kB message are still fine; one more is not."""
    ref = "p/" + "m" * 198
    assert parse_command(f"/model {ref}") == ModelSet(ref, RawRef("p", "m" * 198, None))
    with pytest.raises(CommandError):
        parse_command(f"/model {ref}m")
    padded = "/frob " + " " * (10 * 1024 - len("/frob ") - 1) + "x"
    assert parse_command(padded) == Unknown("frob")
    with pytest.raises(CommandError):
        parse_command(padded + "x")


def test_non_commands_of_any_size_are_chat() -> None:
    """A long message that is not a command is plain chat, never an error."""
    assert parse_command("/ " + "x" * 50_000) is None
    assert parse_command("/usr/bin " + "x" * 50_000) is None


# Telegram: 1–32 characters of [a-z0-9_]; descriptions 1–256. Discord: descriptions 1–100.
@pytest.mark.parametrize(("name", "description"), COMMAND_DESCRIPTIONS)
def test_command_descriptions_fit_the_platforms(name: str, description: str) -> None:
    """Each menu entry is a valid Telegram and Discord command name and description."""
    assert re.fullmatch(r"[a-z0-9_]{1,32}", name)
    assert 1 <= len(description) <= 100
    assert description == description.strip()


def test_command_descriptions_cover_every_command() -> None:
    """Every command the parser knows (but Telegram's /start) is in the menu, once, and parses."""
    names = [name for name, _ in COMMAND_DESCRIPTIONS]
    assert len(names) == len(set(names))
    assert set(names) == set(COMMAND_NAMES) - {"start"}
    for name in names:
        assert not isinstance(parse_command(f"/{name}"), Unknown)


def test_help_overview_lists_every_command_and_hides_admin_parts() -> None:
    """The overview names every command; @profile pins and resetting others are shown to admins only."""
    user, admin = help_text(None, is_admin=False), help_text(None, is_admin=True)
    for name, _ in COMMAND_DESCRIPTIONS:
        assert f"/{name}" in user
    for admin_only in ("@profile", "/reset @username", "user:<id>"):
        assert admin_only not in user
        assert admin_only in admin
    assert admin.startswith(user)


@pytest.mark.parametrize(("name", "_description"), COMMAND_DESCRIPTIONS)
def test_help_topic_for_every_command(name: str, _description: str) -> None:
    """``/help <command>`` explains each command; the topic is matched like a command name."""
    text = help_text(name, is_admin=False)
    assert f"/{name}" in text
    assert "There is no" not in text
    assert help_text(f"/{name.upper()}", is_admin=False) == text


def test_help_topics_admin_parts() -> None:
    """The admin-only forms appear in the topic help for admins only."""
    assert "@profile" not in help_text("model", is_admin=False)
    assert "@profile" in help_text("model", is_admin=True)
    assert "/reset @username" not in help_text("reset", is_admin=False)
    assert "/reset @username" in help_text("reset", is_admin=True)


def test_help_unknown_topic_is_short_and_safe() -> None:
    """An unknown topic gets a pointer to /help, quoting at most a little of the input."""
    text = help_text("x" * 100 + "\x00", is_admin=False)
    assert "Send /help" in text
    assert "x" * (ECHO_LIMIT + 1) not in text
    assert "\x00" not in text
