"""The console adapter (``modelbot chat``): one message per stdin line, replies on stdout."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TextIO

from bot.chat import Incoming, Reply
from bot.conversation.pipeline import ChatPipeline

PROMPT = "you> "
ERASE_LINE = "\r\x1b[K"  # back to the line's start and clear it: the status line goes away


class _StreamingSink:
    """Prints deltas as they arrive, and a status line until they do (interactive terminals only)."""

    def __init__(self, out: TextIO) -> None:
        self._out = out
        self.streamed = False
        self._status = False  # a status line is on screen, on the current line

    async def typing(self) -> None:
        return None

    async def status(self, text: str | None) -> None:
        if self._status:
            self._out.write(ERASE_LINE)
            self._status = False
        if text is not None and not self.streamed:
            self._out.write(text)
            self._status = True
        self._out.flush()

    async def delta(self, text: str) -> None:
        if self._status:
            await self.status(None)
        if not self.streamed:
            self._out.write("bot> ")
            self.streamed = True
        self._out.write(text)
        self._out.flush()

    async def deliver(self, replies: Sequence[Reply]) -> None:
        return None  # the adapter prints the replies handle returns


class _QuietSink:
    async def typing(self) -> None:
        return None

    async def status(self, text: str | None) -> None:
        return None  # a status line that cannot be taken back has no place in piped or JSON output

    async def delta(self, text: str) -> None:
        return None

    async def deliver(self, replies: Sequence[Reply]) -> None:
        return None


def reply_json(reply: Reply) -> str:
    """One JSON object per reply: ``text``, ``model`` and ``profile`` (null for command replies), and more."""
    return json.dumps(
        {
            "text": reply.text,
            "model": reply.model,
            "profile": reply.profile,
            "kind": reply.kind,
            "note": reply.note,
        },
        ensure_ascii=False,
    )


class ConsoleAdapter:
    """Reads lines, hands them to the pipeline, prints the replies; the console user is an admin."""

    def __init__(
        self,
        pipeline: ChatPipeline,
        *,
        session: str = "main",
        user: str = "console",
        agent_id: str | None = None,
        json_mode: bool = False,
        stdin: TextIO | None = None,
        stdout: TextIO | None = None,
        interactive: bool | None = None,
        banner: str = "",
    ) -> None:
        self._pipeline = pipeline
        self._session = session
        self._user = user
        self._agent_id = agent_id
        self._json = json_mode
        self._in = stdin if stdin is not None else sys.stdin
        self._out = stdout if stdout is not None else sys.stdout
        self._interactive = (self._in.isatty() and self._out.isatty()) if interactive is None else interactive
        self._banner = banner

    async def run(self) -> int:
        """Until EOF; returns the exit status."""
        if self._interactive and not self._json and self._banner:
            self._out.write(self._banner + "\n")
        async with _lines(self._in) as read_line:
            while True:
                if self._interactive and not self._json:
                    self._out.write(PROMPT)
                    self._out.flush()
                line = await read_line()
                if not line:
                    if self._interactive and not self._json:
                        self._out.write("\n")
                    return 0
                text = line.rstrip("\r\n")
                if not text.strip():
                    continue
                await self.handle_line(text)

    async def handle_line(self, text: str) -> None:
        msg = Incoming(
            platform="console",
            chat_id=self._session,
            user_id=self._user,
            user_name=self._user,
            text=text,
            is_admin=True,
            session_name=self._session,
            agent_id=self._agent_id,
        )
        streaming = self._interactive and not self._json
        sink = _StreamingSink(self._out) if streaming else _QuietSink()
        replies = await self._pipeline.handle(msg, sink)
        for reply in replies:
            self._render(reply, streamed=isinstance(sink, _StreamingSink) and sink.streamed)
        self._out.flush()

    def _render(self, reply: Reply, *, streamed: bool) -> None:
        if self._json:
            self._out.write(reply_json(reply) + "\n")
            return
        if streamed and reply.kind in ("answer", "interrupted"):
            # The text is already on screen; add what the stream could not show.
            tail = f"\n⚠ {reply.text.rsplit('⚠ ', 1)[-1]}" if reply.kind == "interrupted" else ""
            self._out.write(tail + "\n")
            if reply.note:
                self._out.write(reply.note + "\n")
            return
        self._out.write(reply.full_text + "\n")


# No practical limit, as with readline() in a thread: an over-long message gets the pipeline's own answer.
MAX_LINE_BYTES = 1 << 30


@asynccontextmanager
async def _lines(stream: TextIO) -> AsyncIterator[Callable[[], Awaitable[str]]]:
    """A line reader for ``stream`` ("" at its end). A pipe or socket (scripts, ``--json`` drivers) is read
    on the event loop: a worker thread per line cost each turn a thread hand-off both ways. A terminal or a
    file is read in a thread, leaving its blocking mode alone."""
    loop = asyncio.get_running_loop()
    try:
        fd = stream.fileno()
        mode = os.fstat(fd).st_mode
    except (AttributeError, OSError, ValueError):  # StringIO and the like
        mode = 0
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        yield lambda: loop.run_in_executor(None, stream.readline)
        return
    reader = asyncio.StreamReader(limit=MAX_LINE_BYTES, loop=loop)
    # A duplicate descriptor, so that closing the transport leaves sys.stdin open.
    pipe = os.fdopen(os.dup(fd), "rb", buffering=0)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), pipe)
    encoding = getattr(stream, "encoding", None) or "utf-8"

    async def read_line() -> str:
        return (await reader.readline()).decode(encoding, errors="replace")

    try:
        yield read_line
    finally:
        transport.close()
        os.set_blocking(fd, True)  # the descriptor's mode is shared with the duplicate: restore it
