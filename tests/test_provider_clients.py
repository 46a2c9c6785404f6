"""Both provider clients against the loopback fake: requests as the APIs expect them, every failure classified."""

from __future__ import annotations

import asyncio
import base64
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import aiohttp
import pytest

from bot.errors import ProviderError
from bot.failover.reasons import Reason
from bot.providers.anthropic_client import OAUTH_BETA, AnthropicMessagesClient
from bot.providers.base import ChatMessage, ChatRequest, Endpoint, ImagePart, ProviderClient, ResolvedAuth
from bot.providers.clients import build_clients, close_clients
from bot.providers.openai_client import OpenAICompletionsClient, _uses_max_completion_tokens
from tests.fakes.provider_server import (
    Behaviour,
    FakeProviderServer,
    cut,
    empty,
    no_end_marker,
    ok,
    status,
    stream_error,
    timeout,
)

KEY = "sk-test-0001"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 24


@dataclass(frozen=True)
class Flavour:
    """One API mode: its client, where the fake serves it, and the path it must call."""

    api: str
    make: Callable[..., ProviderClient]
    path: str

    def endpoint(self, server: FakeProviderServer, **kwargs: object) -> Endpoint:
        base = server.openai_base_url if self.api == "openai-completions" else server.anthropic_base_url
        return Endpoint(provider="fake", base_url=base, api=self.api, **kwargs)  # type: ignore[arg-type]


OPENAI = Flavour("openai-completions", OpenAICompletionsClient, "/v1/chat/completions")
ANTHROPIC = Flavour("anthropic-messages", AnthropicMessagesClient, "/v1/messages")


@pytest.fixture(scope="session")
def tls() -> ssl.SSLContext:
    """One TLS context for the session: loading the CA bundle for every client costs ~50 ms."""
    return ssl.create_default_context()


@pytest.fixture
async def server() -> AsyncIterator[FakeProviderServer]:
    """A fresh fake provider for the test."""
    async with FakeProviderServer() as fake:
        yield fake


@pytest.fixture(params=[OPENAI, ANTHROPIC], ids=["openai", "anthropic"])
def flavour(request: pytest.FixtureRequest) -> Flavour:
    """Run the test against each API mode."""
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def client(flavour: Flavour, tls: ssl.SSLContext) -> AsyncIterator[ProviderClient]:
    """The flavour's client, closed after the test."""
    made = flavour.make(ssl_context=tls)
    yield made
    await made.aclose()


def api_key(secret: str = KEY) -> ResolvedAuth:
    return ResolvedAuth(profile_id="fake:default", type="api_key", secret=secret)


def ask(text: str = "Hi there", **kwargs: object) -> ChatRequest:
    return ChatRequest(model="fake-model", messages=[ChatMessage("user", text)], **kwargs)  # type: ignore[arg-type]


async def collect(
    client: ProviderClient, endpoint: Endpoint, auth: ResolvedAuth, request: ChatRequest
) -> tuple[list[str], ProviderError | None]:
    """The deltas streamed, and the error that ended the stream (None when it completed)."""
    deltas: list[str] = []
    try:
        async for delta in client.stream(endpoint, auth, request):
            deltas.append(delta)
    except ProviderError as exc:
        return deltas, exc
    return deltas, None


async def test_streams_the_answer_delta_by_delta(server, flavour, client) -> None:
    """The text deltas arrive in order and join to the whole answer."""
    server.script(KEY, ok("Hello there, world"))
    deltas, error = await collect(client, flavour.endpoint(server), api_key(), ask())
    assert error is None
    assert deltas == ["Hello ", "there, ", "world"]
    [sent] = server.requests
    assert sent.path == flavour.path
    assert sent.json["stream"] is True
    assert sent.json["model"] == "fake-model"


async def test_system_prompt_goes_where_each_api_wants_it(server, flavour, client) -> None:
    """OpenAI: a first system message; Anthropic: the top-level system field, not a message."""
    request = ChatRequest(
        model="fake-model",
        system="Be brief.",
        messages=[
            ChatMessage("user", "One"),
            ChatMessage("assistant", "Two"),
            ChatMessage("user", "Three"),
        ],
    )
    await collect(client, flavour.endpoint(server), api_key(), request)
    body = server.requests[0].json
    conversation = [
        {"role": "user", "content": "One"},
        {"role": "assistant", "content": "Two"},
        {"role": "user", "content": "Three"},
    ]
    if flavour is OPENAI:
        assert body["messages"] == [{"role": "system", "content": "Be brief."}, *conversation]
    else:
        assert body["system"] == "Be brief."
        assert body["messages"] == conversation


