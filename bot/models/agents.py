"""Which agent answers a chat, and which models that agent uses: pure functions over ``Config``."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from bot.config.schema import Config
from bot.errors import ConfigError, InvalidRef
from bot.models.refs import ModelRef, parse_model_ref

DEFAULT_AGENT_ID = "main"
_CONFIG = "config"  # a Config object does not know its file; the loader has already named it at load


@dataclass(frozen=True)
class AgentModels:
    """The model chain of one agent, parsed."""

    primary: ModelRef
    fallbacks: tuple[ModelRef, ...]
    image_primary: ModelRef | None
    image_fallbacks: tuple[ModelRef, ...]


def default_agent_id(config: Config) -> str:
    """The agent with ``default: true``, else the first listed, else ``main``."""
    for agent in config.agents.list:
        if agent.default:
            return agent.id
    return config.agents.list[0].id if config.agents.list else DEFAULT_AGENT_ID


def agent_ids(config: Config) -> tuple[str, ...]:
    """Every agent id; with no ``agents.list`` there is the one implicit agent ``main``."""
    return tuple(agent.id for agent in config.agents.list) or (DEFAULT_AGENT_ID,)


def agent_for(config: Config, *, channel: str, chat_id: str | None, guild_id: str | None) -> str:
    """The first binding whose every given match field equals the chat's; else the default agent."""
    for binding in config.bindings:
        match = binding.match
        if match.channel is not None and match.channel != channel:
            continue
        if match.chat_id is not None and match.chat_id != chat_id:
            continue
        if match.guild_id is not None and match.guild_id != guild_id:
            continue
        return binding.agent_id
    return default_agent_id(config)


def agent_models(config: Config, agent_id: str) -> AgentModels:
    """An agent's chain: its own ``model`` overrides the defaults' primary, and their fallbacks if it gives any."""
    defaults = config.agents.defaults
    primary, primary_path = defaults.model.primary, "agents.defaults.model.primary"
    fallbacks, fallbacks_path = defaults.model.fallbacks, "agents.defaults.model.fallbacks"
    index = _agent_index(config, agent_id)
    own = config.agents.list[index].model if index is not None else None
    if own is not None:
        if own.primary is not None:
            primary, primary_path = own.primary, f"agents.list[{index}].model.primary"
        # Only an explicit ``fallbacks`` key replaces the defaults' list; ``model: "p/m"`` inherits it.
        if "fallbacks" in own.model_fields_set:
            fallbacks, fallbacks_path = own.fallbacks, f"agents.list[{index}].model.fallbacks"
    if primary is None:
        raise ConfigError(_CONFIG, "agents.defaults.model.primary", "a primary model is required")
    image = defaults.image_model
    return AgentModels(
        primary=_ref(primary, primary_path),
        fallbacks=_refs(fallbacks, fallbacks_path),
        image_primary=_ref(image.primary, "agents.defaults.imageModel.primary") if image.primary else None,
        image_fallbacks=_refs(image.fallbacks, "agents.defaults.imageModel.fallbacks"),
    )


def aliases(config: Config) -> dict[str, ModelRef]:
    """Alias (as written) ⇒ model, from ``agents.defaults.models[*].alias``."""
    models = config.agents.defaults.models or {}
    return {
        entry.alias.strip(): _ref(key, f'agents.defaults.models["{key}"]')
        for key, entry in models.items()
        if entry.alias is not None and entry.alias.strip()
    }


def default_provider(config: Config, agent_id: str) -> str:
    """The provider of the agent's primary model: what a bare model name (no '/') belongs to."""
    return agent_models(config, agent_id).primary.provider


def _agent_index(config: Config, agent_id: str) -> int | None:
    """Where the agent is in ``agents.list``; None for the implicit ``main`` of a config without a list."""
    for index, agent in enumerate(config.agents.list):
        if agent.id == agent_id:
            return index
    if not config.agents.list and agent_id == DEFAULT_AGENT_ID:
        return None
    known = ", ".join(agent_ids(config))
    raise ConfigError(_CONFIG, "agents.list", f"no agent `{agent_id}`; known agents: {known}")


@functools.lru_cache(maxsize=512)  # config refs only: a few per agent, parsed on every turn otherwise
def _ref(text: str, key_path: str) -> ModelRef:
    try:
        return parse_model_ref(text)
    except InvalidRef as exc:
        raise ConfigError(_CONFIG, key_path, f"expected a model as provider/model: {exc}") from None


def _refs(texts: tuple[str, ...], key_path: str) -> tuple[ModelRef, ...]:
    return tuple(_ref(text, f"{key_path}[{i}]") for i, text in enumerate(texts))
