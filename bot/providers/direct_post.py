"""A plain streamed ``POST`` straight on the aiohttp session of the SDKs' HTTP client, without ``httpx2``'s layers.

The SDKs' ``DefaultAioHttpClient`` is an ``httpx2.AsyncClient`` whose transport (vendored ``httpx_aiohttp``)
turns each ``httpx2.Request`` into an aiohttp request and the aiohttp response back into an
``httpx2.Response``. ``DirectPost`` makes that same aiohttp request itself (the URL, the headers the client
builds with their order, the timeouts, the proxy and TLS context of the transport the client picked for the
URL) and hands a plain 2xx answer's body straight from aiohttp, read through the transport's own stream and
exception mapping, so a failed read raises the same ``httpx2`` errors. ``SdkPost`` decides which answers take
this way and turns the others into the client's own response (``as_response``).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import aiohttp
import httpx2

from bot.providers.response_body import ResponseBody

_TRANSPORT = "AiohttpTransport"  # the class of the vendored transport, in openai and anthropic alike


class DirectPost:
    """One URL's streamed POSTs on the aiohttp session of the transport ``http`` uses for that URL."""

    @classmethod
    def of(cls, http: httpx2.AsyncClient, template: httpx2.Request) -> DirectPost | None:
        """The shortcut for requests like ``template`` (the client's request of a small body), or None when the
        client's transport for its URL is not the SDKs' aiohttp one (the client's own path is taken then)."""
        transport = http._transport_for_url(template.url)
        module = sys.modules.get(type(transport).__module__)
        map_exceptions = getattr(module, "map_aiohttp_exceptions", None)
        stream = getattr(module, "AiohttpResponseStream", None)
        if (
            type(transport).__name__ != _TRANSPORT
            or not callable(getattr(transport, "get_client", None))
            or map_exceptions is None
            or stream is None
            or "content-length" not in template.headers
        ):
            return None
        return cls(transport, template, map_exceptions, stream)

    def __init__(
        self,
        transport: Any,
        template: httpx2.Request,
        map_exceptions: Callable[[], AbstractContextManager[None]],
        stream: Callable[[aiohttp.ClientResponse], httpx2.AsyncByteStream],
    ) -> None:
        self._transport = transport
        self._map_exceptions = map_exceptions
        self._stream = stream
        self._url = str(template.url)
        # What the transport passes aiohttp (the client's headers as its Headers.items() gives them), with the
        # body's length set per call in the Content-Length the client added.
        self._headers = list(template.headers.items())
        self._length_at = [name for name, _ in self._headers].index("content-length")
        timeout = template.extensions.get("timeout", {})
        proxy = transport.proxy
        self._options: dict[str, Any] = {
            "allow_redirects": False,
            "auto_decompress": False,
            "compress": False,
            "timeout": aiohttp.ClientTimeout(
                sock_connect=timeout.get("connect"),
                sock_read=timeout.get("read"),
                connect=timeout.get("pool"),
            ),
            "proxy": str(proxy.url) if proxy else None,
            "proxy_auth": aiohttp.BasicAuth(proxy.auth[0], proxy.auth[1]) if proxy and proxy.auth else None,
            "proxy_headers": proxy.headers if proxy else None,
        }

    async def post(self, body: bytes) -> aiohttp.ClientResponse:
        """Send ``body``; the answer's status and headers (its body unread). A failed send raises what the
        transport raises: ``httpx2``'s exceptions."""
        headers = self._headers.copy()
        headers[self._length_at] = ("content-length", str(len(body)))
        transport = self._transport
        if not isinstance(transport.client, aiohttp.ClientSession):
            transport.client = transport.get_client()  # as the transport makes its session on first use
        with self._map_exceptions():
            response: aiohttp.ClientResponse = await transport.client.request(
                "POST", self._url, headers=headers, data=body or None, **self._options
            )
        return response

    @staticmethod
    def plain_success(response: aiohttp.ClientResponse) -> bool:
        """A 2xx answer whose body needs no decoding and that sets no cookie: one the shortcut may read."""
        headers = response.headers
        return (
            200 <= response.status < 300
            and headers.get("Content-Encoding", "identity").strip().lower() in ("identity", "")
            and "Set-Cookie" not in headers
        )

    def body(self, response: aiohttp.ClientResponse) -> ResponseBody:
        stream = self._stream(response)
        return ResponseBody(aiter(stream), stream.aclose, lambda: httpx2.Headers(response.raw_headers))

    def as_response(
        self, response: aiohttp.ClientResponse, request: httpx2.Request, http: httpx2.AsyncClient
    ) -> httpx2.Response:
        """The answer as the client would have returned it: the transport's response, its cookies kept."""
        extensions = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode()
        made = httpx2.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=self._stream(response),
            request=request,
            extensions=extensions,
        )
        http.cookies.extract_cookies(made)
        return made