async def test_images_are_sent_base64_encoded(server, flavour, client) -> None:
    """Images travel inline: a data URL part for OpenAI, a base64 image block for Anthropic."""
    message = ChatMessage("user", "What is this?", images=(ImagePart("image/png", PNG),))
    request = ChatRequest(model="fake-model", messages=[message])
    await collect(client, flavour.endpoint(server), api_key(), request)
    [sent] = server.requests[0].json["messages"]
    encoded = base64.b64encode(PNG).decode()
    if flavour is OPENAI:
        assert sent["content"] == [
            {"type": "text", "text": "What is this?"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{encoded}"}},
        ]
    else:
        assert sent["content"] == [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": encoded}},
            {"type": "text", "text": "What is this?"},
        ]


async def test_endpoint_headers_are_sent(server, flavour, client) -> None:
    """Configured headers (e.g. OpenRouter's attribution) reach the provider."""
    endpoint = flavour.endpoint(
        server, headers={"X-Title": "modelbot", "HTTP-Referer": "https://example.org"}
    )
    await collect(client, endpoint, api_key(), ask())
    headers = server.requests[0].headers
    assert headers["x-title"] == "modelbot"
    assert headers["http-referer"] == "https://example.org"


async def test_max_tokens_is_passed_when_given(server, flavour, client) -> None:
    """``max_tokens`` goes through as given."""
    await collect(client, flavour.endpoint(server), api_key(), ask(max_tokens=123))
    assert server.requests[0].json["max_tokens"] == 123


async def test_max_tokens_default_per_api(server, flavour, client) -> None:
    """OpenAI leaves it to the model; Anthropic requires it, so the client sends 4096."""
    await collect(client, flavour.endpoint(server), api_key(), ask())
    body = server.requests[0].json
    if flavour is OPENAI:
        assert "max_tokens" not in body
    else:
        assert body["max_tokens"] == 4096


async def test_openai_key_is_a_bearer_token(server, tls) -> None:
    """OpenAI-compatible APIs get ``Authorization: Bearer <key>``."""
    client = OpenAICompletionsClient(ssl_context=tls)
    try:
        await collect(client, OPENAI.endpoint(server), api_key(), ask())
    finally:
        await client.aclose()
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


async def test_openai_without_auth_sends_a_placeholder_key(server, tls) -> None:
    """Local servers need no key, but the SDK insists on one: a placeholder goes instead."""
    client = OpenAICompletionsClient(ssl_context=tls)
    try:
        deltas, error = await collect(
            client, OPENAI.endpoint(server), ResolvedAuth("local:none", "none", ""), ask()
        )
    finally:
        await client.aclose()
    assert error is None and deltas
    assert server.requests[0].key == "modelbot-no-key"


async def test_anthropic_api_key_goes_in_x_api_key(server, tls) -> None:
    """An Anthropic API key is sent as ``x-api-key`` and not as a bearer token."""
    client = AnthropicMessagesClient(ssl_context=tls)
    try:
        await collect(client, ANTHROPIC.endpoint(server), api_key("sk-ant-api03-key"), ask())
    finally:
        await client.aclose()
    headers = server.requests[0].headers
    assert headers["x-api-key"] == "sk-ant-api03-key"
    assert "authorization" not in headers
    assert "anthropic-version" in headers


@pytest.mark.parametrize("kind", ["token", "oauth"])
async def test_anthropic_token_is_bearer_with_the_oauth_beta(server, tls, kind: str) -> None:
    """A setup-token or OAuth access token is sent as Bearer with the OAuth beta flag, never as x-api-key."""
    token = "sk-ant-oat01-setup-token"
    client = AnthropicMessagesClient(ssl_context=tls)
    endpoint = ANTHROPIC.endpoint(server, headers={"Anthropic-Beta": "context-1m-2025-08-07"})
    try:
        deltas, error = await collect(client, endpoint, ResolvedAuth("anthropic:me", kind, token), ask())
    finally:
        await client.aclose()
    assert error is None and deltas
    headers = server.requests[0].headers
    assert headers["authorization"] == f"Bearer {token}"
    assert "x-api-key" not in headers
    assert set(headers["anthropic-beta"].split(",")) == {"context-1m-2025-08-07", OAUTH_BETA}


async def test_anthropic_base_url_with_v1_is_accepted(server, tls) -> None:
    """A base URL ending in /v1 (as OpenAI's do) still reaches /v1/messages, not /v1/v1/messages."""
    client = AnthropicMessagesClient(ssl_context=tls)
    endpoint = Endpoint("fake", server.base_url + "/v1/", "anthropic-messages")
    try:
        _, error = await collect(client, endpoint, api_key(), ask())
    finally:
        await client.aclose()
    assert error is None
    assert server.requests[0].path == "/v1/messages"


BILLING_400 = {
    "type": "error",
    "error": {
        "type": "invalid_request_error",
        "message": "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing.",
    },
}


@pytest.mark.parametrize(
    ("behaviour", "reason", "retry_after_ms"),
    [
        pytest.param(
            status(429, headers={"Retry-After": "30"}), Reason.RATE_LIMIT, 30_000, id="429-retry-after"
        ),
        pytest.param(status(429), Reason.RATE_LIMIT, None, id="429"),
        pytest.param(status(401), Reason.AUTH, None, id="401"),
        pytest.param(status(403), Reason.AUTH, None, id="403"),
        pytest.param(status(402), Reason.BILLING, None, id="402"),
        pytest.param(status(400, BILLING_400), Reason.BILLING, None, id="400-billing-text"),
        pytest.param(status(400), Reason.BAD_REQUEST, None, id="400"),
        pytest.param(status(500), Reason.SERVER, None, id="500"),
        pytest.param(status(503), Reason.SERVER, None, id="503"),
        pytest.param(status(529), Reason.RATE_LIMIT, None, id="529"),
        pytest.param(status(502, "<html>Bad Gateway</html>"), Reason.SERVER, None, id="502-html"),
        pytest.param(
            stream_error("overloaded_error", "Overloaded"), Reason.RATE_LIMIT, None, id="error-event"
        ),
    ],
)
async def test_failures_are_classified_and_never_retried_by_the_sdk(  # noqa: PLR0917 (fixtures + params)
    server, flavour, client, behaviour: Behaviour, reason: Reason, retry_after_ms: int | None
) -> None:
    """Each scripted failure becomes its reason, after exactly one request (the engine owns retries)."""
    server.script(KEY, behaviour)
    deltas, error = await collect(client, flavour.endpoint(server), api_key(), ask())
    assert deltas == []
    assert error is not None
    assert error.reason is reason
    assert error.retry_after_ms == retry_after_ms
    assert len(server.requests) == 1


async def test_a_silent_server_times_out(server, flavour, client) -> None:
    """No answer within the endpoint's timeout is a ``timeout``, after one request."""
    server.script(KEY, timeout(5))
    _, error = await collect(client, flavour.endpoint(server, timeout_s=0.3), api_key(), ask())
    assert error is not None and error.reason is Reason.TIMEOUT
    assert len(server.requests) == 1


async def test_a_stream_that_stalls_mid_way_times_out_after_its_text(server, flavour, client) -> None:
    """Text already streamed is yielded; the stall then fails the attempt."""
    server.script(KEY, timeout(5, after="Half an"))
    deltas, error = await collect(client, flavour.endpoint(server, timeout_s=0.3), api_key(), ask())
    assert deltas == ["Half ", "an"]
    assert error is not None and error.reason is Reason.TIMEOUT


@pytest.mark.parametrize("drop", [True, False], ids=["connection-dropped", "body-ended"])
async def test_a_cut_stream_yields_its_text_then_fails(server, flavour, client, drop: bool) -> None:
    """A stream without the end marker is never a finished answer, whether the socket broke or not."""
    server.script(KEY, cut("The answer is", drop_connection=drop))
    deltas, error = await collect(client, flavour.endpoint(server), api_key(), ask())
    assert deltas == ["The ", "answer ", "is"]
    assert error is not None and error.reason is Reason.TIMEOUT
    assert "ended before the answer was complete" in str(error)


@pytest.mark.parametrize("drop", [False, True], ids=["body-ended", "connection-dropped"])
async def test_a_stream_that_said_it_was_done_is_complete_without_its_end_marker(
    server, flavour, client, drop: bool
) -> None:
    """A finish_reason / message_delta with a stop_reason ends the answer: a missing ``[DONE]`` or
    ``message_stop`` after it (a gateway that drops the last event, or the socket) loses nothing."""
    server.script(KEY, no_end_marker("All of it", drop_connection=drop))
    deltas, error = await collect(client, flavour.endpoint(server), api_key(), ask())
    assert error is None
    assert deltas == ["All ", "of ", "it"]


async def test_a_body_left_open_after_the_end_marker_does_not_hold_the_answer(
    server, flavour, client
) -> None:
    """The answer is complete at its end marker: a gateway that keeps the body open after it costs the
    connection, never a timeout (the read timeout here is shorter than the linger)."""
    server.script(KEY, ok("Done now", linger=5))
    endpoint = flavour.endpoint(server, timeout_s=0.5)
    deltas, error = await collect(client, endpoint, api_key(), ask())
    assert error is None and deltas == ["Done ", "now"]
    deltas, error = await collect(client, endpoint, api_key(), ask())  # a fresh connection serves the next
    assert error is None and deltas


async def test_requests_reuse_one_kept_alive_connection(server, flavour, client) -> None:
    """Sequential answers come over one connection: the end of each body goes back to the pool."""
    endpoint = flavour.endpoint(server)
    for _ in range(3):
        _, error = await collect(client, endpoint, api_key(), ask())
        assert error is None
    assert len({r.connection for r in server.requests}) == 1


async def test_a_proxy_from_the_environment_is_used(server, flavour, client, monkeypatch) -> None:
    """HTTPS_PROXY / HTTP_PROXY are honoured (as the SDKs' HTTP clients did) unless NO_PROXY names the host."""
    monkeypatch.setenv("HTTP_PROXY", server.base_url)
    monkeypatch.setenv("NO_PROXY", "localhost")
    base = "http://provider.invalid/v1" if flavour is OPENAI else "http://provider.invalid"
    endpoint = Endpoint("fake", base, flavour.api)
    deltas, error = await collect(client, endpoint, api_key(), ask())
    assert error is None and deltas
    assert server.requests[0].headers["host"] == "provider.invalid"


async def test_no_proxy_bypasses_the_proxy(flavour, tls, monkeypatch) -> None:
    """A host in NO_PROXY is reached directly (here: not at all, so the attempt cannot reach it)."""
    async with FakeProviderServer() as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy.base_url)
        monkeypatch.setenv("NO_PROXY", "provider.invalid")
        client = flavour.make(ssl_context=tls)
        try:
            _, error = await collect(
                client, Endpoint("fake", "http://provider.invalid", flavour.api), api_key(), ask()
            )
        finally:
            await client.aclose()
    assert error is not None and error.reason is Reason.TIMEOUT and "reach" in str(error)
    assert proxy.requests == []


