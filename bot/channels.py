"""The channel port: what a chat platform plug-in declares (settings, secrets, builder) and what it runs.

The core names no channel. The composition root (``cli/channels.py``) lists the plug-ins and hands them to
config loading, which validates ``channels.<name>`` with each plug-in's settings model and keeps its secret
keys out of the file, and to ``modelbot run``, which builds and starts the enabled ones.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from bot.config.schema import ChannelSections, ChannelSettings

if TYPE_CHECKING:
    from bot.conversation.pipeline import ChatPipeline

__all__ = [
    "CONSOLE",
    "NO_CHANNELS",
    "ChannelAdapter",
    "ChannelPlugin",
    "ChannelRegistry",
    "ChannelSettings",
    "SecretField",
]

# The terminal of `modelbot chat`: a channel the core always knows, with no settings and no plug-in.
CONSOLE = "console"

S = TypeVar("S", bound=ChannelSettings)


class ChannelAdapter(Protocol):
    """A running connection to one platform; ``start`` returns once it is receiving messages."""

    name: str

    async def start(self) -> None:
        """Connect, register commands, begin receiving; raise ``bot.errors.ModelbotError`` on a setup problem."""
        ...

    async def stop(self) -> None:
        """Stop receiving, let in-flight turns finish or cancel them cleanly, disconnect. Idempotent."""
        ...


@dataclass(frozen=True)
class SecretField:
    """A key of the channel's section that holds a secret: only ``${VAR}`` may stand there (``env`` is the
    variable the error message suggests), and its value is redacted from every log line and reply."""

    path: tuple[str, ...]  # under channels.<name>, as the file spells it: ("webhook", "secretToken")
    env: str


@dataclass(frozen=True)
class ChannelPlugin(Generic[S]):
    """One chat platform: its name (the ``channels.<name>`` key and ``Incoming.platform``), its settings model,
    its secret keys, and the builder ``modelbot run`` calls when it is enabled.

    The builder may import the platform's library (seconds): the settings model must not, so that loading a
    config costs nothing for channels that are not enabled.
    """

    name: str
    settings: type[S]
    build: Callable[[S, ChatPipeline], ChannelAdapter]
    secrets: tuple[SecretField, ...] = ()

    def adapter(self, settings: ChannelSettings, chat: ChatPipeline) -> ChannelAdapter:
        """The adapter for ``settings`` (this plug-in's section of the loaded config); starts nothing."""
        if not isinstance(settings, self.settings):
            raise TypeError(f"expected {self.settings.__name__} for channel {self.name}")
        return self.build(settings, chat)


@dataclass(frozen=True)
class ChannelRegistry:
    """The channel plug-ins of this process, in the order they start."""

    plugins: tuple[ChannelPlugin[Any], ...] = ()

    def __post_init__(self) -> None:
        names = [plugin.name for plugin in self.plugins]
        if len(set(names)) != len(names) or CONSOLE in names:
            raise ValueError(f"channel names must be unique and not {CONSOLE!r}: {', '.join(names)}")

    def __iter__(self) -> Iterator[ChannelPlugin[Any]]:
        return iter(self.plugins)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(plugin.name for plugin in self.plugins)

    @property
    def sections(self) -> ChannelSections:
        """``(name, settings model)`` for each plug-in, what ``config_model`` makes the schema from."""
        return tuple((plugin.name, plugin.settings) for plugin in self.plugins)

    def secret_fields(self) -> Iterator[tuple[tuple[str, ...], str]]:
        """Each secret key as a full key path (``("channels", name, ...)``) with its suggested variable."""
        for plugin in self.plugins:
            for secret in plugin.secrets:
                yield ("channels", plugin.name, *secret.path), secret.env

    def with_plugin(self, plugin: ChannelPlugin[Any]) -> ChannelRegistry:
        """This registry and one more channel (a third-party plug-in, or a test's)."""
        return ChannelRegistry((*self.plugins, plugin))


NO_CHANNELS = ChannelRegistry()
