"""What the two SDK clients share: one HTTP connection pool, SDK clients cached per endpoint and key, body text."""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from typing import Generic, Protocol, TypeVar

import httpx2


class _Closable(Protocol):
    async def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


class SdkClientPool(Generic[C]):
    """SDK clients keyed by (endpoint, credential digest, …) over one shared connection pool, closed together."""

    def __init__(self, make_http: Callable[[], httpx2.AsyncClient]) -> None:
        self._make_http = make_http
        self._http: httpx2.AsyncClient | None = None
        self._clients: dict[Hashable, C] = {}

    def http(self) -> httpx2.AsyncClient:
        # One connection pool and one TLS setup for every credential and endpoint of this API mode.
        if self._http is None:
            self._http = self._make_http()
        return self._http

    def get(self, key: Hashable, make: Callable[[httpx2.AsyncClient], C]) -> C:
        client = self._clients.get(key)
        if client is None:
            client = self._clients[key] = make(self.http())
        return client

    async def aclose(self) -> None:
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()
        if self._http is not None:
            http, self._http = self._http, None
            await http.aclose()


def response_text(response: httpx2.Response, body: object) -> str:
    """An error response's body as text, whether or not the SDK read it already."""
    try:
        return response.text
    except httpx2.ResponseNotRead:
        return json_text(body)


def json_text(body: object) -> str:
    if body is None:
        return ""
    return body if isinstance(body, str) else json.dumps(body, default=str)
