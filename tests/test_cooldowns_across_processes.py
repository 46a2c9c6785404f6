"""docs/failover.md §6 across processes: three ``modelbot chat`` processes on one state dir and one key.

One process's answer is held open by the loopback provider while two others get a 429 on the same key
and model at the same moment. The burst must give one 1-minute cooldown, and the slow success, which lands
last, must not wipe it.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e_helpers import ChatProcess, child_env
from tests.fakes.provider_server import FakeProviderServer, held, ok, status

pytestmark = pytest.mark.slow

KEY_ONE = "sk-procs-openai-one-1111"
KEY_TWO = "sk-procs-openai-two-2222"
MINUTE_MS = 60_000


def write_state(state_dir: Path, server: FakeProviderServer) -> Path:
    """gpt-5.2 alone, two openai keys in that order, no waiting; returns auth-profiles.json."""
    config = {
        "models": {"providers": {"openai": {"baseUrl": server.openai_base_url, "api": "openai-completions"}}},
        "auth": {"order": {"openai": ["openai:one", "openai:two"]}, "waitSeconds": 0},
        "agents": {"defaults": {"model": {"primary": "openai/gpt-5.2"}, "timeoutSeconds": 30}},
    }
    (state_dir / "config.json5").write_text(json.dumps(config))
    path = state_dir / "agents" / "main" / "agent" / "auth-profiles.json"
    path.parent.mkdir(parents=True, mode=0o700)
    keys = {"openai:one": KEY_ONE, "openai:two": KEY_TWO}
    profiles = {pid: {"type": "api_key", "provider": "openai", "key": key} for pid, key in keys.items()}
    path.write_text(json.dumps({"version": 1, "profiles": profiles}))
    os.chmod(path, 0o600)
    return path


@pytest.fixture
async def chats(tmp_path: Path, state_dir: Path) -> AsyncIterator[list[ChatProcess]]:
    """Started by the test; whatever still runs at the end is killed."""
    started: list[ChatProcess] = []
    yield started
    for process in started:
        await process.kill()


async def test_a_burst_escalates_once_and_a_late_success_keeps_it(
    tmp_path: Path, state_dir: Path, chats: list[ChatProcess]
) -> None:
    """Process A's answer on openai:one is held open; B and C hit a 429 on openai:one together; then A's
    answer completes. The file keeps one 1-minute cooldown of (openai:one, gpt-5.2)."""
    answer_gate, burst_gate = asyncio.Event(), asyncio.Event()
    async with FakeProviderServer() as server:
        auth_file = write_state(state_dir, server)
        server.script(
            KEY_ONE,
            held(answer_gate, ok("The slow answer.")),
            held(burst_gate, status(429)),
            held(burst_gate, status(429)),
        )
        server.script(KEY_TWO, default=ok("The second key answers."))
        env = child_env({"MODELBOT_STATE_DIR": str(state_dir)})
        for name in ("a", "b", "c"):  # side by side: each start costs seconds
            chats.append(
                await ChatProcess.start("--session", name, env=env, stderr_path=tmp_path / f"{name}.err")
            )
        a, b, c = chats

        slow = asyncio.create_task(a.send("take your time"))
        await server.wait_for_requests(1, timeout_s=90)
        burst = [asyncio.create_task(p.send("quick one")) for p in (b, c)]
        await server.wait_for_requests(3, timeout_s=90)
        burst_gate.set()  # both 429s leave at once; each process records its failure, then rotates
        for reply in await asyncio.gather(*burst):
            assert (reply["profile"], reply["text"]) == ("openai:two", "The second key answers.")
            assert reply["note"] == "↪ answered by openai/gpt-5.2 (openai:two) — openai:one rate-limited"
        burst_recorded = usage(auth_file)["openai:one"]["models"]["gpt-5.2"]
        assert burst_recorded["errorCount"] == 1
        assert burst_recorded["cooldownUntil"] - MINUTE_MS <= burst_recorded["lastFailureAt"]

        answer_gate.set()
        late = await slow
        assert (late["profile"], late["text"]) == ("openai:one", "The slow answer.")
        assert await a.close() == 0  # its success bookkeeping is flushed on exit
        one = usage(auth_file)["openai:one"]
        assert one["models"]["gpt-5.2"] == burst_recorded  # the late success cleared nothing newer
        assert one["lastUsed"] >= burst_recorded["lastFailureAt"]

        # The cooldown stands for everyone: B's next turn goes straight to openai:two.
        seen = len(server.requests)
        assert (await b.send("still there?"))["profile"] == "openai:two"
        assert [r.key for r in server.requests[seen:]] == [KEY_TWO]
        for process in (b, c):
            assert await process.close() == 0
        assert all(p.stderr == "" for p in chats)


def usage(path: Path) -> dict[str, Any]:
    stats: dict[str, Any] = json.loads(path.read_text())["usageStats"]
    return stats
