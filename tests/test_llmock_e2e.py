"""End to end against llmock, an independent mock LLM server (PyPI ``llmock``), started as a subprocess.

llmock speaks OpenAI at ``/v1`` and Anthropic at ``/anthropic`` and breaks single requests on demand through
``POST /_llmock/scenario``: 429s with Retry-After, 5xx, truncated and stalled streams, slow first tokens.
Nobody on this team wrote it, so it checks our reading of the APIs as well as our failover.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bot.auth import doc_edits
from bot.auth.store import AuthStore
from bot.auth.types import Credential
from bot.config.paths import auth_profiles_path
from tests.app_helpers import running_app
from tests.e2e_helpers import child_env, run_modelbot
from tests.fakes.clock import FakeClock
from tests.test_pipeline import say

pytestmark = pytest.mark.slow

KEYS = {"openai:one": "llmock-key-one", "openai:two": "llmock-key-two"}
STARTUP_TIMEOUT_S = 30.0


class LLMock:
    """The running llmock process: its URLs and its control API."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _call(self, method: str, path: str, body: object | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(f"{self.url}{path}", data=data, method=method)  # noqa: S310 - http://127.0.0.1 only
        request.add_header("content-type", "application/json")
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - http://127.0.0.1 only
            return json.loads(response.read() or b"null")

    def script(self, *behaviors: dict[str, Any]) -> None:
        self._call("POST", "/_llmock/scenario", {"behaviors": list(behaviors)})

    def requests(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = self._call("GET", "/_llmock/requests")["requests"]
        return found

    def reset(self) -> None:
        self._call("POST", "/_llmock/reset")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def llmock_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LLMock]:
    """``llmock serve`` on a free loopback port, for the whole session (it starts in about a second)."""
    port = _free_port()
    log = tmp_path_factory.mktemp("llmock") / "llmock.log"
    script = Path(sys.executable).with_name("llmock")
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(script), "serve", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = LLMock(f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            try:
                server._call("GET", "/health")
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"llmock did not start:\n{log.read_text()}") from None
                time.sleep(0.05)
        yield server
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def llmock(llmock_server: LLMock) -> LLMock:
    """The shared server with no queued behaviours and an empty journal."""
    llmock_server.reset()
    return llmock_server


def config(llmock: LLMock, **defaults: Any) -> str:
    """openai at llmock's /v1 with two keys in a fixed order; anthropic at /anthropic as the fallback."""
    return json.dumps(
        {
            "agents": {
                "defaults": {
                    "model": {"primary": "openai/gpt-4o", "fallbacks": ["anthropic/claude-sonnet-4-5"]},
                    **defaults,
                }
            },
            "models": {
                "providers": {
                    "openai": {"baseUrl": f"{llmock.url}/v1"},
                    "anthropic": {"baseUrl": f"{llmock.url}/anthropic", "apiKey": "${ANTHROPIC_API_KEY}"},
                }
            },
            "auth": {"order": {"openai": list(KEYS)}},
        }
    )


def store_keys(state_dir: Path) -> AuthStore:
    store = AuthStore(auth_profiles_path(state_dir, "main"))
    for profile_id, key in KEYS.items():
        store.update(doc_edits.with_profile(profile_id, Credential("api_key", "openai", key)))
    return store


PROFILES = {pid: Credential("api_key", "openai", key) for pid, key in KEYS.items()}
ENV = {"ANTHROPIC_API_KEY": "llmock-anthropic-key"}


def test_chat_rotates_on_a_429_and_honours_its_retry_after(llmock: LLMock, state_dir: Path) -> None:
    """`modelbot chat --json`: the first key gets a 429 (Retry-After 30 s), the second answers; the first
    key's cooldown lasts at least the 30 s the server asked for."""
    (state_dir / "config.json5").write_text(config(llmock))
    store = store_keys(state_dir)
    llmock.script({"type": "fail", "status": 429, "retry_after": 30})
    started_ms = time.time_ns() // 1_000_000
    done = run_modelbot(
        ["chat", "--json"],
        stdin="hello there\n",
        env=child_env({"MODELBOT_STATE_DIR": str(state_dir), **ENV}),
    )
    assert done.returncode == 0, done.stderr
    [reply] = [json.loads(line) for line in done.stdout.splitlines()]
    assert (reply["kind"], reply["model"], reply["profile"]) == ("answer", "openai/gpt-4o", "openai:two")
    assert reply["text"].strip()
    assert "rate-limited" in (reply["note"] or "")
    assert [r["status"] for r in llmock.requests()] == [429, 200]
    # A 429 cools the (profile, model) pair (docs/failover.md §6), at least as long as its Retry-After.
    stats = store.reload().stats("openai:one")
    assert stats.cooldown_until is None
    cooldown = stats.models["gpt-4o"].cooldown_until
    assert cooldown is not None and cooldown >= started_ms + 30_000


