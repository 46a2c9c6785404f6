"""The auth state of one agent as the database holds it: sealed credentials, order, lastGood, usage rows.

Secrets here are ciphertexts (``bot.auth.secret_box``): this layer stores and locks rows and never sees a key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class SealedCredential:
    """One credential row. ``secret``, ``refresh`` and ``extra`` (its other fields, as JSON) are sealed."""

    provider: str
    type: str
    secret: str
    refresh: str | None = None
    email: str | None = None
    expires: int | None = None
    extra: str | None = None


@dataclass(frozen=True)
class UsageRow:
    """A profile's usage stats as the JSON object of ``usageStats[id]``; ``rev`` grows with every write."""

    stats: dict[str, Any]
    rev: int = 0


@dataclass(frozen=True)
class AgentAuthRows:
    """Everything stored for one agent. An edit returns a changed copy; only what differs is written."""

    credentials: dict[str, SealedCredential] = field(default_factory=dict)
    order: dict[str, list[str]] = field(default_factory=dict)
    last_good: dict[str, str] = field(default_factory=dict)
    usage: dict[str, UsageRow] = field(default_factory=dict)
    version: int = 1
    extra: dict[str, Any] = field(default_factory=dict)  # unknown top-level keys of auth-profiles.json


# Functions a caller hands to a write, run inside its transaction: pure, as SQLite may run them twice.
UsageEdit = Callable[[dict[str, Any]], dict[str, Any]]
RowsEdit = Callable[[AgentAuthRows], AgentAuthRows]
Reseal = Callable[[str, str], str]  # (ciphertext, what it is) -> ciphertext under the newest key
