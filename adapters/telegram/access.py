"""Who may talk to the bot and who is an admin (docs/failover.md §11): ``allowFrom``, ``admins``, group administrators.

``Gate`` is the adapter's one access check; messages and button presses both pass through it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

log = logging.getLogger("modelbot.telegram")

REFUSAL = "Sorry, this bot is private and you are not on its allow list."


@dataclass(frozen=True)
class Names:
    """A set of Telegram users and chats: numeric ids and @usernames (compared without '@', any case)."""

    ids: frozenset[int]
    usernames: frozenset[str]

    @classmethod
    def parse(cls, entries: Iterable[str]) -> Names:
        ids: set[int] = set()
        usernames: set[str] = set()
        for raw in entries:
            entry = raw.strip()
            if entry.lstrip("-").isdigit():
                ids.add(int(entry))
            elif entry:
                usernames.add(entry.removeprefix("@").lower())
        return cls(frozenset(ids), frozenset(usernames))

    def has(self, user_id: int, username: str | None) -> bool:
        return user_id in self.ids or (username is not None and username.lower() in self.usernames)


class AccessPolicy:
    """``allowFrom`` (None: everyone) lists users, or group chats whose every member may talk to the bot.

    Configured ``admins`` are always allowed; chat administrators are admins in their own group only.
    """

    def __init__(self, allow_from: Iterable[str] | None, admins: Iterable[str]) -> None:
        self._allow = Names.parse(allow_from) if allow_from is not None else None
        self._admins = Names.parse(admins)

    def allowed(self, user_id: int, username: str | None, chat_id: int) -> bool:
        if self._allow is None or self.configured_admin(user_id, username):
            return True
        return self._allow.has(user_id, username) or chat_id in self._allow.ids

    def configured_admin(self, user_id: int, username: str | None) -> bool:
        return self._admins.has(user_id, username)


class ChatAdmins:
    """The administrators of each group (getChatAdministrators), cached for ``ttl_s`` seconds.

    A failed lookup counts as "not an admin" and is not cached, so the next message asks again.
    """

    def __init__(
        self,
        fetch: Callable[[int], Awaitable[Iterable[int]]],
        *,
        ttl_s: float = 60.0,
        now: Callable[[], float] | None = None,
    ) -> None:
        self._fetch = fetch
        self._ttl = ttl_s
        self._now = now
        self._cache: dict[int, tuple[float, frozenset[int]]] = {}
        self._pending: dict[int, asyncio.Task[frozenset[int]]] = {}

    async def is_admin(self, chat_id: int, user_id: int) -> bool:
        now = self._time()
        cached = self._cache.get(chat_id)
        if cached is not None and cached[0] > now:
            return user_id in cached[1]
        task = self._pending.get(chat_id)
        if task is None:  # one lookup per group at a time, however many messages wait for it
            task = self._pending[chat_id] = asyncio.create_task(self._load(chat_id))
            task.add_done_callback(self._done)
        try:
            admins = await asyncio.shield(task)
        except Exception as exc:
            log.warning("telegram: could not list the administrators of chat %s: %s", chat_id, exc)
            return False
        return user_id in admins

    def _done(self, task: asyncio.Task[frozenset[int]]) -> None:
        self._pending = {chat: t for chat, t in self._pending.items() if t is not task}
        if not task.cancelled():
            task.exception()  # retrieved here too: a waiter may have been cancelled meanwhile

    async def _load(self, chat_id: int) -> frozenset[int]:
        admins = frozenset(await self._fetch(chat_id))
        self._cache[chat_id] = (self._time() + self._ttl, admins)
        return admins

    def _time(self) -> float:
        return self._now() if self._now is not None else asyncio.get_running_loop().time()


class Gate:
    """The Telegram adapter's one access check: the config's rules, and each group's own administrators."""

    def __init__(self, policy: AccessPolicy, chat_admins: ChatAdmins) -> None:
        self._policy = policy
        self._chat_admins = chat_admins

    def allows(self, user_id: int, username: str | None, chat_id: int) -> bool:
        return self._policy.allowed(user_id, username, chat_id)

    async def is_admin(self, user_id: int, username: str | None, chat_id: int, *, group: bool) -> bool:
        """A configured admin anywhere; in a group, also one of its administrators (asked, then cached)."""
        if self._policy.configured_admin(user_id, username):
            return True
        return group and await self._chat_admins.is_admin(chat_id, user_id)
