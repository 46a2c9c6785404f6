"""Redaction of every credential the process holds (docs/failover.md §5), in every text a provider's words reach."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.auth import doc_edits
from bot.auth.store import AuthStore
from bot.auth.types import Credential
from bot.config.loader import load_config
from bot.config.paths import auth_profiles_path
from bot.errors import AllCandidatesFailed, ProviderError
from bot.failover.engine import AttemptFailed, Engine, TurnInput
from bot.failover.reasons import Reason
from bot.models.refs import ModelRef
from bot.providers.base import ChatMessage, ChatRequest, Endpoint, ResolvedAuth
from bot.redaction import REDACTED, Redactor, process_secrets, redact_known
from cli.channels import BUILTIN_CHANNELS as CHANNELS
from cli.main import main
from tests.app_helpers import running_app
from tests.cli_helpers import write_config
from tests.fakes.clock import FakeClock
from tests.fakes.provider_server import FakeProviderServer, status
from tests.fakes.scripted import MemoryAuth
from tests.test_pipeline import say

SHORT_KEY = "hunter2-key"  # no known prefix, far below the 32 characters the key-shape filter catches


def test_known_secrets_of_any_length_are_redacted() -> None:
    """Long secrets wherever they occur; short ones where they stand alone, so words around them survive."""
    text = "key hunter2-key rejected; abc, abcdef and xabc; token LONGSECRET99x inside xxLONGSECRET99xyy"
    out = redact_known(text, ["hunter2-key", "abc", "LONGSECRET99x", "", "  "])
    assert out == (
        f"key {REDACTED} rejected; {REDACTED}, abcdef and xabc; token {REDACTED} inside xx{REDACTED}yy"
    )


def test_a_secret_inside_another_goes_with_the_longer_one() -> None:
    """Longest first: a key that contains another key leaves no tail behind."""
    assert redact_known("sk-abc-123456789", ["sk-abc-123456789", "123456789"]) == REDACTED


def test_the_redactor_rereads_its_secrets() -> None:
    """A key added while the bot runs is redacted from then on; provider texts also lose key shapes."""
    secrets = ["first"]
    redactor = Redactor(lambda: secrets)
    assert redactor.known("first second") == f"{REDACTED} second"
    secrets.append("second")
    assert redactor.known("first second") == f"{REDACTED} {REDACTED}"
    shaped = "sk-" + "unknownkey12345"
    assert redactor.provider_text(f"first {shaped}") == f"{REDACTED} …"
    assert redactor.known(shaped) == shaped  # status views keep masked keys and ids readable


def test_process_secrets_collects_every_credential(tmp_path: Path) -> None:
    """Channel tokens, provider keys and ${ENV} headers, env keys, stored secrets and refresh tokens."""
    env = {
        "TG": "tg-token-1",
        "PROXY_KEY": "proxy-key-1",
        "HDR": "hdr-secret-1",
        "OPENAI_API_KEY": "env-key-1",
        "GITHUB_TOKEN": "gh-1",
        "HOME": "/root",
    }
    path = write_config(
        tmp_path / "c.json5",
        '{channels: {telegram: {enabled: true, botToken: "${TG}"}},'
        ' models: {providers: {proxy: {baseUrl: "http://127.0.0.1:9/v1", api: "openai-completions",'
        ' apiKey: "${PROXY_KEY}", headers: {"x-gateway-key": "${HDR}", "x-plain": "visible"}}}}}',
    )
    loaded = load_config(Path(path), env=env, must_exist=True, channels=CHANNELS)
    store = AuthStore(tmp_path / "auth-profiles.json")
    store.update(doc_edits.with_profile("openai:a", Credential("api_key", "openai", "stored-1")))
    store.update(
        doc_edits.with_profile("x:o", Credential("oauth", "x", "access-1", refresh="refresh-1", expires=1))
    )
    broken = tmp_path / "broken" / "auth-profiles.json"
    broken.parent.mkdir()
    broken.write_text("{not json")
    found = set(process_secrets(loaded, env, [store, AuthStore(broken)]))
    assert found == {
        "tg-token-1",
        "proxy-key-1",
        "hdr-secret-1",
        "env-key-1",
        "gh-1",
        "stored-1",
        "access-1",
        "refresh-1",
    }


class EchoingClient:
    """A provider that quotes the key it was given in its 401, as OpenAI does."""

    async def stream(
        self, endpoint: Endpoint, auth: ResolvedAuth, request: ChatRequest
    ) -> AsyncIterator[str]:
        if auth.secret:  # always: the condition only lets mypy see the async generator's yield
            raise ProviderError(
                Reason.AUTH, f"Auth error (HTTP 401): Incorrect API key provided: {auth.secret}."
            )
        yield ""

    async def aclose(self) -> None:
        return None


async def test_engine_redacts_provider_texts_before_recording_them(clock: FakeClock) -> None:
    """Attempt details and everything built from them carry [redacted], never the key."""
    auth = MemoryAuth(clock=clock, profiles={"openai": ["openai:a"]})
    secrets = {"secret-openai:a"}  # what MemoryAuth resolves the profile to
    engine = Engine(
        auth=auth,
        clients={"fake": EchoingClient()},
        endpoint_for=lambda p: Endpoint(p, "http://unused", "fake"),
        clock=clock,
        redact=Redactor(lambda: secrets).provider_text,
    )
    failures: list[AttemptFailed] = []
    with pytest.raises(AllCandidatesFailed) as info:
        async for event in engine.run(
            TurnInput([ModelRef("openai", "gpt-5.2")], [ChatMessage("user", "hi")])
        ):
            if isinstance(event, AttemptFailed):
                failures.append(event)
    assert failures[0].record.detail == f"Auth error (HTTP 401): Incorrect API key provided: {REDACTED}."
    assert all("secret-openai:a" not in a.detail for a in info.value.attempts)
    assert "secret-openai:a" not in str(info.value)


def echoing_401(key: str) -> object:
    return status(
        401,
        {"error": {"message": f"Incorrect API key provided: {key}.", "type": "invalid_request_error",
                   "code": "invalid_api_key"}},
    )  # fmt: skip


async def test_probe_never_prints_a_short_key_the_provider_echoes(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, state_dir: Path
) -> None:
    """`models status --probe`: a 401 quoting a short key without a known prefix shows [redacted]."""
    AuthStore(auth_profiles_path(state_dir, "main")).update(
        doc_edits.with_profile("openai:work", Credential("api_key", "openai", SHORT_KEY))
    )
    async with FakeProviderServer() as server:
        server.script(SHORT_KEY, default=echoing_401(SHORT_KEY))  # type: ignore[arg-type]
        config = write_config(
            tmp_path / "c.json5",
            '{ agents: { defaults: { model: "openai/gpt-5.2" } },'
            f' models: {{ providers: {{ openai: {{ baseUrl: "{server.openai_base_url}" }} }} }} }}',
        )
        outputs = []
        for extra in ([], ["--json"]):
            capsys.readouterr()
            code = await asyncio.to_thread(main, ["models", "status", "--probe", *extra, "--config", config])
            captured = capsys.readouterr()
            outputs.append(captured.out + captured.err)
            assert code == 0
    assert all(SHORT_KEY not in out for out in outputs)
    probe = json.loads(outputs[1])["probes"][0]
    assert probe["reason"] == "auth"
    assert f"Incorrect API key provided: {REDACTED}" in probe["detail"]


async def test_model_status_never_shows_a_held_secret(state_dir: Path, clock: FakeClock) -> None:
    """/model status shows endpoints: a gateway whose URL carries a token shows [redacted] in its place."""
    config = (
        '{agents: {defaults: {model: "gw/some-model"}}, models: {providers: {gw: {'
        'baseUrl: "https://gateway.example/${GW_TOKEN}/v1", api: "openai-completions", apiKey: "${GW_KEY}"}}}}'
    )
    env = {"GW_TOKEN": "tok-9f8e7d", "GW_KEY": "gw-key-1"}
    async with running_app(state_dir, clock, config=config, env=env) as app:
        reply = await say(app, "/model status")
    assert "https://gateway.example/[redacted]/v1" in reply.text
    assert "tok-9f8e7d" not in reply.text
