"""The ``openai-completions`` client: ``POST {baseUrl}/chat/completions`` with ``stream: true``, over aiohttp.

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
from urllib.parse import urlsplit, urlunsplit

from bot.classify import FailureSignal, classify
from bot.providers.base import ChatMessage, ChatRequest, Endpoint, ResolvedAuth
from bot.providers.http import HttpPool, merged_headers, post_events

# Local servers (Ollama, LM Studio, vLLM) ignore the key, but some refuse a request without one.
PLACEHOLDER_KEY = "modelbot-no-key"
_BASE_HEADERS = {"content-type": "application/json", "accept": "application/json"}


def _uses_max_completion_tokens(endpoint: Endpoint) -> bool:
    """OpenAI's own API wants ``max_completion_tokens`` (its reasoning models reject ``max_tokens``);
    OpenAI-compatible servers (OpenRouter, Groq, Ollama, …) still expect ``max_tokens``."""
    return (urlsplit(endpoint.base_url).hostname or "") == "api.openai.com"


class OpenAICompletionsClient:
    """Streams chat completions; one connection pool for every endpoint and credential."""

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._http = HttpPool(ssl_context=ssl_context)

    async def stream(
        self, endpoint: Endpoint, auth: ResolvedAuth, request: ChatRequest
    ) -> AsyncIterator[str]:
        secret = auth.secret if auth.type != "none" and auth.secret else PLACEHOLDER_KEY
        # Configured headers come last: a gateway that wants its own Authorization gets it.
        headers = merged_headers(_BASE_HEADERS, {"authorization": f"Bearer {secret}"}, endpoint.headers)
        body = request_body(request, max_completion_tokens=_uses_max_completion_tokens(endpoint))
        finish_reason: str | None = None
        async with post_events(
            self._http, _url(endpoint.base_url), headers=headers, body=body, timeout_s=endpoint.timeout_s
        ) as events:
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
        await self._http.aclose()


def _stream_error(error: object) -> FailureSignal:
    message = error.get("message") if isinstance(error, dict) else None
    text = message if isinstance(message, str) and message else "An error occurred during streaming"
    return FailureSignal(
        body=error if isinstance(error, str) else json.dumps(error, default=str), message=text
    )


@lru_cache(maxsize=64)
def _url(base_url: str) -> str:
    """``{baseUrl}/chat/completions``, keeping a query string (Azure's ``api-version``) at the end."""
    parts = urlsplit(base_url)
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/chat/completions"))


def request_body(request: ChatRequest, *, max_completion_tokens: bool = False) -> bytes:
    """The JSON body: the system prompt first (system-role messages folded in), then the conversation."""
    system = [request.system] if request.system else []
    messages: list[dict[str, Any]] = [{"role": "system", "content": ""}]  # filled in below, or dropped
    for message in request.messages:
        if message.role == "user":
            messages.append({"role": "user", "content": _user_content(message)})
        elif message.role == "assistant":
            messages.append({"role": "assistant", "content": message.text})
        elif message.text:
            system.append(message.text)
    if system:
        messages[0]["content"] = "\n\n".join(system)
    else:
        del messages[0]
    body: dict[str, Any] = {"model": request.model, "messages": messages, "stream": True}
    if request.max_tokens is not None:
        body["max_completion_tokens" if max_completion_tokens else "max_tokens"] = request.max_tokens
    return json.dumps(body, separators=(",", ":")).encode("ascii")


def _user_content(message: ChatMessage) -> str | list[dict[str, Any]]:
    if not message.images:
        return message.text
    parts: list[dict[str, Any]] = []
    if message.text:
        parts.append({"type": "text", "text": message.text})
    for image in message.images:
        url = f"data:{image.media_type};base64,{base64.b64encode(image.data).decode('ascii')}"
        parts.append({"type": "image_url", "image_url": {"url": url}})
    return parts
