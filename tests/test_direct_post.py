"""``SdkPost`` reads a plain 2xx answer straight off aiohttp; every other answer still behaves as the SDKs' HTTP
client has it: a compressed stream is decoded, a broken one classified, a redirect followed, a cookie kept."""

from __future__ import annotations

import gzip
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx2
import pytest
from aiohttp import web

from bot.errors import ProviderError
from bot.failover.reasons import Reason
from bot.providers.anthropic_client import AnthropicMessagesClient
from bot.providers.base import ChatMessage, ChatRequest, Endpoint, ResolvedAuth
from bot.providers.http import SdkPost
from bot.providers.openai_client import OpenAICompletionsClient, _sdk_client

AUTH = ResolvedAuth("p:a", "api_key", "sk-test")
REQUEST = ChatRequest("m", [ChatMessage("user", "hi")])
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _sse(*texts: str) -> bytes:
    chunks = [{"choices": [{"index": 0, "delta": {"content": text}}]} for text in texts]
    chunks.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    return (
        b"".join(b"data: " + json.dumps(chunk).encode() + b"\n\n" for chunk in chunks) + b"data: [DONE]\n\n"
    )


class Server:
    """A loopback server whose ``/v1/chat/completions`` answers as ``handler`` says; it records each request."""

    def __init__(self) -> None:
        self.handler: Handler = self.plain
        self.seen: list[web.Request] = []

    @staticmethod
    async def plain(request: web.Request) -> web.StreamResponse:
        return web.Response(body=_sse("Hello", " there"), content_type="text/event-stream")

    async def _route(self, request: web.Request) -> web.StreamResponse:
        await request.read()
        self.seen.append(request)
        return await self.handler(request)


@pytest.fixture
async def server() -> AsyncIterator[tuple[Server, str]]:
    served = Server()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", served._route)
    app.router.add_post("/v2/chat/completions", served._route)
    runner = web.AppRunner(app, shutdown_timeout=0.5, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield served, f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def _answer(client: OpenAICompletionsClient, base_url: str) -> str:
    endpoint = Endpoint("p", f"{base_url}/v1", "openai-completions")
    return "".join([delta async for delta in client.stream(endpoint, AUTH, REQUEST)])


async def test_both_sdks_clients_take_the_shortcut() -> None:
    """The SDKs' aiohttp transport is recognised (if an SDK upgrade renames it, every call would fall back)."""
    openai_client, anthropic_client = OpenAICompletionsClient(), AnthropicMessagesClient()
    try:
        routes: list[SdkPost[Any]] = [
            openai_client._client_for(Endpoint("p", "http://127.0.0.1:9/v1", "openai-completions"), AUTH),
            anthropic_client._client_for(
                Endpoint("p", "http://127.0.0.1:9", "anthropic-messages"), "k", bearer=False
            ),
        ]
        assert all(route._direct is not None for route in routes)
    finally:
        await openai_client.aclose()
        await anthropic_client.aclose()


async def test_a_compressed_stream_is_decoded(server: tuple[Server, str]) -> None:
    served, base_url = server

    async def gzipped(request: web.Request) -> web.StreamResponse:
        body = gzip.compress(_sse("Hello", " there"))
        return web.Response(
            body=body, headers={"Content-Type": "text/event-stream", "Content-Encoding": "gzip"}
        )

    served.handler = gzipped
    client = OpenAICompletionsClient()
    try:
        assert await _answer(client, base_url) == "Hello there"
    finally:
        await client.aclose()


async def test_a_stream_that_does_not_decompress_is_a_provider_failure(server: tuple[Server, str]) -> None:
    served, base_url = server

    async def broken(request: web.Request) -> web.StreamResponse:
        return web.Response(
            body=b"not gzip at all", headers={"Content-Type": "text/event-stream", "Content-Encoding": "gzip"}
        )

    served.handler = broken
    client = OpenAICompletionsClient()
    try:
        with pytest.raises(ProviderError) as failed:
            await _answer(client, base_url)
    finally:
        await client.aclose()
    assert failed.value.reason is Reason.SERVER
    assert isinstance(failed.value.__cause__, httpx2.DecodingError)


async def test_a_redirect_is_followed(server: tuple[Server, str]) -> None:
    served, base_url = server

    async def moved(request: web.Request) -> web.StreamResponse:
        if request.path.startswith("/v1/"):
            raise web.HTTPPermanentRedirect("/v2/chat/completions")
        return await Server.plain(request)

    served.handler = moved
    client = OpenAICompletionsClient()
    try:
        assert await _answer(client, base_url) == "Hello there"
    finally:
        await client.aclose()
    assert served.seen[-1].path == "/v2/chat/completions"


async def test_a_cookie_set_by_an_answer_goes_with_the_next_request(server: tuple[Server, str]) -> None:
    served, base_url = server

    async def with_cookie(request: web.Request) -> web.StreamResponse:
        response = await Server.plain(request)
        response.set_cookie("affinity", "node-7")
        return response

    served.handler = with_cookie
    client = OpenAICompletionsClient()
    try:
        assert await _answer(client, base_url) == "Hello there"
        served.handler = Server.plain
        assert await _answer(client, base_url) == "Hello there"
    finally:
        await client.aclose()
    assert "Cookie" not in served.seen[0].headers
    assert served.seen[1].headers.get("Cookie") == "affinity=node-7"


async def test_another_transport_is_sent_through_the_http_client() -> None:
    """An HTTP client whose transport is not the SDKs' aiohttp one gets no shortcut: its own path serves."""
    seen: list[httpx2.Request] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        seen.append(request)
        return httpx2.Response(200, content=_sse("Hi"), headers={"Content-Type": "text/event-stream"})

    http = httpx2.AsyncClient(transport=httpx2.MockTransport(answer))
    route = _sdk_client(Endpoint("p", "http://127.0.0.1:9/v1", "openai-completions"), "sk-test", http)
    try:
        assert route._direct is None
        body = await route.send(b"{}")
        assert b"".join([chunk async for chunk in body.chunks]) == _sse("Hi")
        await body.aclose()
    finally:
        await route.close()
        await http.aclose()
    assert [str(r.url) for r in seen] == ["http://127.0.0.1:9/v1/chat/completions"]
