"""The lock held across one OAuth refresh, so that a single-use refresh token is spent once, by one holder.

``RefreshLock`` is the seam: a lock file beside auth-profiles.json (one host, any number of processes), or a
lease row in the database for ``auth.store: "database"`` (every host, docs/failover.md §9–§10).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Final, Protocol

from bot.auth import lockfile
from bot.clock import Clock
from bot.errors import LeaseTimeout
from bot.store.lease import LeaseStore, LeaseTiming, Sleep, hold_lease

# A refresh is one HTTP exchange: a holder that died mid-refresh blocks the profile's refresh this long.
REFRESH_LEASE: Final = LeaseTiming(ttl_ms=30_000, renew_every_ms=10_000)


class RefreshLockTimeout(Exception):
    """Another holder kept the lock for the whole wait (a refresh that hangs, or a stuck process)."""


class RefreshLock(Protocol):
    """Mutual exclusion of refreshes of one profile, across every process that shares its credentials.

    Hold it from before the credential is re-read until the refreshed tokens are stored: whoever waited
    then reads the winner's tokens instead of spending the old refresh token again.
    """

    def hold(self, profile_id: str) -> AbstractAsyncContextManager[None]: ...


class FileRefreshLock:
    """``flock`` on ``<auth-profiles.json>.refresh.lock``: one refresh at a time per file.

    A separate file from the store's write lock, because a refresh is slow network I/O that must not hold
    up the quick cooldown writes of other turns. The wait happens in a worker thread, never on the loop.
    """

    def __init__(self, path: Path, *, timeout_s: float = 60.0, mode: int = 0o600) -> None:
        self.path = path
        self._timeout_s = timeout_s
        self._mode = mode

    @asynccontextmanager
    async def hold(self, profile_id: str) -> AsyncIterator[None]:
        # One lock for the whole file: refreshes are rare, and a per-profile lock file would never be removed.
        try:
            fd = await _acquire(self.path, self._timeout_s, self._mode)
        except lockfile.LockTimeout:
            raise RefreshLockTimeout(str(self.path)) from None
        try:
            yield
        finally:
            lockfile.unlock(fd)


async def _acquire(path: Path, timeout_s: float, mode: int) -> int:
    """Wait for the lock in a worker thread; if cancelled meanwhile, release it once the thread gets it."""
    pending = asyncio.ensure_future(asyncio.to_thread(lockfile.lock, path, timeout_s, mode=mode))
    try:
        return await asyncio.shield(pending)
    except asyncio.CancelledError:
        pending.add_done_callback(
            lambda f: lockfile.unlock(f.result()) if not f.cancelled() and not f.exception() else None
        )
        raise


class LeaseRefreshLock:
    """A lease per profile in the database (``auth-refresh:<agent>:<profile>``): one refresh across hosts.

    No transaction stays open across the refresh call; the lease is renewed while it runs, and a holder that
    dies frees it after its TTL. Waiters poll the lease (no database here can notify another host).
    """

    def __init__(
        self,
        leases: LeaseStore,
        *,
        agent_id: str,
        clock: Clock,
        timeout_s: float = 60.0,
        timing: LeaseTiming = REFRESH_LEASE,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._leases = leases
        self._agent_id = agent_id
        self._clock = clock
        self._timeout_ms = round(timeout_s * 1000)
        self._timing = timing
        self._sleep = sleep

    @asynccontextmanager
    async def hold(self, profile_id: str) -> AsyncIterator[None]:
        key = f"auth-refresh:{self._agent_id}:{profile_id}"
        held = hold_lease(
            self._leases,
            key,
            clock=self._clock,
            timing=self._timing,
            timeout_ms=self._timeout_ms,
            sleep=self._sleep,
        )
        async with AsyncExitStack() as stack:
            try:  # only the wait is translated: a LeaseTimeout of the body is the body's own
                await stack.enter_async_context(held)
            except LeaseTimeout:
                raise RefreshLockTimeout(key) from None
            yield
