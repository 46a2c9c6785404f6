"""Credential resolution: implicit profiles, rotation candidates, and OAuth refresh exactly once."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from bot.auth import doc_edits, lockfile
from bot.auth.cooldowns import CooldownPolicy
from bot.auth.resolver import (
    PLACEHOLDER_SECRET,
    CredentialResolver,
    OAuthTokens,
    credential_source,
)
from bot.auth.store import AuthStore
from bot.auth.types import Credential, UsageStats
from bot.clock import HOUR_MS, MINUTE_MS
from bot.config.schema import Config
from bot.errors import ProviderError, UnknownProfile
from bot.failover.reasons import Reason
from tests.app_helpers import file_store
from tests.fakes.clock import FakeClock

REPO = Path(__file__).resolve().parent.parent
ENV_VARS = {"openai": ("OPENAI_API_KEY", "OPENAI_KEY"), "anthropic": ("ANTHROPIC_API_KEY",)}


class CountingRefresher:
    """A refresher that counts its calls and, like real providers, accepts each refresh token once."""

    def __init__(self, now_ms: int, delay_s: float = 0.05, fail: bool = False) -> None:
        self.calls: list[str] = []
        self.now_ms = now_ms
        self.delay_s = delay_s
        self.fail = fail
        self._lock = threading.Lock()
        self.started = threading.Event()

    def can_refresh(self, provider: str) -> bool:
        return True

    def headers(self, provider: str) -> dict[str, str]:
        return {}

    async def refresh(self, provider: str, refresh_token: str, *, now_ms: int) -> OAuthTokens:
        with self._lock:
            if refresh_token in self.calls:
                raise RuntimeError("refresh token already used")
            self.calls.append(refresh_token)
            n = len(self.calls)
        self.started.set()
        await asyncio.sleep(self.delay_s)
        if self.fail:
            raise RuntimeError("invalid_grant")
        return OAuthTokens(f"access-{n}", f"refresh-{n}", self.now_ms + HOUR_MS)


def make(
    tmp_path: Path,
    config: dict[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    refresher: Any = None,
) -> CredentialResolver:
    return CredentialResolver(
        AuthStore(tmp_path / "agent" / "auth-profiles.json"),
        Config.model_validate(config or {}),
        env=env or {},
        provider_env_vars=ENV_VARS,
        providers_without_auth={"ollama"},
        builtin_profiles={"demo": ("demo:main", "demo:busy")},
        refresher=refresher,
    )


def oauth(expires: int, refresh: str = "refresh-0", access: str = "access-0") -> Credential:
    return Credential(
        type="oauth", provider="g", secret=access, refresh=refresh, expires=expires, email="me@x"
    )


# -- implicit profiles and candidates ---------------------------------------------------------------


def test_env_key_is_an_implicit_profile(tmp_path: Path, clock: FakeClock) -> None:
    """The first non-empty env var of the provider becomes ``provider:env``."""
    resolver = make(tmp_path, env={"OPENAI_API_KEY": "  ", "OPENAI_KEY": "sk-env"})
    implicit = resolver.implicit_profiles("openai", file_store(resolver).load())
    assert list(implicit) == ["openai:env"]
    assert implicit["openai:env"].secret == "sk-env"
    assert credential_source(implicit["openai:env"]) == "env"
    assert resolver.candidates("openai", clock.now_ms()) == ["openai:env"]


def test_config_key_is_an_implicit_profile_unless_it_repeats_the_env_key(tmp_path: Path) -> None:
    """``models.providers.<id>.apiKey`` gives ``provider:config``; the same key twice is listed once."""
    config = {"models": {"providers": {"openai": {"apiKey": "sk-conf"}, "anthropic": {"apiKey": "sk-a"}}}}
    resolver = make(tmp_path, config, env={"OPENAI_API_KEY": "sk-env", "ANTHROPIC_API_KEY": "sk-a"})
    doc = file_store(resolver).load()
    assert set(resolver.implicit_profiles("openai", doc)) == {"openai:env", "openai:config"}
    assert set(resolver.implicit_profiles("anthropic", doc)) == {"anthropic:env"}


def test_stored_profiles_replace_the_implicit_ones(tmp_path: Path, clock: FakeClock) -> None:
    """Once the provider has a stored profile, env and config keys are not candidates."""
    resolver = make(tmp_path, env={"OPENAI_API_KEY": "sk-env"})
    file_store(resolver).update(
        doc_edits.with_profile("openai:work", Credential(type="api_key", provider="openai", secret="sk-w"))
    )
    assert resolver.implicit_profiles("openai", file_store(resolver).load()) == {}
    assert resolver.candidates("openai", clock.now_ms()) == ["openai:work"]


async def test_builtin_and_no_auth_profiles(tmp_path: Path, clock: FakeClock) -> None:
    """Demo's built-in profiles and a no-auth provider's ``local`` profile rotate and resolve to "none"."""
    resolver = make(tmp_path)
    assert resolver.candidates("demo", clock.now_ms()) == ["demo:busy", "demo:main"]
    assert resolver.candidates("ollama", clock.now_ms()) == ["ollama:local"]
    assert resolver.candidates("anthropic", clock.now_ms()) == []
    for pid in ("demo:main", "ollama:local"):
        auth = await resolver.resolve(pid, now_ms=clock.now_ms())
        assert (auth.profile_id, auth.type, auth.secret) == (pid, "none", "")
    cred = resolver.implicit_profiles("demo", file_store(resolver).load())["demo:main"]
    assert (credential_source(cred), cred.secret) == ("builtin", PLACEHOLDER_SECRET)


def test_cooling_implicit_profiles_rotate(tmp_path: Path, clock: FakeClock) -> None:
    """A rate-limited built-in profile moves behind the other one."""
    resolver = make(tmp_path)
    file_store(resolver).update(lambda doc: doc)  # nothing to write: still no file
    assert not file_store(resolver).path.exists()
    file_store(resolver).record_failure(
        "demo:busy", Reason.RATE_LIMIT, provider="demo", now_ms=clock.now_ms(), policy=CooldownPolicy()
    )
    assert resolver.candidates("demo", clock.now_ms()) == ["demo:main", "demo:busy"]
    clock.advance(minutes=1)
    assert resolver.candidates("demo", clock.now_ms()) == ["demo:busy", "demo:main"]


def test_candidates_follow_the_config(tmp_path: Path, clock: FakeClock) -> None:
    """``auth.order`` is explicit; ``auth.profiles`` of this provider limit the round robin."""
    resolver = make(tmp_path, {"auth": {"order": {"p": ["p:b", "p:a"]}}})
    for pid in ("p:a", "p:b", "p:c"):
        file_store(resolver).update(
            doc_edits.with_profile(pid, Credential(type="api_key", provider="p", secret="sk"))
        )
    assert resolver.candidates("p", clock.now_ms()) == ["p:b", "p:a"]
    limited = make(
        tmp_path,
        {
            "auth": {
                "profiles": {"p:c": {"provider": "p"}, "q:x": {"provider": "q"}, "p:a": {"provider": "p"}}
            }
        },
    )
    assert limited.candidates("p", clock.now_ms()) == ["p:a", "p:c"]


def test_all_profiles_lists_unusable_ones_last(tmp_path: Path, clock: FakeClock) -> None:
    """Status shows every credential: rotation order first, then expired or empty ones."""
    resolver = make(tmp_path)
    now = clock.now_ms()
    store = file_store(resolver)
    store.update(
        doc_edits.with_profile("p:old", Credential(type="token", provider="p", secret="t", expires=now - 1))
    )
    store.update(doc_edits.with_profile("p:key", Credential(type="api_key", provider="p", secret="sk")))
    store.update(doc_edits.with_profile("p:empty", Credential(type="api_key", provider="p", secret="")))
    store.update(doc_edits.with_profile("q:key", Credential(type="api_key", provider="q", secret="sk")))
    rows = resolver.all_profiles("p", now)
    assert [pid for pid, _, _ in rows] == ["p:key", "p:empty", "p:old"]
    assert rows[0][2] == UsageStats()


# -- resolve ----------------------------------------------------------------------------------------


async def test_resolve_types(tmp_path: Path, clock: FakeClock) -> None:
    """Stored keys, tokens, env and config keys resolve with their type and secret."""
    resolver = make(
        tmp_path,
        {"models": {"providers": {"anthropic": {"apiKey": "sk-conf"}}}},
        env={"OPENAI_API_KEY": "sk-env"},
    )
    now = clock.now_ms()
    file_store(resolver).update(
        doc_edits.with_profile("x:key", Credential(type="api_key", provider="x", secret="sk-x"))
    )
    file_store(resolver).update(
        doc_edits.with_profile(
            "x:tok", Credential(type="token", provider="x", secret="oat", expires=now + 10)
        )
    )
    expected = {
        "x:key": ("api_key", "sk-x"),
        "x:tok": ("token", "oat"),
        "openai:env": ("env", "sk-env"),
        "anthropic:config": ("api_key", "sk-conf"),
    }
    for pid, (kind, secret) in expected.items():
        auth = await resolver.resolve(pid, now_ms=now)
        assert (auth.type, auth.secret) == (kind, secret)
    with pytest.raises(UnknownProfile):
        await resolver.resolve("x:nope", now_ms=now)
    with pytest.raises(ProviderError) as info:
        await resolver.resolve("x:tok", now_ms=now + 10)
    assert info.value.reason is Reason.AUTH


async def test_oauth_far_from_expiry_is_not_refreshed(tmp_path: Path, clock: FakeClock) -> None:
    """A token valid for more than five minutes is used as it is."""
    refresher = CountingRefresher(clock.now_ms())
    resolver = make(tmp_path, refresher=refresher)
    file_store(resolver).update(doc_edits.with_profile("g:me", oauth(clock.now_ms() + 5 * MINUTE_MS + 1)))
    auth = await resolver.resolve("g:me", now_ms=clock.now_ms())
    assert (auth.type, auth.secret) == ("oauth", "access-0")
    assert refresher.calls == []


async def test_oauth_near_expiry_is_refreshed_and_saved(tmp_path: Path, clock: FakeClock) -> None:
    """Within five minutes of expiry the token is refreshed and the new pair is written to the store."""
    refresher = CountingRefresher(clock.now_ms())
    resolver = make(tmp_path, refresher=refresher)
    file_store(resolver).update(doc_edits.with_profile("g:me", oauth(clock.now_ms() + 5 * MINUTE_MS)))
    auth = await resolver.resolve("g:me", now_ms=clock.now_ms())
    assert auth.secret == "access-1"
    assert refresher.calls == ["refresh-0"]
    cred = AuthStore(file_store(resolver).path).load().profiles["g:me"]
    assert (cred.secret, cred.refresh, cred.expires, cred.email) == (
        "access-1",
        "refresh-1",
        clock.now_ms() + HOUR_MS,
        "me@x",
    )


async def test_failed_refresh_is_an_auth_failure(tmp_path: Path, clock: FakeClock) -> None:
    """A refresh that fails raises ProviderError(AUTH) and leaves the stored tokens alone."""
    resolver = make(tmp_path, refresher=CountingRefresher(clock.now_ms(), fail=True))
    file_store(resolver).update(doc_edits.with_profile("g:me", oauth(clock.now_ms() + MINUTE_MS)))
    with pytest.raises(ProviderError) as info:
        await resolver.resolve("g:me", now_ms=clock.now_ms())
    assert info.value.reason is Reason.AUTH
    assert "refresh-0" not in str(info.value)
    assert file_store(resolver).load().profiles["g:me"].refresh == "refresh-0"


async def test_without_refresher_a_still_valid_token_is_used(tmp_path: Path, clock: FakeClock) -> None:
    """No refresher: the token is used until it expires, then it is an auth failure."""
    resolver = make(tmp_path)
    file_store(resolver).update(doc_edits.with_profile("g:me", oauth(clock.now_ms() + MINUTE_MS)))
    assert (await resolver.resolve("g:me", now_ms=clock.now_ms())).secret == "access-0"
    with pytest.raises(ProviderError) as info:
        await resolver.resolve("g:me", now_ms=clock.now_ms() + MINUTE_MS)
    assert info.value.reason is Reason.AUTH


async def test_concurrent_resolves_in_one_loop_refresh_once(tmp_path: Path, clock: FakeClock) -> None:
    """Three tasks resolving the same expiring profile share one refresh."""
    refresher = CountingRefresher(clock.now_ms(), delay_s=0.2)
    resolver = make(tmp_path, refresher=refresher)
    file_store(resolver).update(doc_edits.with_profile("g:me", oauth(clock.now_ms() + MINUTE_MS)))
    results = await asyncio.gather(*(resolver.resolve("g:me", now_ms=clock.now_ms()) for _ in range(3)))
    assert {auth.secret for auth in results} == {"access-1"}
    assert refresher.calls == ["refresh-0"]


def test_concurrent_resolves_in_threads_refresh_once(tmp_path: Path, clock: FakeClock) -> None:
    """Threads with their own event loops and store objects share one refresh."""
    refresher = CountingRefresher(clock.now_ms(), delay_s=0.2)
    file_store(make(tmp_path)).update(doc_edits.with_profile("g:me", oauth(clock.now_ms() + MINUTE_MS)))
    secrets: list[str] = []

    def work() -> None:
        resolver = make(tmp_path, refresher=refresher)
        secrets.append(asyncio.run(resolver.resolve("g:me", now_ms=clock.now_ms())).secret)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert secrets == ["access-1"] * 4
    assert refresher.calls == ["refresh-0"]


async def test_cancelled_turn_still_saves_the_refreshed_tokens(tmp_path: Path, clock: FakeClock) -> None:
    """Cancelling a resolve mid-refresh must not lose the new tokens (the old refresh token is spent)."""
    refresher = CountingRefresher(clock.now_ms(), delay_s=0.2)
    resolver = make(tmp_path, refresher=refresher)
    file_store(resolver).update(doc_edits.with_profile("g:me", oauth(clock.now_ms() + MINUTE_MS)))
    task = asyncio.create_task(resolver.resolve("g:me", now_ms=clock.now_ms()))
    assert await asyncio.to_thread(refresher.started.wait, 5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(200):
        if file_store(resolver).reload().profiles["g:me"].secret == "access-1":
            break
        await asyncio.sleep(0.01)
    assert file_store(resolver).reload().profiles["g:me"].refresh == "refresh-1"
    assert (await resolver.resolve("g:me", now_ms=clock.now_ms())).secret == "access-1"
    assert refresher.calls == ["refresh-0"]


async def test_waiter_takes_the_other_process_result(tmp_path: Path, clock: FakeClock) -> None:
    """A resolve that waited for the refresh lock uses the tokens the holder wrote, without refreshing."""
    refresher = CountingRefresher(clock.now_ms())
    resolver = make(tmp_path, refresher=refresher)
    file_store(resolver).update(doc_edits.with_profile("g:me", oauth(clock.now_ms() + MINUTE_MS)))
    holder = lockfile.lock(file_store(resolver).refresh_lock_path, 5)
    try:
        task = asyncio.create_task(resolver.resolve("g:me", now_ms=clock.now_ms()))
        await asyncio.sleep(0.2)
        assert not task.done()  # waiting for the lock, having seen the old tokens
        other = AuthStore(file_store(resolver).path)
        other.update(
            doc_edits.with_profile(
                "g:me", oauth(clock.now_ms() + HOUR_MS, refresh="refresh-x", access="access-x")
            )
        )
    finally:
        lockfile.unlock(holder)
    assert (await task).secret == "access-x"
    assert refresher.calls == []


REFRESH_WORKER = """
import asyncio, os, sys, time
from pathlib import Path
from bot.auth.resolver import CredentialResolver, OAuthTokens
from bot.auth.store import AuthStore
from bot.config.schema import Config

