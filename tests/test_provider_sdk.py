"""The provider clients send through the official SDKs' low-level ``post``: what the SDKs do for us, pinned.

The SDKs raise their typed errors (read here for status, headers and body), send the credential the profile
gives and never one from the environment, keep one connection pool per API mode, and report connection
failures whose real cause this client reads itself.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator

import anthropic
import httpx2
import openai
import pytest

from bot.failover.reasons import Reason
from bot.providers.anthropic_client import AnthropicMessagesClient
from bot.providers.base import Endpoint, ProviderClient, ResolvedAuth
from bot.providers.http import transport_failure
from bot.providers.openai_client import OpenAICompletionsClient
from tests.fakes.provider_server import FakeProviderServer, ok, status
from tests.test_provider_clients import ANTHROPIC, KEY, OPENAI, Flavour, api_key, ask, collect

SDK_ERRORS = {OPENAI.api: openai, ANTHROPIC.api: anthropic}


@pytest.fixture(scope="module")
def tls() -> ssl.SSLContext:
    """One TLS context for the module (loading the CA bundle per client costs ~50 ms)."""
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


@pytest.mark.parametrize(
    ("code", "sdk_error", "reason"),
    [
        (401, "AuthenticationError", Reason.AUTH),
        (429, "RateLimitError", Reason.RATE_LIMIT),
        (503, "InternalServerError", Reason.SERVER),
    ],
)
async def test_a_failed_status_arrives_as_the_sdks_typed_error(  # noqa: PLR0917 (fixtures + params)
    server, flavour, client, code: int, sdk_error: str, reason: Reason
) -> None:
    """The SDK raises its own error class for the status; its headers (Retry-After) and body reach the
    classifier unchanged."""
    server.script(KEY, status(code, headers={"Retry-After": "42"}))
    _, error = await collect(client, flavour.endpoint(server), api_key(), ask())
    assert error is not None and error.reason is reason and error.retry_after_ms == 42_000
    assert isinstance(error.__cause__, getattr(SDK_ERRORS[flavour.api], sdk_error))
    assert error.status == code


async def test_a_retry_after_in_milliseconds_is_read(server, flavour, client) -> None:
    """``retry-after-ms`` (OpenAI's and Anthropic's finer header) survives the SDK's error."""
    server.script(KEY, status(429, headers={"retry-after-ms": "1500"}))
    _, error = await collect(client, flavour.endpoint(server), api_key(), ask())
    assert error is not None and error.reason is Reason.RATE_LIMIT and error.retry_after_ms == 1500


async def test_a_refused_connection_is_a_connection_failure_whatever_the_sdk_calls_it(
    flavour, client
) -> None:
    """The openai SDK's aiohttp transport reports a refused connection as a connect *timeout*; the client reads
    the cause and says it could not reach the provider, on both APIs, after the SDK's connection error."""
    async with FakeProviderServer() as gone:
        endpoint = flavour.endpoint(gone)
    _, error = await collect(client, endpoint, api_key(), ask())
    assert error is not None and error.reason is Reason.TIMEOUT
    assert str(error) == "Could not reach the provider."
    assert isinstance(error.__cause__, SDK_ERRORS[flavour.api].APIConnectionError)


def test_transport_failures_are_told_apart_by_their_cause() -> None:
    """A timeout anywhere in the chain is a timeout; a refused connection or a failed DNS look-up is not."""

    def chained(outer: BaseException, *causes: BaseException) -> BaseException:
        link = outer
        for cause in causes:
            link.__cause__ = cause
            link = cause
        return outer

    refused = chained(httpx2.ConnectTimeout("Cannot connect"), OSError("refused"), ConnectionRefusedError())
    assert transport_failure(refused) == "connection"
    assert transport_failure(chained(httpx2.ConnectError("x"), OSError("Name or service not known"))) == (
        "connection"
    )
    assert transport_failure(chained(httpx2.ReadTimeout("slow"), TimeoutError())) == "timeout"
    assert transport_failure(TimeoutError()) == "timeout"


@pytest.mark.parametrize("kind", ["api_key", "token"])
async def test_the_sdk_never_sends_a_credential_from_the_environment(
    server, flavour, client, monkeypatch, kind: str
) -> None:
    """With the SDKs' own variables set, the profile's credential is the only one sent."""
    for name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN"):
        monkeypatch.setenv(name, "sk-from-the-environment")
    await collect(client, flavour.endpoint(server), ResolvedAuth("p:a", kind, KEY), ask())
    headers = server.requests[0].headers
    assert server.requests[0].key == KEY
    assert "sk-from-the-environment" not in str(dict(headers))


async def test_credentials_and_endpoints_share_one_connection_pool(server, flavour, client) -> None:
    """One SDK client per credential, all over the API mode's one pool: a second key reuses the first one's
    kept-alive connection."""
    server.script("key-a", ok("a"))
    server.script("key-b", ok("b"))
    endpoint = flavour.endpoint(server)
    for key in ("key-a", "key-b", "key-a"):
        _, error = await collect(client, endpoint, api_key(key), ask())
        assert error is None
    assert [r.key for r in server.requests] == ["key-a", "key-b", "key-a"]
    assert len({r.connection for r in server.requests}) == 1


async def test_a_query_string_in_the_base_url_follows_the_path(server, tls) -> None:
    """An OpenAI-compatible base URL with a query (Azure's ``api-version``) keeps it after the API's path."""
    client = OpenAICompletionsClient(ssl_context=tls)
    endpoint = Endpoint("azure", f"{server.openai_base_url}?api-version=2024-10-21", "openai-completions")
    try:
        deltas, error = await collect(client, endpoint, api_key(), ask())
    finally:
        await client.aclose()
    assert error is None and deltas
    assert (server.requests[0].path, server.requests[0].query) == (
        "/v1/chat/completions",
        "api-version=2024-10-21",
    )


async def test_the_anthropic_version_is_the_one_the_client_parses(server, tls) -> None:
    """``anthropic-version`` is the version the body and the event parsing are written for, not the SDK's
    newest; a configured one (a gateway pinning another) wins, in any spelling."""
    client = AnthropicMessagesClient(ssl_context=tls)
    try:
        await collect(client, ANTHROPIC.endpoint(server), api_key(), ask())
        pinned = ANTHROPIC.endpoint(server, headers={"Anthropic-Version": "2099-01-01"})
        await collect(client, pinned, api_key(), ask())
    finally:
        await client.aclose()
    assert server.requests[0].headers["anthropic-version"] == "2023-06-01"
    assert server.requests[1].headers["anthropic-version"] == "2099-01-01"
