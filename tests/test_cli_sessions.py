"""``modelbot sessions``: list with filters, show, reset one or all (optionally only the idle ones)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from bot.config.paths import default_database_url
from bot.errors import CommandError
from bot.store.sql import SqlSessionStore
from bot.store.types import NewMessage, SessionPatch, SessionRecord
from cli.sessions_cmd import parse_duration
from tests.cli_helpers import run_cli, run_script

DAY_MS = 86_400_000


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
def sessions(state_dir: Path) -> dict[str, int]:
    """Three sessions in the state dir's SQLite store: two fresh (one with a model override), one idle."""
    now = now_ms()
    rows = [
        ("telegram:chat:1", "telegram", "1", "u1", 0),
        ("discord:chat:9:user:5", "discord", "9", "5", DAY_MS),
        ("console:notes", "console", "notes", "console", 40 * DAY_MS),
    ]

    async def fill() -> None:
        store = SqlSessionStore(default_database_url(state_dir))
        await store.start()
        try:
            for key, platform, chat, user, age in rows:
                at = now - age
                await store.get_or_create(
                    key, agent_id="main", platform=platform, chat_id=chat, user_id=user, now_ms=at
                )
                messages = [NewMessage("user", "hello " * 3), NewMessage("assistant", "hi")]
                await store.append_messages(key, messages, now_ms=at)
                patch = SessionPatch(pin_profile="demo:main", pin_source="auto", pin_compaction=0)
                if key == "telegram:chat:1":
                    patch = SessionPatch(
                        model_override="demo/story", model_source="user", pin_profile="demo:main"
                    )
                await store.update(key, patch, now_ms=at)
        finally:
            await store.stop()

    asyncio.run(fill())
    return {key: age for key, *_, age in rows}


def records(state_dir: Path) -> dict[str, SessionRecord]:
    async def read() -> dict[str, SessionRecord]:
        store = SqlSessionStore(default_database_url(state_dir))
        await store.start()
        try:
            return {r.key: r for r in await store.list_sessions()}
        finally:
            await store.stop()

    return asyncio.run(read())


@pytest.mark.parametrize(
    ("text", "ms"),
    [
        ("30d", 30 * DAY_MS),
        ("12h", 12 * 3_600_000),
        ("90m", 90 * 60_000),
        ("1h30m", 90 * 60_000),
        ("2w", 14 * DAY_MS),
        (" 45s ", 45_000),
    ],
)
def test_parse_duration(text: str, ms: int) -> None:
    """Durations are numbers with s/m/h/d/w units, combinable."""
    assert parse_duration(text) == ms


@pytest.mark.parametrize("text", ["", "30", "d", "3x", "-1d", "1.5h", "0d", "1d junk"])
def test_parse_duration_rejects_junk(text: str) -> None:
    """Anything else is a clear error."""
    with pytest.raises(CommandError):
        parse_duration(text)


def test_list_json_and_filters(capsys: pytest.CaptureFixture[str], sessions: dict[str, int]) -> None:
    """Every session, most recent first; --platform/--chat/--user narrow it down."""
    result = run_cli(capsys, "sessions", "list", "--json")
    assert result.code == 0
    rows = json.loads(result.out)
    assert [r["key"] for r in rows] == ["telegram:chat:1", "discord:chat:9:user:5", "console:notes"]
    assert rows[0]["modelOverride"] == "demo/story"
    assert rows[0]["messageCount"] == 2
    assert {"key", "agentId", "platform", "chatId", "userId", "pinProfile", "updatedAt"} <= set(rows[0])
    by_platform = json.loads(run_cli(capsys, "sessions", "list", "--json", "--platform", "discord").out)
    assert [r["key"] for r in by_platform] == ["discord:chat:9:user:5"]
    by_user = json.loads(run_cli(capsys, "sessions", "list", "--json", "--user", "5").out)
    assert [r["key"] for r in by_user] == ["discord:chat:9:user:5"]
    by_chat = json.loads(run_cli(capsys, "sessions", "list", "--json", "--chat", "notes").out)
    assert [r["key"] for r in by_chat] == ["console:notes"]
    table = run_cli(capsys, "sessions", "list").out
    assert "console:notes" in table
    assert table.splitlines()[0].split()[:3] == ["key", "agent", "model"]


