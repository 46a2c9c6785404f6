"""The console adapter in-process: a waiting turn's status line on a terminal, and none in JSON output."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from adapters.console import ERASE_LINE, ConsoleAdapter
from bot.app import App
from bot.clock import FakeClock
from bot.reasons import Reason
from tests.app_helpers import running_app

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
