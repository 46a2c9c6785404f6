"""The session store's values: session keys, session records, messages, patches and failover events."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final, Literal

MessageRole = Literal["user", "assistant", "system", "summary"]
ModelSource = Literal["user", "command"]
PinSource = Literal["auto", "user"]

MESSAGE_ROLES: Final[tuple[MessageRole, ...]] = ("user", "assistant", "system", "summary")
MODEL_SOURCES: Final[tuple[ModelSource, ...]] = ("user", "command")
PIN_SOURCES: Final[tuple[PinSource, ...]] = ("auto", "user")

MAX_KEY_PART = 128  # platform ids are short; a cap keeps hostile console names out of the key column


def _key_part(what: str, value: str | int) -> str:
    text = str(value).strip()
    # ":" separates the parts of a key, so a part holding one could impersonate another session.
    if not text or ":" in text or len(text) > MAX_KEY_PART or not text.isprintable():
        raise ValueError(f"invalid {what} for a session key: {str(value)[:40]!r}")
    return text


def session_key(
    platform: str, chat_id: str | int, *, user_id: str | int | None = None, thread_id: str | int | None = None
) -> str:
    """``telegram:chat:123``, ``telegram:chat:-100:user:42``, ``discord:chat:9:thread:77``."""
    key = f"{_key_part('platform', platform).lower()}:chat:{_key_part('chat id', chat_id)}"
    if thread_id is not None:
        key += f":thread:{_key_part('thread id', thread_id)}"
    if user_id is not None:
        key += f":user:{_key_part('user id', user_id)}"
    return key


def console_session_key(name: str) -> str:
    """The console adapter's sessions are named by ``--session NAME``: ``console:NAME``."""
    return f"console:{_key_part('session name', name)}"


@dataclass(frozen=True)
class SessionRecord:
    """One conversation's settings and bookkeeping. Timestamps are ms since the epoch."""

    key: str
    agent_id: str
    platform: str
    chat_id: str
    user_id: str | None
    thread_id: str | None
    model_override: str | None  # "provider/model" chosen for this session, None: the agent's primary
    model_source: ModelSource | None
    pin_profile: str | None  # the auth profile kept warm for this session (docs/failover.md §8)
    pin_source: PinSource | None
    pin_compaction: int | None  # compaction_count when the pin was set: a later compaction re-picks it
    compaction_count: int
    last_model: str | None
    last_profile: str | None
    last_fallback: bool  # the last answer came from a fallback model or profile
    created_at: int
    updated_at: int
    message_count: int


@dataclass(frozen=True)
class Attachment:
    """What was attached to a message; the bytes themselves are never stored."""

    media_type: str
    size: int
    name: str | None = None


@dataclass(frozen=True)
class NewMessage:
    """A message to append; the store assigns its id and timestamp."""

    role: MessageRole
    content: str
    attachments: tuple[Attachment, ...] = ()
    token_estimate: int = 0

    def __post_init__(self) -> None:
        if self.role not in MESSAGE_ROLES:
            raise ValueError(f"unknown message role {self.role!r}")


@dataclass(frozen=True)
class StoredMessage:
    """A message as stored. Ids grow with every append; compaction re-numbers the messages it keeps."""

    id: int
    session_key: str
    role: MessageRole
    content: str
    attachments: tuple[Attachment, ...]
    token_estimate: int
    created_at: int


@dataclass(frozen=True)
class FailoverEvent:
    """One failed attempt worth remembering: which model and profile, why, and until when it cools down."""

    at: int
    session_key: str | None
    ref: str
    profile_id: str | None
    reason: str
    cooldown_until: int | None = None


class Unchanged(enum.Enum):
    """The type of ``UNCHANGED``: a patch field that keeps the stored value."""

    UNCHANGED = "unchanged"

    def __repr__(self) -> str:
        return "UNCHANGED"


UNCHANGED: Final = Unchanged.UNCHANGED


@dataclass(frozen=True)
class SessionPatch:
    """The fields ``SessionStore.update`` may change; ``UNCHANGED`` (the default) keeps a field as it is.

    ``compaction_count`` and ``message_count`` are missing on purpose: only ``replace_history``,
    ``append_messages`` and ``reset`` move them, atomically with the messages they count.
    """

    agent_id: str | Unchanged = UNCHANGED
    model_override: str | Unchanged | None = UNCHANGED
    model_source: ModelSource | Unchanged | None = UNCHANGED
    pin_profile: str | Unchanged | None = UNCHANGED
    pin_source: PinSource | Unchanged | None = UNCHANGED
    pin_compaction: int | Unchanged | None = UNCHANGED
    last_model: str | Unchanged | None = UNCHANGED
    last_profile: str | Unchanged | None = UNCHANGED
    last_fallback: bool | Unchanged = UNCHANGED

    def __post_init__(self) -> None:
        # Values can come from untyped callers (JSON, the CLI): refuse what the columns must never hold.
        if self.model_source not in (*MODEL_SOURCES, None, UNCHANGED):
            raise ValueError(f"unknown model source {self.model_source!r}")
        if self.pin_source not in (*PIN_SOURCES, None, UNCHANGED):
            raise ValueError(f"unknown pin source {self.pin_source!r}")

    def changes(self) -> dict[str, object]:
        """The fields to write, by column name."""
        # The instance's dict holds every field, in declaration order (a frozen dataclass without slots).
        return {name: value for name, value in vars(self).items() if value is not UNCHANGED}


CLEAR_PIN: Final = SessionPatch(pin_profile=None, pin_source=None, pin_compaction=None)
