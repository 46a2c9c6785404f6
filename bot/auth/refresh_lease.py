"""The OAuth refresh lock of ``auth.store: "database"``: a lease row per profile, shared by every host."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Final

from bot.auth.refresh_lock import RefreshLockTimeout
from bot.clock import Clock
from bot.errors import LeaseTimeout
from bot.store.lease import LeaseStore, LeaseTiming, Sleep, hold_lease

# A refresh is one HTTP exchange: a holder that died mid-refresh blocks the profile's refresh this long.
REFRESH_LEASE: Final = LeaseTiming(ttl_ms=30_000, renew_every_ms=10_000)


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
