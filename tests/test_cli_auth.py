"""``modelbot auth``: storing, listing, ordering and resting credentials — never printing a secret."""

from __future__ import annotations

import asyncio
import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.auth import doc_edits
from bot.auth.cooldowns import CooldownPolicy
from bot.auth.store import AuthStore
from bot.auth.types import Credential
from bot.config.paths import auth_profiles_path, default_database_url
from bot.failover.reasons import Reason
from bot.store.sql import SqlSessionStore
from bot.store.types import FailoverEvent
from tests.app_helpers import AUTH_STORES
from tests.auth_stores import SyncAuth, use_auth_store
from tests.cli_helpers import ROOT, run_cli, run_script, write_config

SECRET = "sk-live-" + "abcdefghijklmnopqrstuvwxyz0123"  # fake; split so secret scanners stay quiet
SETUP_TOKEN = "sk-ant-oat01-" + "x" * 40 + "TAIL"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def store(state_dir: Path, agent: str = "main") -> AuthStore:
    return AuthStore(auth_profiles_path(state_dir, agent))


@pytest.fixture(params=AUTH_STORES)
def auth(request: pytest.FixtureRequest, state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> SyncAuth:
    """The main agent's auth state in each store ``auth.store`` can name: every command works on both."""
    return use_auth_store(state_dir, request.param, monkeypatch)


def stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def test_add_reads_the_key_from_stdin_and_prints_it_masked(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, state_dir: Path, auth: SyncAuth
) -> None:
    """Piped input is the secret; the confirmation shows only its masked form (and where it went)."""
    stdin(monkeypatch, SECRET + "\n")
    result = run_cli(capsys, "auth", "add", "--provider", "OpenAI", "--email", "me@example.com")
    assert result.code == 0
    assert SECRET not in result.out + result.err
    assert "Stored openai:default (api_key, sk-liv…0123) in " in result.out
    in_file = isinstance(auth, AuthStore)
    assert ("auth-profiles.json" in result.out, "the database sqlite" in result.out) == (in_file, not in_file)
    assert auth_profiles_path(state_dir).exists() == in_file  # the database mode writes no file
    cred = auth.load().profiles["openai:default"]
    assert cred == Credential("api_key", "openai", SECRET, email="me@example.com")


def test_add_prompts_without_echo_on_a_terminal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, auth: SyncAuth
) -> None:
    """On a terminal the secret comes from getpass, with a prompt naming the profile."""
    prompts: list[str] = []

    def getpass(prompt: str) -> str:
        prompts.append(prompt)
        return SECRET

    monkeypatch.setattr(sys, "stdin", _Terminal(""))
    monkeypatch.setattr("getpass.getpass", getpass)
    result = run_cli(
        capsys, "auth", "add", "--provider", "anthropic", "--profile-id", "work", "--type", "token"
    )
    assert result.code == 0
    assert prompts == ["Token for anthropic:work: "]
    assert auth.load().profiles["anthropic:work"].type == "token"


def test_key_on_the_command_line_is_accepted_with_a_warning(
    capsys: pytest.CaptureFixture[str], state_dir: Path
) -> None:
    """``--key`` works, and stderr says why it is a bad idea."""
    result = run_cli(capsys, "auth", "add", "--provider", "openai", "--key", SECRET)
    assert result.code == 0
    assert "shell history" in result.err
    assert SECRET not in result.out + result.err
    assert store(state_dir).load().profiles["openai:default"].secret == SECRET


