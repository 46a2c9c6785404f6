"""The bot in-process for a test: ``build_app`` on a config written to the state dir, with a fake clock."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

from bot.app import App, build_app
from bot.auth import doc_edits
from bot.auth.resolver import CredentialResolver
from bot.auth.store import AuthStore
from bot.auth.types import Credential
from bot.config.paths import SECRET_KEY_ENV
from bot.store.memory import InMemorySessionStore
from bot.store.protocol import SessionStore
from tests.fakes.clock import FakeClock

AuthStoreKind = Literal["file", "database"]
# Tests are parametrised over both stores (docs/failover.md §10).
AUTH_STORES: tuple[AuthStoreKind, ...] = ("file", "database")
TEST_SECRET_KEY = base64.urlsafe_b64encode(b"modelbot-tests-key-0123456789abc").decode()


def with_auth_store(config: Mapping[str, Any] | None, kind: AuthStoreKind) -> dict[str, Any]:
    """``config`` with ``auth.store`` set to ``kind``."""
    out = json.loads(json.dumps(config or {}))
    out.setdefault("auth", {})["store"] = kind
    return dict(out)


def auth_env(kind: AuthStoreKind) -> dict[str, str]:
    """The environment ``kind`` needs: the database keeps secrets sealed with ``MODELBOT_SECRET_KEY``."""
    return {SECRET_KEY_ENV: TEST_SECRET_KEY} if kind == "database" else {}


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
    auth_store: AuthStoreKind | None = None,
) -> AsyncIterator[App]:
    """The started app; ``config`` is JSON5 text or a mapping (none: the built-in demo), ``profiles`` are
    stored in each of ``agents``' auth store once it has started, ``store`` defaults to memory.
    ``auth_store`` sets ``auth.store`` in a mapping config (and the secret key the database needs)."""
    if auth_store is not None:
        assert not isinstance(config, str), "auth_store needs the config as a mapping"
        config, env = with_auth_store(config, auth_store), {**auth_env(auth_store), **(env or {})}
    if config is not None:
        (state_dir / "config.json5").write_text(config if isinstance(config, str) else json.dumps(config))
    app = build_app(
        env={"MODELBOT_STATE_DIR": str(state_dir), **(env or {})},
        clock=clock,
        store=store if store is not None else InMemorySessionStore(),
    )
    await app.start()
    try:
        for agent_id in agents:
            for profile_id, cred in (profiles or {}).items():
                await app.backend(agent_id).store.aupdate(doc_edits.with_profile(profile_id, cred))
        yield app
    finally:
        await app.stop()


def file_store(resolver: CredentialResolver) -> AuthStore:
    """The resolver's store, which a test built on auth-profiles.json (for its synchronous helpers)."""
    assert isinstance(resolver.store, AuthStore)
    return resolver.store
