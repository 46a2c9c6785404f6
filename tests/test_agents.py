"""Agent resolution: the default agent, bindings, per-agent model chains and aliases."""

from __future__ import annotations

from typing import Any

import pytest

from bot.config.schema import Config
from bot.errors import ConfigError
from bot.models.agents import (
    AgentModels,
    agent_for,
    agent_ids,
    agent_models,
    aliases,
    default_agent_id,
    default_provider,
)
from bot.models.refs import ModelRef


def _config(**raw: Any) -> Config:
    return Config.model_validate(raw)


BASE_DEFAULTS = {
    "model": {"primary": "anthropic/claude-sonnet-4-5", "fallbacks": ["openai/gpt-5.2"]},
    "imageModel": {"primary": "openai/gpt-5.2", "fallbacks": ["google/gemini-2.5-flash"]},
}


@pytest.mark.parametrize(
    ("agents", "expected"),
    [
        ([], "main"),
        ([{"id": "a"}, {"id": "b"}], "a"),
        ([{"id": "a"}, {"id": "b", "default": True}], "b"),
    ],
)
def test_default_agent_id(agents: list[dict[str, Any]], expected: str) -> None:
    """`default: true` wins, else the first listed, else the implicit `main`."""
    assert default_agent_id(_config(agents={"list": agents})) == expected


def test_agent_ids_include_the_implicit_main() -> None:
    """Without agents.list there is exactly one agent, `main`."""
    assert agent_ids(_config()) == ("main",)
    assert agent_ids(_config(agents={"list": [{"id": "x"}, {"id": "y"}]})) == ("x", "y")


BOUND = _config(
    agents={"list": [{"id": "main", "default": True}, {"id": "coder"}, {"id": "ops"}, {"id": "tg"}]},
    bindings=[
        {"agentId": "ops", "match": {"channel": "discord", "guildId": "42", "chatId": 7}},
        {"agentId": "coder", "match": {"channel": "discord", "guildId": 42}},
        {"agentId": "tg", "match": {"channel": "telegram", "chatId": "-100"}},
    ],
)


@pytest.mark.parametrize(
    ("channel", "chat_id", "guild_id", "expected"),
    [
        ("discord", "7", "42", "ops"),  # every field of the first binding matches
        ("discord", "8", "42", "coder"),  # chat differs: the guild-wide binding
        ("discord", None, "42", "coder"),
        ("discord", "7", "43", "main"),  # another guild: no binding
        ("telegram", "-100", None, "tg"),
        ("telegram", "-101", None, "main"),
        ("console", "-100", None, "main"),  # right chat id, wrong channel
    ],
)
def test_agent_for_uses_the_first_fully_matching_binding(
    channel: str, chat_id: str | None, guild_id: str | None, expected: str
) -> None:
    """A binding applies only when all of its given match fields equal the chat's."""
    assert agent_for(BOUND, channel=channel, chat_id=chat_id, guild_id=guild_id) == expected


def test_binding_without_match_fields_catches_everything() -> None:
    """An empty match is a catch-all, so later bindings never apply."""
    config = _config(
        agents={"list": [{"id": "a"}, {"id": "b"}]},
        bindings=[{"agentId": "b"}, {"agentId": "a", "match": {"channel": "telegram"}}],
    )
    assert agent_for(config, channel="telegram", chat_id="1", guild_id=None) == "b"


def test_agent_models_of_the_implicit_main_are_the_defaults() -> None:
    """With no agents.list, `main` uses agents.defaults as given."""
    models = agent_models(_config(agents={"defaults": BASE_DEFAULTS}), "main")
    assert models == AgentModels(
        primary=ModelRef("anthropic", "claude-sonnet-4-5"),
        fallbacks=(ModelRef("openai", "gpt-5.2"),),
        image_primary=ModelRef("openai", "gpt-5.2"),
        image_fallbacks=(ModelRef("google", "gemini-2.5-flash"),),
    )


@pytest.mark.parametrize(
    ("model", "primary", "fallbacks"),
    [
        (None, "anthropic/claude-sonnet-4-5", ["openai/gpt-5.2"]),
        ("xai/grok-4", "xai/grok-4", ["openai/gpt-5.2"]),  # string form: fallbacks inherited
        ({"primary": "xai/grok-4"}, "xai/grok-4", ["openai/gpt-5.2"]),
        ({"primary": "xai/grok-4", "fallbacks": ["groq/llama"]}, "xai/grok-4", ["groq/llama"]),
        ({"primary": "xai/grok-4", "fallbacks": []}, "xai/grok-4", []),  # explicitly none
        ({"fallbacks": ["groq/llama"]}, "anthropic/claude-sonnet-4-5", ["groq/llama"]),
    ],
)
def test_agent_model_overrides(model: Any, primary: str, fallbacks: list[str]) -> None:
    """An agent's model replaces the primary, and the fallbacks only when it gives a fallbacks key."""
    entry: dict[str, Any] = {"id": "a"} if model is None else {"id": "a", "model": model}
    models = agent_models(_config(agents={"defaults": BASE_DEFAULTS, "list": [entry]}), "a")
    assert str(models.primary) == primary
    assert [str(ref) for ref in models.fallbacks] == fallbacks
    assert str(models.image_primary) == "openai/gpt-5.2"  # image models are the defaults'


def test_agent_models_errors() -> None:
    """No primary anywhere, or an unknown agent, is a ConfigError naming the key."""
    with pytest.raises(ConfigError, match="a primary model is required") as info:
        agent_models(_config(), "main")
    assert info.value.key_path == "agents.defaults.model.primary"
    with pytest.raises(ConfigError, match="no agent `ghost`; known agents: a"):
        agent_models(_config(agents={"defaults": BASE_DEFAULTS, "list": [{"id": "a"}]}), "ghost")
    with pytest.raises(ConfigError) as bad:
        agent_models(_config(agents={"defaults": {"model": "claude"}}), "main")
    assert bad.value.key_path == "agents.defaults.model.primary"


def test_aliases_and_default_provider() -> None:
    """Aliases come from the allowlist entries that have one; the default provider is the primary's."""
    config = _config(
        agents={
            "defaults": {
                "model": "OpenRouter/moonshotai/kimi-k2",
                "models": {"anthropic/claude-opus-4-5": {"alias": "Opus"}, "openai/gpt-5.2": {}},
            },
            "list": [{"id": "main"}, {"id": "b", "model": "xai/grok-4"}],
        }
    )
    assert aliases(config) == {"Opus": ModelRef("anthropic", "claude-opus-4-5")}
    assert aliases(_config()) == {}
    assert default_provider(config, "main") == "openrouter"
    assert default_provider(config, "b") == "xai"
    assert agent_models(config, "main").image_primary is None
