"""A channel adapter for ``modelbot run`` tests: records its lifecycle and sends one message through the bot."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from bot.app import App
from bot.chat import Incoming

MARKER_ENV = "FAKE_CHANNEL_MARKER"  # a file the subprocess tests read the lifecycle from
log = logging.getLogger("tests.fake_channel")


class FakeChannel:
    """Starts by handling one chat message (a full turn through the pipeline), then waits to be stopped."""

    def __init__(
        self, app: App, *, name: str = "telegram", events: list[str] | None = None, fail: bool = False
    ) -> None:
        self.name = name
        self.app = app
        self.events = [] if events is None else events
        self.fail = fail
        self.replies: list[str] = []

    def _record(self, event: str) -> None:
        self.events.append(f"{self.name}:{event}")
        marker = os.environ.get(MARKER_ENV)
        if marker:
            with Path(marker).open("a", encoding="utf-8") as f:
                f.write(f"{self.name}:{event}\n")

    async def start(self) -> None:
        self._record("start")
        if self.fail:
            raise RuntimeError("the fake platform refused the connection")
        token = self.app.loaded.config.channels.telegram.bot_token
        log.info("connecting with token %s", token)  # the run's log formatter must redact this
        replies = await self.app.chat().handle(
            Incoming(platform="telegram", chat_id="42", user_id="7", text="hello")
        )
        self.replies = [reply.text for reply in replies]
        self._record("ready")

    async def stop(self) -> None:
        self._record("stop")


def build_adapter(app: App) -> FakeChannel:
    return FakeChannel(app)
