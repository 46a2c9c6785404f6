"""The ``anthropic-messages`` client: ``POST {baseUrl}/v1/messages`` with ``stream: true``, over aiohttp.

The body is built once from our own types (``request_body``), one JSON encoding of the history per call;
``tests/test_provider_clients.py`` pins it to the API's wire format. Why not through the official SDK:
``bot/providers/http.py``.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator
from functools import lru_cache
from typing import Any

from bot.classify import FailureSignal, classify
from bot.providers.base import ChatMessage, ChatRequest, Endpoint, ResolvedAuth
from bot.providers.http import HttpPool, merged_headers, post_events

DEFAULT_MAX_TOKENS = 4096  # the Messages API requires max_tokens on every call
API_VERSION = "2023-06-01"
OAUTH_BETA = "oauth-2025-04-20"  # Anthropic accepts OAuth/setup tokens only with this beta flag
PLACEHOLDER_KEY = "modelbot-no-key"
_BEARER_TYPES = frozenset({"token", "oauth"})
_BASE_HEADERS = {
    "content-type": "application/json",
    "accept": "application/json",
    "anthropic-version": API_VERSION,
}


class AnthropicMessagesClient:
    """Streams the Messages API; one connection pool for every endpoint and credential."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._http = HttpPool(ssl_context=ssl_context)

    async def stream(
        self, endpoint: Endpoint, auth: ResolvedAuth, request: ChatRequest
    ) -> AsyncIterator[str]:
        body = request_body(request)
        stopped = False
        stop_reason: str | None = None
        async with post_events(
            self._http,
            _url(endpoint.base_url),
            headers=_headers(endpoint, auth),
            body=body,
            timeout_s=endpoint.timeout_s,
        ) as events:
            async for event in events:
                kind = event.event
                if kind == "content_block_delta":
                    delta = _delta(event.data)
                    text = delta.get("text")
                    if delta.get("type") == "text_delta" and isinstance(text, str) and text:
                        yield text
                elif kind == "message_delta":
                    reason = _delta(event.data).get("stop_reason")
                    stop_reason = None if reason is None else str(reason)
                elif kind == "message_stop":
                    stopped = True
                    break
                elif kind == "error":
                    raise classify(
                        FailureSignal(status=200, headers=dict(events.headers), body=event.data or "")
                    )
            await events.finish()
        # The model said it was done (message_delta's stop_reason): a body that ends before message_stop
        # loses nothing of the answer.
        if not stopped and stop_reason is None:
            raise classify(FailureSignal(transport="stream_cut"))
        if stop_reason == "refusal":
            raise classify(FailureSignal(message="stop_reason: refusal (content filter)"))
        if stop_reason == "model_context_window_exceeded":
            raise classify(FailureSignal(message="stop_reason: model_context_window_exceeded"))

    async def aclose(self) -> None:
        await self._http.aclose()


def _delta(data: str) -> dict[str, Any]:
    """An event's ``delta``; data that is not JSON fails the attempt as the provider's fault."""
    try:
        parsed = json.loads(data)
    except ValueError as exc:
        raise classify(FailureSignal(message=f"{type(exc).__name__}: {exc}")) from exc
    delta = parsed.get("delta") if isinstance(parsed, dict) else None
    return delta if isinstance(delta, dict) else {}


def _headers(endpoint: Endpoint, auth: ResolvedAuth) -> dict[str, str]:
    """API keys go in ``x-api-key``; setup and OAuth tokens as a bearer token with the OAuth beta flag."""
    secret = auth.secret or PLACEHOLDER_KEY
    if auth.type not in _BEARER_TYPES:
        # The key wins over any configured Authorization: a gateway must not get two credentials.
        headers = merged_headers(_BASE_HEADERS, endpoint.headers, {"x-api-key": secret})
        headers.pop("authorization", None)
        return headers
    headers = merged_headers(_BASE_HEADERS, {"authorization": f"Bearer {secret}"}, endpoint.headers)
    headers.pop("x-api-key", None)
    # Configured betas (any spelling of the header name) are kept alongside the OAuth one.
    betas = [b.strip() for b in headers.get("anthropic-beta", "").split(",") if b.strip()]
    headers["anthropic-beta"] = ",".join(betas if OAUTH_BETA in betas else [*betas, OAUTH_BETA])
    return headers


@lru_cache(maxsize=64)
def _url(base_url: str) -> str:
    # ``{baseUrl}/v1/messages``; a configured ".../v1" (as OpenAI URLs have) must not double it.
    return base_url.rstrip("/").removesuffix("/v1") + "/v1/messages"


def request_body(request: ChatRequest) -> bytes:
    """The JSON body: user and assistant turns (the API rejects empty ones, so they are left out), and the
    system prompt as the top-level ``system`` field, with any system-role messages folded in."""
    system = [request.system] if request.system else []
    messages: list[dict[str, Any]] = []
    for message in request.messages:
        if message.role == "user":
            if message.text or message.images:
                messages.append({"role": "user", "content": _user_content(message)})
        elif message.role == "assistant":
            if message.text:
                messages.append({"role": "assistant", "content": message.text})
        elif message.text:
            system.append(message.text)
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": DEFAULT_MAX_TOKENS if request.max_tokens is None else request.max_tokens,
        "messages": messages,
        "stream": True,
    }
    if system:
        body["system"] = "\n\n".join(system)
    return json.dumps(body, separators=(",", ":")).encode("ascii")


def _user_content(message: ChatMessage) -> str | list[dict[str, Any]]:
    if not message.images:
        return message.text
    blocks: list[dict[str, Any]] = []
    for image in message.images:
        # Other media types are sent as they are: the API's own 400 says what it accepts.
        data = base64.b64encode(image.data).decode("ascii")
        blocks.append(
            {"type": "image", "source": {"type": "base64", "media_type": image.media_type, "data": data}}
        )
    if message.text:
        blocks.append({"type": "text", "text": message.text})  # Anthropic advises images before the text
    return blocks
