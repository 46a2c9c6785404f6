"""A 2xx response being read: its body's chunks as they arrive, its headers on demand, and its close."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping


class ResponseBody:
    """What the provider clients read of an answer, from ``httpx2`` or straight from aiohttp alike.

    ``headers`` is made when asked for (only an error met inside the stream reads it).
    """

    __slots__ = ("_close", "_headers", "chunks")

    def __init__(
        self,
        chunks: AsyncIterator[bytes],
        close: Callable[[], Awaitable[None]],
        headers: Callable[[], Mapping[str, str]],
    ) -> None:
        self.chunks = chunks
        self._close = close
        self._headers = headers

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers()

    async def aclose(self) -> None:
        await self._close()
