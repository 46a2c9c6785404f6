"""The ``openai-completions`` client: ``POST {baseUrl}/chat/completions`` with ``stream: true``, via the ``openai`` SDK.

The body is built once from our own types (``request_body``), one JSON encoding of the history per call, and
sent as the SDK's low-level ``post`` sends it (its URL, Bearer auth, headers, timeouts, proxies and typed
errors; its retries off: the engine decides) by ``SdkPost``; ``tests/test_provider_clients.py`` pins it to the
API's wire format. The raw response's events are decoded by ``bot/providers/http.py``.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator
from functools import lru_cache
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import httpx2
import openai
from openai import AsyncOpenAI

from bot.failover.classify import FailureSignal, classify
from bot.providers.base import ChatMessage, ChatRequest, Endpoint, ResolvedAuth
from bot.providers.http import (
    SdkClientPool,
    SdkPost,
    events_of,
    json_body,
    json_text,
    read_timeout,
    response_text,
    secret_digest,
    text_message,
    transport_failure,
)

# Local servers (Ollama, LM Studio, vLLM) ignore the key, but the SDK refuses to start without one.
PLACEHOLDER_KEY = "modelbot-no-key"


def _uses_max_completion_tokens(endpoint: Endpoint) -> bool:
    """OpenAI's own API wants ``max_completion_tokens`` (its reasoning models reject ``max_tokens``);
    OpenAI-compatible servers (OpenRouter, Groq, Ollama, …) still expect ``max_tokens``."""
    return _host(endpoint.base_url) == "api.openai.com"


@lru_cache(maxsize=256)
def _host(url: str) -> str:
    return urlsplit(url).hostname or ""  # parsed once per base URL, not per call


class OpenAICompletionsClient:
    """Streams chat completions; one SDK client per endpoint and credential over one connection pool."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        verify: ssl.SSLContext | bool = True if ssl_context is None else ssl_context  # True: the SDK's store
        self._pool: SdkClientPool[SdkPost[AsyncOpenAI]] = SdkClientPool(
            lambda: openai.DefaultAioHttpClient(verify=verify)
        )

    async def stream(
        self, endpoint: Endpoint, auth: ResolvedAuth, request: ChatRequest
    ) -> AsyncIterator[str]:
        body = request_body(request, max_completion_tokens=_uses_max_completion_tokens(endpoint))
        try:
            response = await self._client_for(endpoint, auth).send(body)
        # InvalidURL, ValueError: a base URL the SDK cannot send to.
        except (openai.OpenAIError, httpx2.HTTPError, httpx2.InvalidURL, ValueError) as exc:
            raise classify(_signal(exc)) from exc
        finish_reason: str | None = None
        async with events_of(response) as events:
            async for event in events:
                if event.data.startswith("[DONE]"):
                    break
                try:
                    chunk = json.loads(event.data)
                except ValueError as exc:  # a chunk that is not JSON: the provider's fault like any other
                    raise classify(FailureSignal(message=f"{type(exc).__name__}: {exc}")) from exc
                if not isinstance(chunk, dict):
                    continue
                if chunk.get("error"):  # an error object sent inside a 200 stream (OpenRouter and others)
                    raise classify(_stream_error(chunk["error"]))
                for choice in chunk.get("choices") or ():
                    if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                        continue
                    content = (choice.get("delta") or {}).get("content")
                    if isinstance(content, str) and content:
                        yield content
                    if choice.get("finish_reason") is not None:
                        finish_reason = str(choice["finish_reason"])
                if finish_reason is not None:
                    break  # the model is done: a missing [DONE] after this loses nothing
            await events.finish()
        if finish_reason is None:
            # The body ended (or broke) without a finish_reason: the answer is not complete.
            raise classify(FailureSignal(transport="stream_cut"))
        if finish_reason == "content_filter":
            raise classify(FailureSignal(message="finish_reason: content_filter"))

    async def aclose(self) -> None:
        await self._pool.aclose()

    def _client_for(self, endpoint: Endpoint, auth: ResolvedAuth) -> SdkPost[AsyncOpenAI]:
        secret = auth.secret if auth.type != "none" and auth.secret else PLACEHOLDER_KEY
        headers = tuple(sorted(endpoint.headers.items()))
        key = (endpoint.base_url, secret_digest(secret), headers, endpoint.timeout_s)
        return self._pool.get(key, lambda http: _sdk_client(endpoint, secret, http))


