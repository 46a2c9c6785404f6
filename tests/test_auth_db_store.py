"""auth.store "database": the DB auth store on SQLite and PostgreSQL — round trips, sealing, the read cache,
row-locked usage writes, whole-document edits, keys and rekeying, the refresh lock, and real processes.

Run as ``python -m tests.test_auth_db_store URL failures|refresh NAME`` this module is also the worker that
the multi-process tests start.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from bot.auth import codec, doc_edits
from bot.auth.cooldowns import CooldownPolicy, record_failure
from bot.auth.db_store import DbAuthStore
from bot.auth.secret_box import SecretBox
from bot.auth.types import AuthProfiles, Credential, ModelStats, UsageStats
from bot.errors import AuthError, SecretKeyError, StoreError, UnknownProfile
from bot.failover.reasons import Reason
from bot.store.auth_state import SqlAuthState, open_auth_state
from bot.store.auth_types import AgentAuthRows
from bot.store.database import open_database
from bot.store.sql import SqlSessionStore, sqlite_url
from bot.store.tables import auth_credentials, auth_meta, auth_usage
from tests.fakes.clock import FakeClock
from tests.fakes.timer import FakeTimer, settle
from tests.pg import pg_url, truncate_all  # noqa: F401
from tests.test_auth_store import SEED

REPO = Path(__file__).resolve().parent.parent
KEY_A = base64.urlsafe_b64encode(b"a" * 32).decode()
KEY_B = base64.urlsafe_b64encode(b"b" * 32).decode()
KEY_C = base64.urlsafe_b64encode(b"c" * 32).decode()
BOX = SecretBox([KEY_A])
SQL_BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
PID = "openai:work"


@pytest.fixture(params=SQL_BACKENDS)
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty database of each backend."""
    if request.param == "sqlite":
        found = sqlite_url(tmp_path / "auth.sqlite")
    else:
        found = str(request.getfixturevalue("pg_url"))
    store = SqlSessionStore(found)
    await store.start()
    await store.stop()
    if found.startswith("postgresql"):
        await truncate_all(found)
    return found


@contextlib.asynccontextmanager
async def opened(url: str, box: SecretBox = BOX, **kw: Any) -> AsyncIterator[DbAuthStore]:
    """A started store on an engine of its own: to the database, another process."""
    async with open_auth_state(url) as state:
        store = DbAuthStore(state, box, **kw)
        await store.start()
        try:
            yield store
        finally:
            await store.stop()


async def _raw(url: str, body: Callable[[Connection], Any]) -> Any:
    database = open_database(url)
    try:
        return await database.run(body, write=True)
    finally:
        await database.dispose()


def _seed(_: AuthProfiles) -> AuthProfiles:
    return codec.decode(copy.deepcopy(SEED))


def _key(value: str = "sk-work-0001") -> Credential:
    return Credential(type="api_key", provider="openai", secret=value)


def _count_failure(stats: UsageStats) -> UsageStats:
    """One failure write: a counter that only grows, so a lost update shows as a missing count."""
    counts = {"rate_limit": stats.failure_counts.get("rate_limit", 0) + 1}
    return replace(stats, failure_counts=counts, error_count=counts["rate_limit"])


# --- round trips and sealing ------------------------------------------------------------------------------


async def test_the_seed_document_round_trips_through_the_database(url: str) -> None:
    """Profiles of every type, order, lastGood, usage stats and unknown keys come back exactly."""
    async with opened(url) as writer:
        written = await writer.aupdate(_seed)
    async with opened(url) as reader:
        assert reader.load() == written
        assert codec.encode(reader.load()) == SEED
    oauth = written.profiles["google-antigravity:user@gmail.com"]
    assert (oauth.secret, oauth.refresh, oauth.extra) == (
        "ya29.cccc",
        "1//dddd",
        {"projectId": "proj-1", "enterpriseUrl": "https://example.com"},
    )


