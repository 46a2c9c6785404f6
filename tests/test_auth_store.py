"""auth-profiles.json: the codec, atomic locked writes, corruption, legacy import and concurrent processes."""

from __future__ import annotations

import asyncio
import copy
import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from bot.auth import codec, doc_edits, lockfile
from bot.auth.cooldowns import CooldownPolicy
from bot.auth.store import AuthStore
from bot.auth.types import AuthProfiles, Credential, UsageStats
from bot.clock import HOUR_MS, MINUTE_MS
from bot.errors import AuthStoreCorrupt, UnknownProfile
from bot.failover.reasons import Reason
from tests.fakes.clock import FakeClock

REPO = Path(__file__).resolve().parent.parent
POLICY = CooldownPolicy()
SECRET = "sk-123"

SEED: dict[str, Any] = {
    "version": 1,
    "profiles": {
        "anthropic:default": {"type": "api_key", "provider": "anthropic", "key": "sk-ant-api03-aaaa"},
        "anthropic:setup": {
            "type": "token",
            "provider": "anthropic",
            "token": "sk-ant-oat01-bbbb",
            "expires": 1767225600000,
        },
        "google-antigravity:user@gmail.com": {
            "type": "oauth",
            "provider": "google-antigravity",
            "access": "ya29.cccc",
            "refresh": "1//dddd",
            "expires": 1736170000000,
            "email": "user@gmail.com",
            "projectId": "proj-1",
            "enterpriseUrl": "https://example.com",
        },
        "openai:work": {"type": "api_key", "provider": "openai", "key": "sk-eeee", "email": "me@x.com"},
    },
    "order": {"anthropic": ["anthropic:setup", "anthropic:default"]},
    "lastGood": {"anthropic": "anthropic:default"},
    "usageStats": {
        "provider:profile": {"lastUsed": 1736160000000, "cooldownUntil": 1736160600000, "errorCount": 2},
        "anthropic:default": {"disabledUntil": 1736178000000, "disabledReason": "billing"},
        "openai:work": {
            "lastUsed": 1736160000000,
            "errorCount": 1,
            "failureCounts": {"rate_limit": 1, "billing": 2},
            "lastFailureAt": 1736160000001,
            "someFutureField": True,
        },
    },
    "futureTopLevel": {"keep": ["me"]},
}


def seed_text() -> str:
    return json.dumps(SEED, indent=2, ensure_ascii=False) + "\n"


def store_at(tmp_path: Path, **kw: Any) -> AuthStore:
    return AuthStore(tmp_path / "agents" / "main" / "agent" / "auth-profiles.json", **kw)


def api_key(provider: str = "p", secret: str = SECRET) -> Credential:
    return Credential(type="api_key", provider=provider, secret=secret)


# -- codec ----------------------------------------------------------------------------------------


def test_codec_round_trip_of_the_seed_format_is_identical() -> None:
    """Decoding and re-encoding a seed-style file gives back the same JSON, key order included."""
    doc = codec.decode(copy.deepcopy(SEED))
    assert codec.encode(doc) == SEED
    assert codec.dumps(doc) == seed_text()


def test_codec_decodes_into_typed_fields() -> None:
    """Secrets, expiry, email, stats and unknown keys land in the right typed fields."""
    doc = codec.decode(copy.deepcopy(SEED))
    google = doc.profiles["google-antigravity:user@gmail.com"]
    assert (google.type, google.secret, google.refresh, google.expires) == (
        "oauth",
        "ya29.cccc",
        "1//dddd",
        1736170000000,
    )
    assert google.email == "user@gmail.com"
    assert google.extra == {"projectId": "proj-1", "enterpriseUrl": "https://example.com"}
    assert doc.profiles["anthropic:setup"].secret == "sk-ant-oat01-bbbb"
    assert doc.stats("provider:profile") == UsageStats(
        last_used=1736160000000, cooldown_until=1736160600000, error_count=2
    )
    assert doc.stats("openai:work").failure_counts == {"rate_limit": 1, "billing": 2}
    assert doc.stats("openai:work").extra == {"someFutureField": True}
    assert doc.extra == {"futureTopLevel": {"keep": ["me"]}}
    assert doc.last_good == {"anthropic": "anthropic:default"}


