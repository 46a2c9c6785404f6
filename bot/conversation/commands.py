"""The chat command parser: a pure function from message text to a typed command (docs/commands.md §1)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias

from bot.errors import CommandError, InvalidRef
from bot.models.refs import MAX_REF_LENGTH, RawRef, parse_ref

MAX_COMMAND_BYTES = 10 * 1024
MAX_ARGS_LENGTH = MAX_REF_LENGTH
MAX_PICK = 999_999  # six digits: far above any picker, far below anything that could overflow
ECHO_LIMIT = 40

# A command is '/name' (optionally '@botname') followed by whitespace or the end; '/usr/bin' or
# '/ hello' are plain text, and so is '/x@host.com' (not a bot username).
_HEAD_RE = re.compile(r"/([A-Za-z][A-Za-z0-9_]{0,31})(?:@([A-Za-z0-9_]{1,64}))?(?=\s|\Z)")
_PICK_RE = re.compile(r"#?([0-9]{1,6})", re.ASCII)
# Anything a user might mean as a number (signs, decimals, long digit runs, '#-1'); never a model name.
_NUMERIC_RE = re.compile(r"#?[+\-−]?(?:[0-9]+(?:[.,][0-9]*)?|[.,][0-9]+)", re.ASCII)
# Model ids, aliases and profile ids use word characters and a little punctuation; anything else
# (quotes, angle brackets, backslashes, '~', '$', …) is junk, never a reference to look up.
_REF_CHARS_RE = re.compile(r"[\w.\-:/@+]+")
_USERNAME_RE = re.compile(r"@([A-Za-z0-9_][A-Za-z0-9_.]{0,31})")
_USER_ID_RE = re.compile(r"(?:user:|<@!?)([0-9]{1,20})>?", re.ASCII | re.IGNORECASE)
_MODEL_KEYWORDS = frozenset({"list", "status", "default"})

MODEL_USAGE = "Usage: /model, /model list [page], /model <number>, /model provider/model, /model status, /model default."
USAGE: dict[str, str] = {
    "model": MODEL_USAGE,
    "new": "Usage: /new [model]",
    "reset": "Usage: /reset [model] — admins: /reset @username or /reset user:<id>",
    "status": "Usage: /status (no arguments)",
    "help": "Usage: /help [command]",
    "retry": "Usage: /retry (no arguments)",
    "stop": "Usage: /stop (no arguments)",
}


@dataclass(frozen=True)
class ModelShow:
    """Bare ``/model``: the current model and the picker."""


@dataclass(frozen=True)
class ModelList:
    """``/model list [page]``: one page of the numbered picker."""

    page: int = 1


@dataclass(frozen=True)
class ModelPick:
    """``/model 3``: pick a family from the picker; the pipeline checks the range."""

    number: int


@dataclass(frozen=True)
class ModelSet:
    """``/model provider/model[@profile]`` or an alias; syntactically valid, not yet checked in the catalog."""

    ref_text: str
    raw: RawRef


@dataclass(frozen=True)
class ModelStatus:
    """``/model status``: models, fallbacks and every auth candidate."""


@dataclass(frozen=True)
class ModelDefault:
    """``/model default``: clear the session's model override."""


@dataclass(frozen=True)
class NewSession:
    """``/new [model]``: fresh history; an optional model for the new session."""

    model_text: str | None = None
    raw: RawRef | None = None


@dataclass(frozen=True)
class ResetSession:
    """``/reset [model]``; admins may name another member (``@name`` or ``user:<id>``) as ``target_user``."""

    model_text: str | None = None
    raw: RawRef | None = None
    target_user: str | None = None


@dataclass(frozen=True)
class Status:
    """``/status``: this session's model, profile and history."""


@dataclass(frozen=True)
class Help:
    """``/help [command]`` (and Telegram's ``/start``)."""

    topic: str | None = None


@dataclass(frozen=True)
class Retry:
    """``/retry``: resend the last message after an interrupted answer."""


@dataclass(frozen=True)
class Stop:
    """``/stop``: cancel the answer in progress."""


@dataclass(frozen=True)
class Unknown:
    """An unknown ``/command``: the pipeline points at /help and changes nothing."""

    name: str


Command: TypeAlias = (
    ModelShow
    | ModelList
    | ModelPick
    | ModelSet
    | ModelStatus
    | ModelDefault
    | NewSession
    | ResetSession
    | Status
    | Help
    | Retry
    | Stop
    | Unknown
)


def parse_command(text: str, *, bot_username: str | None = None) -> Command | None:
    """The command in ``text``; None for plain chat or a command addressed to another bot.

    ``bot_username`` is this bot's name; when it is None (the console) any ``/cmd@name`` is accepted.
    Raises ``CommandError`` with a short, user-facing message for a malformed command.
    """
    stripped = text.strip()
    head = _HEAD_RE.match(stripped)
    if head is None:
        return None
    name, addressee = head.group(1).lower(), head.group(2)
    if (
        addressee is not None
        and bot_username is not None
        and addressee.lower() != bot_username.lstrip("@").lower()
    ):
        return None  # addressed to another bot in the same group
    if len(stripped.encode("utf-8", "surrogatepass")) > MAX_COMMAND_BYTES:
        raise CommandError("That command is too long.")
    parser = _PARSERS.get(name)
    if parser is None:
        # Unknown commands change nothing, so their arguments are not worth validating.
        return Unknown(name)
    return parser(_split_args(stripped[head.end() :]))


def echo(text: str) -> str:
    """User input made safe to quote in a reply: no control characters, at most ~40 characters."""
    clean = "".join(ch for ch in text if not unicodedata.category(ch).startswith("C"))
    return clean if len(clean) <= ECHO_LIMIT else clean[: ECHO_LIMIT - 1] + "…"


