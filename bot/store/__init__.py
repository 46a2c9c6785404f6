"""Session storage: the ``SessionStore`` port, its values, and the in-memory store.

The SQL store lives in ``bot.store.sql`` and is imported by the composition root only, so that code
which merely handles sessions never imports SQLAlchemy.
"""

from bot.store.memory import InMemorySessionStore
from bot.store.protocol import SessionStore, unknown_session
from bot.store.types import (
    CLEAR_PIN,
    UNCHANGED,
    Attachment,
    FailoverEvent,
    MessageRole,
    ModelSource,
    NewMessage,
    PinSource,
    SessionPatch,
    SessionRecord,
    StoredMessage,
    Unchanged,
    console_session_key,
    session_key,
)

__all__ = [
    "CLEAR_PIN",
    "UNCHANGED",
    "Attachment",
    "FailoverEvent",
    "InMemorySessionStore",
    "MessageRole",
    "ModelSource",
    "NewMessage",
    "PinSource",
    "SessionPatch",
    "SessionRecord",
    "SessionStore",
    "StoredMessage",
    "Unchanged",
    "console_session_key",
    "session_key",
    "unknown_session",
]
