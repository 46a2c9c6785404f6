"""The provider clients of a running bot, one per API mode, and their shutdown."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping

from bot.providers.base import ProviderClient
from bot.providers.demo import DemoClient

log = logging.getLogger("modelbot.providers")


class ProviderClients(Mapping[str, ProviderClient]):
    """The clients by ``api`` mode, each created on first use, so their SDK is imported only when needed.

    The openai and anthropic SDKs take one to three seconds and ~55 MB to import: a bot on the demo provider
    alone never pays for them (``App.prepare_clients`` imports a serving bot's ahead of its first turn).
    """

    def __init__(self, factories: Mapping[str, Callable[[], ProviderClient]]) -> None:
        self._factories = dict(factories)
        self._made: dict[str, ProviderClient] = {}

    def __getitem__(self, api: str) -> ProviderClient:
        client = self._made.get(api)
        if client is None:
            client = self._made[api] = self._factories[api]()
        return client

    def __setitem__(self, api: str, client: ProviderClient) -> None:
        """Put a ready client in place (tests swap in scripted ones; embedders add their own API modes)."""
        self._factories[api] = lambda: client
        self._made[api] = client

    def __iter__(self) -> Iterator[str]:
        return iter(self._factories)

    def __len__(self) -> int:
        return len(self._factories)

    def created(self) -> dict[str, ProviderClient]:
        """The clients made so far (the ones that need closing)."""
        return dict(self._made)


def _openai() -> ProviderClient:
    from bot.providers.openai_client import OpenAICompletionsClient  # noqa: PLC0415 - see ProviderClients

    return OpenAICompletionsClient()


def _anthropic() -> ProviderClient:
    from bot.providers.anthropic_client import AnthropicMessagesClient  # noqa: PLC0415 - see ProviderClients

    return AnthropicMessagesClient()


def build_clients(*, demo_delay_s: float = 0.0) -> ProviderClients:
    """Every client keyed by its ``api`` mode (the ``models.providers.*.api`` values, plus ``demo``)."""
    return ProviderClients(
        {
            "openai-completions": _openai,
            "anthropic-messages": _anthropic,
            "demo": lambda: DemoClient(delay_s=demo_delay_s),
        }
    )


async def close_clients(clients: Mapping[str, ProviderClient]) -> None:
    """Close every client that exists; one that fails to close is logged and does not keep the others open."""
    made = clients.created() if isinstance(clients, ProviderClients) else dict(clients)
    for api, client in made.items():
        try:
            await client.aclose()
        except Exception:
            log.exception("closing the %s client failed", api)