path, log, go, now = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])


class Refresher:
    def can_refresh(self, provider):
        return True

    def headers(self, provider):
        return {}

    async def refresh(self, provider, refresh_token, *, now_ms):
        with log.open("a") as f:
            f.write(f"{os.getpid()} {refresh_token}\\n")
        await asyncio.sleep(0.5)
        return OAuthTokens(f"access-{os.getpid()}", f"refresh-{os.getpid()}", now + 3_600_000)


deadline = time.monotonic() + 30
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.002)
resolver = CredentialResolver(
    AuthStore(path), Config(), env={}, provider_env_vars={}, providers_without_auth=(),
    builtin_profiles={}, refresher=Refresher(),
)
print(asyncio.run(resolver.resolve("g:me", now_ms=now)).secret)
"""


@pytest.mark.slow
def test_processes_and_threads_refresh_once(tmp_path: Path, clock: FakeClock) -> None:
    """Two OS processes and two threads resolve one expiring login: one refresh, one shared result."""
    store = file_store(make(tmp_path))
    store.update(doc_edits.with_profile("g:me", oauth(clock.now_ms() + MINUTE_MS)))
    log, go = tmp_path / "refresh.log", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    args = [str(store.path), str(log), str(go), str(clock.now_ms())]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", REFRESH_WORKER, *args],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    refresher = CountingRefresher(clock.now_ms(), delay_s=0.5)
    secrets: list[str] = []

    def work() -> None:
        resolver = make(tmp_path, refresher=refresher)
        secrets.append(asyncio.run(resolver.resolve("g:me", now_ms=clock.now_ms())).secret)

    threads = [threading.Thread(target=work) for _ in range(2)]
    go.touch()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for proc in procs:
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0
        secrets.append(out.strip())
    refreshes = (log.read_text().splitlines() if log.exists() else []) + refresher.calls
    assert len(refreshes) == 1, refreshes
    assert len(set(secrets)) == 1
    assert store.load().profiles["g:me"].secret == secrets[0]


class CountingLock:
    """A ``RefreshLock`` of another kind (as a database row lock would be): one holder per process here."""

    def __init__(self) -> None:
        self.held: list[str] = []
        self._lock = asyncio.Lock()

    @contextlib.asynccontextmanager
    async def hold(self, profile_id: str) -> AsyncIterator[None]:
        async with self._lock:
            self.held.append(profile_id)
            yield


async def test_the_refresh_lock_is_a_seam(tmp_path: Path, clock: FakeClock) -> None:
    """Any ``RefreshLock`` can stand in for the lock file: the refresh runs under it, once for three waiters."""
    refresher = CountingRefresher(clock.now_ms(), delay_s=0.1)
    lock = CountingLock()
    resolver = CredentialResolver(
        AuthStore(tmp_path / "agent" / "auth-profiles.json"),
        Config(),
        env={},
        provider_env_vars={},
        providers_without_auth=(),
        builtin_profiles={},
        refresher=refresher,
        refresh_lock=lock,
    )
    file_store(resolver).update(doc_edits.with_profile("g:me", oauth(clock.now_ms() + MINUTE_MS)))
    results = await asyncio.gather(*(resolver.resolve("g:me", now_ms=clock.now_ms()) for _ in range(3)))
    assert {auth.secret for auth in results} == {"access-1"}
    assert refresher.calls == ["refresh-0"]
    assert lock.held == ["g:me"] * 3  # each waiter held it in turn, re-read, and took the winner's tokens
    assert not file_store(resolver).refresh_lock_path.exists()  # the lock file was not used


# -- availability, kept between attempts ------------------------------------------------------------


def _ready(resolver: CredentialResolver, provider: str, model: str, now_ms: int) -> list[str]:
    return resolver.availability(provider, model, now_ms).ready()


def test_availability_is_kept_while_the_store_and_the_clock_change_nothing(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Asked again with the store unchanged and no cooldown passed: the same answer, not worked out anew."""
    resolver = make(tmp_path)
    for pid in ("p:a", "p:b"):
        file_store(resolver).update(
            doc_edits.with_profile(pid, Credential(type="api_key", provider="p", secret="sk"))
        )
    first = resolver.availability("p", "m", clock.now_ms())
    clock.advance(seconds=5)
    assert resolver.availability("p", "m", clock.now_ms()) is first
    assert resolver.availability("p", "other-model", clock.now_ms()) is not first