def _sdk_client(endpoint: Endpoint, secret: str, http: httpx2.AsyncClient) -> SdkPost[AsyncOpenAI]:
    # A query string in the base URL (Azure's api-version) goes with every request, after the path.
    parts = urlsplit(endpoint.base_url)
    sdk = AsyncOpenAI(
        api_key=secret,
        base_url=urlunsplit(parts._replace(query="")),
        default_query=dict(parse_qsl(parts.query)) or None,
        # Configured headers win over the SDK's own: a gateway that wants its own Authorization gets it.
        default_headers=dict(endpoint.headers),
        timeout=endpoint.timeout_s,  # connecting and each read: the wait for the headers and every gap
        max_retries=0,  # the engine decides about retries, never the SDK
        http_client=http,
    )
    # What post adds to the client's headers, with no retries: the retry count (0) and the read timeout.
    extra = {"x-stainless-retry-count": "0", **read_timeout(sdk.timeout)}
    return SdkPost(
        sdk,
        http,
        "/chat/completions",
        headers=[sdk.auth_headers, sdk.default_headers, extra],
        timeout=sdk.timeout,
        query=sdk.default_query,
        timeout_error=openai.APITimeoutError,
        connection_error=openai.APIConnectionError,
    )


def _signal(exc: Exception) -> FailureSignal:
    """The one translation of the SDK's (and its transport's) exceptions into what ``classify`` reads."""
    if isinstance(exc, openai.APIStatusError):
        return FailureSignal(
            status=exc.status_code,
            headers=dict(exc.response.headers),
            body=response_text(exc.response, exc.body),
            message=exc.message,
        )
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):  # APITimeoutError included
        return FailureSignal(transport=transport_failure(exc))
    if isinstance(exc, openai.APIError):
        return FailureSignal(body=json_text(exc.body), message=exc.message)
    return FailureSignal(transport="connection")  # a URL the SDK cannot send to


def _stream_error(error: object) -> FailureSignal:
    message = error.get("message") if isinstance(error, dict) else None
    text = message if isinstance(message, str) and message else "An error occurred during streaming"
    return FailureSignal(
        body=error if isinstance(error, str) else json.dumps(error, default=str), message=text
    )


def request_body(request: ChatRequest, *, max_completion_tokens: bool = False) -> bytes:
    """The JSON body: the system prompt first (system-role messages folded in), then the conversation."""
    system = [request.system] if request.system else []
    messages: list[str] = []
    for message in request.messages:
        if message.role == "user":
            if message.images:
                messages.append(_json({"role": "user", "content": _user_content(message)}))
            else:
                messages.append(text_message("user", message.text))
        elif message.role == "assistant":
            messages.append(text_message("assistant", message.text))
        elif message.text:
            system.append(message.text)
    if system:
        messages.insert(0, text_message("system", "\n\n".join(system)))
    tail = ',"stream":true'
    if request.max_tokens is not None:
        limit = "max_completion_tokens" if max_completion_tokens else "max_tokens"
        tail += f',"{limit}":{int(request.max_tokens)}'
    return json_body('"model":' + _json(request.model), messages, tail)


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _user_content(message: ChatMessage) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if message.text:
        parts.append({"type": "text", "text": message.text})
    for image in message.images:
        url = f"data:{image.media_type};base64,{base64.b64encode(image.data).decode('ascii')}"
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts
