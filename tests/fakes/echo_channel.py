"""A made-up channel plug-in, written the way a newcomer adds one: settings, a secret, a builder, no core edit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from bot.channels import ChannelPlugin, ChannelSettings, SecretField
from bot.chat import Incoming

if TYPE_CHECKING:
    from bot.conversation.pipeline import ChatPipeline


class EchoSettings(ChannelSettings):
    """``channels.echo``: where the echo channel says its one line, and the key it would connect with."""

    room: Annotated[str, Field(min_length=1)] = "lobby"
    greeting: str = "hello from echo"
    api_key: str | None = None  # a secret: only ${VAR} may stand in the file


class EchoAdapter:
    """Starts by sending its greeting through the bot (a whole turn), then waits to be stopped."""

    name = "echo"

    def __init__(self, settings: EchoSettings, chat: ChatPipeline) -> None:
        self.settings = settings
        self.chat = chat
        self.events: list[str] = []
        self.replies: list[str] = []

    async def start(self) -> None:
        self.events.append("start")
        message = Incoming(
            platform="echo", chat_id=self.settings.room, user_id="u1", text=self.settings.greeting
        )
        self.replies = [reply.text for reply in await self.chat.handle(message)]
        self.events.append("ready")

    async def stop(self) -> None:
        self.events.append("stop")


def echo_plugin(built: list[EchoAdapter] | None = None) -> ChannelPlugin[EchoSettings]:
    """The echo channel's plug-in; the adapters its builder makes are appended to ``built``."""

    def build(settings: EchoSettings, chat: ChatPipeline) -> EchoAdapter:
        adapter = EchoAdapter(settings, chat)
        if built is not None:
            built.append(adapter)
        return adapter

    return ChannelPlugin(
        name="echo", settings=EchoSettings, build=build, secrets=(SecretField(("apiKey",), "ECHO_API_KEY"),)
    )
