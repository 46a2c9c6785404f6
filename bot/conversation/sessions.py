"""The sessions service: one message of a session at a time, /stop of its turn, /retry's memory, known users.

Messages of one session never interleave: a keyed lock orders them in this process and, when other processes
share the session store, a lease on the session in the database orders them across processes and hosts
(docs/failover.md §10). Different sessions run fully concurrently. What the service remembers is bounded: the
lock table holds only keys someone holds or waits for, /retry remembers the last ``RETRY_SESSIONS`` sessions'
unanswered messages (their images within ``RETRY_IMAGE_BYTES``), and ``KNOWN_USERS`` names are kept for an
admin's ``/reset @name``; the least recently used go first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from types import TracebackType
from typing import Generic, TypeVar

from bot.chat import Incoming
from bot.clock import Clock
from bot.conversation.context import TurnContext
from bot.store.lease import HeldLease, LeaseKeeper
from bot.store.protocol import SessionStore
from bot.store.types import NewMessage, SessionPatch, SessionRecord, StoredMessage

RETRY_SESSIONS = 1_000  # sessions whose unanswered message /retry can send again
RETRY_IMAGE_BYTES = 64 * 1024 * 1024  # images kept for /retry, in all (the newest message's always)
KNOWN_USERS = 10_000  # (platform, user name) pairs remembered for /reset @name

K = TypeVar("K")
V = TypeVar("V")


class Recent(Generic[K, V]):
    """The most recently used entries: at most ``size``, and at most ``max_weight`` by ``weight`` in all
    (the newest entry is kept whatever it weighs); the least recently used go first."""

    def __init__(
        self, size: int, *, weight: Callable[[V], int] | None = None, max_weight: int | None = None
    ) -> None:
        if size < 1:
            raise ValueError("a bounded map needs room for one entry")
        self._size = size
        self._weight = weight
        self._max_weight = max_weight
        self._total = 0
        self._entries: OrderedDict[K, V] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: K) -> bool:
        return key in self._entries

    @property
    def weight(self) -> int:
        return self._total

    def get(self, key: K) -> V | None:
        value = self._entries.get(key)
        if value is not None:
            self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self.pop(key)
        self._entries[key] = value
        self._total += self._weigh(value)
        while len(self._entries) > self._size or (
            self._max_weight is not None and self._total > self._max_weight and len(self._entries) > 1
        ):
            _, oldest = self._entries.popitem(last=False)
            self._total -= self._weigh(oldest)

    def pop(self, key: K) -> V | None:
        value = self._entries.pop(key, None)
        if value is not None:
            self._total -= self._weigh(value)
        return value

    def _weigh(self, value: V) -> int:
        return 0 if self._weight is None else self._weight(value)


@dataclass
class _LockEntry:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    users: int = 0  # tasks holding or waiting for the lock


class KeyedLock:
    """One lock per key, made on first use and dropped once nobody holds or waits for it."""

    def __init__(self) -> None:
        self._entries: dict[str, _LockEntry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @contextlib.asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _LockEntry()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._entries[key]


class InFlight:
    """A session's turn running in the caller's task; ``/stop`` cancels that task, and leaving this context
    ends that cancellation (the caller's task goes on, ``stopped`` is set). Any other cancellation, such as
    a shutdown's, goes on up."""

    def __init__(self, flights: dict[str, InFlight], key: str) -> None:
        self._flights = flights
        self._key = key
        self.task: asyncio.Task[object] | None = None
        self.stop_requested = False
        self.stopped = False

    def __enter__(self) -> InFlight:
        self.task = asyncio.current_task()
        self._flights[self._key] = self
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if self._flights.get(self._key) is self:
            del self._flights[self._key]
        # uncancel() == 0: /stop was the only cancellation; a shutdown's must go on up.
        self.stopped = (
            kind is not None
            and issubclass(kind, asyncio.CancelledError)
            and self.stop_requested
            and self.task is not None
            and self.task.uncancel() == 0
        )
        return self.stopped

    def stop(self) -> None:
        if self.task is not None and not self.task.done() and not self.stop_requested:
            self.stop_requested = True  # a second /stop must not leave a cancellation behind
            self.task.cancel()


class Sessions:
    """Serialises each session's messages, stops its turn on request, remembers what /retry and /reset need."""

    def __init__(
        self,
        store: SessionStore,
        *,
        clock: Clock,
        leases: LeaseKeeper | None = None,
        retry_sessions: int = RETRY_SESSIONS,
        retry_image_bytes: int = RETRY_IMAGE_BYTES,
        known_users: int = KNOWN_USERS,
    ) -> None:
        """``leases``: other processes share ``store``, so each session's messages also hold a lease in it,
        through this keeper (None: this process is alone on its store, its own lock is enough)."""
        self._store = store
        self._clock = clock
        self._leases = leases
        self._locks = KeyedLock()
        self._held: dict[str, HeldLease] = {}  # the leases of the sessions open here, by session key
        self._flights: dict[str, InFlight] = {}
        self._retry: Recent[str, Incoming] = Recent(
            retry_sessions, weight=_image_bytes, max_weight=retry_image_bytes
        )
        self._users: Recent[tuple[str, str], str] = Recent(known_users)

    # -- one message at a time ------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def open(self, ctx: TurnContext) -> AsyncIterator[SessionRecord]:
        """The session ``ctx`` belongs to (created on its first message), to this task alone while the block
        runs: its lock here, then its lease in the shared store (renewed while held, released at the end,
        taken over when its holder died; no transaction stays open meanwhile). The lease is taken and the
        session read in one transaction (``SessionStore.begin_turn``)."""
        async with self._locks.hold(ctx.key):
            if self._leases is None:
                yield await self._store.get_or_create(
                    ctx.key,
                    agent_id=ctx.agent_id,
                    platform=ctx.platform,
                    chat_id=ctx.chat_id,
                    user_id=ctx.owner,
                    thread_id=ctx.thread_id,
                    now_ms=self._clock.now_ms(),
                )
                return
            begin = partial(self._begin_turn, ctx)
            async with self._leases.hold_taking(f"session:{ctx.key}", begin) as (lease, session):
                self._held[ctx.key] = lease
                try:
                    yield session
                finally:
                    del self._held[ctx.key]

    async def _begin_turn(
        self, ctx: TurnContext, lease: HeldLease, ttl_ms: int, now_ms: int
    ) -> SessionRecord | None:
        return await self._store.begin_turn(
            ctx.key,
            lease_key=lease.key,
            holder=lease.holder,
            ttl_ms=ttl_ms,
            agent_id=ctx.agent_id,
            platform=ctx.platform,
            chat_id=ctx.chat_id,
            user_id=ctx.owner,
            thread_id=ctx.thread_id,
            now_ms=now_ms,
        )

    async def save(
        self, key: str, messages: Sequence[NewMessage], *, now_ms: int, patch: SessionPatch
    ) -> list[StoredMessage]:
        """Append a turn to the session held open (``append_messages``). It is the message's last write to
        the session, so its lease is given back in the same transaction (``SessionStore.end_turn``)."""
        lease = self._held.get(key)
        if lease is None or lease.released or self._leases is None:
            return await self._store.append_messages(key, messages, now_ms=now_ms, patch=patch)
        # Not renewed from now on: a renewal after the release below would find the lease "taken over".
        self._leases.discard(lease)
        stored = await self._store.end_turn(
            key, messages, now_ms=now_ms, patch=patch, lease_key=lease.key, holder=lease.holder
        )
        lease.released = True
        return stored

    @property
    def locked(self) -> int:
        """How many sessions are held or waited for right now."""
        return len(self._locks)

    # -- /stop ----------------------------------------------------------------------------------------

    def in_flight(self, key: str) -> InFlight:
        """``with sessions.in_flight(key):`` around a turn makes it the one ``stop(key)`` cancels."""
        return InFlight(self._flights, key)

    def stop(self, key: str) -> bool:
        """Cancel the session's turn, without waiting for it; False when none is running."""
        flight = self._flights.get(key)
        if flight is None or flight.task is None or flight.task.done():
            return False
        flight.stop()
        return True

    # -- /retry ---------------------------------------------------------------------------------------

    def remember_retry(self, key: str, msg: Incoming) -> None:
        """``msg`` got no complete answer: /retry in its session sends it again."""
        self._retry.put(key, msg)

    def retry_message(self, key: str) -> Incoming | None:
        return self._retry.get(key)

    def forget_retry(self, key: str) -> None:
        self._retry.pop(key)

    # -- known users ----------------------------------------------------------------------------------

    def saw(self, msg: Incoming) -> None:
        """Remember who wrote under which name, so that an admin can name them in ``/reset @name``."""
        if msg.user_name:
            self._users.put((msg.platform, _name(msg.user_name)), msg.user_id)

    def user_named(self, platform: str, name: str) -> str | None:
        return self._users.get((platform, _name(name)))


def _name(user_name: str) -> str:
    return user_name.lstrip("@").lower()


def _image_bytes(msg: Incoming) -> int:
    return sum(len(image.data) for image in msg.images)
