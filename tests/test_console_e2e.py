"""End to end: ``modelbot chat`` as a real subprocess against the loopback fake provider server.

The bot process reads the config and ``auth-profiles.json`` from a temp state dir and calls the fake
(started in this test process) through the real provider clients. The test scripts the fake
between two messages and checks the JSON replies, the requests the fake saw, and the files on disk.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from tests.e2e_helpers import ChatProcess, child_env, finish, run_modelbot, spawn_modelbot
from tests.fakes.provider_server import FakeProviderServer, RecordedRequest, ok, status

pytestmark = pytest.mark.slow

KEY_ONE = "sk-e2e-openai-one-1111"
KEY_TWO = "sk-e2e-openai-two-2222"
KEY_THREE = "sk-e2e-openai-three-3333"
ANTHROPIC_KEY = "sk-ant-e2e-anthropic-9999"
SONNET = "anthropic/claude-sonnet-4-5"
MINI = "openai/gpt-5-mini"
HOUR_MS = 3_600_000

# Anthropic reports an exhausted prepaid balance as a 400 with this text, not as a 402.
CREDIT_TOO_LOW = {
    "type": "error",
    "error": {
        "type": "invalid_request_error",
        "message": "Your credit balance is too low to access the Anthropic API. "
        "Please go to Plans & Billing to upgrade or purchase credits.",
    },
}


def write_config(state_dir: Path, server: FakeProviderServer) -> None:
    """openai (three stored profiles, explicit order) and anthropic (key via ${ANTHROPIC_API_KEY})."""
    config: dict[str, Any] = {
        "models": {
            "providers": {
                "openai": {"baseUrl": server.openai_base_url, "api": "openai-completions"},
                "anthropic": {
                    "baseUrl": server.anthropic_base_url,
                    "api": "anthropic-messages",
                    "apiKey": "${ANTHROPIC_API_KEY}",
                },
            }
        },
        # waitSeconds 0: this story is about failing over, and its timings are the wall clock's (waiting
        # has tests of its own on the fake clock).
        "auth": {"order": {"openai": ["openai:one", "openai:two", "openai:three"]}, "waitSeconds": 0},
        "agents": {
            "defaults": {
                "model": {"primary": "openai/gpt-5.2", "fallbacks": [SONNET]},
                "models": {"openai/gpt-5.2": {}, MINI: {}, SONNET: {"alias": "sonnet"}},
                "timeoutSeconds": 10,
            }
        },
    }
    (state_dir / "config.json5").write_text("// written by the e2e test\n" + json.dumps(config, indent=2))


def write_auth_profiles(state_dir: Path) -> Path:
    """Three openai api_key profiles in the seed's auth-profiles.json format (0600 in a 0700 dir)."""
    path = state_dir / "agents" / "main" / "agent" / "auth-profiles.json"
    path.parent.mkdir(parents=True, mode=0o700)
    keys = {"openai:one": KEY_ONE, "openai:two": KEY_TWO, "openai:three": KEY_THREE}
    profiles = {pid: {"type": "api_key", "provider": "openai", "key": key} for pid, key in keys.items()}
    path.write_text(json.dumps({"version": 1, "profiles": profiles}, indent=2))
    os.chmod(path, 0o600)
    return path


def usage(path: Path) -> dict[str, dict[str, Any]]:
    stats: dict[str, dict[str, Any]] = json.loads(path.read_text())["usageStats"]
    return stats


def status_line(status_text: str, profile_id: str) -> str:
    """The ``/model status`` line of one auth profile."""
    found = [line.strip() for line in status_text.splitlines() if re.match(rf"\s+\d+\. {profile_id} ", line)]
    assert len(found) == 1, status_text
    return found[0]


def texts(request: RecordedRequest) -> list[str]:
    """The conversation the provider was sent, as plain strings."""
    out: list[str] = []
    for message in request.json["messages"]:
        content = message["content"]
        if isinstance(content, str):
            out.append(content)
        else:
            out.append("".join(block.get("text", "") for block in content))
    return out


StartChat = Callable[..., Awaitable[ChatProcess]]


