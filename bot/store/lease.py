"""Holding a database lease around a piece of work: wait for it with backoff, renew it meanwhile, release it.

A lease is a row with a holder and an expiry (``SessionStore.acquire_lease``): it orders work that must not
overlap across processes and hosts (a session's turns, an OAuth refresh) without holding a transaction or
a connection open across that work. A holder that dies stops renewing, and its lease is taken over once it
expires. Waiters poll: no database here can notify another host, and the expected wait is one turn.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Generator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Protocol, TypeVar

from bot.clock import Clock
from bot.errors import LeaseTimeout, StoreError

log = logging.getLogger("modelbot.store")

Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")
# Takes the lease (``HeldLease``: its key and holder) for ``ttl_ms`` at ``now_ms`` and returns what it got with
# it, or None when another holder has it: ``acquire_lease``, or a transaction that does more (``begin_turn``).
Take = Callable[["HeldLease", int, int], Coroutine[Any, Any, T | None]]


class LeaseStore(Protocol):
    """The lease half of ``SessionStore`` (the SQL stores share one ``leases`` table)."""

    async def acquire_lease(self, key: str, holder: str, *, ttl_ms: int, now_ms: int) -> bool: ...

    async def renew_lease(self, key: str, holder: str, *, ttl_ms: int, now_ms: int) -> bool: ...

    async def release_lease(self, key: str, holder: str) -> bool: ...


@dataclass(frozen=True)
class LeaseTiming:
    """How long a lease lives unrenewed, how often it is renewed, and how a waiter polls."""

    ttl_ms: int = 30_000  # a dead holder frees the key this long after its last renewal
    renew_every_ms: int = 10_000  # a third of the TTL: one renewal may fail without losing the lease
    first_poll_ms: int = 20
    max_poll_ms: int = 250  # the most a waiter lags behind a release

    def __post_init__(self) -> None:
        if not 0 < self.renew_every_ms < self.ttl_ms:
            raise ValueError("a lease must be renewed more often than it expires")
        if not 0 < self.first_poll_ms <= self.max_poll_ms:
            raise ValueError("lease polling needs 0 < first_poll_ms <= max_poll_ms")


@dataclass
class HeldLease:
    """A lease this task holds. ``lost`` is set when a renewal found it taken over (the holder stalled for
    longer than the TTL): the work is then no longer exclusive, and the caller may want to stop it."""

    key: str
    holder: str
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    # Given back by the holder's last transaction (``SessionStore.end_turn``): nothing left to release.
    released: bool = False


_serial = itertools.count(1)
_detached: set[asyncio.Future[Any]] = set()  # clean-ups that outlive a cancelled caller


def process_owner() -> str:
    """This process, as lease holders name it: host and pid (shown to operators looking at the table)."""
    return _owner(os.getpid())


@functools.cache
def _owner(pid: int) -> str:
    # Once per process (a forked child has a pid of its own): gethostname() is a system call, and a holder
    # is named for every message of a session.
    return f"{socket.gethostname()}:{pid}"


def new_holder(owner: str | None = None) -> str:
    """A holder id unique to one acquisition, so two tasks of one process exclude each other too."""
    return f"{process_owner() if owner is None else owner}#{next(_serial)}"


@asynccontextmanager
async def hold_lease(
    store: LeaseStore,
    key: str,
    *,
    clock: Clock,
    timing: LeaseTiming | None = None,
    timeout_ms: int | None = None,
    sleep: Sleep = asyncio.sleep,
    owner: str | None = None,
    keeper: LeaseKeeper | None = None,
) -> AsyncIterator[HeldLease]:
    """Wait for the lease ``key`` (``LeaseTimeout`` after ``timeout_ms``; None waits as long as it takes),
    hold it while the body runs, renewing it in the background (its own task, or the ``keeper``'s), and
    release it at the end, also when the body fails or is cancelled. A release that fails leaves the lease
    to expire after its TTL."""
    held = hold_lease_taking(
        store,
        key,
        partial(_acquire, store),
        clock=clock,
        timing=timing,
        timeout_ms=timeout_ms,
        sleep=sleep,
        owner=owner,
        keeper=keeper,
    )
    async with held as (lease, _):
        yield lease


@asynccontextmanager
async def hold_lease_taking(
    store: LeaseStore,
    key: str,
    take: Take[T],
    *,
    clock: Clock,
    timing: LeaseTiming | None = None,
    timeout_ms: int | None = None,
    sleep: Sleep = asyncio.sleep,
    owner: str | None = None,
    keeper: LeaseKeeper | None = None,
) -> AsyncIterator[tuple[HeldLease, T]]:
    """``hold_lease``, the lease taken by ``take``, which may do more in the same transaction: it returns
    what it got with the lease (such as the session the lease is for), or None when the lease is held
    elsewhere. The body gets the lease and that."""
    holding = _Holding(store, HeldLease(key, new_holder(owner)), clock, timing or LeaseTiming(), sleep)
    taken = await holding.wait_for(timeout_ms, take)
    if keeper is not None:
        keeper.add(holding.lease)
        try:
            yield holding.lease, taken
        finally:
            keeper.discard(holding.lease)
            await holding.release()
        return
    renewing = asyncio.ensure_future(holding.keep_renewing())
    try:
        yield holding.lease, taken
    finally:
        renewing.cancel()
        await asyncio.wait([renewing])
        if not renewing.cancelled() and (exc := renewing.exception()) is not None:
            log.warning("renewing the lease %s failed (%r)", key, exc)
        await holding.release()


async def _acquire(store: LeaseStore, lease: HeldLease, ttl_ms: int, now_ms: int) -> bool | None:
    return True if await store.acquire_lease(lease.key, lease.holder, ttl_ms=ttl_ms, now_ms=now_ms) else None


class LeaseKeeper:
    """Holds leases that are taken all the time (one per session, around every message) and renews all of
    them from one task every ``renew_every_ms``; the task ends once nothing is held.

    A renewal task per lease costs every message a task, and its sleep's timer, cancelled when the message is
    done, stays in the event loop's timer heap until it would have fired: with a message every few
    milliseconds that heap grew to thousands of entries, and every other timer of the process (one per
    streamed chunk, for the answer timeouts) paid for it (measured on the demo provider: the lease cost 1.2 ms CPU per turn that way, 0.7 ms here).
    """

    def __init__(
        self,
        store: LeaseStore,
        *,
        clock: Clock,
        timing: LeaseTiming | None = None,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._store = store
        self._clock = clock
        self.timing = timing or LeaseTiming()
        self._sleep = sleep
        self._held: dict[str, HeldLease] = {}  # by holder
        self._task: asyncio.Task[None] | None = None

    def hold(self, key: str, *, timeout_ms: int | None = None) -> AbstractAsyncContextManager[HeldLease]:
        """``hold_lease`` on this keeper's store and timing, renewed by the keeper."""
        return hold_lease(
            self._store,
            key,
            clock=self._clock,
            timing=self.timing,
            timeout_ms=timeout_ms,
            sleep=self._sleep,
            keeper=self,
        )

    def hold_taking(
        self, key: str, take: Take[T], *, timeout_ms: int | None = None
    ) -> AbstractAsyncContextManager[tuple[HeldLease, T]]:
        """``hold_lease_taking`` on this keeper's store and timing, renewed by the keeper."""
        return hold_lease_taking(
            self._store,
            key,
            take,
            clock=self._clock,
            timing=self.timing,
            timeout_ms=timeout_ms,
            sleep=self._sleep,
            keeper=self,
        )

    def add(self, lease: HeldLease) -> None:
        self._held[lease.holder] = lease
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._renew_all())
            self._task.add_done_callback(_log_failure)

    def discard(self, lease: HeldLease) -> None:
        self._held.pop(lease.holder, None)

    async def stop(self) -> None:
        """Stop renewing (call after the work holding leases has ended; their leases then expire by TTL)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
            self._task = None

    async def _renew_all(self) -> None:
        while self._held:
            await self._sleep(self.timing.renew_every_ms / 1000)
            for lease in list(self._held.values()):
                if lease.holder not in self._held:  # released while an earlier renewal ran
                    continue
                try:
                    held = await self._store.renew_lease(
                        lease.key, lease.holder, ttl_ms=self.timing.ttl_ms, now_ms=self._clock.now_ms()
                    )
                except StoreError as exc:  # the database is away: next time; the TTL leaves room
                    log.warning("could not renew the lease %s (%s)", lease.key, exc)
                    continue
                if not held and lease.holder in self._held:  # else released while its renewal waited
                    log.warning("the lease %s was taken over by another holder", lease.key)
                    lease.lost.set()
                    self._held.pop(lease.holder, None)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("renewing leases failed (%r); the next lease taken starts renewing again", exc)


@dataclass
class _Holding:
    """One acquisition of a lease, from the first poll to the release."""

    store: LeaseStore
    lease: HeldLease
    clock: Clock
    timing: LeaseTiming
    sleep: Sleep

    async def wait_for(self, timeout_ms: int | None, take: Take[T]) -> T:
        started = self.clock.now_ms()
        delay_ms = self.timing.first_poll_ms
        while (taken := await self._take_once(take)) is None:
            waited = self.clock.now_ms() - started
            if timeout_ms is not None and waited >= timeout_ms:
                raise LeaseTimeout(
                    f'Gave up after {waited / 1000:g}s waiting for "{self.lease.key}", held elsewhere.'
                )
            await self.sleep((delay_ms if timeout_ms is None else min(delay_ms, timeout_ms - waited)) / 1000)
            delay_ms = min(delay_ms * 2, self.timing.max_poll_ms)
        return taken

    async def _take_once(self, take: Take[T]) -> T | None:
        attempt: asyncio.Future[T | None] = started(take(self.lease, self.timing.ttl_ms, self.clock.now_ms()))
        try:
            return await asyncio.shield(attempt)
        except asyncio.CancelledError:
            # The statement may still commit (a SQLite thread cannot be stopped): give back what it took.
            _detach(self._give_back(attempt))
            raise

    async def _give_back(self, attempt: Awaitable[object | None]) -> None:
        if await attempt is not None:
            await self.store.release_lease(self.lease.key, self.lease.holder)

    async def keep_renewing(self) -> None:
        lease = self.lease
        while True:
            await self.sleep(self.timing.renew_every_ms / 1000)
            try:
                held = await self.store.renew_lease(
                    lease.key, lease.holder, ttl_ms=self.timing.ttl_ms, now_ms=self.clock.now_ms()
                )
            except StoreError as exc:  # the database is away: try again next time, the TTL leaves room
                log.warning("could not renew the lease %s (%s)", lease.key, exc)
                continue
            if not held:
                log.warning("the lease %s was taken over by another holder", lease.key)
                lease.lost.set()
                return

    async def release(self) -> None:
        if self.lease.released:
            return
        # Shielded: a caller cancelled again while releasing still gives the lease back.
        release = started(self.store.release_lease(self.lease.key, self.lease.holder))
        try:
            await asyncio.shield(release)
        except asyncio.CancelledError:
            _detach(release)
            raise
        except StoreError as exc:
            log.warning("could not release the lease %s (%s); it expires by itself", self.lease.key, exc)


def started(work: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
    """``work`` as a future that goes on when its awaiter is cancelled (for ``asyncio.shield``), run at once
    up to its first suspension, as Python 3.12's eager tasks do.

    A lease statement nearly always completes without suspending (SQLite's transactions on the event loop),
    and cancellation can only reach a coroutine where it suspends: such a call then needs no task of its own.
    A task per call, and the shield's callbacks, cost three loop iterations each way (measured: 6 of a
    chat turn's 11). Work that does suspend (a statement handed to a thread) goes on in a task.
    """
    future: asyncio.Future[T]
    try:
        waiting_for = work.send(None)
    except StopIteration as done:
        future = asyncio.get_running_loop().create_future()
        future.set_result(done.value)
        return future
    except Exception as exc:  # as a task would: the awaiter gets it
        future = asyncio.get_running_loop().create_future()
        future.set_exception(exc)
        return future
    return asyncio.ensure_future(_Resumed(work, waiting_for))


class _Resumed(Awaitable[T]):
    """The rest of a coroutine that suspended on ``waiting_for``: what ``yield from`` would do, for a task."""

    def __init__(self, work: Coroutine[Any, Any, T], waiting_for: Any) -> None:
        self._work = work
        self._waiting_for = waiting_for

    def __await__(self) -> Generator[Any, Any, T]:
        work, waiting_for = self._work, self._waiting_for
        while True:
            try:
                sent = yield waiting_for
            except BaseException as exc:  # the task's cancellation, thrown into the work where it waits
                try:
                    waiting_for = work.throw(exc)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]
            else:
                try:
                    waiting_for = work.send(sent)
                except StopIteration as done:
                    return done.value  # type: ignore[no-any-return]


def _detach(work: Coroutine[Any, Any, Any] | asyncio.Future[Any]) -> None:
    """Let ``work`` finish after its caller is gone; keep a reference until then and log its failure."""
    task = asyncio.ensure_future(work)
    _detached.add(task)
    task.add_done_callback(_forget)


def _forget(task: asyncio.Future[Any]) -> None:
    _detached.discard(task)
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("a lease clean-up failed (%s); the lease expires by itself", exc)
