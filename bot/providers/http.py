"""What both SDK clients share: SDK clients over one connection pool, their requests, the SSE events of a response.

The official SDKs give each request its URL, auth and default headers, timeouts, proxies from the environment
and their typed errors for a non-2xx answer or a failed connection: ``SdkPost`` takes the URL, headers and
timeout from the SDK client once (what its low-level ``post`` would send, byte for byte:
``tests/test_sdk_post.py``) and sends each body we built once on the HTTP client the SDK client is given (a
plain 2xx stream straight off its aiohttp session: ``direct_post``), raising the SDK's own errors as ``post``
does; the body is decoded here with our own SSE decoder. Why not ``post`` itself, the SDKs' ``create``
methods or their ``AsyncStream``: ``docs/benchmarks.md`` (``bench.conversation``) — per call, ``post``
copies its pydantic request options and merges the headers six times, and ``create`` transforms every
message of the history.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import ssl
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable, Mapping
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Any, Generic, Protocol, TypeVar

import httpx2

from bot.failover.classify import FailureSignal, Transport, classify
from bot.providers.direct_post import DirectPost
from bot.providers.response_body import ResponseBody
from bot.providers.sse import SseDecoder, SseEvent

DRAIN_S = 0.1  # after the answer's end, how long the rest of the body may take to arrive (connection reuse)
# Text messages kept encoded: every active conversation's recent history, many times over.
ENCODED_MESSAGES = 8192


class _Closable(Protocol):
    async def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


class SdkClientPool(Generic[C]):
    """SDK clients keyed by endpoint and credential over one HTTP client: one connection pool and one TLS
    setup per API mode.

    The HTTP client is made on first use, inside the running loop (its aiohttp session belongs to that loop)
    and after the environment's proxies are set; ``aclose`` closes everything, and a later call starts over.
    """

    def __init__(self, make_http: Callable[[], httpx2.AsyncClient]) -> None:
        self._make_http = make_http
        self._http: httpx2.AsyncClient | None = None
        self._clients: dict[Hashable, C] = {}

    def get(self, key: Hashable, make: Callable[[httpx2.AsyncClient], C]) -> C:
        made = self._clients.get(key)
        if made is None:
            if self._http is None:
                self._http = self._make_http()
            made = self._clients[key] = make(self._http)
        return made

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()


class _SdkClient(_Closable, Protocol):
    @property
    def base_url(self) -> httpx2.URL: ...

    def _make_status_error_from_response(self, response: httpx2.Response) -> Exception: ...


S = TypeVar("S", bound=_SdkClient)


class SdkPost(Generic[S]):
    """One SDK client's streamed ``POST`` to one path, as its ``post(path, cast_to=httpx2.Response,
    content=body, stream=True)`` sends it with retries off, less the per-call work.

    ``headers`` are the SDK's header layers (case-insensitive, later layers win, its ``Omit`` removes one), fixed
    for the client's life; nothing in them varies per request with retries off. A failed send raises the SDK's
    ``timeout_error`` or ``connection_error`` from the transport's exception, a non-2xx answer the SDK's own
    status error, read first, as ``post`` does.

    The request goes straight to the aiohttp session of the SDK's transport for the URL (``DirectPost``)
    with the headers the HTTP client would build, and a plain 2xx answer is read off it; everything else
    (a redirect, an error status, a compressed body, a cookie to keep, a client holding cookies, another
    transport) takes the HTTP client's own path, so it behaves as it always did. The shortcut skips
    building an ``httpx2`` request and response per call, a quarter of what a turn costs beyond the floor.
    """

    def __init__(
        self,
        sdk: S,
        http: httpx2.AsyncClient,
        path: str,
        *,
        headers: list[Mapping[str, object]],
        timeout: float | httpx2.Timeout | None,
        query: Mapping[str, Any],  # the SDK's default_query
        timeout_error: Callable[..., Exception],
        connection_error: Callable[..., Exception],
    ) -> None:
        self.sdk = sdk
        self._http = http
        # The SDK's base URL, with its trailing slash: the path is appended as its _prepare_url does.
        base = sdk.base_url
        url = base.copy_with(raw_path=base.raw_path + path.lstrip("/").encode("ascii"))
        self._url = url.copy_merge_params(query) if query else url
        self._headers = merged_headers(*headers)
        self._timeout = httpx2.Timeout(timeout)
        self._timeout_error = timeout_error
        self._connection_error = connection_error
        # Built for a body that is not empty: an empty one puts its Content-Length elsewhere.
        self._direct = DirectPost.of(http, self._request(b"{}"))

    async def send(self, body: bytes) -> ResponseBody:
        direct = self._direct
        if direct is None or self._http.cookies:
            return await self._send(self._request(body))
        try:
            response = await direct.post(body)
        except (httpx2.RequestError, ssl.SSLError) as exc:
            raise self._transport_error(exc, self._request(body)) from exc
        if direct.plain_success(response):
            return direct.body(response)
        # Anything else as the HTTP client would have it: a redirect is sent again through it (which follows
        # it), any other answer is made its response (its cookies kept, its error raised, its body decoded).
        request = self._request(body)
        if 300 <= response.status < 400:
            response.release()
            return await self._send(request)
        return await self._answered(direct.as_response(response, request, self._http))

    def _request(self, body: bytes) -> httpx2.Request:
        return self._http.build_request(
            "POST", self._url, headers=self._headers, content=body, timeout=self._timeout
        )

    async def _send(self, request: httpx2.Request) -> ResponseBody:
        try:
            response = await self._http.send(request, stream=True)
        except (httpx2.RequestError, ssl.SSLError) as exc:
            raise self._transport_error(exc, request) from exc
        return await self._answered(response)

    def _transport_error(self, exc: Exception, request: httpx2.Request) -> Exception:
        if isinstance(exc, httpx2.TimeoutException):
            return self._timeout_error(request=request)
        # What the SDK reads as a failed connection, less its shim for httpx2's anyio transport (anyio's
        # EndOfStream): the HTTP client here is the SDKs' aiohttp one.
        return self._connection_error(request=request)

    async def _answered(self, response: httpx2.Response) -> ResponseBody:
        if not response.is_success:
            if not response.is_closed:
                await response.aread()
            # The SDK's own mapping of status and body to its error classes (no public helper; anthropic's has
            # sixty classes keyed by status and error code): the same error post raises.
            raise self.sdk._make_status_error_from_response(response) from None
        return ResponseBody(response.aiter_bytes(), response.aclose, lambda: response.headers)

    async def close(self) -> None:
        await self.sdk.close()


def merged_headers(*layers: Mapping[str, object]) -> list[tuple[str, str]]:
    """Header layers merged as the SDKs merge them: by lower-cased name, a later layer's value in the earlier
    one's place, a value that is not a string (the SDKs' ``Omit``) removing the header."""
    merged: dict[str, tuple[str, str]] = {}
    for layer in layers:
        for name, value in layer.items():
            if isinstance(value, str):
                merged[name.lower()] = (name, value)
            else:
                merged.pop(name.lower(), None)
    return list(merged.values())


def read_timeout(timeout: float | httpx2.Timeout | None) -> dict[str, str]:
    """The ``x-stainless-read-timeout`` header both SDKs add to each request."""
    read = timeout.read if isinstance(timeout, httpx2.Timeout) else timeout
    return {} if read is None else {"x-stainless-read-timeout": str(read)}


@lru_cache(maxsize=256)
def secret_digest(secret: str) -> str:
    """What a client cache is keyed by instead of the secret itself (worked out once per secret)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def transport_failure(exc: BaseException) -> Transport:
    """``timeout`` or ``connection`` for a failed connection or a failed read, from the exception's causes.

    A timeout anywhere in the chain (aiohttp's read and connect timeouts are ``TimeoutError``s) is a timeout;
    anything else is a connection failure. The causes decide, not the SDK's class: the openai SDK's aiohttp
    transport reports a refused connection or an unknown host as ``ConnectTimeout``.
    """
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen:
        if isinstance(link, TimeoutError):
            return "timeout"
        seen.add(id(link))
        link = link.__cause__ or link.__context__
    return "connection"


