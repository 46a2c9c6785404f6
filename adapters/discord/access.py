"""Who may talk to the bot on Discord and who is an admin (docs/failover.md §11): pure rules over ids, no discord types."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

REFUSAL = "Sorry, you are not allowed to use this bot here. Ask whoever runs it to give you access."


@dataclass(frozen=True)
class Speaker:
    """The ids that access rules look at: the user, their roles, and the channel (and its parent)."""

    user_id: int
    role_ids: frozenset[int] = frozenset()
    channel_ids: frozenset[int] = frozenset()  # the channel, plus the parent channel of a thread
    manages_guild: bool = False  # the Manage Server permission in this guild


@dataclass(frozen=True)
class AccessPolicy:
    """``allowFrom`` entries are user ids (optionally ``user:<id>``), ``role:<id>`` and ``channel:<id>``."""

    users: frozenset[int] | None  # None: everyone is allowed
    roles: frozenset[int]
    channels: frozenset[int]
    admins: frozenset[int]

    @classmethod
    def from_config(cls, allow_from: Iterable[str] | None, admins: Iterable[str]) -> AccessPolicy:
        """Parse the config lists; malformed entries never match anybody (they cannot widen access)."""
        admin_ids = frozenset(i for i in map(_user_id, admins) if i is not None)
        if allow_from is None:
            return cls(users=None, roles=frozenset(), channels=frozenset(), admins=admin_ids)
        users, roles, channels = set(), set(), set()
        for entry in allow_from:
            kind, _, value = entry.strip().rpartition(":")
            if not value.isdigit():
                continue
            if kind in ("", "user"):
                users.add(int(value))
            elif kind == "role":
                roles.add(int(value))
            elif kind == "channel":
                channels.add(int(value))
        return cls(frozenset(users), frozenset(roles), frozenset(channels), admin_ids)

    def allows(self, speaker: Speaker) -> bool:
        """Everyone without an allow list; else a listed user, role or channel. Configured admins always."""
        if self.users is None or speaker.user_id in self.admins or speaker.user_id in self.users:
            return True
        return bool(self.roles & speaker.role_ids or self.channels & speaker.channel_ids)

    def is_admin(self, speaker: Speaker) -> bool:
        """Listed in ``admins``, or holds Manage Server in the guild the message came from."""
        return speaker.user_id in self.admins or speaker.manages_guild


def _user_id(entry: str) -> int | None:
    value = entry.strip().removeprefix("user:")
    return int(value) if value.isdigit() else None