async def test_secrets_are_sealed_at_rest(url: str) -> None:
    """No key, token, refresh token or extra field is stored in clear; every one is a Fernet token."""
    async with opened(url) as store:
        await store.aupdate(_seed)

    def read(conn: Connection) -> list[Any]:
        columns = (auth_credentials.c.secret, auth_credentials.c.refresh, auth_credentials.c.extra)
        return [value for row in conn.execute(sa.select(*columns)) for value in row if value is not None]

    stored = await _raw(url, read)
    assert len(stored) == 4 + 2  # four secrets, one refresh token, one credential with extra fields
    for value in stored:
        assert value.startswith("gAAAAA")
        for plain in ("sk-ant-api03-aaaa", "sk-ant-oat01-bbbb", "ya29.cccc", "1//dddd", "sk-eeee", "proj-1"):
            assert plain not in value


async def test_provider_ids_are_stored_lower_case(url: str) -> None:
    """A provider given as "OpenAI" (credential, order, lastGood) is stored and read back as "openai"."""
    async with opened(url) as store:
        await store.aupdate(
            doc_edits.with_profile(PID, Credential(type="api_key", provider="OpenAI", secret="sk-1"))
        )
        await store.aupdate(lambda d: replace(d, order={"OpenAI": [PID]}, last_good={"OpenAI": PID}))
        await store.set_last_good("OpenAI", PID)
        doc = await store.areload()
    assert (doc.profiles[PID].provider, doc.order, doc.last_good) == (
        "openai",
        {"openai": [PID]},
        {"openai": PID},
    )


# --- the read cache -----------------------------------------------------------------------------------------


class CountingState(SqlAuthState):
    """Counts the reads that reach the database; a test may hold them at a gate."""

    def __init__(self, state: SqlAuthState) -> None:
        super().__init__(state._database)
        self.loads = 0
        self.gate: asyncio.Event | None = None
        self.failing = False

    async def load(self, agent_id: str) -> AgentAuthRows:
        self.loads += 1
        if self.failing:
            raise StoreError("The auth state in the database failed (OperationalError).")
        rows = await super().load(agent_id)
        if self.gate is not None:
            await self.gate.wait()
        return rows


async def test_reads_cost_nothing_and_this_process_sees_its_own_writes_at_once(
    url: str, clock: FakeClock
) -> None:
    """load() never reaches the database; a write shows in it at once; the poller re-reads on schedule."""
    timer = FakeTimer(clock)
    async with open_auth_state(url) as inner:
        state = CountingState(inner)
        store = DbAuthStore(state, BOX, clock=clock, sleep=timer.sleep, max_age_ms=500)
        await store.start()
        try:
            assert state.loads == 1
            for _ in range(1_000):
                store.load()
            assert state.loads == 1
            await store.aupdate(doc_edits.with_profile(PID, _key()))
            await store.update_usage(PID, _count_failure)
            assert store.load().stats(PID).failure_counts == {"rate_limit": 1}
            assert state.loads == 1
            await timer.advance(250)
            assert state.loads == 2
            assert await store.aload() == store.load()  # fresh enough: no read
            assert state.loads == 2
        finally:
            await store.stop()


async def test_a_read_in_flight_never_hides_a_newer_write_of_this_process(url: str) -> None:
    """A reload that began before a local failure write finished must not bring back the older stats."""
    async with open_auth_state(url) as inner:
        state = CountingState(inner)
        store = DbAuthStore(state, BOX)
        await store.start()
        try:
            await store.aupdate(doc_edits.with_profile(PID, _key()))
            state.gate = asyncio.Event()
            reading = asyncio.ensure_future(store.areload())
            await settle()
            await store.update_usage(PID, _count_failure)
            state.gate.set()
            await reading
            assert store.load().stats(PID).failure_counts == {"rate_limit": 1}
            state.gate = None
            assert (await store.areload()).stats(PID).failure_counts == {"rate_limit": 1}
        finally:
            await store.stop()