def _split_args(rest: str) -> list[str]:
    if any(ch in rest for ch in "\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029"):
        raise CommandError("A command must fit on one line.")
    if any(unicodedata.category(ch).startswith("C") for ch in rest):
        raise CommandError("Commands must not contain control characters.")
    rest = rest.strip()
    if len(rest) > MAX_ARGS_LENGTH:
        raise CommandError(f"That argument is too long (at most {MAX_ARGS_LENGTH} characters).")
    return rest.split()


def _no_args(name: str, command: Command) -> Callable[[list[str]], Command]:
    def parse(args: list[str]) -> Command:
        if args:
            raise CommandError(f"/{name} takes no arguments. {USAGE[name]}")
        return command

    return parse


def _pick_number(arg: str) -> int | None:
    """The picker number in ``arg``; None when it is not numeric at all; an error for a bad number."""
    pick = _PICK_RE.fullmatch(arg)
    if pick is not None and 1 <= int(pick.group(1)) <= MAX_PICK:
        return int(pick.group(1))
    if _NUMERIC_RE.fullmatch(arg.split("@", 1)[0]):
        raise CommandError("Pick a number from the /model list.")
    return None


def _model_ref(arg: str) -> RawRef:
    """Validate a model argument syntactically; the catalog check happens later in the pipeline."""
    if arg.startswith("@") or ("@" in arg and arg.split("@", 1)[0].lower() in _MODEL_KEYWORDS):
        raise CommandError("That names a profile without a model. Use /model provider/model@profile.")
    junk = (
        not _REF_CHARS_RE.fullmatch(arg)
        or arg.startswith(("/", "."))
        or ".." in re.split(r"[/@:]", arg)
        or "//" in arg
    )
    if junk:
        raise CommandError(f'"{echo(arg)}" is not a model name. Send /model to see the list.')
    try:
        return parse_ref(arg)
    except InvalidRef:
        raise CommandError(
            f'"{echo(arg)}" is not a valid model. Use provider/model or a name from /model.'
        ) from None


def _parse_model(args: list[str]) -> Command:
    if not args:
        return ModelShow()
    keyword = args[0].lower()
    if keyword == "list":
        if len(args) > 2:
            raise CommandError(f"Too many arguments. {MODEL_USAGE}")
        if len(args) == 1:
            return ModelList()
        page = _PICK_RE.fullmatch(args[1])
        if page is None or args[1].startswith("#") or int(page.group(1)) < 1:
            raise CommandError("Usage: /model list [page] — the page is a number from 1.")
        return ModelList(int(page.group(1)))
    if len(args) > 1:
        raise CommandError(f"Too many arguments. {MODEL_USAGE}")
    if keyword == "status":
        return ModelStatus()
    if keyword == "default":
        return ModelDefault()
    number = _pick_number(args[0])
    if number is not None:
        return ModelPick(number)
    return ModelSet(args[0], _model_ref(args[0]))


def _model_for_session(name: str, arg: str) -> RawRef:
    if _NUMERIC_RE.fullmatch(arg.split("@", 1)[0]):
        raise CommandError(f"Give /{name} a model name, not a number: /{name} provider/model.")
    return _model_ref(arg)


def _parse_new(args: list[str]) -> Command:
    if not args:
        return NewSession()
    if len(args) > 1:
        raise CommandError(f"Too many arguments. {USAGE['new']}")
    return NewSession(args[0], _model_for_session("new", args[0]))


def _target_user(arg: str) -> str | None:
    """``@name`` ⇒ "@name" (lower-case), ``user:<id>`` or a Discord mention ⇒ "user:<id>"; else None."""
    if not arg.startswith(("@", "<@")) and not arg.lower().startswith("user:"):
        return None
    username = _USERNAME_RE.fullmatch(arg)
    if username is not None and ".." not in arg:
        return "@" + username.group(1).lower()
    user_id = _USER_ID_RE.fullmatch(arg)
    if user_id is not None and arg.startswith("<") == arg.endswith(">"):
        return "user:" + user_id.group(1)
    raise CommandError(f'"{echo(arg)}" is not a user. Use /reset @username or /reset user:<id>.')


def _parse_reset(args: list[str]) -> Command:
    if not args:
        return ResetSession()
    if len(args) > 2:
        raise CommandError(f"Too many arguments. {USAGE['reset']}")
    target = _target_user(args[0])
    model_args = args[1:] if target is not None else args
    if target is None and len(args) > 1:
        raise CommandError(f"Too many arguments. {USAGE['reset']}")
    if not model_args:
        return ResetSession(target_user=target)
    return ResetSession(model_args[0], _model_for_session("reset", model_args[0]), target)


def _parse_help(args: list[str]) -> Command:
    if not args:
        return Help()
    topic = args[0].removeprefix("/").lower()
    if len(args) > 1 or not re.fullmatch(r"[a-z][a-z0-9_]{0,31}", topic):
        raise CommandError(USAGE["help"])
    return Help(topic)


_PARSERS: dict[str, Callable[[list[str]], Command]] = {
    "model": _parse_model,
    "new": _parse_new,
    "reset": _parse_reset,
    "status": _no_args("status", Status()),
    "help": _parse_help,
    # Telegram sends /start (perhaps with a deep-link payload) when a user first opens the bot.
    "start": lambda _args: Help(),
    "retry": _no_args("retry", Retry()),
    "stop": _no_args("stop", Stop()),
}

COMMAND_NAMES: tuple[str, ...] = tuple(_PARSERS)
