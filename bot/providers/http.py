"""The provider clients' HTTP: one aiohttp connection pool, a streamed POST of a ready body, its SSE events.

This is the one module that talks aiohttp; its exceptions become ``FailureSignal``s here and nowhere else.
Why not the official SDKs' request methods: on this project's benchmark (``bench.conversation``) the
``openai`` SDK's ``chat.completions.create`` re-transformed the whole history on every call (17× the CPU of a
hand-built request at 60 turns), and even its low-level ``post`` with a ready body cost three to four times the
CPU of the whole request on aiohttp, before our own pipeline did anything. A request here costs what the floor
costs: the body is built once by the caller, the headers are a small dict, the body is decoded as it arrives.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.request
from collections import deque
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import aiohttp

from bot.classify import FailureSignal, classify
from bot.providers.sse import SseDecoder, SseEvent

MAX_ERROR_BODY = 1 << 20  # an error page is read for its message and Retry-After, never without bound
DRAIN_S = 0.1  # after the answer's end, how long the rest of the body may take to arrive (connection reuse)


class HttpPool:
    """One ``aiohttp.ClientSession`` (keep-alive pool, TLS setup) for every endpoint and credential of a client.

    Created on first use inside the running loop (a session belongs to one loop); ``aclose`` closes it, and a
    later call opens a new one.
    """

    def __init__(self, *, ssl_context: ssl.SSLContext | None = None) -> None:
        self._ssl_context = ssl_context
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._proxies: dict[str, str | None] = {}  # by URL

    def session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._session.closed or self._loop is not loop:
            if self._ssl_context is None:
                # The system trust store (SSL_CERT_FILE / SSL_CERT_DIR honoured), as the SDKs used; loading
                # it takes tens of ms, so once per pool.
                self._ssl_context = ssl.create_default_context()
            # As many simultaneous answers as the SDKs' pools allowed; beyond that a request waits for one.
            connector = aiohttp.TCPConnector(ssl=self._ssl_context, limit=1000)
            self._session = aiohttp.ClientSession(connector=connector)
            self._loop = loop
            self._proxies = {}
        return self._session

    def proxy_for(self, url: str) -> str | None:
        """The proxy from the environment for ``url`` (``HTTPS_PROXY``, ``NO_PROXY``, …), as the SDKs' httpx
        clients honoured it. Read once per URL: aiohttp's ``trust_env`` would look it up (and ``.netrc``)
        in a worker thread on every request, two thread hand-offs per turn."""
        if url not in self._proxies:
            parts = urlsplit(url)
            host = parts.hostname or ""
            bypass = not host or bool(urllib.request.proxy_bypass(host))
            self._proxies[url] = None if bypass else urllib.request.getproxies().get(parts.scheme)
        return self._proxies[url]

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed and self._loop is asyncio.get_running_loop():
            await session.close()


class EventStream:
    """The SSE events of one 2xx response; iterate it, then ``finish()`` once the answer is complete.

    A body that stops, cleanly or because the connection broke, just ends the iteration: whether the answer
    was complete is the API's call (its end marker or stop reason), not the transport's. A read timeout
    between chunks is a ``timeout`` failure.
    """

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self._response = response
        self._decoder = SseDecoder()
        self._ready: deque[SseEvent] = deque()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> SseEvent:
        while not self._ready:
            try:
                chunk = await self._response.content.readany()
            except TimeoutError as exc:
                raise classify(FailureSignal(transport="timeout")) from exc
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, ConnectionError):
                raise StopAsyncIteration from None
            if not chunk:
                raise StopAsyncIteration
            self._ready.extend(self._decoder.feed(chunk))
        return self._ready.popleft()

    @property
    def headers(self) -> Mapping[str, str]:
        return self._response.headers

    async def finish(self) -> None:
        """Read what follows the answer's end for a moment, so the connection goes back to the pool; a
        server that keeps the body open after its end marker costs that connection, never the answer."""
        content = self._response.content
        if content.at_eof():
            return
        try:
            async with asyncio.timeout(DRAIN_S):
                while await content.readany():
                    pass
        except (TimeoutError, aiohttp.ClientError, ConnectionError):
            self._response.close()


@asynccontextmanager
async def post_events(
    pool: HttpPool, url: str, *, headers: Mapping[str, str], body: bytes, timeout_s: float
) -> AsyncIterator[EventStream]:
    """POST ``body`` and stream the answer's events; every failure before the body is a ``ProviderError``.

    ``timeout_s`` bounds connecting (and waiting for a pooled connection) and each read: the wait for the
    response headers and every gap between chunks, as the SDKs' timeouts did.
    """
    timeout = aiohttp.ClientTimeout(total=None, connect=timeout_s, sock_read=timeout_s)
    try:
        session = pool.session()
        response = await session.post(
            url, data=body, headers=headers, timeout=timeout, proxy=pool.proxy_for(url)
        )
    except TimeoutError as exc:
        raise classify(FailureSignal(transport="timeout")) from exc
    except (aiohttp.ClientError, ConnectionError, ValueError) as exc:  # ValueError: a malformed URL
        raise classify(FailureSignal(transport="connection")) from exc
    try:
        if response.status >= 400:
            raise classify(
                FailureSignal(
                    status=response.status, headers=dict(response.headers), body=await _error_text(response)
                )
            )
        yield EventStream(response)
    finally:
        response.release()


async def _error_text(response: aiohttp.ClientResponse) -> str:
    """The error body as text (for its message and a Retry-After in it); what cannot be read is left out."""
    chunks: list[bytes] = []
    size = 0
    try:  # each read is bounded by the request's read timeout
        while size < MAX_ERROR_BODY and (chunk := await response.content.readany()):
            chunks.append(chunk)
            size += len(chunk)
    except (TimeoutError, aiohttp.ClientError, ConnectionError):
        pass
    raw = b"".join(chunks)[:MAX_ERROR_BODY]
    try:
        return raw.decode(response.charset or "utf-8", errors="replace")
    except LookupError:  # a charset Python does not know
        return raw.decode("utf-8", errors="replace")


def merged_headers(*layers: Mapping[str, str]) -> dict[str, str]:
    """Header layers merged case-insensitively, later layers winning (names are sent in lower case)."""
    return {name.lower(): value for layer in layers for name, value in layer.items()}
