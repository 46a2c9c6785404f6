"""Session leases in the pipeline (docs/failover.md §10): a message to a session that another process is answering waits
for that process's lease, takes it over once its holder died, and holds it (renewed) while its own turn runs.

The "other process" here is a lease row written straight into the shared store; ``test_hosts`` runs real ones.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from bot.app import App
from bot.auth.types import Credential
from bot.chat import Incoming
from bot.store.lease import LeaseTiming
from bot.store.memory import InMemorySessionStore
from bot.store.sql import SqlSessionStore, sqlite_url
from bot.store.types import SessionRecord, StoredMessage
from tests.app_helpers import running_app
from tests.fakes.clock import FakeClock
from tests.fakes.provider_server import FakeProviderServer, held, ok
from tests.fakes.timer import settle

OTHER = "other-host:4242#7"
KEY = "sk-lease-test-0001"
MESSAGE = Incoming(platform="telegram", chat_id="c1", user_id="u1", text="hello")


class WatchedStore(SqlSessionStore):
    """The SQL store, counting the lease acquisitions it refused (a message takes its session's lease with
    ``begin_turn``): a test waits for a message to have polled. ``calls`` names the lease and session calls
    made, in order."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.refused = 0
        self._refusal = asyncio.Event()
        self.calls: list[str] = []

    async def get_or_create(self, key: str, **args: Any) -> SessionRecord:
        self.calls.append("get_or_create")
        return await super().get_or_create(key, **args)

    async def append_messages(self, key: str, *args: Any, **kwargs: Any) -> list[StoredMessage]:
        self.calls.append("append_messages")
        return await super().append_messages(key, *args, **kwargs)

    async def end_turn(self, key: str, *args: Any, **kwargs: Any) -> list[StoredMessage]:
        self.calls.append("end_turn")
        return await super().end_turn(key, *args, **kwargs)

    async def release_lease(self, key: str, holder: str) -> bool:
        self.calls.append("release_lease")
        return await super().release_lease(key, holder)

    async def acquire_lease(self, key: str, holder: str, *, ttl_ms: int, now_ms: int) -> bool:
        self.calls.append("acquire_lease")
        taken = await super().acquire_lease(key, holder, ttl_ms=ttl_ms, now_ms=now_ms)
        if not taken:
            self._refused()
        return taken

    async def begin_turn(self, key: str, **args: Any) -> SessionRecord | None:
        self.calls.append("begin_turn")
        session = await super().begin_turn(key, **args)
        if session is None:
            self._refused()
        return session

    def _refused(self) -> None:
        self.refused += 1
        self._refusal.set()

    async def refusals(self, count: int) -> None:
        """Until the store has refused ``count`` acquisitions in all."""
        while self.refused < count:
            self._refusal.clear()
            await asyncio.wait_for(self._refusal.wait(), 5)


@pytest.fixture
def store(tmp_path: Path) -> WatchedStore:
    """A database file: other processes could open it too, so the bot takes session leases."""
    return WatchedStore(sqlite_url(tmp_path / "shared.sqlite"))


def lease_key(app: App) -> str:
    return f"session:{app.chat().session_key(MESSAGE)}"


async def test_a_message_waits_while_another_process_answers_the_session(
    state_dir: Path, clock: FakeClock, store: WatchedStore
) -> None:
    """Another holder has the session's lease: the message is not handled (no provider call, no session
    read) until that lease is released; then it is answered, and its own lease is given back."""
    async with running_app(state_dir, clock, store=store) as app:
        key = lease_key(app)
        assert await store.acquire_lease(key, OTHER, ttl_ms=60_000, now_ms=clock.now_ms())
        handling = asyncio.ensure_future(app.chat().handle(MESSAGE))
        await store.refusals(3)  # the message polled the lease three times
        assert not handling.done()
        assert await store.get(app.chat().session_key(MESSAGE)) is None  # not even the session was read
        assert await store.release_lease(key, OTHER)
        [reply] = await asyncio.wait_for(handling, 5)
        assert reply.kind == "answer"
        assert await store.acquire_lease(key, "next", ttl_ms=1, now_ms=clock.now_ms())  # released again