def test_codec_omits_empty_optionals() -> None:
    """An empty store is just version and profiles; default stats entries are not written."""
    doc = AuthProfiles(usage_stats={"p:x": UsageStats()})
    assert codec.encode(doc) == {"version": 1, "profiles": {}}


@pytest.mark.parametrize(
    ("data", "where"),
    [
        ([], "the file: expected an object"),
        ({"profiles": []}, "profiles: expected an object"),
        ({"profiles": {"p:x": {"type": "api_key", "provider": "p"}}}, 'profiles["p:x"]["key"]: missing'),
        ({"profiles": {"p:x": {"type": "weird", "provider": "p", "key": "k"}}}, 'profiles["p:x"]["type"]'),
        ({"profiles": {"p:x": {"type": "api_key", "key": "k"}}}, 'profiles["p:x"]["provider"]: missing'),
        (
            {"profiles": {"p:x": {"type": "token", "provider": "p", "token": "t", "expires": "soon"}}},
            'profiles["p:x"]["expires"]: expected an integer',
        ),
        ({"order": {"p": "p:x"}}, 'order["p"]: expected a list'),
        ({"order": {"p": ["p:x", 3]}}, 'order["p"][1]: expected a string'),
        ({"lastGood": {"p": 1}}, 'lastGood["p"]: expected a string'),
        ({"usageStats": {"p:x": {"errorCount": True}}}, 'usageStats["p:x"]["errorCount"]'),
        ({"usageStats": {"p:x": {"failureCounts": {"auth": "x"}}}}, '["failureCounts"]["auth"]'),
        ({"version": "1"}, "version: expected an integer"),
    ],
)
def test_codec_errors_name_the_exact_place(data: object, where: str) -> None:
    """Malformed content raises ValueError naming the path of the bad value."""
    with pytest.raises(ValueError, match=re.escape(where)):
        codec.decode(data)


def test_codec_errors_never_contain_a_misplaced_secret() -> None:
    """A secret pasted into the wrong field is not echoed by the error."""
    data = {"profiles": {"p:x": {"type": "sk-live-SECRET-VALUE", "provider": "p", "key": "k"}}}
    with pytest.raises(ValueError, match="profiles") as info:
        codec.decode(data)
    assert "SECRET" not in str(info.value)
    data2 = {"profiles": {"p:x": {"type": "token", "provider": "p", "token": "t", "expires": "sk-SECRET"}}}
    with pytest.raises(ValueError, match="expires") as info:
        codec.decode(data2)
    assert "SECRET" not in str(info.value)


# -- reading and writing ---------------------------------------------------------------------------


def test_missing_file_is_an_empty_store_and_nothing_is_written(tmp_path: Path) -> None:
    """Loading a store that does not exist yet returns an empty document and creates no file."""
    store = store_at(tmp_path)
    assert store.load() == AuthProfiles()
    assert not store.path.exists()