@pytest.fixture
async def start_chat(tmp_path: Path) -> AsyncIterator[StartChat]:
    """Starts ``modelbot chat --json ARGS`` processes; whatever is still running at the end is killed."""
    started: list[ChatProcess] = []

    async def start(*args: str, env: dict[str, str]) -> ChatProcess:
        stderr_path = tmp_path / f"chat-{len(started)}.stderr"
        started.append(await ChatProcess.start(*args, env=env, stderr_path=stderr_path))
        return started[-1]

    yield start
    for process in started:
        await process.kill()


async def test_failover_cooldowns_pins_billing_and_restart(state_dir: Path, start_chat: StartChat) -> None:
    """The whole failover story through two ``modelbot chat --json`` processes on one state dir."""
    async with FakeProviderServer() as server:
        write_config(state_dir, server)
        auth_file = write_auth_profiles(state_dir)
        env = child_env({"MODELBOT_STATE_DIR": str(state_dir), "ANTHROPIC_API_KEY": ANTHROPIC_KEY})
        session = ("--session", "e2e")
        first = await start_chat(*session, env=env)
        # The picker: one entry per family, from the allowlist, the current one marked.
        picker = await first.send("/model")
        assert picker["kind"] == "command" and picker["model"] is None and picker["profile"] is None
        assert picker["text"].splitlines() == [
            "Current model: openai/gpt-5.2",
            "",
            "Models (current: openai/gpt-5.2):",
            "1) claude-sonnet-4-5 — anthropic",
            "2) gpt-5-mini — openai",
            "3) gpt-5.2 — openai (current)",
            "Pick with /model <number> or /model provider/model.",
        ]
        assert (await first.send("/model 2"))["text"] == "Model set to openai/gpt-5-mini."

        # A plain turn: the first profile in the configured order, its key, the picked model.
        server.script(KEY_ONE, ok("Hello from the first key."))
        answer = await first.send("hello there")
        assert answer == {
            "text": "Hello from the first key.",
            "model": MINI,
            "profile": "openai:one",
            "kind": "answer",
            "note": None,
        }
        [request] = server.requests
        assert (request.api, request.path, request.key) == ("openai", "/v1/chat/completions", KEY_ONE)
        assert request.json["model"] == "gpt-5-mini" and request.json["stream"] is True
        assert texts(request) == ["hello there"]

        # Started now, after the first process has created the database, so that its start-up
        # overlaps the rest of this conversation. It is first spoken to after this process exited.
        second = await start_chat(*session, env=env)

        # 429 with Retry-After on the first profile: the second profile answers, with the note.
        server.script(KEY_ONE, status(429, headers={"Retry-After": "120"}))
        server.script(KEY_TWO, ok("The second key answers."))
        seen = len(server.requests)
        rotated = await first.send("are you there?")
        assert (rotated["model"], rotated["profile"]) == (MINI, "openai:two")
        assert rotated["text"] == "The second key answers."
        assert rotated["note"] == "↪ answered by openai/gpt-5-mini (openai:two) — openai:one rate-limited"
        assert [r.key for r in server.requests[seen:]] == [KEY_ONE, KEY_TWO]
        # The history went along: the earlier exchange, then the new message.
        assert texts(server.requests[-1]) == [
            "hello there",
            "Hello from the first key.",
            "are you there?",
        ]

        # The cooldown, lengthened to Retry-After, of the (profile, model) pair (docs/failover.md §6): in /model status,
        # named with its model, and in the file under usageStats["openai:one"].models.
        model_status = (await first.send("/model status"))["text"]
        assert re.fullmatch(
            r"3\. openai:one \(api_key\) sk-e2e…1111 — cooldown (1m5\ds|2m) \(gpt-5-mini\)",
            status_line(model_status, "openai:one"),
        )
        assert status_line(model_status, "openai:two").endswith("sk-e2e…2222 — pinned, next")
        assert KEY_ONE not in model_status and KEY_TWO not in model_status
        one = usage(auth_file)["openai:one"]
        assert set(one) == {"models", "lastUsed"}  # the key itself is fine
        assert one["models"]["gpt-5-mini"]["errorCount"] == 1
        assert (
            one["models"]["gpt-5-mini"]["cooldownUntil"] - one["models"]["gpt-5-mini"]["lastFailureAt"]
            == 120_000
        )

        # /new clears the (auto) pin and keeps the picked model.
        assert (await first.send("/new"))["text"] == "New session. Model: openai/gpt-5-mini."
        assert "pinned" not in (await first.send("/model status"))["text"]

        # A user pin is locked: when its profile fails, the NEXT MODEL answers, although openai:three
        # is healthy and an auto pin would have rotated to it.
        locked = await first.send("/model openai/gpt-5-mini@openai:two")
        assert locked["text"] == (
            "Model set to openai/gpt-5-mini. Auth profile openai:two is locked for this session."
        )
        server.script(KEY_TWO, status(429))
        server.script(ANTHROPIC_KEY, ok("Sonnet steps in."))
        seen = len(server.requests)
        fallback = await first.send("who answers now?")
        assert (fallback["model"], fallback["profile"]) == (SONNET, "anthropic:env")
        assert fallback["note"] == "↪ answered by anthropic/claude-sonnet-4-5 — openai rate-limited"
        sent = server.requests[seen:]
        assert [(r.api, r.key) for r in sent] == [("openai", KEY_TWO), ("anthropic", ANTHROPIC_KEY)]
        assert sent[1].path == "/v1/messages" and sent[1].json["model"] == "claude-sonnet-4-5"
        assert texts(sent[1]) == ["who answers now?"]  # /new emptied the history
        model_status = (await first.send("/model status"))["text"]
        assert "user-pinned" in status_line(model_status, "openai:two")

        # Billing: a 402 disables openai:three for 5h (the other two are cooling), Sonnet answers.
        assert (await first.send("/model openai/gpt-5-mini"))["text"] == "Model set to openai/gpt-5-mini."
        server.script(KEY_THREE, status(402))
        server.script(ANTHROPIC_KEY, ok("Sonnet again."))
        seen = len(server.requests)
        billed = await first.send("and now?")
        assert (billed["model"], billed["profile"]) == (SONNET, "anthropic:env")
        assert billed["note"] == "↪ answered by anthropic/claude-sonnet-4-5 — openai billing problem"
        assert [r.key for r in server.requests[seen:]] == [KEY_THREE, ANTHROPIC_KEY]
        three = usage(auth_file)["openai:three"]
        assert three["disabledReason"] == "billing" and three["failureCounts"] == {"billing": 1}
        assert three["disabledUntil"] - three["lastFailureAt"] == 5 * HOUR_MS
        model_status = (await first.send("/model status"))["text"]
        assert re.search(r"disabled: billing (5h|4h59m)$", status_line(model_status, "openai:three"))
        assert await first.close() == 0

        # The restart: a second process on the same state dir keeps the session, its model and history.
        session_status = (await second.send("/status"))["text"].splitlines()
        assert "Model: openai/gpt-5-mini (session override)" in session_status
        assert "Messages: 4, compactions: 0" in session_status
        # Every openai profile is cooling or disabled: skipped without a call; the history is sent.
        server.script(ANTHROPIC_KEY, ok("I remember."))
        seen = len(server.requests)
        remembered = await second.send("do you remember?")
        assert (remembered["model"], remembered["text"]) == (SONNET, "I remember.")
        assert remembered["note"] == "↪ answered by anthropic/claude-sonnet-4-5 — openai cooling down"
        [request] = server.requests[seen:]
        assert request.api == "anthropic" and texts(request) == [
            "who answers now?",
            "Sonnet steps in.",
            "and now?",
            "Sonnet again.",
            "do you remember?",
        ]

        # Anthropic's "credit balance is too low" 400 is billing too. The chain's last model, gpt-5.2, is
        # served by openai:one: its 429 was on gpt-5-mini and cooled only that pair (docs/failover.md §6).
        server.script(ANTHROPIC_KEY, status(400, body=CREDIT_TOO_LOW))
        seen = len(server.requests)
        other_model = await second.send("anyone?")
        assert (other_model["model"], other_model["profile"]) == ("openai/gpt-5.2", "openai:one")
        assert other_model["note"] == "↪ answered by openai/gpt-5.2 — anthropic billing problem"
        sent = server.requests[seen:]
        assert [(r.key, r.json["model"]) for r in sent] == [
            (ANTHROPIC_KEY, "claude-sonnet-4-5"),
            (KEY_ONE, "gpt-5.2"),
        ]

        # gpt-5.2 is rate-limited on both keys too: now every candidate has failed.
        server.script(KEY_ONE, status(429))
        server.script(KEY_TWO, status(429))
        failed = await second.send("and now?")
        assert (failed["kind"], failed["model"], failed["profile"]) == ("error", None, None)
        assert re.fullmatch(
            r"All models failed: openai/gpt-5-mini \(skipped: every profile cooling down or disabled\), "
            r"anthropic/claude-sonnet-4-5 \(skipped: every profile cooling down or disabled\), "
            r"openai/gpt-5\.2 \(openai:one rate-limited; openai:two rate-limited\)\. "
            r"The first profile is available again in (\d\ds|\ds|1m)\.",
            failed["text"],
        ), failed["text"]
        anthropic = usage(auth_file)["anthropic:env"]
        assert anthropic["disabledReason"] == "billing"
        assert anthropic["disabledUntil"] - anthropic["lastFailureAt"] == 5 * HOUR_MS
        assert ANTHROPIC_KEY not in auth_file.read_text()  # an env key is used, never stored
        assert await second.close() == 0
        assert first.stderr == "" and second.stderr == ""  # no warning, no traceback