def test_a_kept_availability_ends_when_a_cooldown_does(tmp_path: Path, clock: FakeClock) -> None:
    """A profile cooling for this model (or as a whole) is back the moment its cooldown ends, with no write
    in between; a write (here, a failure of the other profile) is seen at once."""
    resolver = make(tmp_path)
    for pid in ("p:a", "p:b"):
        file_store(resolver).update(
            doc_edits.with_profile(pid, Credential(type="api_key", provider="p", secret="sk"))
        )
    policy = CooldownPolicy()
    file_store(resolver).record_failure(
        "p:a", Reason.RATE_LIMIT, provider="p", now_ms=clock.now_ms(), policy=policy, model="m"
    )
    assert _ready(resolver, "p", "m", clock.now_ms()) == ["p:b"]
    clock.advance(seconds=59)
    assert _ready(resolver, "p", "m", clock.now_ms()) == ["p:b"]
    clock.advance(seconds=1)  # the 1-minute cooldown of the pair ends
    assert sorted(_ready(resolver, "p", "m", clock.now_ms())) == ["p:a", "p:b"]
    file_store(resolver).record_failure(
        "p:b", Reason.AUTH, provider="p", now_ms=clock.now_ms(), policy=policy
    )
    assert _ready(resolver, "p", "m", clock.now_ms()) == ["p:a"]


