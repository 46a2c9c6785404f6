"""``SdkPost`` sends what the SDKs' own low-level ``post`` sends: the same headers, in the same order, to the same
URL, for every kind of credential and configured header; and a non-2xx answer raises the SDK's own error."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from bot.providers.anthropic_client import _KEY_HEADERS, AnthropicMessagesClient
from bot.providers.base import ResolvedAuth
from bot.providers.http import SdkPost
from bot.providers.openai_client import OpenAICompletionsClient
from tests.fakes.provider_server import FakeProviderServer, status
from tests.test_provider_clients import ANTHROPIC, KEY, OPENAI

BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}'


@pytest.fixture
async def server() -> AsyncIterator[FakeProviderServer]:
    async with FakeProviderServer() as fake:
        yield fake


async def _sent(
    server: FakeProviderServer,
    route: SdkPost[openai.AsyncOpenAI] | SdkPost[anthropic.AsyncAnthropic],
    **post: object,
) -> list[tuple[str, object, object]]:
    """The requests' headers (in order), path and query: one sent by the SDK's post, one by ``SdkPost``."""
    response = await route.sdk.post(cast_to=httpx2.Response, content=BODY, stream=True, **post)  # type: ignore[call-overload]
    await response.aread()
    await response.aclose()
    body = await route.send(BODY)
    async for _ in body.chunks:
        pass
    await body.aclose()
    return [(str(list(r.headers.items())), r.path, r.query) for r in server.requests[-2:]]


@pytest.mark.parametrize(
    ("kind", "headers", "query"),
    [
        ("api_key", {}, ""),
        ("none", {"Authorization": "Bearer gateway", "X-Gateway": "1"}, ""),
        ("api_key", {"openai-organization": "org", "User-Agent": "mine"}, "?api-version=2024-10-21"),
    ],
)
async def test_openai_requests_are_the_sdks_post(
    server: FakeProviderServer, kind: str, headers: dict[str, str], query: str
) -> None:
    client = OpenAICompletionsClient()
    endpoint = OPENAI.endpoint(server, headers=headers)
    endpoint = type(endpoint)(endpoint.provider, endpoint.base_url + query, endpoint.api, headers=headers)
    try:
        route = client._client_for(endpoint, ResolvedAuth("p:a", kind, KEY if kind != "none" else ""))
        by_sdk, ours = await _sent(server, route, path="/chat/completions")
    finally:
        await client.aclose()
    assert ours == by_sdk


@pytest.mark.parametrize(
    ("bearer", "headers"),
    [
        (False, {}),
        (True, {}),
        (False, {"Anthropic-Version": "2099-01-01", "Authorization": "Bearer gateway"}),
        (True, {"anthropic-beta": "tools-2024-04-04", "X-Gateway": "1"}),
    ],
)
async def test_anthropic_requests_are_the_sdks_post(
    server: FakeProviderServer, bearer: bool, headers: dict[str, str]
) -> None:
    client = AnthropicMessagesClient()
    try:
        route = client._client_for(ANTHROPIC.endpoint(server, headers=headers), KEY, bearer=bearer)
        own = {"x-api-key": anthropic.omit} if bearer else {**_KEY_HEADERS, "x-api-key": KEY}
        by_sdk, ours = await _sent(server, route, path="/v1/messages", options={"headers": own})
    finally:
        await client.aclose()
    assert ours == by_sdk


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 413, 422, 429, 500, 503, 529, 418])
async def test_a_failed_status_raises_the_sdks_own_error(server: FakeProviderServer, code: int) -> None:
    """The same class, message and body as post's (anthropic keys its classes by status and error code)."""
    server.script(KEY, *[status(code)] * 4)
    openai_client, anthropic_client = OpenAICompletionsClient(), AnthropicMessagesClient()
    try:
        routes: list[tuple[SdkPost[Any], str, dict[str, Any]]] = [
            (
                openai_client._client_for(OPENAI.endpoint(server), ResolvedAuth("p:a", "api_key", KEY)),
                "/chat/completions",
                {},
            ),
            (
                anthropic_client._client_for(ANTHROPIC.endpoint(server), KEY, bearer=False),
                "/v1/messages",
                {**_KEY_HEADERS, "x-api-key": KEY},
            ),
        ]
        for route, path, own in routes:
            with pytest.raises((openai.APIStatusError, anthropic.APIStatusError)) as by_sdk:
                await route.sdk.post(
                    path, cast_to=httpx2.Response, content=BODY, stream=True, options={"headers": own}
                )
            with pytest.raises((openai.APIStatusError, anthropic.APIStatusError)) as ours:
                await route.send(BODY)
            assert type(ours.value) is type(by_sdk.value)
            assert (str(ours.value), ours.value.body) == (str(by_sdk.value), by_sdk.value.body)  # type: ignore[attr-defined]
    finally:
        await openai_client.aclose()
        await anthropic_client.aclose()