async def test_a_slow_read_never_replaces_the_copy_of_a_later_one(url: str) -> None:
    """Two reads in flight: the one that started first but ends last keeps out of the cache."""
    async with open_auth_state(url) as inner, opened(url) as other_host:
        state = CountingState(inner)
        store = DbAuthStore(state, BOX)
        await store.start()
        try:
            first_gate = state.gate = asyncio.Event()
            slow = asyncio.ensure_future(store.areload())
            await settle()
            await other_host.aupdate(doc_edits.with_profile(PID, _key()))
            state.gate = None
            assert PID in (await store.areload()).profiles
            first_gate.set()
            assert PID in (await slow).profiles  # its caller gets the newer copy too
            assert PID in store.load().profiles
        finally:
            await store.stop()


async def test_another_hosts_write_shows_within_a_second(url: str) -> None:
    """Measured on the real clock: host B's cached reads see a cooldown host A records in under 1 s."""
    async with opened(url) as host_a, opened(url) as host_b:
        await host_a.aupdate(doc_edits.with_profile(PID, _key()))
        await host_b.areload()
        lags = []
        for _ in range(3):
            before = host_b.load().stats(PID).error_count
            await host_a.update_usage(PID, _count_failure)
            written = time.monotonic()
            while host_b.load().stats(PID).error_count == before:
                assert time.monotonic() - written < 1.0, "not visible within 1 s"
                await asyncio.sleep(0.005)
            lags.append(time.monotonic() - written)
    print(f"cross-host visibility lag: {', '.join(f'{lag * 1000:.0f} ms' for lag in lags)}")
    assert max(lags) < 1.0


