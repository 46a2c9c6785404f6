"""The console adapter's input: a pipe is read on the event loop, line by line, and left as it was found."""

from __future__ import annotations

import asyncio
import io
import os
from typing import Any

from adapters.console import ConsoleAdapter
from bot.chat import Incoming, Reply


class Echo:
    """Stands in for the pipeline: answers each message with its own text."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    async def handle(self, msg: Incoming, sink: Any = None) -> list[Reply]:
        self.seen.append(msg.text)
        return [Reply(msg.text.upper())]


async def test_a_pipe_is_read_line_by_line_whatever_its_chunks() -> None:
    """Lines split across writes, CRLF endings, blank lines and UTF-8 arrive as the messages they are; at EOF
    the adapter returns and the descriptor is blocking again."""
    read_fd, write_fd = os.pipe()
    echo = Echo()
    out = io.StringIO()
    with os.fdopen(read_fd, "r", encoding="utf-8") as stdin:
        adapter = ConsoleAdapter(echo, stdin=stdin, stdout=out, json_mode=True)  # type: ignore[arg-type]
        running = asyncio.create_task(adapter.run())
        for chunk in (b"hel", b"lo\r\n\n", "gr\u00fc".encode()[:3], "gr\u00fc".encode()[3:] + b"n\n"):
            os.write(write_fd, chunk)
            await asyncio.sleep(0.01)
        os.close(write_fd)
        assert await asyncio.wait_for(running, 5) == 0
        assert os.get_blocking(read_fd)
    assert echo.seen == ["hello", "gr\u00fcn"]
    assert [line.split('"')[3] for line in out.getvalue().splitlines()] == ["HELLO", "GR\u00dcN"]
