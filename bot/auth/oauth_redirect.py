"""Receives an OAuth login's redirect on this machine (RFC 8252 §7.3: a loopback redirect URI).

A few lines of asyncio instead of an HTTP framework: one GET of one path, answered with a short page.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

from bot.auth.oauth import PastedCode, code_from_query
from bot.errors import OAuthError

LOOPBACK_HOSTS = {"127.0.0.1": "127.0.0.1", "localhost": "127.0.0.1", "::1": "::1"}
READ_TIMEOUT_S = 10.0
MAX_REQUEST_BYTES = 16 * 1024
_PAGE = "<!doctype html><meta charset=utf-8><title>modelbot</title><p>{}</p>"


class LoopbackReceiver:
    """``async with LoopbackReceiver(...) as r: pasted = await r.wait()``; other paths get a 404."""

    def __init__(self, host: str, port: int, path: str, state: str) -> None:
        self.host, self.port, self.path = host, port, path
        self._state = state
        self._result: asyncio.Future[PastedCode] | None = None
        self._server: asyncio.Server | None = None

    @classmethod
    def for_redirect(cls, redirect_uri: str | None, state: str) -> LoopbackReceiver | None:
        """A receiver for an ``http://127.0.0.1:PORT/…`` or ``http://localhost:PORT/…`` redirect, else None."""
        if not redirect_uri:
            return None
        parts = urlsplit(redirect_uri)
        host = parts.hostname or ""
        if parts.scheme != "http" or host not in LOOPBACK_HOSTS:
            return None
        return cls(LOOPBACK_HOSTS[host], parts.port or 80, parts.path or "/", state)

    async def __aenter__(self) -> Self:
        self._result = asyncio.get_running_loop().create_future()
        self._server = await asyncio.start_server(self._handle, self.host, self.port)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def wait(self) -> PastedCode:
        """The code of the first redirect that carries this login's state (an error redirect raises)."""
        assert self._result is not None, "use the receiver in `async with`"
        return await asyncio.shield(self._result)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, text = await self._answer(reader)
        except (TimeoutError, ValueError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            status, text = 400, "That was not a login redirect."
        body = _PAGE.format(html.escape(text)).encode()
        head = f"HTTP/1.1 {status} {'OK' if status == 200 else 'Error'}\r\n"
        head += f"Content-Type: text/html; charset=utf-8\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        with contextlib.suppress(ConnectionError):
            writer.write(head.encode() + body)
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    async def _answer(self, reader: asyncio.StreamReader) -> tuple[int, str]:
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
        if len(head) > MAX_REQUEST_BYTES:
            raise ValueError("request too large")
        method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
        path, _, query = target.partition("?")
        if method != "GET" or path != self.path:
            return 404, "Nothing here."
        assert self._result is not None
        if self._result.done():
            return 200, "This login is already complete; you can close this page."
        try:
            pasted = code_from_query(query)
        except OAuthError as exc:
            self._result.set_exception(exc)
            return 400, f"The login failed: {exc}"
        if pasted.state != self._state:  # another tab or a forged request: not this login's answer
            return 400, "This page belongs to another login attempt."
        self._result.set_result(pasted)
        return 200, "You are logged in. Return to the terminal; you can close this page."
