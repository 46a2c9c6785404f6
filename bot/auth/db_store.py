"""auth.store "database": one agent's auth state in the store's database, cached so the engine reads it for free.

Reads: ``load()`` returns the cached document and never touches the database; a poller re-reads it every
``max_age_ms / 2`` (and ``aload`` when it is older than that), so a write by any other process or host shows
within about ``max_age_ms`` (default 0.5 s). This process's own writes show at once.

Writes: ``update_usage`` is a read-modify-write of one profile's stats under its row lock with a pure
``UsageStats -> UsageStats`` (the cooldown arithmetic plugs in unchanged); ``set_last_good`` is one upsert;
``aupdate`` applies a pure ``AuthProfiles -> AuthProfiles`` under the agent's row lock (the CLI's edits, a
refresh's new tokens). ``refresh_lock`` is a lease on one profile held across an OAuth refresh call, without a
transaction open meanwhile. Secrets are sealed with the ``SecretBox`` before they reach the database.
Implements ``bot.auth.port.AuthStateStore``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final, Protocol

from bot.auth import codec, cooldowns, doc_edits
from bot.auth.cooldowns import CooldownPolicy
from bot.auth.refresh_lease import REFRESH_LEASE, LeaseRefreshLock
from bot.auth.refresh_lock import RefreshLock
from bot.auth.sealed import Sealer
from bot.auth.secret_box import SecretBox, wrong_key
from bot.auth.types import AuthProfiles, UsageStats
from bot.clock import Clock, SystemClock
from bot.errors import AuthError, StoreError
from bot.failover.reasons import Reason
from bot.store.auth_types import AgentAuthRows, RowsEdit, UsageEdit, UsageRow
from bot.store.lease import LeaseStore, LeaseTiming, Sleep

log = logging.getLogger("modelbot.auth")

KEY_CHECK_TEXT: Final = "modelbot key check"


class AuthState(LeaseStore, Protocol):
    """Sealed rows of every agent (``bot.store.auth_state.SqlAuthState``)."""

    async def load(self, agent_id: str) -> AgentAuthRows: ...

    async def update_usage(
        self, agent_id: str, profile_id: str, change: UsageEdit, *, now_ms: int
    ) -> tuple[UsageRow, UsageRow]: ...

    async def set_last_good(self, agent_id: str, provider: str, profile_id: str) -> None: ...

    async def edit(self, agent_id: str, change: RowsEdit, *, now_ms: int) -> AgentAuthRows: ...

    async def key_check(self, make: Callable[[], str]) -> str: ...


@dataclass(frozen=True)
class UsageChange:
    """A profile's stats before and after one ``update_usage``, both as committed."""

    before: UsageStats
    after: UsageStats


@dataclass(frozen=True)
class _Cached:
    doc: AuthProfiles
    revs: dict[str, int]  # usage rev per profile, to tell which of two copies of a profile's stats is newer
    read_at: int  # when the read that produced it started