async def test_a_truncated_stream_is_never_shown_as_complete(
    llmock: LLMock, state_dir: Path, clock: FakeClock
) -> None:
    """A stream that ends cleanly but early (no finish_reason, no [DONE]) after text: interrupted."""
    llmock.script({"type": "stream_fault", "kind": "truncate", "after_chunks": 2})
    async with running_app(state_dir, clock, config=config(llmock), env=ENV, profiles=PROFILES) as app:
        reply = await say(app, "tell me something")
    partial, _, notice = reply.text.partition("\n\n⚠ ")
    assert reply.kind == "interrupted" and partial.strip() and "interrupted" in notice
    assert [r["fault"] for r in llmock.requests()] == ["stream:truncate@2"]


async def test_a_truncated_stream_without_visible_text_rotates(
    llmock: LLMock, state_dir: Path, clock: FakeClock
) -> None:
    """Cut after the role chunk only: nothing was shown, so the next key is tried and answers."""
    llmock.script({"type": "stream_fault", "kind": "truncate", "after_chunks": 1})
    async with running_app(state_dir, clock, config=config(llmock), env=ENV, profiles=PROFILES) as app:
        reply = await say(app, "tell me something")
    assert (reply.kind, reply.profile) == ("answer", "openai:two")


async def test_a_slow_first_token_times_out_and_rotates(
    llmock: LLMock, state_dir: Path, clock: FakeClock
) -> None:
    """timeoutSeconds bounds the first token: a 5 s wait is cut at 0.5 s and the next key answers."""
    llmock.script({"type": "slow_first_token", "seconds": 5})
    cfg = config(llmock, timeoutSeconds=0.5)
    async with running_app(state_dir, clock, config=cfg, env=ENV, profiles=PROFILES) as app:
        started = time.monotonic()
        reply = await say(app, "quick please")
        elapsed = time.monotonic() - started
    assert (reply.kind, reply.profile) == ("answer", "openai:two")
    assert elapsed < 3.0


async def test_a_stall_mid_stream_is_an_interrupted_answer(
    llmock: LLMock, state_dir: Path, clock: FakeClock
) -> None:
    """timeoutSeconds bounds each gap: text, then 5 s of silence, is cut at 0.5 s as interrupted."""
    llmock.script({"type": "stream_fault", "kind": "stall", "after_chunks": 2, "stall_seconds": 5})
    cfg = config(llmock, timeoutSeconds=0.5)
    async with running_app(state_dir, clock, config=cfg, env=ENV, profiles=PROFILES) as app:
        started = time.monotonic()
        reply = await say(app, "go on")
        elapsed = time.monotonic() - started
    partial, _, notice = reply.text.partition("\n\n⚠ ")
    assert reply.kind == "interrupted" and partial.strip() and "interrupted" in notice
    assert elapsed < 3.0


async def test_a_503_with_a_short_retry_after_is_retried_after_it(
    llmock: LLMock, state_dir: Path, clock: FakeClock
) -> None:
    """A 503 asking for 0.3 s: the same key is asked again after 0.3 s and answers; no cooldown."""
    llmock.script({"type": "fail", "status": 503, "retry_after": 0.3})
    async with running_app(state_dir, clock, config=config(llmock), env=ENV, profiles=PROFILES) as app:
        reply = await say(app, "hello")
    assert (reply.kind, reply.profile) == ("answer", "openai:one")
    first, second = llmock.requests()
    assert first["status"] == 503 and second["status"] == 200
    assert second["started_at"] >= first["ended_at"]
    assert clock.slept == [pytest.approx(0.3)]  # the engine waits on the injected clock


async def test_a_503_with_the_default_retry_after_goes_to_the_next_model(
    llmock: LLMock, state_dir: Path, clock: FakeClock
) -> None:
    """llmock's 503 asks for a few seconds by default: over 2 s, so the fallback model answers at once."""
    llmock.script({"type": "fail", "status": 503, "retry_after": 5})
    async with running_app(state_dir, clock, config=config(llmock), env=ENV, profiles=PROFILES) as app:
        reply = await say(app, "hello")
    assert (reply.kind, reply.model) == ("answer", "anthropic/claude-sonnet-4-5")
    assert [r["path"] for r in llmock.requests()] == ["/v1/chat/completions", "/anthropic/v1/messages"]