@pytest.mark.parametrize(
    ("argv", "secret", "message"),
    [
        (["--provider", "openai"], "", "No secret was given"),
        (["--provider", "openai"], "two words", "spaces, line breaks or control characters"),
        (["--provider", "openai"], "line1\nline2\n", "spaces, line breaks or control characters"),
        (["--provider", "opnai"], SECRET, 'Unknown provider "opnai". Did you mean: openai?'),
        (["--provider", "demo"], SECRET, 'Provider "demo" needs no credentials.'),
        (["--provider", "openai", "--profile-id", "anthropic:x"], SECRET, 'must start with "openai:"'),
        (["--provider", "openai", "--profile-id", "openai:"], SECRET, "A profile name is one word"),
    ],
)
def test_bad_input_stores_nothing(
    capsys: pytest.CaptureFixture[str],
    *,
    monkeypatch: pytest.MonkeyPatch,
    state_dir: Path,
    auth: SyncAuth,
    argv: list[str],
    secret: str,
    message: str,
) -> None:
    """A clear message, a non-zero exit, nothing stored — and the secret is never echoed back."""
    stdin(monkeypatch, secret)
    result = run_cli(capsys, "auth", "add", *argv)
    assert result.code != 0
    assert message in result.err
    assert not auth_profiles_path(state_dir).exists()
    assert auth.load().profiles == {}
    if secret:
        assert secret.strip() not in result.err


def test_setup_token_checks_the_shape_and_stores_a_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, state_dir: Path, auth: SyncAuth
) -> None:
    """Only ``sk-ant-oat01-…`` is accepted; it becomes anthropic:default of type token."""
    stdin(monkeypatch, "sk-ant-api03-" + "y" * 40)
    refused = run_cli(capsys, "auth", "setup-token")
    assert refused.code == 2
    assert "not an Anthropic setup-token" in refused.err
    assert not auth_profiles_path(state_dir).exists()
    stdin(monkeypatch, SETUP_TOKEN)
    result = run_cli(capsys, "auth", "setup-token")
    assert result.code == 0
    assert SETUP_TOKEN not in result.out
    assert auth.load().profiles["anthropic:default"] == Credential("token", "anthropic", SETUP_TOKEN)


def test_paste_token_stores_a_static_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, auth: SyncAuth
) -> None:
    """``paste-token`` stores a token credential under the given id (a bare name gets the prefix)."""
    stdin(monkeypatch, "tok-0123456789abcdef")
    result = run_cli(capsys, "auth", "paste-token", "--provider", "openrouter", "--profile-id", "team")
    assert result.code == 0
    cred = auth.load().profiles["openrouter:team"]
    assert (cred.type, cred.secret) == ("token", "tok-0123456789abcdef")


def test_list_shows_type_expiry_and_state(capsys: pytest.CaptureFixture[str], auth: SyncAuth) -> None:
    """JSON rows carry masked secrets, expiry, cooldown and billing-disable state."""
    now = now_ms()
    auth.update(doc_edits.with_profile("openai:a", Credential("api_key", "openai", SECRET)))
    auth.update(
        doc_edits.with_profile(
            "openai:b", Credential("token", "openai", "tok-expired-0123456789", expires=now - 1000)
        )
    )
    auth.update(
        doc_edits.with_profile("openai:c", Credential("api_key", "openai", "sk-billing-0123456789abcdef"))
    )
    auth.record_failure("openai:a", Reason.RATE_LIMIT, provider="openai", now_ms=now, policy=CooldownPolicy())
    auth.record_failure("openai:c", Reason.BILLING, provider="openai", now_ms=now, policy=CooldownPolicy())
    result = run_cli(capsys, "auth", "list", "--json")
    assert result.code == 0
    assert SECRET not in result.out
    rows = {r["id"]: r for r in json.loads(result.out)}
    assert rows["openai:a"]["secret"] == "sk-liv…0123"
    assert rows["openai:a"]["state"].startswith("cooldown ")
    assert rows["openai:a"]["errorCount"] == 1
    assert rows["openai:b"]["expired"] is True
    assert rows["openai:b"]["state"] == "expired"
    assert rows["openai:c"]["disabledReason"] == "billing"
    assert rows["openai:c"]["state"].startswith("disabled: billing 5h")
    table = run_cli(capsys, "auth", "list").out
    assert table.splitlines()[0].split() == ["profile", "type", "secret", "email", "expires", "state"]