def test_no_config_no_keys_answers_on_the_demo_provider(state_dir: Path) -> None:
    """Without a config file or any key, plain-text ``modelbot chat`` answers offline, labelled demo."""
    done = run_modelbot(
        ["chat"],
        stdin="hello demo\n/model status\n",
        env=child_env({"MODELBOT_STATE_DIR": str(state_dir)}),
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("[demo] You said: “hello demo”. This is modelbot's offline demo")
    assert "\n\n↪ answered by demo/echo (demo:main) — demo:busy rate-limited\n" in done.stdout
    assert "demo: builtin://demo [demo]" in done.stdout
    assert re.search(
        r"demo:busy \(builtin\) \(no key\) — cooldown (1m|5\ds) \(echo\)$", done.stdout, re.MULTILINE
    )
    assert not (state_dir / "config.json5").exists()
    assert done.stderr == ""


BAD_CONFIGS = {
    "wrong-type": (
        "{agents: {defaults: {model: {primary: 42}}}}",
        "agents.defaults.model.primary: expected a string",
    ),
    "syntax": ("{agents: {defaults: {model: }}", "invalid JSON5 at line 1 column 29"),
    "missing-env": (
        '{models: {providers: {openai: {apiKey: "${E2E_MISSING_KEY}"}}}}',
        "models.providers.openai.apiKey: environment variable `E2E_MISSING_KEY` is not set",
    ),
}


def test_bad_config_is_reported_with_its_file_and_nothing_starts(tmp_path: Path, state_dir: Path) -> None:
    """A malformed ``--config`` is one line naming the file, the key and the problem; exit status non-zero."""
    env = child_env({"MODELBOT_STATE_DIR": str(state_dir)})
    running = {}
    for name, (text, _) in BAD_CONFIGS.items():  # side by side: each start costs about a second
        config = tmp_path / f"{name}.json5"
        config.write_text(text)
        running[name] = (config, spawn_modelbot(["chat", "--config", str(config)], env=env))
    results = {name: (config, finish(proc, "hello\n")) for name, (config, proc) in running.items()}
    for name, (config, done) in results.items():
        expected = BAD_CONFIGS[name][1]
        assert done.returncode != 0, name
        assert done.stdout == "", name
        assert done.stderr.startswith(f"error: {config}: {expected}"), done.stderr
        assert done.stderr.count("\n") == 1, done.stderr  # one line, no traceback
    assert not (state_dir / "modelbot.sqlite").exists()
