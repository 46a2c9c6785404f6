"""The lock held across one OAuth refresh, so that a single-use refresh token is spent once, by one holder.

``RefreshLock`` is the seam: a lock file beside auth-profiles.json (one host, any number of processes), or a
lease row in the database for ``auth.store: "database"`` (every host, docs/failover.md §9–§10), in
``bot.auth.refresh_lease`` so that the file's users never load the store's lease machinery.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Protocol

from bot.auth import lockfile


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
    import asyncio  # noqa: PLC0415 - see the module's imports

    pending = asyncio.ensure_future(asyncio.to_thread(lockfile.lock, path, timeout_s, mode=mode))
    try:
        return await asyncio.shield(pending)
    except asyncio.CancelledError:
        pending.add_done_callback(
            lambda f: lockfile.unlock(f.result()) if not f.cancelled() and not f.exception() else None
        )
        raise