def test_list_includes_keys_from_the_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, auth: SyncAuth
) -> None:
    """A provider with no stored profile but an env key shows it as ``provider:env``, masked."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    result = run_cli(capsys, "auth", "list", "--json")
    (row,) = json.loads(result.out)
    assert (row["id"], row["type"], row["secret"]) == ("openai:env", "env", "sk-liv…0123")


def test_remove_and_clear_cooldown(capsys: pytest.CaptureFixture[str], auth: SyncAuth) -> None:
    """clear-cooldown ends both a cooldown and a billing disable; remove deletes; unknown ids are errors."""
    now = now_ms()
    auth.update(doc_edits.with_profile("openai:a", Credential("api_key", "openai", SECRET)))
    auth.record_failure("openai:a", Reason.RATE_LIMIT, provider="openai", now_ms=now, policy=CooldownPolicy())
    auth.record_failure("openai:a", Reason.BILLING, provider="openai", now_ms=now, policy=CooldownPolicy())
    assert run_cli(capsys, "auth", "clear-cooldown", "openai:a").code == 0
    stats = auth.reload().stats("openai:a")
    assert stats.unavailable_until(now) is None
    assert (stats.error_count, stats.disabled_reason) == (0, None)
    assert run_cli(capsys, "auth", "remove", "openai:a").code == 0
    assert "openai:a" not in auth.reload().profiles
    missing = run_cli(capsys, "auth", "remove", "openai:a")
    assert missing.code == 2
    assert 'No auth profile "openai:a"' in missing.err
    assert run_cli(capsys, "auth", "clear-cooldown", "openai:zzz").code == 2


def test_order_get_set_clear(capsys: pytest.CaptureFixture[str], auth: SyncAuth) -> None:
    """The stored order is set, shown with the effective rotation, validated, and cleared."""
    for name in ("a", "b"):
        auth.update(
            doc_edits.with_profile(f"openai:{name}", Credential("api_key", "openai", f"sk-{name}-0123456789"))
        )
    assert run_cli(capsys, "auth", "order", "set", "--provider", "openai", "openai:b", "openai:a").code == 0
    assert auth.reload().order == {"openai": ["openai:b", "openai:a"]}
    shown = run_cli(capsys, "auth", "order", "get", "--provider", "openai").out
    assert "stored:     openai:b, openai:a" in shown
    assert "rotation:   openai:b, openai:a" in shown
    bad = run_cli(capsys, "auth", "order", "set", "--provider", "openai", "openai:nope")
    assert bad.code == 2
    assert 'No profile "openai:nope" for openai. Profiles: openai:a, openai:b.' in bad.err
    assert auth.reload().order == {"openai": ["openai:b", "openai:a"]}
    assert run_cli(capsys, "auth", "order", "clear", "--provider", "openai").code == 0
    assert auth.reload().order == {}


def test_adding_outside_an_explicit_order_warns(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, auth: SyncAuth
) -> None:
    """A new profile missing from the provider's explicit order would never be used: say so."""
    auth.update(doc_edits.with_profile("openai:a", Credential("api_key", "openai", SECRET)))
    auth.set_order("openai", ["openai:a"])
    stdin(monkeypatch, "sk-new-0123456789abcdef")
    result = run_cli(capsys, "auth", "add", "--provider", "openai", "--profile-id", "new")
    assert result.code == 0
    assert "will not be used" in result.err


def test_agent_picks_the_agents_own_store(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path, state_dir: Path
) -> None:
    """``--agent coder`` writes agents/coder/agent/auth-profiles.json; an unknown agent is an error."""
    config = write_config(
        tmp_path / "c.json5", '{ agents: { list: [{ id: "main", default: true }, { id: "coder" }] } }'
    )
    stdin(monkeypatch, SECRET)
    assert (
        run_cli(capsys, "auth", "add", "--provider", "openai", "--agent", "coder", "--config", config).code
        == 0
    )
    assert "openai:default" in store(state_dir, "coder").load().profiles
    assert not auth_profiles_path(state_dir, "main").exists()
    bad = run_cli(capsys, "auth", "list", "--agent", "nobody", "--config", config)
    assert bad.code == 2
    assert 'Unknown agent "nobody". Known agents: main, coder.' in bad.err