async def test_the_poller_keeps_serving_the_last_copy_while_the_database_is_away(
    url: str, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Failed re-reads leave the cached document in place and are logged once per outage."""
    timer = FakeTimer(clock)
    async with open_auth_state(url) as inner:
        state = CountingState(inner)
        store = DbAuthStore(state, BOX, clock=clock, sleep=timer.sleep)
        await store.start()
        try:
            await store.aupdate(doc_edits.with_profile(PID, _key()))
            state.failing = True
            with caplog.at_level(logging.WARNING, logger="modelbot.auth"):
                await timer.advance(2_000)
            assert PID in store.load().profiles
            assert [r.message for r in caplog.records].count(
                "could not re-read the auth state of agent main: "
                "The auth state in the database failed (OperationalError)."
            ) == 1
        finally:
            await store.stop()


async def test_an_unstarted_store_refuses_to_answer_from_nothing(url: str) -> None:
    """Reading before start is a clear error, not an empty document that would hide every credential."""
    async with open_auth_state(url) as state:
        with pytest.raises(AuthError, match="not loaded"):
            DbAuthStore(state, BOX).load()


# --- writes -------------------------------------------------------------------------------------------------


async def test_usage_writes_of_two_hosts_at_once_lose_nothing(url: str) -> None:
    """Fifty concurrent failure writes through two engines: every one is counted."""
    async with opened(url) as host_a, opened(url) as host_b:
        await asyncio.gather(*(h.update_usage(PID, _count_failure) for h in [host_a, host_b] * 25))
        assert (await host_a.areload()).stats(PID).failure_counts == {"rate_limit": 50}


async def test_usage_write_hands_the_cooldown_arithmetic_the_whole_stats(url: str) -> None:
    """The pure function sees and returns every field: per-model pairs, and keys this version does not know."""
    pairs = {
        "gpt-5.2": ModelStats(
            cooldown_until=1_700_000_060_000, error_count=1, last_failure_at=1_700_000_000_000
        )
    }
    unknown = {"futureField": [1, 2]}
    async with opened(url) as store:
        await store.update_usage(PID, lambda s: replace(s, models=pairs, extra=unknown))
        change = await store.update_usage(
            PID,
            lambda s: record_failure(
                s, Reason.AUTH, provider="openai", now_ms=1_700_000_000_000, policy=CooldownPolicy()
            ),
        )
    assert change.before.models == pairs and change.before.extra == unknown
    assert change.before.error_count == 0
    assert change.after.models == pairs and change.after.extra == unknown and change.after.error_count == 1
    assert change.after.cooldown_until == 1_700_000_060_000


async def test_a_change_that_changes_nothing_writes_nothing(url: str) -> None:
    """Returning the stats unchanged leaves the row (and its revision) as it was."""
    async with opened(url) as store:
        await store.update_usage(PID, _count_failure)
        await store.update_usage(PID, lambda s: s)

    def rev(conn: Connection) -> int:
        return int(conn.execute(sa.select(auth_usage.c.rev)).scalar_one())

    assert await _raw(url, rev) == 1


async def test_whole_document_edits_of_the_cli(url: str) -> None:
    """Add, order, lastGood, clear-cooldown and remove (with every reference) work as on the file store."""
    async with opened(url) as store:
        await store.aupdate(doc_edits.with_profile(PID, _key()))
        await store.aupdate(doc_edits.with_profile("openai:spare", _key("sk-spare-0002")))
        await store.aupdate(doc_edits.with_order("openai", [PID, "openai:spare", PID]))
        await store.set_last_good("openai", PID)
        await store.update_usage(PID, _count_failure)
        assert (await store.aclear_cooldown(PID)).error_count == 0
        with pytest.raises(UnknownProfile):
            await store.aclear_cooldown("openai:nobody")
        await store.aupdate(doc_edits.without_profile(PID))
        doc = await store.areload()
        assert list(doc.profiles) == ["openai:spare"]
        assert (doc.order, doc.last_good, PID in doc.usage_stats) == ({"openai": ["openai:spare"]}, {}, False)
        await store.aupdate(doc_edits.without_order("openai"))
        assert (await store.areload()).order == {}


async def test_an_edit_that_raises_changes_nothing(url: str) -> None:
    """Removing an unknown profile is an error, and the stored document is untouched."""
    async with opened(url) as store:
        before = await store.aupdate(_seed)
        with pytest.raises(UnknownProfile):
            await store.aupdate(doc_edits.without_profile("openai:nobody"))
        assert await store.areload() == before


# --- keys -----------------------------------------------------------------------------------------------------


async def test_a_wrong_key_is_refused_at_start(url: str) -> None:
    """A store started with another key than the database's stops at its key check, never reads garbage."""
    async with opened(url) as store:
        await store.aupdate(doc_edits.with_profile(PID, _key()))
    with pytest.raises(SecretKeyError, match="does not decrypt the stored credentials"):
        async with opened(url, SecretBox([KEY_B])):
            raise AssertionError("started with the wrong key")


async def test_rows_sealed_with_another_key_name_the_profile(url: str) -> None:
    """Even past the key check (someone deleted it), a secret the key cannot open is an error naming it."""
    async with opened(url) as store:
        await store.aupdate(doc_edits.with_profile(PID, _key()))
    await _raw(url, lambda conn: conn.execute(sa.delete(auth_meta)))
    with pytest.raises(SecretKeyError, match=f"profile {PID} of agent main"):
        async with opened(url, SecretBox([KEY_B])):
            raise AssertionError("read a secret with the wrong key")


async def test_rekey_moves_every_secret_to_the_new_key_in_one_transaction(url: str) -> None:
    """NEW,OLD reseals everything under NEW; afterwards NEW alone works and OLD alone is refused."""
    async with opened(url, SecretBox([KEY_A]), agent_id="main") as main:
        written = await main.aupdate(_seed)
    async with opened(url, SecretBox([KEY_A]), agent_id="other") as other:
        await other.aupdate(doc_edits.with_profile(PID, _key()))
    async with open_auth_state(url) as state:
        rotating = SecretBox([KEY_B, KEY_A])
        assert await state.reseal_all(rotating.reseal) == 5
    async with opened(url, SecretBox([KEY_B])) as main:
        assert main.load() == written
    with pytest.raises(SecretKeyError):
        async with opened(url, SecretBox([KEY_A])):
            raise AssertionError("the old key still opens the database")


async def test_rekey_is_all_or_nothing(url: str) -> None:
    """One secret the keys cannot open aborts the rekey: nothing is resealed, the old key still works."""
    async with opened(url) as store:
        await store.aupdate(_seed)
    stray = SecretBox([KEY_C]).seal("sk-from-elsewhere")
    await _raw(
        url,
        lambda conn: conn.execute(
            sa.update(auth_credentials).where(auth_credentials.c.profile_id == PID).values(secret=stray)
        ),
    )
    async with open_auth_state(url) as state:
        with pytest.raises(SecretKeyError, match=f"profile {PID}"):
            await state.reseal_all(SecretBox([KEY_B, KEY_A]).reseal)
    async with opened(url, SecretBox([KEY_A, KEY_C])) as store:
        assert store.load().profiles["anthropic:default"].secret == "sk-ant-api03-aaaa"


# --- the OAuth refresh lock ---------------------------------------------------------------------------------

OAUTH = "anthropic:me@example.com"


def _oauth(access: str, refresh: str, expires: int) -> Credential:
    return Credential(type="oauth", provider="anthropic", secret=access, refresh=refresh, expires=expires)


async def _refresh_once(store: DbAuthStore, calls: Callable[[], None]) -> str:
    """What the resolver does: under the lock, refresh only if nobody else has; return the access token."""
    async with store.refresh_lock(timeout_s=60).hold(OAUTH):
        cred = (await store.areload()).profiles[OAUTH]
        if cred.refresh == "refresh-0":
            calls()
            await asyncio.sleep(0.05)  # the token endpoint: the others wait on the lease meanwhile
            fresh = _oauth("access-1", "refresh-1", 2_000_000_000_000)
            await store.aupdate(lambda d: replace(d, profiles={**d.profiles, OAUTH: fresh}))
            return fresh.secret
        return cred.secret


async def test_the_refresh_lock_lets_one_host_refresh_and_the_others_take_its_result(url: str) -> None:
    """Three hosts refreshing one expiring login at once: one token exchange, all end with its tokens."""
    async with opened(url) as first:
        await first.aupdate(doc_edits.with_profile(OAUTH, _oauth("access-0", "refresh-0", 1)))
    exchanges: list[int] = []
    async with opened(url) as a, opened(url) as b, opened(url) as c:
        results = await asyncio.gather(*(_refresh_once(h, lambda: exchanges.append(1)) for h in (a, b, c)))
    assert exchanges == [1]
    assert results == ["access-1"] * 3


# --- real processes -----------------------------------------------------------------------------------------

PROCESSES = 4
FAILURES = 50


async def _failures(url: str) -> None:
    async with opened(url) as store:
        for _ in range(FAILURES):
            await store.update_usage(PID, _count_failure)


async def _refresh_worker(url: str, name: str) -> None:
    async with opened(url) as store:
        access = await _refresh_once(store, lambda: print(f"exchange by {name}", flush=True))
        print(f"access {access}", flush=True)


async def _run_workers(url: str, mode: str, count: int) -> list[str]:
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-W",
            "error",
            "-m",
            "tests.test_auth_db_store",
            url,
            mode,
            f"p{n}",
            cwd=REPO,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for n in range(count)
    ]
    outputs = await asyncio.wait_for(asyncio.gather(*(w.communicate() for w in workers)), 180)
    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr.decode(errors="replace")
    return [line for stdout, _ in outputs for line in stdout.decode().splitlines()]


@pytest.mark.slow
async def test_four_processes_times_fifty_failures_on_one_profile_lose_no_update(url: str) -> None:
    """4 processes × 50 row-locked failure writes on one profile: the counter ends at exactly 200."""
    await _run_workers(url, "failures", PROCESSES)
    async with opened(url) as store:
        assert store.load().stats(PID).failure_counts == {"rate_limit": PROCESSES * FAILURES}


@pytest.mark.slow
async def test_three_processes_refresh_an_expiring_login_exactly_once(url: str) -> None:
    """Three processes at once: one token exchange; all three answer with the new access token."""
    async with opened(url) as store:
        await store.aupdate(doc_edits.with_profile(OAUTH, _oauth("access-0", "refresh-0", 1)))
    lines = await _run_workers(url, "refresh", 3)
    assert len([line for line in lines if line.startswith("exchange by")]) == 1
    assert sorted(line for line in lines if line.startswith("access")) == ["access access-1"] * 3


def _main(argv: list[str]) -> int:
    url, mode, name = argv
    asyncio.run(_failures(url) if mode == "failures" else _refresh_worker(url, name))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
