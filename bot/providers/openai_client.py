"""The ``openai-completions`` client: streams chat completions through the official ``openai`` SDK."""

from __future__ import annotations

import base64
import hashlib
import ssl
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import httpx2
import openai
from openai import AsyncOpenAI, Omit, omit
from openai.types.chat import ChatCompletionContentPartParam, ChatCompletionMessageParam

from bot.classify import FailureSignal, classify
from bot.providers.base import ChatMessage, ChatRequest, Endpoint, ResolvedAuth
from bot.providers.sdk_pool import SdkClientPool, json_text, response_text

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
        verify: ssl.SSLContext | bool = (
            True if ssl_context is None else ssl_context
        )  # True: the SDK's trust store
        self._pool: SdkClientPool[AsyncOpenAI] = SdkClientPool(
            lambda: openai.DefaultAsyncHttpxClient(verify=verify)
        )

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
            signal = _signal(exc, started=started)
            # The model said it was done (a finish_reason): the socket closing before [DONE] loses nothing.
            if finish_reason is None or signal.transport != "stream_cut":
                raise classify(signal) from exc
        if finish_reason is None:
            # [DONE] (or a clean end of the body) without a finish_reason: the answer is not complete.
            raise classify(FailureSignal(transport="stream_cut"))
        if finish_reason == "content_filter":
            raise classify(FailureSignal(message="finish_reason: content_filter"))

    async def aclose(self) -> None:
        await self._pool.aclose()

    def _client_for(self, endpoint: Endpoint, auth: ResolvedAuth) -> AsyncOpenAI:
        secret = auth.secret if auth.type != "none" and auth.secret else PLACEHOLDER_KEY
        # Keyed by a digest so the cache's keys never hold the secret itself.
        digest = hashlib.sha256(secret.encode()).hexdigest()
        key = (endpoint.base_url, digest, tuple(sorted(endpoint.headers.items())), endpoint.timeout_s)
        return self._pool.get(
            key,
            lambda http: AsyncOpenAI(
                api_key=secret,
                base_url=endpoint.base_url,
                default_headers=dict(endpoint.headers),
                timeout=endpoint.timeout_s,
                max_retries=0,  # the engine decides about retries, never the SDK
                http_client=http,
            ),
        )


def _signal(exc: Exception, *, started: bool) -> FailureSignal:
    """The one translation of the SDK's (and its transport's) exceptions into what ``classify`` reads."""
    if isinstance(exc, openai.APIStatusError):
        return FailureSignal(
            status=exc.status_code,
            headers=dict(exc.response.headers),
            body=response_text(exc.response, exc.body),
            message=exc.message,
        )
    if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
        return FailureSignal(transport="timeout")
    if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
        # Once the response has begun, a broken connection means the answer was cut off mid-way.
        return FailureSignal(transport="stream_cut" if started else "connection")
    if isinstance(exc, openai.APIError):  # an error object sent inside a 200 stream
        return FailureSignal(body=json_text(exc.body), message=exc.message)
    return FailureSignal(message=f"{type(exc).__name__}: {exc}")


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