def test_a_kept_availability_ends_when_a_token_expires(tmp_path: Path, clock: FakeClock) -> None:
    """A static token past its expiry leaves the rotation at that moment."""
    resolver = make(tmp_path)
    file_store(resolver).update(
        doc_edits.with_profile(
            "p:t", Credential(type="token", provider="p", secret="tok", expires=clock.now_ms() + MINUTE_MS)
        )
    )
    assert _ready(resolver, "p", "m", clock.now_ms()) == ["p:t"]
    clock.advance(minutes=1)
    assert _ready(resolver, "p", "m", clock.now_ms()) == []


def test_a_clock_set_back_is_not_served_a_later_answer(tmp_path: Path, clock: FakeClock) -> None:
    """An answer holds from the moment it was worked out: asked for an earlier moment, it is worked out again."""
    resolver = make(tmp_path)
    file_store(resolver).update(
        doc_edits.with_profile("p:a", Credential(type="api_key", provider="p", secret="sk"))
    )
    file_store(resolver).record_failure(
        "p:a", Reason.RATE_LIMIT, provider="p", now_ms=clock.now_ms(), policy=CooldownPolicy(), model="m"
    )
    later = clock.now_ms() + 2 * MINUTE_MS
    assert _ready(resolver, "p", "m", later) == ["p:a"]
    assert _ready(resolver, "p", "m", clock.now_ms()) == []
