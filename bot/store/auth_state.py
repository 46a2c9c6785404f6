"""The auth state of every agent in the store's database: each method is one short transaction of ``auth_sql``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import TypeVar

from sqlalchemy.engine import Connection

from bot.errors import StoreError
from bot.store import auth_sql, lease_sql
from bot.store.auth_types import AgentAuthRows, Reseal, RowsEdit, UsageEdit, UsageRow
from bot.store.database import Database, open_database
from bot.store.db_errors import database_errors
from bot.store.migrate import upgrade_database

T = TypeVar("T")


class SqlAuthState:
    """Sealed auth rows on a ``Database`` that someone else opened (the session store's, to share its engine:
    two engines of one process on one SQLite file would drop each other's locks). ``database`` is asked for
    it at each transaction, so the state can be wired before the session store has started.

    Also a ``bot.store.lease.LeaseStore``: an OAuth refresh holds a lease in the same table as turns do.
    """

    def __init__(self, database: Callable[[], Database]) -> None:
        self._database = database

    async def _run(self, body: Callable[[Connection], T], *, write: bool = False, quick: bool = True) -> T:
        """One transaction; ``quick`` (a few rows: SQLite may run it on the event loop) unless said otherwise."""
        try:
            return await self._database().run(body, write=write, quick=quick)
        except database_errors() as exc:  # sqlite3's too: opening the loop's connections
            raise StoreError(f"The auth state in the database failed ({type(exc).__name__}).") from exc

    async def load(self, agent_id: str) -> AgentAuthRows:
        return await self._run(partial(auth_sql.load, agent_id=agent_id))

    async def update_usage(
        self, agent_id: str, profile_id: str, change: UsageEdit, *, now_ms: int
    ) -> tuple[UsageRow, UsageRow]:
        body = partial(
            auth_sql.update_usage, agent_id=agent_id, profile_id=profile_id, change=change, now_ms=now_ms
        )
        return await self._run(body, write=True)

    async def set_last_good(self, agent_id: str, provider: str, profile_id: str) -> None:
        body = partial(auth_sql.set_last_good, agent_id=agent_id, provider=provider, profile_id=profile_id)
        await self._run(body, write=True)

    async def edit(self, agent_id: str, change: RowsEdit, *, now_ms: int) -> AgentAuthRows:
        return await self._run(
            partial(auth_sql.edit, agent_id=agent_id, change=change, now_ms=now_ms), write=True
        )

    async def key_check(self, make: Callable[[], str]) -> str:
        return await self._run(partial(auth_sql.key_check, make=make), write=True)

    async def reseal_all(self, reseal: Reseal) -> int:
        return await self._run(partial(auth_sql.reseal_all, reseal=reseal), write=True, quick=False)

    async def acquire_lease(self, key: str, holder: str, *, ttl_ms: int, now_ms: int) -> bool:
        body = partial(lease_sql.acquire, key=key, holder=holder, ttl_ms=ttl_ms, now_ms=now_ms)
        return await self._run(body, write=True)

    async def renew_lease(self, key: str, holder: str, *, ttl_ms: int, now_ms: int) -> bool:
        body = partial(lease_sql.renew, key=key, holder=holder, ttl_ms=ttl_ms, now_ms=now_ms)
        return await self._run(body, write=True)

    async def release_lease(self, key: str, holder: str) -> bool:
        return await self._run(partial(lease_sql.release, key=key, holder=holder), write=True)


@asynccontextmanager
async def open_auth_state(url: str) -> AsyncIterator[SqlAuthState]:
    """The auth state at ``url`` on an engine of its own, migrated first (for the CLI and tests)."""
    database = open_database(url)
    try:
        await upgrade_database(database)
        yield SqlAuthState(lambda: database)
    finally:
        await database.dispose()