class DbAuthStore:
    """The auth state of one agent in the database, for the engine, the resolver and the CLI."""

    def __init__(
        self,
        state: AuthState,
        box: SecretBox,
        *,
        agent_id: str = "main",
        where: str = "the database",
        clock: Clock | None = None,
        max_age_ms: int = 500,
        sleep: Sleep = asyncio.sleep,
        refresh_timing: LeaseTiming = REFRESH_LEASE,
    ) -> None:
        if max_age_ms < 2:
            raise ValueError("max_age_ms must be at least 2")
        self.agent_id = agent_id
        self.where = f"{where} (agent {agent_id})"
        self._state = state
        self._box = box
        self._sealer = Sealer(box, agent_id)
        self._clock: Clock = SystemClock() if clock is None else clock
        self._max_age_ms = max_age_ms
        self._sleep = sleep
        self._refresh_timing = refresh_timing
        self._cached: _Cached | None = None
        self._polling: asyncio.Future[AuthProfiles] | None = None
        self._poller: asyncio.Task[None] | None = None
        # Writes of this process that a read in flight may have missed: (sequence number, value).
        self._writes = 0
        self._edits = 0
        self._reads = 0  # reads (and edits) started; a read never replaces the copy of a later one
        self._installed = 0
        self._recent_usage: dict[str, tuple[int, UsageRow, UsageStats]] = {}
        self._recent_good: dict[str, tuple[int, str]] = {}

    # -- lifecycle ---------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Check the key against the database, read the state, and keep it fresh until ``stop``."""
        await self.verify_key()
        await self.areload()
        if self._poller is None:
            self._poller = asyncio.ensure_future(self._poll())

    async def stop(self) -> None:
        if self._poller is not None:
            self._poller.cancel()
            await asyncio.wait([self._poller])
            self._poller = None

    async def verify_key(self) -> None:
        """``SecretKeyError`` unless the key opens the database's key check (made by the first process)."""
        stored = await self._state.key_check(lambda: self._box.seal(KEY_CHECK_TEXT))
        what = "the key check of this database"
        if self._box.open(stored, what=what) != KEY_CHECK_TEXT:
            raise wrong_key(what)

    async def _poll(self) -> None:
        failing = False
        while True:
            await self._sleep(self._max_age_ms / 2000)
            try:
                await self.aload()
            except (StoreError, AuthError) as exc:  # keep serving the last copy; say so once per outage
                if not failing:
                    log.warning("could not re-read the auth state of agent %s: %s", self.agent_id, exc)
                failing = True
            else:
                if failing:
                    log.info("the auth state of agent %s is readable again", self.agent_id)
                failing = False

    # -- reading -----------------------------------------------------------------------------------------

    def load(self) -> AuthProfiles:
        """The cached document (at most about ``max_age_ms`` old); no I/O. Treat it as read-only."""
        if self._cached is None:
            raise AuthError("The auth state is not loaded yet: start the database auth store first.")
        return self._cached.doc

    async def aload(self) -> AuthProfiles:
        """The document, read again first when the copy is older than ``max_age_ms / 2``."""
        cached = self._cached
        if cached is not None and self._clock.now_ms() - cached.read_at < self._max_age_ms // 2:
            return cached.doc
        if self._polling is None or self._polling.done():  # concurrent callers share one read
            self._polling = asyncio.ensure_future(self._read())
            self._polling.add_done_callback(_retrieve)
        return await asyncio.shield(self._polling)

    async def areload(self) -> AuthProfiles:
        """The document as the database holds it now (a read that starts after this call)."""
        return await self._read()

    async def _read(self) -> AuthProfiles:
        writes, edits, started = self._writes, self._edits, self._clock.now_ms()
        self._reads += 1
        seq = self._reads
        rows = await self._state.load(self.agent_id)
        if self._cached is not None and (self._edits != edits or seq < self._installed):
            return self._cached.doc  # an edit finished, or a later read landed, meanwhile: that copy is newer
        return self._install(rows, self._sealer.open(rows), seq=seq, read_at=started, writes_before=writes)

    def _install(
        self, rows: AgentAuthRows, doc: AuthProfiles, *, seq: int, read_at: int, writes_before: int
    ) -> AuthProfiles:
        """Cache a read, keeping this process's writes that finished after the read began."""
        self._installed = max(self._installed, seq)
        revs = {pid: row.rev for pid, row in rows.usage.items()}
        stats, good = dict(doc.usage_stats), dict(doc.last_good)
        for pid, (written, row, value) in list(self._recent_usage.items()):
            if written <= writes_before:
                del self._recent_usage[pid]  # committed before the read began: the read has it
            elif row.rev > revs.get(pid, 0):
                stats[pid], revs[pid] = value, row.rev
        for provider, (written, pid) in list(self._recent_good.items()):
            if written <= writes_before:
                del self._recent_good[provider]
            else:
                good[provider] = pid
        doc = replace(doc, usage_stats=stats, last_good=good)
        self._cached = _Cached(doc, revs, read_at)
        return doc

    # -- writing -----------------------------------------------------------------------------------------

    async def update_usage(self, profile_id: str, change: Callable[[UsageStats], UsageStats]) -> UsageChange:
        """Apply the pure ``change`` to the profile's stats under its row lock (``SELECT … FOR UPDATE``, or
        ``BEGIN IMMEDIATE`` on SQLite); the stats may belong to an implicit profile (``openai:env``)."""
        sealer = self._sealer

        def body(raw: dict[str, Any]) -> dict[str, Any]:
            before = sealer.stats(UsageRow(raw), profile_id)
            after = change(before)
            return raw if after == before else codec.encode_stats(after)

        now = self._clock.now_ms()
        before, after = await self._state.update_usage(self.agent_id, profile_id, body, now_ms=now)
        stats = sealer.stats(after, profile_id)
        self._writes += 1
        self._recent_usage[profile_id] = (self._writes, after, stats)
        cached = self._cached
        if cached is not None and after.rev >= cached.revs.get(profile_id, 0):
            doc = replace(cached.doc, usage_stats={**cached.doc.usage_stats, profile_id: stats})
            self._cached = replace(cached, doc=doc, revs={**cached.revs, profile_id: after.rev})
        return UsageChange(sealer.stats(before, profile_id), stats)

    async def set_last_good(self, provider: str, profile_id: str) -> None:
        """The provider's last good profile, in one upsert."""
        provider = provider.strip().lower()
        await self._state.set_last_good(self.agent_id, provider, profile_id)
        self._writes += 1
        self._recent_good[provider] = (self._writes, profile_id)
        if self._cached is not None:
            doc = self._cached.doc
            self._cached = replace(
                self._cached, doc=replace(doc, last_good={**doc.last_good, provider: profile_id})
            )

    async def aupdate(self, fn: Callable[[AuthProfiles], AuthProfiles]) -> AuthProfiles:
        """Apply the pure ``fn`` to the whole document under the agent's row lock; returns the result.

        ``fn`` runs inside the transaction (it may run twice on SQLite); what it raises aborts the edit.
        """
        sealer = self._sealer

        def body(rows: AgentAuthRows) -> AgentAuthRows:
            current = sealer.open(rows)
            new = fn(current)
            return rows if new == current else sealer.seal(new, base_rows=rows, base_doc=current)

        writes, started = self._writes, self._clock.now_ms()
        self._reads += 1
        seq = self._reads
        rows = await self._state.edit(self.agent_id, body, now_ms=started)
        self._edits += 1
        return self._install(rows, sealer.open(rows), seq=seq, read_at=started, writes_before=writes)

    # -- the engine's bookkeeping and the operator's reset --------------------------------------------------

    async def arecord_failure(
        self,
        profile_id: str,
        reason: Reason,
        *,
        provider: str,
        now_ms: int,
        policy: CooldownPolicy,
        model: str | None = None,
        retry_after_ms: int | None = None,
    ) -> UsageStats:
        """The cooldown arithmetic on the profile's row under its lock: a burst of failures from several
        hosts escalates once, and none is lost (docs/failover.md §6)."""

        def fail(stats: UsageStats) -> UsageStats:
            return cooldowns.record_failure(
                stats,
                reason,
                provider=provider,
                now_ms=now_ms,
                policy=policy,
                model=model,
                retry_after_ms=retry_after_ms,
            )

        return (await self.update_usage(profile_id, fail)).after

    async def arecord_success(
        self,
        profile_id: str,
        *,
        provider: str,
        now_ms: int,
        started_ms: int | None = None,
        model: str | None = None,
    ) -> UsageStats:
        """Clears only what failed before the call started (a newer failure of any host stands); then the
        provider's ``lastGood`` in one upsert, unless such a newer failure says otherwise."""
        started = now_ms if started_ms is None else started_ms
        change = await self.update_usage(
            profile_id,
            lambda stats: cooldowns.record_success(stats, model=model, started_ms=started, now_ms=now_ms),
        )
        provider = provider.strip().lower()
        good = self.load().last_good.get(provider) if self._cached is not None else None
        if not cooldowns.failed_after(change.before, started, model) and good != profile_id:
            await self.set_last_good(provider, profile_id)
        return change.after

    async def aclear_cooldown(self, profile_id: str, model: str | None = None) -> UsageStats:
        return (await self.aupdate(doc_edits.without_cooldown(profile_id, model))).stats(profile_id)

    # -- OAuth refresh, once across processes and hosts ----------------------------------------------------

    def refresh_lock(self, *, timeout_s: float) -> RefreshLock:
        """A lease per profile: a second process waits, then reads the first one's new tokens (``areload``)
        instead of spending the single-use refresh token again."""
        return LeaseRefreshLock(
            self._state,
            agent_id=self.agent_id,
            clock=self._clock,
            timeout_s=timeout_s,
            timing=self._refresh_timing,
            sleep=self._sleep,
        )


def _retrieve(read: asyncio.Future[AuthProfiles]) -> None:
    # Every caller of a shared read may have been cancelled; reading its error keeps asyncio quiet.
    if not read.cancelled():
        read.exception()