class EventStream:
    """The SSE events of one 2xx response; iterate it, then ``finish()`` once the answer is complete.

    A body that stops, cleanly or because the connection broke, just ends the iteration: whether the answer
    was complete is the API's call (its end marker or stop reason), not the transport's. A read timeout
    between chunks is a ``timeout`` failure.
    """

    def __init__(self, body: ResponseBody) -> None:
        self._body = body
        self._chunks = body.chunks  # decoded: a gateway may compress the stream
        self._decoder = SseDecoder()
        self._ready: deque[SseEvent] = deque()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> SseEvent:
        while not self._ready:
            chunk = await self._read()
            if chunk is None:
                raise StopAsyncIteration
            self._ready.extend(self._decoder.feed(chunk))
        return self._ready.popleft()

    async def _read(self) -> bytes | None:
        """The next chunk of the body, or None at its end (or where the connection broke)."""
        try:
            return await anext(self._chunks)
        except StopAsyncIteration:
            return None
        except (httpx2.TransportError, OSError) as exc:  # OSError: what the transport does not translate
            if transport_failure(exc) == "timeout":
                raise classify(FailureSignal(transport="timeout")) from exc
            return None
        except httpx2.DecodingError as exc:  # a compressed body that does not decompress
            raise classify(FailureSignal(message=f"{type(exc).__name__}: {exc}")) from exc

    @property
    def headers(self) -> Mapping[str, str]:
        return self._body.headers

    async def finish(self) -> None:
        """Read what follows the answer's end for a moment, so the connection goes back to the pool; a
        server that keeps the body open after its end marker costs that connection, never the answer."""
        try:
            async with asyncio.timeout(DRAIN_S):
                async for _ in self._chunks:
                    pass
        except (TimeoutError, httpx2.HTTPError, OSError):
            pass  # closing the response unread closes its connection


@asynccontextmanager
async def events_of(body: ResponseBody) -> AsyncIterator[EventStream]:
    """The response's events; the response is closed at the end (its connection reused if it was read)."""
    try:
        yield EventStream(body)
    finally:
        await body.aclose()


def response_text(response: httpx2.Response, body: object) -> str:
    """An error response's body as text (the SDKs read it before raising their status error)."""
    try:
        return response.text
    except httpx2.ResponseNotRead:
        return json_text(body)


def json_text(body: object) -> str:
    if body is None:
        return ""
    return body if isinstance(body, str) else json.dumps(body, default=str)


@lru_cache(maxsize=ENCODED_MESSAGES)
def text_message(role: str, text: str) -> str:
    """``{"role":…,"content":…}`` in JSON (ASCII, as ``json.dumps`` writes it), for both APIs' text messages.

    Each turn sends the whole history again: a message is encoded once, and later turns join the encodings.
    """
    return '{"role":' + json.dumps(role) + ',"content":' + json.dumps(text) + "}"


def json_body(fields: str, messages: list[str], tail: str) -> bytes:
    """``{<fields>,"messages":[<messages>]<tail>}``: the request body around already encoded messages."""
    return ("{" + fields + ',"messages":[' + ",".join(messages) + "]" + tail + "}").encode("ascii")
