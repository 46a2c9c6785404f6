"""The ``anthropic-messages`` client: streams the Messages API through the official ``anthropic`` SDK."""

from __future__ import annotations

import base64
import hashlib
import ssl
from collections.abc import AsyncIterator
from typing import Literal, cast

import anthropic
import httpx2
from anthropic import AsyncAnthropic, omit
from anthropic.types import ImageBlockParam, MessageParam, TextBlockParam

from bot.classify import FailureSignal, classify
from bot.providers.base import ChatMessage, ChatRequest, Endpoint, ResolvedAuth
from bot.providers.sdk_pool import SdkClientPool, json_text, response_text

DEFAULT_MAX_TOKENS = 4096  # the Messages API requires max_tokens on every call
OAUTH_BETA = "oauth-2025-04-20"  # Anthropic accepts OAuth/setup tokens only with this beta flag
PLACEHOLDER_KEY = "modelbot-no-key"
_BEARER_TYPES = frozenset({"token", "oauth"})

_ImageType = Literal["image/jpeg", "image/png", "image/gif", "image/webp"]
_ClientKey = tuple[str, str, str, tuple[tuple[str, str], ...], float]


class AnthropicMessagesClient:
    """``POST {baseUrl}/v1/messages`` with ``stream: true``; one SDK client per endpoint and credential."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        verify: ssl.SSLContext | bool = (
            True if ssl_context is None else ssl_context
        )  # True: the SDK's trust store
        self._pool: SdkClientPool[AsyncAnthropic] = SdkClientPool(
            lambda: anthropic.DefaultAsyncHttpxClient(verify=verify)
        )

    async def stream(
        self, endpoint: Endpoint, auth: ResolvedAuth, request: ChatRequest
    ) -> AsyncIterator[str]:
        client = self._client_for(endpoint, auth)
        # The system prompt is the top-level ``system`` field, with any system-role messages folded in.
        system = [request.system] if request.system else []
        system += [m.text for m in request.messages if m.role == "system" and m.text]
        started = stopped = False
        stop_reason: str | None = None
        try:
            events = await client.messages.create(
                model=request.model,
                max_tokens=DEFAULT_MAX_TOKENS if request.max_tokens is None else request.max_tokens,
                messages=_messages(request),
                system="\n\n".join(system) if system else omit,
                stream=True,
                extra_headers=_key_headers(auth),
            )
            started = True
            async with events:
                async for event in events:
                    if event.type == "content_block_delta" and event.delta.type == "text_delta":
                        if event.delta.text:
                            yield event.delta.text
                    elif event.type == "message_delta":
                        stop_reason = event.delta.stop_reason
                    elif event.type == "message_stop":
                        stopped = True
        # ValueError: a chunk that is not JSON, which is the provider's fault like any other failure.
        except (anthropic.AnthropicError, httpx2.HTTPError, ValueError) as exc:
            signal = _signal(exc, started=started)
            # The model said it was done (message_delta's stop_reason): the socket closing before
            # message_stop loses nothing of the answer.
            if stop_reason is None or signal.transport != "stream_cut":
                raise classify(signal) from exc
        if not stopped and stop_reason is None:
            raise classify(FailureSignal(transport="stream_cut"))
        if stop_reason == "refusal":
            raise classify(FailureSignal(message="stop_reason: refusal (content filter)"))
        if stop_reason == "model_context_window_exceeded":
            raise classify(FailureSignal(message="stop_reason: model_context_window_exceeded"))

    async def aclose(self) -> None:
        await self._pool.aclose()

    def _client_for(self, endpoint: Endpoint, auth: ResolvedAuth) -> AsyncAnthropic:
        secret = auth.secret or PLACEHOLDER_KEY
        bearer = auth.type in _BEARER_TYPES
        headers = dict(endpoint.headers)
        if bearer:
            # Configured betas (any spelling of the header name) are kept alongside the OAuth one.
            configured = [headers.pop(name) for name in list(headers) if name.lower() == "anthropic-beta"]
            betas = [b.strip() for value in configured for b in value.split(",") if b.strip()]
            headers["anthropic-beta"] = ",".join(betas if OAUTH_BETA in betas else [*betas, OAUTH_BETA])
        # Keyed by a digest so the cache's keys never hold the secret itself.
        digest = hashlib.sha256(secret.encode()).hexdigest()
        key = (endpoint.base_url, digest, str(bearer), tuple(sorted(headers.items())), endpoint.timeout_s)
        # A credential argument is always given, so the SDK never falls back to env vars or config files.
        return self._pool.get(
            key,
            lambda http: AsyncAnthropic(
                api_key=None if bearer else secret,
                auth_token=secret if bearer else None,
                base_url=_root(endpoint.base_url),
                default_headers=headers,
                timeout=endpoint.timeout_s,
                max_retries=0,  # the engine decides about retries, never the SDK
                http_client=http,
            ),
        )


def _key_headers(auth: ResolvedAuth) -> dict[str, str | anthropic.Omit]:
    """API keys go in ``x-api-key`` (the SDK would send them as a bearer token); OAuth tokens as bearer."""
    if auth.type in _BEARER_TYPES:
        return {}
    return {"x-api-key": auth.secret or PLACEHOLDER_KEY, "Authorization": omit}


def _root(base_url: str) -> str:
    # The SDK appends /v1/messages itself; a configured ".../v1" (as OpenAI URLs have) would double it.
    return base_url.rstrip("/").removesuffix("/v1")


def _signal(exc: Exception, *, started: bool) -> FailureSignal:
    """The one translation of the SDK's (and its transport's) exceptions into what ``classify`` reads."""
    if isinstance(exc, anthropic.APIStatusError):
        # An ``error`` event inside a 200 stream arrives here too, with the stream's status of 200.
        return FailureSignal(
            status=exc.status_code,
            headers=dict(exc.response.headers),
            body=response_text(exc.response, exc.body),
            message=exc.message,
        )
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return FailureSignal(transport="timeout")
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
        # Once the response has begun, a broken connection means the answer was cut off mid-way.
        return FailureSignal(transport="stream_cut" if started else "connection")
    if isinstance(exc, anthropic.APIError):
        return FailureSignal(body=json_text(exc.body), message=exc.message)
    return FailureSignal(message=f"{type(exc).__name__}: {exc}")


def _messages(request: ChatRequest) -> list[MessageParam]:
    """User and assistant turns; the API rejects empty ones, so they are left out."""
    messages: list[MessageParam] = []
    for message in request.messages:
        if message.role == "user" and (message.text or message.images):
            messages.append({"role": "user", "content": _user_content(message)})
        elif message.role == "assistant" and message.text:
            messages.append({"role": "assistant", "content": message.text})
    return messages


def _user_content(message: ChatMessage) -> str | list[TextBlockParam | ImageBlockParam]:
    if not message.images:
        return message.text
    blocks: list[TextBlockParam | ImageBlockParam] = []
    for image in message.images:
        data = base64.b64encode(image.data).decode("ascii")
        # Other media types are sent as they are: the API's own 400 says what it accepts.
        media_type = cast(_ImageType, image.media_type)
        blocks.append({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}})
    if message.text:
        blocks.append({"type": "text", "text": message.text})  # Anthropic advises images before the text
    return blocks
