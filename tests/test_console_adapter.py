"""The console adapter in-process: its input (a pipe is read on the event loop, line by line, and left as it
was found), a waiting turn's status line on a terminal, and none in JSON output."""

from __future__ import annotations

import asyncio
import io
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from adapters.console import ERASE_LINE, ConsoleAdapter
from bot.app import App
from bot.chat import Incoming, Reply
from bot.failover.reasons import Reason
from tests.app_helpers import running_app
from tests.fakes.clock import FakeClock

ECHO_ONLY = '{agents: {defaults: {model: {primary: "demo/echo"}}}}'


@pytest.fixture
async def resting(state_dir: Path, clock: FakeClock) -> AsyncIterator[App]:
    """The demo bot on echo alone, both profiles resting for echo, the first back in 5 s."""
    async with running_app(state_dir, clock, config=ECHO_ONLY) as app:
        for profile in ("demo:main", "demo:busy"):
            await app.backend("main").record_failure(
                profile, "echo", Reason.RATE_LIMIT, now_ms=clock.now_ms(), retry_after_ms=None
            )
        clock.advance(seconds=55)
        yield app


async def test_a_terminal_shows_the_status_line_until_the_answer_starts(resting: App) -> None:
    """The status line is written, erased when the first text arrives, and the answer follows on that line."""
    out = io.StringIO()
    console = ConsoleAdapter(resting.chat(), stdin=io.StringIO(), stdout=out, interactive=True)
    await console.handle_line("anyone?")
    shown = out.getvalue()
    assert shown.startswith(f"waiting 5s for a rate limit…{ERASE_LINE}bot> [demo] You said: “anyone?”")


async def test_json_output_has_replies_only(resting: App) -> None:
    """``--json``: one object per reply, no status line that could not be taken back."""
    out = io.StringIO()
    console = ConsoleAdapter(resting.chat(), stdin=io.StringIO(), stdout=out, json_mode=True)
    await console.handle_line("anyone?")
    [line] = out.getvalue().splitlines()
    reply = json.loads(line)
    assert (reply["kind"], reply["profile"]) == ("answer", "demo:main")


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