async def test_an_error_event_after_text_fails_after_that_text(server, flavour, client) -> None:
    """An overload reported mid-stream surfaces after the text that came before it."""
    server.script(KEY, stream_error("overloaded_error", "Overloaded", text="Partial"))
    deltas, error = await collect(client, flavour.endpoint(server), api_key(), ask())
    assert deltas == ["Partial"]
    assert error is not None and error.reason is Reason.RATE_LIMIT


async def test_an_empty_answer_completes_without_deltas(server, flavour, client) -> None:
    """No text is not an error here: the engine decides that it is ``empty``."""
    server.script(KEY, empty())
    deltas, error = await collect(client, flavour.endpoint(server), api_key(), ask())
    assert deltas == []
    assert error is None


async def test_an_unreachable_server_is_a_timeout_class_failure(flavour, client) -> None:
    """Connection refused counts with timeouts (docs/failover.md §5: connect failures rotate the profile)."""
    async with FakeProviderServer() as gone:
        endpoint = flavour.endpoint(gone)
    _, error = await collect(client, endpoint, api_key(), ask())
    assert error is not None and error.reason is Reason.TIMEOUT
    assert "reach" in str(error)


async def test_cancellation_is_not_swallowed(server, flavour, client) -> None:
    """The user's abort cancels the task; the client must let ``CancelledError`` through."""
    server.script(KEY, timeout(5))
    task = asyncio.create_task(collect(client, flavour.endpoint(server), api_key(), ask()))
    await server.wait_for_requests(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_keys_get_their_own_scripts_and_clients_survive_aclose(server, flavour, client) -> None:
    """Two credentials are told apart by the fake, and a closed client can be used again."""
    server.script("key-a", ok("from a"))
    server.script("key-b", status(401))
    endpoint = flavour.endpoint(server)
    assert (await collect(client, endpoint, api_key("key-a"), ask()))[0] == ["from ", "a"]
    _, error = await collect(client, endpoint, api_key("key-b"), ask())
    assert error is not None and error.reason is Reason.AUTH
    await client.aclose()
    deltas, error = await collect(client, endpoint, api_key("key-a"), ask())
    assert error is None and "".join(deltas) == "Hello from the fake provider."
    assert [r.key for r in server.requests] == ["key-a", "key-b", "key-a"]


async def test_a_model_script_wins_over_the_key_script(server, flavour, client) -> None:
    """``script_model`` fails one model whatever the credential, as an outage would."""
    server.script(KEY, ok("fine"))
    server.script_model("down-model", default=status(503))
    endpoint = flavour.endpoint(server)
    down = ChatRequest(model="down-model", messages=[ChatMessage("user", "hi")])
    _, error = await collect(client, endpoint, api_key(), down)
    assert error is not None and error.reason is Reason.SERVER
    assert (await collect(client, endpoint, api_key(), ask()))[0] == ["fine"]


@pytest.mark.parametrize(
    ("flavour", "finish", "reason"),
    [
        pytest.param(OPENAI, "content_filter", Reason.CONTENT_FILTER, id="openai-content-filter"),
        pytest.param(ANTHROPIC, "refusal", Reason.CONTENT_FILTER, id="anthropic-refusal"),
        pytest.param(
            ANTHROPIC, "model_context_window_exceeded", Reason.CONTEXT_OVERFLOW, id="anthropic-window"
        ),
    ],
)
async def test_a_blocked_finish_is_not_a_finished_answer(
    server, tls, flavour: Flavour, finish: str, reason: Reason
) -> None:
    """A stream that ends because of a filter or the context window fails with that reason."""
    server.script(KEY, ok("Some text", finish=finish))
    client = flavour.make(ssl_context=tls)
    try:
        deltas, error = await collect(client, flavour.endpoint(server), api_key(), ask())
    finally:
        await client.aclose()
    assert deltas == ["Some ", "text"]
    assert error is not None and error.reason is reason


@pytest.mark.parametrize("finish", ["length", "max_tokens"])
async def test_a_length_limit_is_a_finished_answer(server, flavour, client, finish: str) -> None:
    """Stopping at max_tokens is the API's normal end, not a failure."""
    server.script(KEY, ok("Long answer", finish=finish))
    deltas, error = await collect(client, flavour.endpoint(server), api_key(), ask())
    assert error is None and deltas == ["Long ", "answer"]


async def test_build_clients_covers_every_api_mode_and_closes_them(server) -> None:
    """The composition root gets one client per API mode; closing them all leaves nothing open."""
    clients = build_clients()
    assert set(clients) == {"openai-completions", "anthropic-messages", "demo"}
    endpoint = OPENAI.endpoint(server)
    deltas, _ = await collect(clients["openai-completions"], endpoint, api_key(), ask())
    assert deltas
    await close_clients(clients)


@pytest.mark.parametrize(
    ("path", "text_of"),
    [
        ("/v1/chat/completions", lambda body: body["choices"][0]["message"]["content"]),
        ("/v1/messages", lambda body: body["content"][0]["text"]),
    ],
    ids=["openai", "anthropic"],
)
async def test_the_fake_also_answers_without_streaming(server, path: str, text_of) -> None:
    """Non-streaming calls get one JSON body per API, and scripted errors keep the API's error shape."""
    server.script("json-key", ok("Plain answer"), status(429, headers={"Retry-After": "7"}))
    headers = {"Authorization": "Bearer json-key"}
    payload = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
    async with aiohttp.ClientSession(base_url=server.base_url) as session:
        async with session.post(path, json=payload, headers=headers) as response:
            assert response.status == 200
            assert text_of(await response.json()) == "Plain answer"
        async with session.post(path, json=payload, headers=headers) as response:
            assert response.status == 429
            assert response.headers["Retry-After"] == "7"
            error = (await response.json())["error"]
            assert error["type"] in ("rate_limit_error", "rate_limit_exceeded")


async def test_a_malformed_stream_is_a_server_failure(server, flavour, client) -> None:
    """A chunk that is not JSON fails the attempt as a ``server`` error instead of crashing the turn."""
    server.script(KEY, status(200, "event: content_block_delta\ndata: {not json\n\n"))
    deltas, error = await collect(client, flavour.endpoint(server), api_key(), ask())
    assert deltas == []
    assert error is not None and error.reason is Reason.SERVER


def test_openai_itself_gets_max_completion_tokens() -> None:
    """api.openai.com takes max_completion_tokens; OpenAI-compatible servers keep max_tokens."""
    assert _uses_max_completion_tokens(Endpoint("openai", "https://api.openai.com/v1", "openai-completions"))
    assert not _uses_max_completion_tokens(
        Endpoint("groq", "https://api.groq.com/openai/v1", "openai-completions")
    )
    assert not _uses_max_completion_tokens(Endpoint("x", "http://127.0.0.1:9/v1", "openai-completions"))