def test_first_write_creates_private_dirs_and_file(tmp_path: Path) -> None:
    """New directories are 0700 (parents too), the file 0600, and no temp file is left behind."""
    store = AuthStore(tmp_path / "state" / "agents" / "main" / "agent" / "auth-profiles.json")
    store.update(doc_edits.with_profile("p:default", api_key()))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    for directory in (tmp_path / "state", tmp_path / "state" / "agents", store.path.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    leftovers = [p.name for p in store.path.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    assert json.loads(store.path.read_text())["profiles"]["p:default"]["key"] == "sk-123"


def test_rewrite_keeps_mode_0600(tmp_path: Path) -> None:
    """A file loosened by hand is 0600 again after the next write."""
    store = store_at(tmp_path)
    store.update(doc_edits.with_profile("p:default", api_key()))
    store.path.chmod(0o644)
    store.update(doc_edits.with_profile("p:two", api_key()))
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_failed_write_leaves_the_old_file_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If the rename fails, the previous file is untouched and the temp file is removed."""
    store = store_at(tmp_path)
    store.update(doc_edits.with_profile("p:default", api_key()))
    before = store.path.read_bytes()

    def broken_replace(src: object, dst: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        store.update(doc_edits.with_profile("p:two", api_key()))
    monkeypatch.undo()
    assert store.path.read_bytes() == before
    assert [p.name for p in store.path.parent.iterdir() if p.name.endswith(".tmp")] == []


def test_load_is_cached_until_the_file_changes(tmp_path: Path) -> None:
    """Repeated loads reuse the parsed document; another writer's change is seen at once."""
    store = store_at(tmp_path)
    store.update(doc_edits.with_profile("p:default", api_key()))
    reader = AuthStore(store.path)
    first = reader.load()
    assert reader.load() is first
    store.update(doc_edits.with_profile("p:two", api_key()))
    assert set(reader.load().profiles) == {"p:default", "p:two"}
    fresh = reader.reload()
    assert fresh is not first
    assert reader.load() is fresh


def test_unknown_keys_survive_a_rewrite(tmp_path: Path) -> None:
    """Keys written by a newer version (top level, profile, stats) are kept when this one writes."""
    store = store_at(tmp_path)
    store.path.parent.mkdir(parents=True)
    store.path.write_text(seed_text())
    store.record_success("openai:work", provider="openai", now_ms=1736200000000)
    data = json.loads(store.path.read_text())
    assert data["futureTopLevel"] == {"keep": ["me"]}
    assert data["profiles"]["google-antigravity:user@gmail.com"]["projectId"] == "proj-1"
    assert data["usageStats"]["openai:work"] == {
        "lastUsed": 1736200000000,
        "lastFailureAt": 1736160000001,
        "someFutureField": True,
    }
    assert data["lastGood"] == {"anthropic": "anthropic:default", "openai": "openai:work"}


# -- corruption ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "detail"),
    [
        (b'{"version": 1, "profiles": {', "invalid JSON at line 1"),
        (b"", "invalid JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b'{"profiles": {"p:x": {"type": "api_key", "provider": "p", "key": 5}}}', 'profiles["p:x"]["key"]'),
    ],
)
def test_corrupt_file_is_reported_backed_up_once_and_never_overwritten(
    tmp_path: Path, content: bytes, detail: str
) -> None:
    """Load and every write raise AuthStoreCorrupt; the original stays; one backup copy is kept."""
    clock = FakeClock()
    store = store_at(tmp_path, clock=clock)
    store.path.parent.mkdir(parents=True)
    store.path.write_bytes(content)
    with pytest.raises(AuthStoreCorrupt) as info:
        store.load()
    assert detail in str(info.value)
    backup = info.value.backup
    assert backup is not None
    assert Path(backup).read_bytes() == content
    assert stat.S_IMODE(Path(backup).stat().st_mode) == 0o600
    assert Path(backup).name.startswith("auth-profiles.json.corrupt-")

    clock.advance(seconds=5)
    for write in (
        lambda: store.update(doc_edits.with_profile("p:new", api_key())),
        lambda: store.record_failure("p:x", Reason.AUTH, provider="p", now_ms=clock.now_ms(), policy=POLICY),
        lambda: store.update(lambda doc: AuthProfiles()),
        store.load,
    ):
        with pytest.raises(AuthStoreCorrupt) as again:
            write()
        assert again.value.backup == backup
    assert store.path.read_bytes() == content
    assert len(list(store.path.parent.glob("auth-profiles.json.corrupt-*"))) == 1


def test_update_function_is_not_called_on_a_corrupt_file(tmp_path: Path) -> None:
    """The modify step never sees a made-up empty store."""
    store = store_at(tmp_path)
    store.path.parent.mkdir(parents=True)
    store.path.write_text("nope")
    calls: list[AuthProfiles] = []
    with pytest.raises(AuthStoreCorrupt):
        store.update(lambda doc: calls.append(doc) or doc)  # type: ignore[func-returns-value]
    assert calls == []


# -- legacy import ---------------------------------------------------------------------------------


def test_legacy_files_are_imported_once(tmp_path: Path) -> None:
    """auth.json keys and credentials/oauth.json logins become profiles; later edits are not re-imported."""
    store = store_at(tmp_path, legacy_oauth_path=tmp_path / "credentials" / "oauth.json")
    store.path.parent.mkdir(parents=True)
    (store.path.parent / "auth.json").write_text(json.dumps({"OpenAI": "sk-1", "anthropic": {"key": "sk-2"}}))
    (tmp_path / "credentials").mkdir()
    (tmp_path / "credentials" / "oauth.json").write_text(
        json.dumps(
            {
                "google": {"access": "a1", "refresh": "r1", "expires": 5, "email": "me@x.com"},
                "anthropic": {"access": "a2", "refresh": "r2", "expires": 6, "projectId": "p"},
            }
        )
    )
    doc = store.load()
    assert doc.profiles["openai:default"] == Credential(type="api_key", provider="openai", secret="sk-1")
    assert doc.profiles["anthropic:default"].secret == "sk-2"
    assert doc.profiles["google:me@x.com"] == Credential(
        type="oauth", provider="google", secret="a1", refresh="r1", expires=5, email="me@x.com"
    )
    # anthropic:default is the imported api key, so the login gets its own id.
    assert doc.profiles["anthropic:oauth"].extra == {"projectId": "p"}
    assert store.path.exists()
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600

    store.update(doc_edits.without_profile("openai:default"))
    (store.path.parent / "auth.json").write_text(json.dumps({"mistral": "sk-3"}))
    for fresh in (store, AuthStore(store.path, legacy_oauth_path=tmp_path / "credentials" / "oauth.json")):
        assert "openai:default" not in fresh.load().profiles
        assert "mistral:default" not in fresh.load().profiles
    assert (store.path.parent / "auth.json").exists()  # legacy files are kept, never deleted


def test_legacy_oauth_list_form(tmp_path: Path) -> None:
    """oauth.json may be a list of logins, each naming its provider."""
    oauth_path = tmp_path / "oauth.json"
    oauth_path.write_text(
        json.dumps(
            [
                {"provider": "google", "access": "a", "refresh": "r", "expires": 1},
                {"provider": "google", "access": "b", "refresh": "s", "expires": 2, "email": "x@y.z"},
            ]
        )
    )
    store = store_at(tmp_path, legacy_oauth_path=oauth_path)
    assert set(store.load().profiles) == {"google:default", "google:x@y.z"}


def test_a_broken_legacy_file_is_skipped(tmp_path: Path) -> None:
    """An unreadable legacy file does not block the store; the valid one is imported."""
    oauth_path = tmp_path / "oauth.json"
    oauth_path.write_text("{broken")
    store = store_at(tmp_path, legacy_oauth_path=oauth_path)
    store.path.parent.mkdir(parents=True)
    (store.path.parent / "auth.json").write_text(json.dumps({"openai": "sk-1", "empty": ""}))
    assert set(store.load().profiles) == {"openai:default"}


def test_legacy_import_also_happens_on_first_update(tmp_path: Path) -> None:
    """A write before any load still brings the legacy keys along."""
    store = store_at(tmp_path)
    store.path.parent.mkdir(parents=True)
    (store.path.parent / "auth.json").write_text(json.dumps({"openai": "sk-1"}))
    store.update(doc_edits.with_profile("anthropic:work", api_key("anthropic")))
    assert set(store.load().profiles) == {"openai:default", "anthropic:work"}


# -- convenience methods ---------------------------------------------------------------------------


def test_record_failure_and_success_persist(tmp_path: Path, clock: FakeClock) -> None:
    """Failures are written before returning; success clears them and sets lastGood."""
    store = store_at(tmp_path)
    store.update(doc_edits.with_profile("p:a", api_key()))
    now = clock.now_ms()
    stats = store.record_failure("p:a", Reason.RATE_LIMIT, provider="p", now_ms=now, policy=POLICY)
    assert stats.cooldown_until == now + MINUTE_MS
    stats = store.record_failure(
        "p:a", Reason.RATE_LIMIT, provider="p", now_ms=now, policy=POLICY, retry_after_ms=HOUR_MS
    )
    assert AuthStore(store.path).load().stats("p:a").cooldown_until == now + HOUR_MS
    store.record_success("p:a", provider="p", now_ms=now + 1)
    doc = AuthStore(store.path).load()
    assert doc.stats("p:a") == UsageStats(last_used=now + 1, last_failure_at=now)
    assert doc.last_good == {"p": "p:a"}


def test_failures_of_implicit_profiles_are_recorded(tmp_path: Path, clock: FakeClock) -> None:
    """An env key has no stored profile but its cooldown is persisted all the same."""
    store = store_at(tmp_path)
    store.record_failure("openai:env", Reason.AUTH, provider="openai", now_ms=clock.now_ms(), policy=POLICY)
    assert store.load().stats("openai:env").error_count == 1
    assert store.clear_cooldown("openai:env").error_count == 0


def test_clear_cooldown(tmp_path: Path, clock: FakeClock) -> None:
    """clear_cooldown lifts cooldown and disable, keeps lastUsed, and rejects unknown ids."""
    store = store_at(tmp_path)
    store.update(doc_edits.with_profile("p:a", api_key()))
    store.record_success("p:a", provider="p", now_ms=5)
    store.record_failure("p:a", Reason.BILLING, provider="p", now_ms=clock.now_ms(), policy=POLICY)
    cleared = store.clear_cooldown("p:a")
    assert (cleared.last_used, cleared.disabled_until, cleared.failure_counts) == (5, None, {})
    with pytest.raises(UnknownProfile):
        store.clear_cooldown("p:nope")


def test_remove_profile_removes_every_reference(tmp_path: Path, clock: FakeClock) -> None:
    """Removing a profile also drops it from order, lastGood and usageStats."""
    store = store_at(tmp_path)
    store.update(doc_edits.with_profile("p:a", api_key()))
    store.update(doc_edits.with_profile("p:b", api_key()))
    store.update(doc_edits.with_profile("q:a", api_key("q")))
    store.set_order("p", ["p:a", "p:b", "p:a"])
    store.set_order("q", ["q:a"])
    store.record_success("p:a", provider="p", now_ms=1)
    assert store.load().order == {"p": ["p:a", "p:b"], "q": ["q:a"]}
    store.update(doc_edits.without_profile("p:a"))
    store.update(doc_edits.without_profile("q:a"))
    doc = AuthStore(store.path).load()
    assert set(doc.profiles) == {"p:b"}
    assert doc.order == {"p": ["p:b"]}
    assert doc.last_good == {}
    assert doc.usage_stats == {}
    with pytest.raises(UnknownProfile):
        store.update(doc_edits.without_profile("p:a"))


def test_set_and_clear_order(tmp_path: Path) -> None:
    """set_order pins a provider's order; without_order and an empty list remove it."""
    store = store_at(tmp_path)
    store.set_order("p", ["p:b", "p:a"])
    store.set_order("q", ["q:a"])
    store.update(doc_edits.without_order("p"))
    assert store.load().order == {"q": ["q:a"]}
    store.set_order("q", [])
    assert store.load().order == {}


async def test_async_wrappers(tmp_path: Path, clock: FakeClock) -> None:
    """aload, aupdate, arecord_failure and arecord_success do the same as their sync forms."""
    store = store_at(tmp_path)
    await store.aupdate(lambda doc: AuthProfiles(profiles={"p:a": api_key()}))
    stats = await store.arecord_failure(
        "p:a", Reason.TIMEOUT, provider="p", now_ms=clock.now_ms(), policy=POLICY
    )
    assert stats.error_count == 1
    await store.arecord_success("p:a", provider="p", now_ms=clock.now_ms())
    doc = await store.aload()
    assert doc.stats("p:a").last_used == clock.now_ms()
    assert doc.last_good == {"p": "p:a"}


# -- concurrency -----------------------------------------------------------------------------------


def test_threads_lose_no_update(tmp_path: Path) -> None:
    """Four threads with their own store objects writing at once: every update is kept."""
    path = store_at(tmp_path).path

    def work(name: str) -> None:
        store = AuthStore(path)
        for i in range(25):
            store.update(doc_edits.with_profile(f"p:{name}-{i}", api_key()))
            # A pair of its own per write: concurrent failures on one pair are one burst (docs/failover.md §6).
            store.record_failure(
                "p:shared", Reason.RATE_LIMIT, provider="p", now_ms=1_000, policy=POLICY, model=f"{name}-{i}"
            )

    threads = [threading.Thread(target=work, args=(f"t{n}",)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    doc = AuthStore(path).load()
    assert len(doc.profiles) == 100
    assert len(doc.stats("p:shared").models) == 100


WORKER = """
import sys, time
from pathlib import Path
from bot.auth import doc_edits
from bot.auth.cooldowns import CooldownPolicy
from bot.auth.store import AuthStore
from bot.auth.types import Credential
from bot.failover.reasons import Reason

path, name, n, go = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
deadline = time.monotonic() + 30
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.005)
store = AuthStore(path)
for i in range(n):
    pid = f"p:{name}-{i}"
    store.update(doc_edits.with_profile(pid, Credential(type="api_key", provider="p", secret=f"sk-{name}-{i}")))
    store.record_failure(
        "p:shared", Reason.RATE_LIMIT, provider="p", now_ms=1_000, policy=CooldownPolicy(), model=pid
    )
    store.record_success(pid, provider="p", now_ms=2_000 + i)
"""


@pytest.mark.slow
def test_two_processes_lose_no_update(tmp_path: Path) -> None:
    """Two OS processes × 100 rounds of upsert/failure/success on one file: all 600 updates survive."""
    path = store_at(tmp_path).path
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(path), name, "100", str(go)],
            env=env,
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    doc = AuthStore(path).load()
    own = {pid for pid in doc.profiles if pid != "p:shared"}
    assert own == {f"p:{name}-{i}" for name in "ab" for i in range(100)}
    assert all(doc.stats(pid).last_used == 2_000 + int(pid.rsplit("-", 1)[1]) for pid in own)
    shared = doc.stats("p:shared")  # one pair per failure: none of the 200 was lost
    assert set(shared.models) == own
    assert all(pair.error_count == 1 for pair in shared.models.values())


def test_credential_writes_sync_the_directory_stats_writes_do_not(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A credential change fsyncs file and directory; a usage-stats change fsyncs only the new file's content."""
    store = AuthStore(tmp_path / "agents/main/agent/auth-profiles.json")
    calls: list[bool] = []  # True: a directory was synced
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        calls.append(stat.S_ISDIR(os.fstat(fd).st_mode))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", counting_fsync)
    store.update(
        doc_edits.with_profile("openai:work", Credential("api_key", "openai", "sk-test-credential-0001"))
    )
    assert calls == [False, True]
    calls.clear()
    store.record_failure(
        "openai:work", Reason.RATE_LIMIT, provider="openai", now_ms=1, policy=CooldownPolicy()
    )
    assert calls == [False]
    assert store.reload().profiles["openai:work"].secret == "sk-test-credential-0001"


async def test_contended_failure_waits_in_a_thread_and_keeps_the_loop_running(
    tmp_path: Path, clock: FakeClock
) -> None:
    """While another process holds the lock, the write waits off the event loop and lands after release."""
    store = store_at(tmp_path, lock_timeout_s=2)
    store.update(doc_edits.with_profile("p:a", api_key()))
    holder = lockfile.lock(store.lock_path, 1)
    try:
        write = asyncio.create_task(
            store.arecord_failure("p:a", Reason.AUTH, provider="p", now_ms=clock.now_ms(), policy=POLICY)
        )
        # Had the write waited on the loop, this sleep would only end after its lock timeout, failed.
        await asyncio.sleep(0.05)
        assert not write.done()
        assert store.reload().stats("p:a").error_count == 0
    finally:
        lockfile.unlock(holder)
    stats = await asyncio.wait_for(write, 5)
    assert stats.error_count == 1
    assert store.reload().stats("p:a").error_count == 1


def test_a_success_that_lands_after_a_newer_failure_keeps_the_failure(
    tmp_path: Path, clock: FakeClock
) -> None:
    """Success bookkeeping is written in the background: when it lands late, the newer cooldown stands."""
    store = store_at(tmp_path)
    store.update(doc_edits.with_profile("p:a", api_key()))
    answered_at = clock.now_ms()
    clock.advance(ms=5)
    store.record_failure("p:a", Reason.RATE_LIMIT, provider="p", now_ms=clock.now_ms(), policy=POLICY)
    stats = store.record_success("p:a", provider="p", now_ms=answered_at)  # lands second
    assert stats.cooldown_until == clock.now_ms() + MINUTE_MS
    assert stats.error_count == 1
    assert stats.last_used == answered_at
    assert store.reload().last_good == {}  # not the last good one: it has failed since


class SlowFsync:
    """Stands in for ``os.fsync`` in the write's worker thread: blocks until released, or fails."""

    def __init__(self, error: OSError | None = None) -> None:
        self.started = threading.Event()
        self.release = threading.Event()
        self.error = error
        self._real = os.fsync

    def __call__(self, fd: int) -> None:
        self.started.set()
        self.release.wait(5)
        if self.error is not None:
            raise self.error
        self._real(fd)

    async def wait_started(self) -> None:
        assert await asyncio.to_thread(self.started.wait, 5)


def temp_files(store: AuthStore) -> list[str]:
    return [p.name for p in store.path.parent.iterdir() if p.name.endswith(".tmp")]


async def failure_in_its_fsync(
    store: AuthStore, fsync: SlowFsync, profile_id: str = "p:a"
) -> asyncio.Task[UsageStats]:
    """An async failure write of ``profile_id`` that is inside its fsync when this returns."""
    provider = profile_id.split(":", 1)[0]
    write = asyncio.create_task(
        store.arecord_failure(profile_id, Reason.RATE_LIMIT, provider=provider, now_ms=1_000, policy=POLICY)
    )
    await fsync.wait_started()
    return write


async def test_an_async_write_syncs_in_a_thread_while_the_loop_runs_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only the fsync leaves the loop, and the new file is in place only once it is synced."""
    store = store_at(tmp_path)
    store.update(doc_edits.with_profile("p:a", api_key()))
    fsync = SlowFsync()
    monkeypatch.setattr(os, "fsync", fsync)
    write = await failure_in_its_fsync(store, fsync)
    await asyncio.sleep(0.01)  # the loop is free while the fsync waits
    assert not write.done()
    assert AuthStore(store.path).load().stats("p:a").error_count == 0  # not renamed before the fsync
    assert lockfile.try_lock(store.lock_path) is None  # and still locked against other writers
    fsync.release.set()
    assert (await asyncio.wait_for(write, 5)).error_count == 1
    assert AuthStore(store.path).load().stats("p:a").error_count == 1
    assert temp_files(store) == []


async def test_a_write_whose_caller_is_cancelled_still_lands_and_unlocks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/stop during a failover cancels the turn mid-fsync: the failure is still persisted, the lock freed."""
    store = store_at(tmp_path, lock_timeout_s=2)
    store.update(doc_edits.with_profile("p:a", api_key()))
    fsync = SlowFsync()
    monkeypatch.setattr(os, "fsync", fsync)
    write = await failure_in_its_fsync(store, fsync)
    write.cancel()
    with pytest.raises(asyncio.CancelledError):
        await write
    fsync.release.set()
    monkeypatch.undo()
    # The next write takes the lock as soon as the commit has run, well inside its 2 s lock timeout.
    stats = await asyncio.wait_for(  # after the first one's cooldown: a new step of the ladder
        store.arecord_failure("p:a", Reason.RATE_LIMIT, provider="p", now_ms=61_000, policy=POLICY), 5
    )
    assert stats.error_count == 2  # the cancelled write's failure was counted
    assert temp_files(store) == []


async def test_a_failed_async_fsync_keeps_the_old_file_and_frees_the_lock(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = store_at(tmp_path)
    store.update(doc_edits.with_profile("p:a", api_key()))
    before = store.path.read_bytes()
    fsync = SlowFsync(error=OSError(5, "Input/output error"))
    fsync.release.set()
    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(OSError, match="Input/output error"):
        await store.arecord_failure("p:a", Reason.AUTH, provider="p", now_ms=clock.now_ms(), policy=POLICY)
    monkeypatch.undo()
    assert store.path.read_bytes() == before
    assert temp_files(store) == []
    assert store.reload().stats("p:a").error_count == 0
    store.clear_cooldown("p:a")  # the lock is free: this would time out otherwise


async def test_a_synchronous_update_on_the_loop_during_an_async_one_fails_fast(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the fsync runs, the loop holds the lock and only the loop can release it: a synchronous
    update on the loop's thread would wait for it forever, so it raises at once instead."""
    store = store_at(tmp_path, lock_timeout_s=2)
    store.update(doc_edits.with_profile("p:a", api_key()))
    fsync = SlowFsync()
    monkeypatch.setattr(os, "fsync", fsync)
    write = await failure_in_its_fsync(store, fsync)
    started = time.monotonic()
    for same_file in (store, AuthStore(store.path, lock_timeout_s=2)):  # any store object on that file
        with pytest.raises(RuntimeError, match="use aupdate"):
            same_file.clear_cooldown("p:a")
    assert time.monotonic() - started < 0.5
    fsync.release.set()
    assert (await write).error_count == 1
    monkeypatch.undo()
    assert store.clear_cooldown("p:a").error_count == 0  # fine again once the write is done


async def test_legacy_import_during_the_first_async_write_shows_the_import_without_waiting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first write creates the store with the legacy keys; a load meanwhile sees them too."""
    store = store_at(tmp_path, lock_timeout_s=2)
    store.path.parent.mkdir(parents=True)
    (store.path.parent / "auth.json").write_text(json.dumps({"openai": "sk-1"}))
    fsync = SlowFsync()
    monkeypatch.setattr(os, "fsync", fsync)
    write = await failure_in_its_fsync(store, fsync, "openai:default")
    assert set(store.load().profiles) == {"openai:default"}
    assert not store.path.exists()
    fsync.release.set()
    await write
    monkeypatch.undo()
    doc = store.load()
    assert set(doc.profiles) == {"openai:default"}
    assert doc.stats("openai:default").error_count == 1


async def test_writers_waiting_in_every_default_worker_never_starve_the_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A burst of failures: other writers of this process wait for the lock in the loop's default executor.
    When the loop takes the lock for a write meanwhile, its fsync must still run although every default
    worker is busy waiting (the fsyncs have threads of their own); before, nothing moved until the lock
    timeout."""
    from concurrent.futures import ThreadPoolExecutor  # noqa: PLC0415

    loop_locked = threading.Event()  # the waiting workers start polling only once the loop holds the lock
    real_try_lock, real_lock = lockfile.try_lock, lockfile.lock

    def try_lock(path: Path, **kw: Any) -> int | None:
        fd = real_try_lock(path, **kw)
        if fd is not None and threading.current_thread() is threading.main_thread():
            loop_locked.set()
        return fd

    def lock(path: Path, timeout_s: float, **kw: Any) -> int:
        loop_locked.wait(5)
        return real_lock(path, timeout_s, **kw)

    store = store_at(tmp_path, lock_timeout_s=3)
    store.update(doc_edits.with_profile("p:a", api_key()))
    monkeypatch.setattr(lockfile, "try_lock", try_lock)
    monkeypatch.setattr(lockfile, "lock", lock)
    loop = asyncio.get_running_loop()
    workers = ThreadPoolExecutor(max_workers=2)
    loop.set_default_executor(workers)
    policy = CooldownPolicy()

    def fail(n: int) -> asyncio.Task[UsageStats]:
        return asyncio.ensure_future(
            store.arecord_failure(
                "p:a", Reason.RATE_LIMIT, provider="p", now_ms=1_000 + n, policy=policy, model=f"m{n}"
            )
        )

    held = real_try_lock(store.lock_path)  # another process is writing: these two wait in the workers
    assert held is not None
    waiting = [fail(0), fail(1)]
    for _ in range(3):
        await asyncio.sleep(0)  # both have tried the lock and gone to the workers
    lockfile.unlock(held)
    on_loop = fail(2)  # takes the lock on the loop, then needs a thread for its fsync
    try:
        await asyncio.wait_for(asyncio.gather(*waiting, on_loop), 2)
    finally:
        loop_locked.set()
        workers.shutdown(wait=False)
    assert len(AuthStore(store.path).load().stats("p:a").models) == 3