def test_cooldowns_show_current_state_and_the_failover_log(
    capsys: pytest.CaptureFixture[str], state_dir: Path, auth: SyncAuth
) -> None:
    """Resting profiles come from the auth store; recent failures with reasons from the session store."""
    now = now_ms()
    auth.update(doc_edits.with_profile("openai:a", Credential("api_key", "openai", SECRET)))
    auth.record_failure("openai:a", Reason.RATE_LIMIT, provider="openai", now_ms=now, policy=CooldownPolicy())

    async def log_events() -> None:
        sessions = SqlSessionStore(default_database_url(state_dir))
        await sessions.start()
        for at, reason in (
            (now - 2 * 86_400_000, "timeout"),
            (now - 5000, "server"),
            (now - 1000, "rate_limit"),
        ):
            await sessions.record_event(
                FailoverEvent(at, "telegram:chat:1", "openai/gpt-5.2", "openai:a", reason, now + 60_000)
            )
        await sessions.stop()

    asyncio.run(log_events())
    result = run_cli(capsys, "auth", "cooldowns", "--json")
    assert result.code == 0
    data = json.loads(result.out)
    (current,) = data["current"]
    assert current["id"] == "openai:a"
    assert current["failureCounts"] == {"rate_limit": 1}
    assert [e["reason"] for e in data["history"]] == ["rate_limit", "server"]  # newest first, last 24h
    assert data["history"][0] == {
        "at": now - 1000,
        "profile": "openai:a",
        "model": "openai/gpt-5.2",
        "reason": "rate_limit",
        "cooldownUntil": now + 60_000,
        "session": "telegram:chat:1",
    }
    week = json.loads(run_cli(capsys, "auth", "cooldowns", "--json", "--since", "7d").out)
    assert len(week["history"]) == 3
    text = run_cli(capsys, "auth", "cooldowns").out
    assert "Resting now" in text
    assert "Failures in the last 24h" in text
    assert run_cli(capsys, "auth", "cooldowns", "--since", "soon").code == 2


_RECORDER = """
import sys
from pathlib import Path
from bot.auth.cooldowns import CooldownPolicy
from bot.auth.store import AuthStore
from bot.failover.reasons import Reason

store, stop = AuthStore(Path(sys.argv[1])), Path(sys.argv[2])
print("ready", flush=True)
done = 0
while not stop.exists() or done < 50:  # until told to stop, so that it overlaps every CLI edit
    # An hour apart: each failure comes after the last one's cooldown, so each one counts (docs/failover.md §6).
    store.record_failure(
        "openai:busy", Reason.RATE_LIMIT, provider="openai", now_ms=1_700_000_000_000 + done * 3_600_000,
        policy=CooldownPolicy(),
    )
    done += 1
print(done, flush=True)
"""


