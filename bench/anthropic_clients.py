"""The Anthropic Messages API half of ``bench.conversation``: its own floor, the official SDK, modelbot's client.

Issue 15 asks for provider calls at the floor on both APIs; the bench's main table is the OpenAI-compatible
one (the issue's), this one shows the same for ``POST /v1/messages`` on the same loopback server.
"""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from typing import cast

import aiohttp
import anthropic
from anthropic.types import MessageParam

from bench.clients import ProviderPath
from bench.floor import KEY, MODEL, Client
from bot.providers.anthropic_client import API_VERSION, DEFAULT_MAX_TOKENS, AnthropicMessagesClient


class AnthropicFloor(Client):
    """aiohttp, the body built by hand with ``json.dumps``, the ``content_block_delta`` events read by hand."""

    name = "raw HTTP floor (aiohttp, Messages body by hand)"

    def __init__(self, base_url: str, session: aiohttp.ClientSession) -> None:
        super().__init__()
        self._url = f"{base_url}/v1/messages"
        self._session = session
        self._headers = {
            "x-api-key": KEY,
            "anthropic-version": API_VERSION,
            "Content-Type": "application/json",
        }

    async def send(self, messages: list[dict[str, str]]) -> str:
        body = {"model": MODEL, "max_tokens": DEFAULT_MAX_TOKENS, "messages": messages, "stream": True}
        parts: list[str] = []
        async with self._session.post(
            self._url, data=json.dumps(body).encode(), headers=self._headers
        ) as response:
            async for line in response.content:
                if not line.startswith(b"data: "):
                    continue
                event = json.loads(line[6:])
                if event["type"] == "content_block_delta" and event["delta"]["type"] == "text_delta":
                    parts.append(event["delta"]["text"])
                elif event["type"] == "message_stop":
                    break
        return "".join(parts)


class AnthropicSdk(Client):
    """The official SDK as its documentation shows it."""

    name = "anthropic SDK messages.create(stream)"

    def __init__(self, sdk: anthropic.AsyncAnthropic) -> None:
        super().__init__()
        self._sdk = sdk

    async def send(self, messages: list[dict[str, str]]) -> str:
        stream = await self._sdk.messages.create(
            model=MODEL,
            max_tokens=DEFAULT_MAX_TOKENS,
            messages=cast("list[MessageParam]", messages),
            stream=True,
        )
        parts: list[str] = []
        async with stream:
            async for event in stream:
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    parts.append(event.delta.text)
        return "".join(parts)


class AnthropicProviderPath(ProviderPath):
    """modelbot's ``AnthropicMessagesClient`` alone: the body built once from our types, sent through the SDK's
    low-level ``post`` over its aiohttp transport, the raw events decoded by our SSE decoder."""

    name = "modelbot Anthropic client (SDK post, our SSE)"

    def __init__(self, base_url: str, client: AnthropicMessagesClient) -> None:
        super().__init__(base_url, client, api="anthropic-messages")


async def make_anthropic_clients(base_url: str, stack: AsyncExitStack) -> list[Client]:
    """The floor first, then the SDK and modelbot's client; closed by ``stack``."""
    session = await stack.enter_async_context(aiohttp.ClientSession())
    sdk = anthropic.AsyncAnthropic(api_key=KEY, base_url=base_url, max_retries=0)
    stack.push_async_callback(sdk.close)
    provider = AnthropicMessagesClient()
    stack.push_async_callback(provider.aclose)
    return [AnthropicFloor(base_url, session), AnthropicSdk(sdk), AnthropicProviderPath(base_url, provider)]
