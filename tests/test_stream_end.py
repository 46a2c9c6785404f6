"""A stream whose model said it was done is a finished answer on both APIs (docs/failover.md §5), through the wired bot.

The gateway drops the last event (``[DONE]`` or ``message_stop``) after the finish/stop reason: the answer is
shown as complete, and the healthy key gets no cooldown.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.auth.types import Credential
from tests.app_helpers import running_app
from tests.fakes.clock import FakeClock
from tests.fakes.provider_server import FakeProviderServer, no_end_marker
from tests.test_pipeline import say

KEY = "sk-stream-end-0001"


@pytest.mark.parametrize(
    ("provider", "api", "model"),
    [
        ("openai", "openai-completions", "gpt-5.2"),
        ("anthropic", "anthropic-messages", "claude-sonnet-4-5"),
    ],
)
@pytest.mark.parametrize("drop", [False, True], ids=["body-ended", "connection-dropped"])
async def test_an_answer_without_its_end_marker_is_complete_and_cools_nothing(  # noqa: PLR0917
    state_dir: Path, clock: FakeClock, provider: str, api: str, model: str, drop: bool
) -> None:
    """The reply is the whole answer (not "interrupted"), one request was made, no failure was recorded."""
    async with FakeProviderServer() as server:
        server.script(KEY, no_end_marker("The whole answer", drop_connection=drop))
        base = server.openai_base_url if api == "openai-completions" else server.anthropic_base_url
        config = {
            "models": {"providers": {provider: {"baseUrl": base, "api": api}}},
            "agents": {"defaults": {"model": {"primary": f"{provider}/{model}"}, "timeoutSeconds": 10}},
        }
        creds = {f"{provider}:a": Credential("api_key", provider, KEY)}
        async with running_app(state_dir, clock, config=config, profiles=creds) as app:
            reply = await say(app, "hello")
    assert (reply.kind, reply.text, reply.profile) == ("answer", "The whole answer", f"{provider}:a")
    assert len(server.requests) == 1
    stored = json.loads((state_dir / "agents/main/agent/auth-profiles.json").read_text())
    stats = stored.get("usageStats", {}).get(f"{provider}:a", {})
    assert not stats.get("errorCount") and not stats.get("cooldownUntil"), stats