@pytest.mark.slow
def test_cli_edits_while_another_process_records_failures_lose_nothing(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, state_dir: Path
) -> None:
    """A bot process books failures while the CLI adds, orders and removes profiles: every change survives."""
    path = auth_profiles_path(state_dir)
    store(state_dir).update(doc_edits.with_profile("openai:busy", Credential("api_key", "openai", SECRET)))
    stop = state_dir / "stop-recording"
    with subprocess.Popen(
        [sys.executable, "-c", _RECORDER, str(path), str(stop)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    ) as recorder:
        assert recorder.stdout is not None
        assert recorder.stdout.readline().strip() == "ready"
        added = []
        for i in range(15):
            stdin(monkeypatch, f"sk-cli-{i:02d}-0123456789abcdef")
            assert run_cli(capsys, "auth", "add", "--provider", "openai", "--profile-id", f"cli{i}").code == 0
            added.append(f"openai:cli{i}")
        assert run_cli(capsys, "auth", "order", "set", "--provider", "openai", *added[:3]).code == 0
        assert run_cli(capsys, "auth", "remove", added[-1]).code == 0
        assert recorder.poll() is None  # the CLI's writes really happened while the other process wrote
        stop.touch()
        failures = int(recorder.stdout.readline())
        assert recorder.wait(timeout=60) == 0
    doc = store(state_dir).reload()
    assert set(doc.profiles) == {"openai:busy", *added[:-1]}
    assert doc.order == {"openai": added[:3]}
    assert doc.stats("openai:busy").error_count == failures


@pytest.mark.slow
def test_the_console_script_reads_a_piped_secret(state_dir: Path) -> None:
    """``echo KEY | modelbot auth add`` stores the key and prints it masked."""
    result = run_script("auth", "add", "--provider", "openai", stdin=SECRET + "\n")
    assert result.code == 0, result.err
    assert SECRET not in result.out + result.err
    assert store(state_dir).load().profiles["openai:default"].secret == SECRET


def test_cooldowns_list_and_clear_pairs(capsys: pytest.CaptureFixture[str], auth: SyncAuth) -> None:
    """docs/failover.md §6: each resting (profile, model) pair is its own row with the model named; ``clear-cooldown
    --model`` clears one pair, without it the profile and every pair; an unknown pair changes nothing."""
    now = now_ms()
    for pid in ("openai:a", "openai:b"):
        auth.update(doc_edits.with_profile(pid, Credential("api_key", "openai", SECRET)))
    for model in ("gpt-5.2", "gpt-5-mini"):
        auth.record_failure(
            "openai:a", Reason.RATE_LIMIT, provider="openai", now_ms=now, policy=CooldownPolicy(), model=model
        )
    auth.record_failure(
        "openai:b", Reason.AUTH, provider="openai", now_ms=now, policy=CooldownPolicy(), model="o3"
    )
    current = json.loads(run_cli(capsys, "auth", "cooldowns", "--json").out)["current"]
    assert [(c["id"], c["model"], c["errorCount"]) for c in current] == [
        ("openai:a", "gpt-5-mini", 1),
        ("openai:a", "gpt-5.2", 1),
        ("openai:b", None, 1),
    ]
    assert current[1]["cooldownUntil"] == now + 60_000 and current[1]["state"].startswith("cooldown ")
    table = run_cli(capsys, "auth", "cooldowns").out
    assert re.search(r"openai:a\s+.*gpt-5\.2\s+.*cooldown", table) and "(all)" in table
    listed = {r["id"]: r for r in json.loads(run_cli(capsys, "auth", "list", "--json").out)}
    assert set(listed["openai:a"]["models"]) == {"gpt-5.2", "gpt-5-mini"}
    assert re.search(r"cooldown (1m|5\ds) \(gpt-5\.2\)", listed["openai:a"]["state"])
    assert listed["openai:a"]["cooldownUntil"] is None  # the key itself is fine

    before = auth.reload()
    unknown = run_cli(capsys, "auth", "clear-cooldown", "openai:a", "--model", "gpt-4")
    assert (
        unknown.code == 2
        and 'no cooldown state for model "gpt-4" (models: gpt-5-mini, gpt-5.2)' in unknown.err
    )
    assert run_cli(capsys, "auth", "clear-cooldown", "openai:a", "--model", " ").code == 2
    assert auth.reload() == before
    one = run_cli(capsys, "auth", "clear-cooldown", "openai:a", "--model", "gpt-5.2")
    assert one.code == 0 and "Cleared the cooldown of openai:a for gpt-5.2." in one.out
    assert set(auth.reload().stats("openai:a").models) == {"gpt-5-mini"}
    assert run_cli(capsys, "auth", "clear-cooldown", "openai:a").code == 0
    assert auth.reload().stats("openai:a").models == {}
