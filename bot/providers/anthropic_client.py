"""The ``anthropic-messages`` client: ``POST {baseUrl}/v1/messages`` with ``stream: true``, via the ``anthropic`` SDK.

The body is built once from our own types (``request_body``), one JSON encoding of the history per call, and
sent as the SDK's low-level ``post`` sends it (its URL, ``anthropic-version``, headers, timeouts, proxies and
typed errors; its retries off: the engine decides) by ``SdkPost``; ``tests/test_provider_clients.py`` pins it
to the API's wire format. The raw response's events are decoded by ``bot/providers/http.py``.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx2
from anthropic import NOT_GIVEN, AsyncAnthropic, omit

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

DEFAULT_MAX_TOKENS = 4096  # the Messages API requires max_tokens on every call
# The API version whose wire format ``request_body`` and the event parsing below are written for (the SDK
# would send its own newest one); a configured ``anthropic-version`` header wins.
API_VERSION = "2023-06-01"
OAUTH_BETA = "oauth-2025-04-20"  # Anthropic accepts OAuth/setup tokens only with this beta flag
PLACEHOLDER_KEY = "modelbot-no-key"
_BEARER_TYPES = frozenset({"token", "oauth"})
# API keys go in x-api-key (the SDK would send them as a bearer token), and win over a configured
# Authorization: a gateway must not get two credentials. Tokens go as bearer, without any x-api-key.
_KEY_HEADERS: dict[str, Any] = {"Authorization": omit}
_BEARER_HEADERS: dict[str, Any] = {"x-api-key": omit}


class AnthropicMessagesClient:
    """Streams the Messages API; one SDK client per endpoint and credential over one connection pool."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        verify: ssl.SSLContext | bool = True if ssl_context is None else ssl_context  # True: the SDK's store
        self._pool: SdkClientPool[SdkPost[AsyncAnthropic]] = SdkClientPool(
            lambda: anthropic.DefaultAioHttpClient(verify=verify)
        )

    async def stream(
        self, endpoint: Endpoint, auth: ResolvedAuth, request: ChatRequest
    ) -> AsyncIterator[str]:
        body = request_body(request)
        secret = auth.secret or PLACEHOLDER_KEY
        bearer = auth.type in _BEARER_TYPES
        try:
            response = await self._client_for(endpoint, secret, bearer=bearer).send(body)
        # InvalidURL, ValueError: a base URL the SDK cannot send to.
        except (anthropic.AnthropicError, httpx2.HTTPError, httpx2.InvalidURL, ValueError) as exc:
            raise classify(_signal(exc)) from exc
        stopped = False
        stop_reason: str | None = None
        async with events_of(response) as events:
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
        await self._pool.aclose()

    def _client_for(self, endpoint: Endpoint, secret: str, *, bearer: bool) -> SdkPost[AsyncAnthropic]:
        headers = dict(endpoint.headers)
        if not any(name.lower() == "anthropic-version" for name in headers):
            headers["anthropic-version"] = API_VERSION
        if bearer:
            # Configured betas (any spelling of the header name) are kept alongside the OAuth one.
            configured = [headers.pop(name) for name in list(headers) if name.lower() == "anthropic-beta"]
            betas = [b.strip() for value in configured for b in value.split(",") if b.strip()]
            headers["anthropic-beta"] = ",".join(betas if OAUTH_BETA in betas else [*betas, OAUTH_BETA])
        key = (
            endpoint.base_url,
            secret_digest(secret),
            bearer,
            tuple(sorted(headers.items())),
            endpoint.timeout_s,
        )
        return self._pool.get(key, lambda http: _sdk_client(endpoint, secret, headers, http, bearer=bearer))


def _sdk_client(
    endpoint: Endpoint, secret: str, headers: dict[str, str], http: httpx2.AsyncClient, *, bearer: bool
) -> SdkPost[AsyncAnthropic]:
    # A credential argument is always given, so the SDK never falls back to env vars or config files.
    sdk = AsyncAnthropic(
        api_key=None if bearer else secret,
        auth_token=secret if bearer else None,
        base_url=_root(endpoint.base_url),
        default_headers=headers,
        timeout=endpoint.timeout_s,  # connecting and each read: the wait for the headers and every gap
        max_retries=0,  # the engine decides about retries, never the SDK
        http_client=http,
    )
    # The layers of the SDK's _build_headers with no retries and no per-call timeout (it sends that one as
    # "NOT_GIVEN"; the configured headers again, as a layer of their own, so that they win over the SDK's own
    # anthropic-version whatever their spelling), then what this client's post passed as the request's own.
    stainless = {
        "x-stainless-timeout": str(NOT_GIVEN),
        "x-stainless-retry-count": "0",
        **read_timeout(sdk.timeout),
    }
    own = _BEARER_HEADERS if bearer else {**_KEY_HEADERS, "x-api-key": secret}
    return SdkPost(
        sdk,
        http,
        "/v1/messages",
        headers=[stainless, sdk.default_headers, headers, own],
        timeout=sdk.timeout,
        query=sdk.default_query,
        timeout_error=anthropic.APITimeoutError,
        connection_error=anthropic.APIConnectionError,
    )


def _root(base_url: str) -> str:
    # The client posts to /v1/messages; a configured ".../v1" (as OpenAI URLs have) must not double it.
    return base_url.rstrip("/").removesuffix("/v1")


def _signal(exc: Exception) -> FailureSignal:
    """The one translation of the SDK's (and its transport's) exceptions into what ``classify`` reads."""
    if isinstance(exc, anthropic.APIStatusError):
        return FailureSignal(
            status=exc.status_code,
            headers=dict(exc.response.headers),
            body=response_text(exc.response, exc.body),
            message=exc.message,
        )
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):  # APITimeoutError included
        return FailureSignal(transport=transport_failure(exc))
    if isinstance(exc, anthropic.APIError):
        return FailureSignal(body=json_text(exc.body), message=exc.message)
    return FailureSignal(transport="connection")  # a URL the SDK cannot send to


def _delta(data: str) -> dict[str, Any]:
    """An event's ``delta``; data that is not JSON fails the attempt as the provider's fault."""
    try:
        parsed = json.loads(data)
    except ValueError as exc:
        raise classify(FailureSignal(message=f"{type(exc).__name__}: {exc}")) from exc
    delta = parsed.get("delta") if isinstance(parsed, dict) else None
    return delta if isinstance(delta, dict) else {}


def request_body(request: ChatRequest) -> bytes:
    """The JSON body: user and assistant turns (the API rejects empty ones, so they are left out), and the
    system prompt as the top-level ``system`` field, with any system-role messages folded in."""
    system = [request.system] if request.system else []
    messages: list[str] = []
    for message in request.messages:
        if message.role == "user":
            if message.images:
                messages.append(_json({"role": "user", "content": _user_content(message)}))
            elif message.text:
                messages.append(text_message("user", message.text))
        elif message.role == "assistant":
            if message.text:
                messages.append(text_message("assistant", message.text))
        elif message.text:
            system.append(message.text)
    max_tokens = DEFAULT_MAX_TOKENS if request.max_tokens is None else request.max_tokens
    fields = f'"model":{_json(request.model)},"max_tokens":{int(max_tokens)}'
    tail = ',"stream":true' + (',"system":' + _json("\n\n".join(system)) if system else "")
    return json_body(fields, messages, tail)


def _json(value: object) -> str:
    return json.dumps(value, separators=(",", ":"))


def _user_content(message: ChatMessage) -> list[dict[str, Any]]:
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
