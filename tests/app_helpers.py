"""The bot in-process for a test: ``build_app`` on a config written to the state dir, with a fake clock."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bot.app import App, auth_store_for, build_app
from bot.auth.resolver import CredentialResolver
from bot.auth.store import AuthStore
from bot.auth.types import Credential
from bot.clock import FakeClock
from bot.store.memory import InMemorySessionStore
from bot.store.protocol import SessionStore


@asynccontextmanager
async def running_app(
    state_dir: Path,
    clock: FakeClock,
    *,
    config: str | Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    store: SessionStore | None = None,
    profiles: Mapping[str, Credential] | None = None,
    agents: Iterable[str] = ("main",),
) -> AsyncIterator[App]:
    """The started app; ``config`` is JSON5 text or a mapping (none: the built-in demo), ``profiles`` are
    stored in each of ``agents``' auth-profiles.json before it starts, ``store`` defaults to memory."""
    if config is not None:
        (state_dir / "config.json5").write_text(config if isinstance(config, str) else json.dumps(config))
    app = build_app(
        env={"MODELBOT_STATE_DIR": str(state_dir), **(env or {})},
        clock=clock,
        store=store if store is not None else InMemorySessionStore(),
    )
    for agent_id in agents:
        auth = auth_store_for(app.paths, agent_id)
        for profile_id, cred in (profiles or {}).items():
            auth.upsert_profile(profile_id, cred)
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


def file_store(resolver: CredentialResolver) -> AuthStore:
    """The resolver's store, which a test built on auth-profiles.json (for its synchronous helpers)."""
    assert isinstance(resolver.store, AuthStore)
    return resolver.store
