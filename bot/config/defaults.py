"""The built-in default config (docs/configuration.md §6): the offline demo, or the providers whose keys are in the env."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

# The demo provider (bot/providers/demo.py) answers offline; its models and profiles are fixed.
DEMO_PROVIDER = "demo"
DEMO_ECHO = "demo/echo"
DEMO_STORY = "demo/story"
DEMO_VISION = "demo/vision"  # accepts images
DEMO_BROKEN = "demo/broken"  # always fails with a 503, to show fallback
DEMO_MODELS: tuple[str, ...] = (DEMO_ECHO, DEMO_STORY, DEMO_VISION, DEMO_BROKEN)
DEMO_PROFILES: tuple[str, ...] = ("demo:main", "demo:busy")  # busy is scripted to be rate-limited

DEMO_PRIMARY = DEMO_ECHO
DEMO_FALLBACKS: tuple[str, ...] = (DEMO_STORY,)
DEMO_IMAGE_PRIMARY = DEMO_VISION

# Env var ⇒ the model it makes the default, in order of preference: the first key found is the primary.
ENV_PROVIDER_MODELS: tuple[tuple[str, str], ...] = (
    ("ANTHROPIC_API_KEY", "anthropic/claude-sonnet-5-5"),
    ("OPENAI_API_KEY", "openai/gpt-5.2"),
    ("OPENROUTER_API_KEY", "openrouter/anthropic/claude-sonnet-4.5"),
    ("GEMINI_API_KEY", "google/gemini-2.5-flash"),
    ("GROQ_API_KEY", "groq/llama-3.3-70b-versatile"),
    ("MISTRAL_API_KEY", "mistral/mistral-large-latest"),
    ("DEEPSEEK_API_KEY", "deepseek/deepseek-chat"),
    ("XAI_API_KEY", "xai/grok-4"),
)


def env_models(env: Mapping[str, str] | None = None) -> tuple[str, ...]:
    """The default model of every provider whose key is set (non-empty) in ``env``, in preference order."""
    env = os.environ if env is None else env
    return tuple(ref for name, ref in ENV_PROVIDER_MODELS if env.get(name, "").strip())


def builtin_default(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The raw config used when there is no config file (camelCase keys, as in a file).

    With provider keys in the env their models form the chain, and ``demo/echo`` stays last so the bot
    still answers offline; with none, the chain is all demo, including an image model.
    """
    found = env_models(env)
    if not found:
        return {
            "agents": {
                "defaults": {
                    "model": {"primary": DEMO_PRIMARY, "fallbacks": list(DEMO_FALLBACKS)},
                    "imageModel": {"primary": DEMO_IMAGE_PRIMARY},
                }
            }
        }
    return {
        "agents": {
            "defaults": {
                "model": {"primary": found[0], "fallbacks": [*found[1:], DEMO_ECHO]},
            }
        }
    }


def with_default_model(raw: dict[str, Any], env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Give a config that names no primary model the built-in default's chain, as if there were no file.

    Agents with their own primary need none; a file's own ``fallbacks`` and ``imageModel`` are kept.
    Returns a new dict; wrongly typed sections are returned untouched for validation to report.
    """
    agents = raw.get("agents", {})
    defaults = agents.get("defaults", {}) if isinstance(agents, dict) else None
    if not isinstance(agents, dict) or not isinstance(defaults, dict):
        return raw
    model = defaults.get("model")
    if model is not None and (not isinstance(model, dict) or model.get("primary")):
        return raw  # a primary is named (or the value is wrong, which validation reports)
    listed = agents.get("list", [])
    if isinstance(listed, list) and listed and all(_names_primary(agent) for agent in listed):
        return raw  # every agent brings its own primary, so the defaults' one would never be used
    builtin = builtin_default(env)["agents"]["defaults"]
    chain = {**model} if isinstance(model, dict) else {}
    chain["primary"] = builtin["model"]["primary"]
    chain.setdefault("fallbacks", builtin["model"]["fallbacks"])
    filled = {**defaults, "model": chain}
    if model is None and "imageModel" in builtin and "imageModel" not in defaults:
        filled["imageModel"] = builtin["imageModel"]
    return {**raw, "agents": {**agents, "defaults": filled}}


def _names_primary(agent: object) -> bool:
    model = agent.get("model") if isinstance(agent, dict) else None
    return isinstance(model, str) or (isinstance(model, dict) and bool(model.get("primary")))