def test_list_with_no_sessions(capsys: pytest.CaptureFixture[str]) -> None:
    """An empty store says so."""
    result = run_cli(capsys, "sessions", "list")
    assert result.code == 0
    assert "no sessions" in result.out


def test_show_prints_settings_and_last_messages(
    capsys: pytest.CaptureFixture[str], sessions: dict[str, int]
) -> None:
    """``show`` gives the session's settings and its last messages; an unknown key is an error."""
    result = run_cli(capsys, "sessions", "show", "telegram:chat:1", "--json", "--messages", "1")
    data = json.loads(result.out)
    assert data["session"]["key"] == "telegram:chat:1"
    assert data["session"]["modelSource"] == "user"
    assert [m["role"] for m in data["messages"]] == ["assistant"]
    text = run_cli(capsys, "sessions", "show", "telegram:chat:1").out
    assert "Model:          demo/story (user)" in text
    assert "hello hello hello" in text
    missing = run_cli(capsys, "sessions", "show", "telegram:chat:404")
    assert missing.code == 2
    assert 'No session "telegram:chat:404"' in missing.err


def test_reset_one_keeps_the_chosen_model(
    capsys: pytest.CaptureFixture[str], sessions: dict[str, int], state_dir: Path
) -> None:
    """Reset clears history and pins; the user's model choice survives; an unknown key changes nothing."""
    result = run_cli(capsys, "sessions", "reset", "telegram:chat:1")
    assert result.code == 0
    after = records(state_dir)
    assert after["telegram:chat:1"].message_count == 0
    assert after["telegram:chat:1"].pin_profile is None
    assert after["telegram:chat:1"].model_override == "demo/story"
    assert after["console:notes"].message_count == 2
    missing = run_cli(capsys, "sessions", "reset", "nope:chat:1")
    assert missing.code == 2
    assert 'No session "nope:chat:1"' in missing.err


def test_reset_all_older_than_touches_only_idle_sessions(
    capsys: pytest.CaptureFixture[str], sessions: dict[str, int], state_dir: Path
) -> None:
    """``--all --older-than 30d`` resets the 40-day-old session only."""
    result = run_cli(capsys, "sessions", "reset", "--all", "--older-than", "30d")
    assert result.code == 0
    assert "Reset 1 session." in result.out
    counts = {k: r.message_count for k, r in records(state_dir).items()}
    assert counts == {"telegram:chat:1": 2, "discord:chat:9:user:5": 2, "console:notes": 0}


def test_reset_all_with_filters_and_without(
    capsys: pytest.CaptureFixture[str], sessions: dict[str, int], state_dir: Path
) -> None:
    """Filters limit ``--all``; without them every session is reset."""
    assert "Reset 1 session." in run_cli(capsys, "sessions", "reset", "--all", "--platform", "discord").out
    assert records(state_dir)["telegram:chat:1"].message_count == 2
    assert "Reset 3 sessions." in run_cli(capsys, "sessions", "reset", "--all").out
    assert {r.message_count for r in records(state_dir).values()} == {0}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "Give either a session KEY or --all."),
        (["telegram:chat:1", "--all"], "Give either a session KEY or --all."),
        (["telegram:chat:1", "--older-than", "1d"], "--older-than and the filters go with --all."),
        (["--all", "--older-than", "soon"], '"soon" is not a duration'),
    ],
)
def test_reset_usage_errors_change_nothing(
    capsys: pytest.CaptureFixture[str],
    sessions: dict[str, int],
    state_dir: Path,
    argv: list[str],
    message: str,
) -> None:
    """Ambiguous or malformed resets are refused before the store is touched."""
    result = run_cli(capsys, "sessions", "reset", *argv)
    assert result.code == 2
    assert message in result.err
    assert {r.message_count for r in records(state_dir).values()} == {2}


@pytest.mark.slow
def test_the_console_script_lists_a_chat_session(state_dir: Path) -> None:
    """A ``modelbot chat --session NAME`` conversation shows up in ``modelbot sessions list``."""
    chat = run_script("chat", "--session", "notes", "--json", stdin="hello\n")
    assert chat.code == 0, chat.err
    listed = run_script("sessions", "list", "--json")
    assert [r["key"] for r in json.loads(listed.out)] == ["console:notes"]
