"""Either auth store of a state dir, for synchronous tests that seed and inspect what a command did.

``auth.store: "file"`` is auth-profiles.json (an ``AuthStore`` itself); ``"database"`` is the state dir's SQLite
database, opened through a ``DbAuthStore`` on a loop and an engine of its own for each call (as another
process would).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol, TypeVar

import pytest

from bot.auth import doc_edits
from bot.auth.cooldowns import CooldownPolicy
from bot.auth.db_store import DbAuthStore
from bot.auth.secret_box import SecretBox
from bot.auth.store import AuthStore
from bot.auth.types import AuthProfiles, UsageStats
from bot.config.paths import auth_profiles_path, default_database_url
from bot.failover.reasons import Reason
from bot.store.auth_state import open_auth_state
from tests.app_helpers import TEST_SECRET_KEY, AuthStoreKind, auth_env, with_auth_store

T = TypeVar("T")


class SyncAuth(Protocol):
    """The synchronous part of ``AuthStore`` that tests use."""

    def load(self) -> AuthProfiles: ...

    def reload(self) -> AuthProfiles: ...

    def update(self, fn: Callable[[AuthProfiles], AuthProfiles]) -> AuthProfiles: ...

    def set_order(self, provider: str, ids: Sequence[str]) -> None: ...

    def record_failure(
        self,
        profile_id: str,
        reason: Reason,
        *,
        provider: str,
        now_ms: int,
        policy: CooldownPolicy,
        model: str | None = None,
        retry_after_ms: int | None = None,
    ) -> UsageStats: ...


class DbAuth:
    """One agent's auth state in a database, with ``AuthStore``'s synchronous helpers."""

    def __init__(self, url: str, agent_id: str = "main", key: str = TEST_SECRET_KEY) -> None:
        self.url = url
        self.agent_id = agent_id
        self._box = SecretBox([key])

    def _run(self, work: Callable[[DbAuthStore], Awaitable[T]]) -> T:
        async def run() -> T:
            async with open_auth_state(self.url) as state:
                store = DbAuthStore(state, self._box, agent_id=self.agent_id)
                await store.start()
                try:
                    return await work(store)
                finally:
                    await store.stop()

        with ThreadPoolExecutor(max_workers=1) as pool:  # a loop of its own, whatever loop the caller is in
            return pool.submit(asyncio.run, run()).result()

    def load(self) -> AuthProfiles:
        return self._run(lambda store: store.areload())

    reload = load

    def update(self, fn: Callable[[AuthProfiles], AuthProfiles]) -> AuthProfiles:
        return self._run(lambda store: store.aupdate(fn))

    def set_order(self, provider: str, ids: Sequence[str]) -> None:
        self._run(lambda store: store.aupdate(doc_edits.with_order(provider, ids)))

    def record_failure(
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
        return self._run(
            lambda store: store.arecord_failure(
                profile_id,
                reason,
                provider=provider,
                now_ms=now_ms,
                policy=policy,
                model=model,
                retry_after_ms=retry_after_ms,
            )
        )


def auth_of(state_dir: Path, kind: AuthStoreKind, agent_id: str = "main") -> SyncAuth:
    """The agent's auth state under ``state_dir`` in the store ``kind`` (the default database, for that one)."""
    if kind == "file":
        return AuthStore(auth_profiles_path(state_dir, agent_id))
    return DbAuth(default_database_url(state_dir), agent_id)


def use_auth_store(state_dir: Path, kind: AuthStoreKind, monkeypatch: pytest.MonkeyPatch) -> SyncAuth:
    """Make ``kind`` the store of the state dir's config (with the secret key it needs in the environment);
    returns the main agent's auth state."""
    (state_dir / "config.json5").write_text(json.dumps(with_auth_store(None, kind)))
    for name, value in auth_env(kind).items():
        monkeypatch.setenv(name, value)
    return auth_of(state_dir, kind)