async def test_a_dead_holders_session_is_taken_over_after_the_lease_time(
    state_dir: Path, clock: FakeClock, store: WatchedStore
) -> None:
    """The holder stopped renewing (its host was killed): once its lease has expired, the message goes on."""
    async with running_app(state_dir, clock, store=store) as app:
        ttl_ms = LeaseTiming().ttl_ms
        assert await store.acquire_lease(lease_key(app), OTHER, ttl_ms=ttl_ms, now_ms=clock.now_ms())
        handling = asyncio.ensure_future(app.chat().handle(MESSAGE))
        await store.refusals(2)
        assert not handling.done()
        clock.advance(ms=ttl_ms)
        [reply] = await asyncio.wait_for(handling, 5)
        assert reply.kind == "answer"


async def test_the_lease_is_held_while_the_turn_runs(
    state_dir: Path, clock: FakeClock, store: WatchedStore
) -> None:
    """While the provider answers nobody else can take the session's lease; right after, anybody can."""
    gate = asyncio.Event()
    async with FakeProviderServer() as server:
        server.script(KEY, held(gate, ok("Done.")))
        config = {
            "models": {
                "providers": {"openai": {"baseUrl": server.openai_base_url, "api": "openai-completions"}}
            },
            "agents": {"defaults": {"model": {"primary": "openai/gpt-5.2"}}},
        }
        profiles = {"openai:a": Credential(type="api_key", provider="openai", secret=KEY)}
        async with running_app(state_dir, clock, store=store, config=config, profiles=profiles) as app:
            key = lease_key(app)
            handling = asyncio.ensure_future(app.chat().handle(MESSAGE))
            await server.wait_for_requests(1)
            assert not await store.acquire_lease(key, OTHER, ttl_ms=1, now_ms=clock.now_ms())
            gate.set()
            [reply] = await asyncio.wait_for(handling, 5)
            assert reply.text == "Done."
            assert await store.acquire_lease(key, OTHER, ttl_ms=1, now_ms=clock.now_ms())


async def test_a_turn_takes_its_lease_with_its_session_and_gives_it_back_with_its_save(
    state_dir: Path, clock: FakeClock, store: WatchedStore
) -> None:
    """An answered message is two transactions: the lease taken with the session read, the turn saved with
    the lease given back; nothing is released after that, and the lease is free for the next message."""
    async with running_app(state_dir, clock, store=store) as app:
        for _ in range(2):
            store.calls.clear()
            [reply] = await app.chat().handle(MESSAGE)
            assert reply.kind == "answer"
            assert store.calls == ["begin_turn", "end_turn"]
        assert len(await store.history(app.chat().session_key(MESSAGE))) == 4
        assert await store.acquire_lease(lease_key(app), OTHER, ttl_ms=1, now_ms=clock.now_ms())


async def test_a_message_that_saves_no_turn_gives_its_lease_back_at_its_end(
    state_dir: Path, clock: FakeClock, store: WatchedStore
) -> None:
    """A command saves no turn: its lease is released on its own once it is done."""
    async with running_app(state_dir, clock, store=store) as app:
        [reply] = await app.chat().handle(dataclasses.replace(MESSAGE, text="/status"))
        assert reply.kind != "error"
        assert store.calls == ["begin_turn", "release_lease"]
        assert await store.acquire_lease(lease_key(app), OTHER, ttl_ms=1, now_ms=clock.now_ms())


async def test_a_store_no_other_process_can_open_takes_no_lease(state_dir: Path, clock: FakeClock) -> None:
    """In memory (or an in-memory SQLite database) nothing is shared: no lease is written, none costs."""
    memory = InMemorySessionStore()
    async with running_app(state_dir, clock, store=memory) as app:
        assert app.session_leases is None
        await app.chat().handle(MESSAGE)
    private = SqlSessionStore("sqlite+aiosqlite:///:memory:")
    assert not private.shared
    async with running_app(state_dir, clock, store=private) as app:
        assert app.session_leases is None
    await settle()
