"""The provider clients of a running bot, one per API mode, and their shutdown."""

from __future__ import annotations

import logging
from collections.abc import Mapping

from bot.providers.base import ProviderClient
from bot.providers.demo import DemoClient

log = logging.getLogger(__name__)


def build_clients(*, demo_delay_s: float = 0.0) -> dict[str, ProviderClient]:
    """Every client keyed by its ``api`` mode (the ``models.providers.*.api`` values, plus ``demo``)."""
    # Imported here: the two SDKs take seconds to import, which commands that never call a model skip.
    from bot.providers.anthropic_client import AnthropicMessagesClient  # noqa: PLC0415
    from bot.providers.openai_client import OpenAICompletionsClient  # noqa: PLC0415

    return {
        "openai-completions": OpenAICompletionsClient(),
        "anthropic-messages": AnthropicMessagesClient(),
        "demo": DemoClient(delay_s=demo_delay_s),
    }


async def close_clients(clients: Mapping[str, ProviderClient]) -> None:
    """Close every client; one that fails to close is logged and does not keep the others open."""
    for api, client in clients.items():
        try:
            await client.aclose()
        except Exception:
            log.exception("closing the %s client failed", api)
