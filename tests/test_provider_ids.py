"""Provider ids are case-insensitive everywhere, and local providers take and rotate keys (docs/failover.md §3)."""

from __future__ import annotations

import asyncio
import io
import json
import sys
import time
from pathlib import Path

import pytest

from bot.auth import doc_edits
from bot.auth.cooldowns import CooldownPolicy
from bot.auth.store import AuthStore
from bot.auth.types import Credential
from bot.config.loader import load_config
from bot.config.paths import auth_profiles_path
from tests.app_helpers import running_app
from tests.cli_helpers import run_cli, write_config
from tests.fakes.clock import FakeClock
from tests.fakes.provider_server import FakeProviderServer, status
from tests.test_pipeline import say


def local_config(base_url: str, provider: str, extra: str = "") -> str:
    return (
        f'{{agents: {{defaults: {{model: "{provider.lower()}/tiny"}}}},'
        f' models: {{providers: {{"{provider}": {{baseUrl: "{base_url}", api: "openai-completions"{extra}}}}}}}}}'
    )


async def test_an_api_key_under_a_mixed_case_provider_key_is_used(state_dir: Path, clock: FakeClock) -> None:
    """models.providers.MyProxy with apiKey: the ref myproxy/… sends that key (it said "no credentials")."""
    async with FakeProviderServer() as server:
        config = local_config(server.openai_base_url, "MyProxy", ', apiKey: "${PROXY_KEY}"')
        async with running_app(state_dir, clock, config=config, env={"PROXY_KEY": "proxy-key-1"}) as app:
            reply = await say(app, "hello")
            status_text = (await say(app, "/model status")).text
        assert reply.kind == "answer", reply.text
        assert [r.key for r in server.requests] == ["proxy-key-1"]
    assert "myproxy:config (config)" in status_text


async def test_a_mixed_case_local_provider_keeps_its_no_key_rule(state_dir: Path, clock: FakeClock) -> None:
    """A loopback Local8001 entry without a key answers without one (it was skipped: no credentials)."""
    async with FakeProviderServer() as server:
        async with running_app(
            state_dir, clock, config=local_config(server.openai_base_url, "Local8001")
        ) as app:
            reply = await say(app, "hello")
        assert reply.kind == "answer", reply.text
        assert reply.profile == "local8001:local"


async def test_hand_written_mixed_case_profiles_order_and_billing_keys(
    state_dir: Path, clock: FakeClock
) -> None:
    """Stored "MyProxy" profiles, auth.order.MyProxy and billingBackoffHoursByProvider.MyProxy all apply."""
    path = auth_profiles_path(state_dir, "main")
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "profiles": {
                    "MyProxy:a": {"type": "api_key", "provider": "MyProxy", "key": "key-a"},
                    "MyProxy:b": {"type": "api_key", "provider": "MyProxy", "key": "key-b"},
                },
            }
        )
    )
    async with FakeProviderServer() as server:
        extra = ""
        config = local_config(server.openai_base_url, "MyProxy", extra).removesuffix("}") + (
            ', auth: {order: {MyProxy: ["MyProxy:b", "MyProxy:a"]},'
            " cooldowns: {billingBackoffHoursByProvider: {MyProxy: 2}}}}"
        )
        async with running_app(state_dir, clock, config=config) as app:
            reply = await say(app, "hello")
        assert reply.profile == "MyProxy:b"  # the configured order, not round robin
        assert [r.key for r in server.requests] == ["key-b"]
    loaded = load_config(state_dir / "config.json5", env={}, must_exist=True)
    assert CooldownPolicy.from_config(loaded.config.auth.cooldowns).billing_base_hours("myproxy") == 2


def stdin(monkeypatch: pytest.MonkeyPatch, text: str) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))


async def test_a_local_provider_accepts_keys_and_rotates_them(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    state_dir: Path,
    clock: FakeClock,
) -> None:
    """`auth add` stores keys for a loopback LiteLLM/vLLM; a 429 on one key rotates to the next."""
    async with FakeProviderServer() as server:
        server.script("local-key-1", status(429))
        config = write_config(state_dir / "config.json5", local_config(server.openai_base_url, "LiteLLM"))
        for name, key in (("one", "local-key-1"), ("two", "local-key-2")):
            stdin(monkeypatch, key)
            # The CLI runs its own event loop: in a thread, as it would in a process of its own.
            added = await asyncio.to_thread(
                run_cli,
                capsys,
                "auth",
                "add",
                "--provider",
                "LiteLLM",
                "--profile-id",
                name,
                "--config",
                config,
            )
            assert added.code == 0, added.err
            assert f"Stored litellm:{name}" in added.out
        listed = json.loads(
            (await asyncio.to_thread(run_cli, capsys, "models", "list", "--json", "--config", config)).out
        )
        assert listed[0]["auth"] == "api_key ×2"
        async with running_app(state_dir, clock) as app:
            reply = await say(app, "hello")
        assert reply.kind == "answer"
        assert [r.key for r in server.requests] == ["local-key-1", "local-key-2"]
        assert reply.profile == "litellm:two"


def test_models_list_names_the_auth_each_model_will_use(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`none (local)`, `env`, `config`, `missing`, and the stored types with their count."""
    monkeypatch.setenv("OPENAI_API_KEY", "env-key-1")
    monkeypatch.setenv("REMOTE_KEY", "remote-key-1")
    config = write_config(
        tmp_path / "c.json5",
        '{agents: {defaults: {model: {primary: "local/m", fallbacks: ["openai/gpt-5.2", "anthropic/claude-sonnet-4-5",'
        ' "remote/m", "mistral/mistral-large-latest"]}}},'
        ' models: {providers: {local: {baseUrl: "http://127.0.0.1:9/v1", api: "openai-completions"},'
        ' remote: {baseUrl: "https://gateway.example/v1", api: "openai-completions", apiKey: "${REMOTE_KEY}"}}}}',
    )
    store = AuthStore(auth_profiles_path(state_dir, "main"))
    store.update(doc_edits.with_profile("mistral:a", Credential("api_key", "mistral", "m-key-1")))
    store.update(doc_edits.with_profile("mistral:t", Credential("token", "mistral", "m-token-1")))
    rows = {
        r["model"]: r["auth"]
        for r in json.loads(run_cli(capsys, "models", "list", "--json", "--config", config).out)
    }
    assert rows == {
        "local/m": "none (local)",
        "openai/gpt-5.2": "env",
        "anthropic/claude-sonnet-4-5": "missing",
        "remote/m": "config",
        "mistral/mistral-large-latest": "token, api_key",
    }


def test_check_judges_a_local_provider_by_the_keys_it_has(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, state_dir: Path
) -> None:
    """No key on a local server is fine; an expired token stored for it fails the check."""
    config = write_config(
        tmp_path / "c.json5",
        '{agents: {defaults: {model: "local/m"}},'
        ' models: {providers: {local: {baseUrl: "http://localhost:8000/v1", api: "openai-completions"}}}}',
    )
    assert run_cli(capsys, "models", "status", "--check", "--config", config).code == 0
    expired = int(time.time() * 1000) - 1000
    AuthStore(auth_profiles_path(state_dir, "main")).update(
        doc_edits.with_profile("local:old", Credential("token", "local", "local-token-1", expires=expired))
    )
    result = run_cli(capsys, "models", "status", "--check", "--config", config)
    assert result.code == 1
    assert "Check: local:old: expired" in result.out
