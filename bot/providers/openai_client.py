"""The ``openai-completions`` client: streams chat completions through the official ``openai`` SDK."""

from __future__ import annotations

import base64
import hashlib
import json
import ssl
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx2
import openai
from openai import AsyncOpenAI, Omit, omit
from openai.types.chat import ChatCompletionContentPartParam, ChatCompletionMessageParam

from bot.classify import FailureSignal, classify
from bot.providers.base import ChatMessage, ChatRequest, Endpoint, ResolvedAuth

# Local servers (Ollama, LM Studio, vLLM) ignore the key, but the SDK refuses to start without one.
PLACEHOLDER_KEY = "modelbot-no-key"

_ClientKey = tuple[str, str, tuple[tuple[str, str], ...], float]


def _uses_max_completion_tokens(endpoint: Endpoint) -> bool:
    """OpenAI's own API wants ``max_completion_tokens`` (its reasoning models reject ``max_tokens``);
    OpenAI-compatible servers (OpenRouter, Groq, Ollama, …) still expect ``max_tokens``."""
    return (urlsplit(endpoint.base_url).hostname or "") == "api.openai.com"


class OpenAICompletionsClient:
    """``POST {baseUrl}/chat/completions`` with ``stream=True``; one SDK client per endpoint and credential."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl_context = ssl_context  # None: the SDK's default trust store
        self._http: httpx2.AsyncClient | None = None
        self._clients: dict[_ClientKey, AsyncOpenAI] = {}

    async def stream(
        self, endpoint: Endpoint, auth: ResolvedAuth, request: ChatRequest
    ) -> AsyncIterator[str]:
        client = self._client_for(endpoint, auth)
        started = False
        finish_reason: str | None = None
        limit: int | Omit = omit if request.max_tokens is None else request.max_tokens
        try:
            chunks = await client.chat.completions.create(
                model=request.model,
                messages=_messages(request),
                stream=True,
                max_completion_tokens=limit if _uses_max_completion_tokens(endpoint) else omit,
                max_tokens=omit if _uses_max_completion_tokens(endpoint) else limit,
            )
            started = True
            async with chunks:
                async for chunk in chunks:
                    for choice in chunk.choices:
                        if choice.index != 0:
                            continue
                        if choice.delta is not None and choice.delta.content:
                            yield choice.delta.content
                        if choice.finish_reason is not None:
                            finish_reason = choice.finish_reason
        # ValueError: a chunk that is not JSON, which is the provider's fault like any other failure.
        except (openai.OpenAIError, httpx2.HTTPError, ValueError) as exc:
            raise classify(_signal(exc, started=started)) from exc
        if finish_reason is None:
            # [DONE] (or a clean end of the body) without a finish_reason: the answer is not complete.
            raise classify(FailureSignal(transport="stream_cut"))
        if finish_reason == "content_filter":
            raise classify(FailureSignal(message="finish_reason: content_filter"))

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    def _http_client(self) -> httpx2.AsyncClient:
        # One connection pool and one TLS setup for every credential and endpoint of this API mode.
        if self._http is None:
            verify = True if self._ssl_context is None else self._ssl_context
            self._http = openai.DefaultAsyncHttpxClient(verify=verify)
        return self._http

    def _client_for(self, endpoint: Endpoint, auth: ResolvedAuth) -> AsyncOpenAI:
        secret = auth.secret if auth.type != "none" and auth.secret else PLACEHOLDER_KEY
        # Keyed by a digest so the cache's keys never hold the secret itself.
        digest = hashlib.sha256(secret.encode()).hexdigest()
        key = (endpoint.base_url, digest, tuple(sorted(endpoint.headers.items())), endpoint.timeout_s)
        client = self._clients.get(key)
        if client is None:
            client = AsyncOpenAI(
                api_key=secret,
                base_url=endpoint.base_url,
                default_headers=dict(endpoint.headers),
                timeout=endpoint.timeout_s,
                max_retries=0,  # the engine decides about retries, never the SDK
                http_client=self._http_client(),
            )
            self._clients[key] = client
        return client


def _signal(exc: Exception, *, started: bool) -> FailureSignal:
    """The one translation of the SDK's (and its transport's) exceptions into what ``classify`` reads."""
    if isinstance(exc, openai.APIStatusError):
        return FailureSignal(
            status=exc.status_code,
            headers=dict(exc.response.headers),
            body=_response_text(exc.response, exc.body),
            message=exc.message,
        )
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return FailureSignal(transport="timeout")
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        # Once the response has begun, a broken connection means the answer was cut off mid-way.
        return FailureSignal(transport="stream_cut" if started else "connection")
    if isinstance(exc, openai.APIError):  # an error object sent inside a 200 stream
        return FailureSignal(body=_json_text(exc.body), message=exc.message)
    return FailureSignal(message=f"{type(exc).__name__}: {exc}")


def _response_text(response: httpx2.Response, body: object) -> str:
    try:
        return response.text
    except httpx2.ResponseNotRead:
        return _json_text(body)


def _json_text(body: object) -> str:
    if body is None:
        return ""
    return body if isinstance(body, str) else json.dumps(body, default=str)


def _messages(request: ChatRequest) -> list[ChatCompletionMessageParam]:
    """The system prompt first (with any system-role messages folded in), then the conversation."""
    system = [request.system] if request.system else []
    system += [m.text for m in request.messages if m.role == "system" and m.text]
    messages: list[ChatCompletionMessageParam] = []
    if system:
        messages.append({"role": "system", "content": "\n\n".join(system)})
    for message in request.messages:
        if message.role == "user":
            messages.append({"role": "user", "content": _user_content(message)})
        elif message.role == "assistant":
            messages.append({"role": "assistant", "content": message.text})
    return messages


def _user_content(message: ChatMessage) -> str | list[ChatCompletionContentPartParam]:
    if not message.images:
        return message.text
    parts: list[ChatCompletionContentPartParam] = []
    if message.text:
        parts.append({"type": "text", "text": message.text})
    for image in message.images:
        url = f"data:{image.media_type};base64,{base64.b64encode(image.data).decode('ascii')}"
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts
