"""A channel adapter for ``modelbot run`` tests: records its lifecycle and sends one message through the bot."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from bot.channels import ChannelAdapter, ChannelRegistry
from bot.chat import Incoming
from bot.conversation.pipeline import ChatPipeline
from cli.channels import BUILTIN_CHANNELS

MARKER_ENV = "FAKE_CHANNEL_MARKER"  # a file the subprocess tests read the lifecycle from
log = logging.getLogger("tests.fake_channel")


class FakeChannel:
    """Starts by handling one chat message (a full turn through the pipeline), then waits to be stopped."""

    def __init__(
        self,
        chat: ChatPipeline,
        settings: Any,  # the channel's section of the config: TelegramChannel, DiscordChannel
        *,
        name: str = "telegram",
        events: list[str] | None = None,
        fail: bool = False,
    ) -> None:
        self.name = name
        self.chat = chat
        self.settings = settings
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
        token = getattr(self.settings, "bot_token", None) or getattr(self.settings, "token", None)
        log.info("connecting with token %s", token)  # the run's log formatter must redact this
        replies = await self.chat.handle(
            Incoming(platform="telegram", chat_id="42", user_id="7", text="hello")
        )
        self.replies = [reply.text for reply in replies]
        self._record("ready")

    async def stop(self) -> None:
        self._record("stop")


Builder = Callable[[Any, ChatPipeline], ChannelAdapter]


def channels_with(**builders: Builder) -> ChannelRegistry:
    """The built-in channels, with a test's builder in place of the plug-in's for each channel named."""
    return ChannelRegistry(
        tuple(replace(p, build=builders[p.name]) if p.name in builders else p for p in BUILTIN_CHANNELS)
    )


def build_adapter(settings: Any, chat: ChatPipeline) -> FakeChannel:
    return FakeChannel(chat, settings)
