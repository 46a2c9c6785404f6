"""The built-in providers and how a provider id plus config becomes an ``Endpoint``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from urllib.parse import urlsplit

from bot.config.schema import ApiMode, Config, ProviderConfig
from bot.errors import ConfigError, RefError
from bot.providers.base import Endpoint

# ``Config`` does not know which file it came from; the loader reports the same problems with the path.
_CONFIG_FILE = "config"
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


@dataclass(frozen=True)
class ProviderSpec:
    """What modelbot knows about a provider before any config: where it lives and how it authenticates."""

    id: str
    display_name: str
    base_url: str
    api: ApiMode
    env_vars: tuple[str, ...] = ()  # environment fallbacks for the key, in order of preference
    needs_auth: bool = True
    local: bool = False
    builtin_profiles: tuple[str, ...] = ()  # profiles that exist without any store entry (demo only)


def _spec(
    id: str,
    name: str,
    base_url: str,
    api: ApiMode = "openai-completions",
    env_vars: tuple[str, ...] | None = None,
    *,
    local: bool = False,
) -> ProviderSpec:
    """A cloud provider keyed by ``<ID>_API_KEY`` unless told otherwise; local servers take no key."""
    env = (f"{id.upper()}_API_KEY",) if env_vars is None else env_vars
    return ProviderSpec(id, name, base_url, api, env, needs_auth=not local, local=local)


BUILTIN_PROVIDERS: Mapping[str, ProviderSpec] = MappingProxyType(
    {
        spec.id: spec
        for spec in (
            _spec("openai", "OpenAI", "https://api.openai.com/v1"),
            _spec("anthropic", "Anthropic", "https://api.anthropic.com", "anthropic-messages"),
            _spec("openrouter", "OpenRouter", "https://openrouter.ai/api/v1"),
            _spec(
                "google",
                "Google Gemini",
                "https://generativelanguage.googleapis.com/v1beta/openai",
                env_vars=("GEMINI_API_KEY", "GOOGLE_API_KEY"),
            ),
            _spec("groq", "Groq", "https://api.groq.com/openai/v1"),
            _spec("mistral", "Mistral", "https://api.mistral.ai/v1"),
            _spec("deepseek", "DeepSeek", "https://api.deepseek.com/v1"),
            _spec("xai", "xAI", "https://api.x.ai/v1"),
            _spec("ollama", "Ollama", "http://127.0.0.1:11434/v1", env_vars=(), local=True),
            _spec("lmstudio", "LM Studio", "http://127.0.0.1:1234/v1", env_vars=(), local=True),
            ProviderSpec(
                id="demo",
                display_name="Demo (built-in, offline)",
                base_url="builtin://demo",
                api="demo",
                needs_auth=False,
                local=True,
                builtin_profiles=("demo:main", "demo:busy"),
            ),
        )
    }
)


def provider_config(provider_id: str, config: Config) -> tuple[str, ProviderConfig] | None:
    """The ``models.providers`` entry for a provider; matched case-insensitively (refs are lower-cased)."""
    provider_id = provider_id.strip().lower()
    for key, entry in config.models.providers.items():
        if key.strip().lower() == provider_id:
            return key, entry
    return None


def known_providers(config: Config) -> list[str]:
    """Every provider id a ref may name: the built-in ones and those defined in ``models.providers``."""
    return sorted(set(BUILTIN_PROVIDERS) | {key.strip().lower() for key in config.models.providers})


def _is_loopback(url: str) -> bool:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    return host in _LOOPBACK_HOSTS


def spec_for(provider_id: str, config: Config) -> ProviderSpec:
    """The provider as configured: the built-in spec with config overrides, or a custom provider's spec."""
    provider_id = provider_id.strip().lower()
    found = provider_config(provider_id, config)
    builtin = BUILTIN_PROVIDERS.get(provider_id)
    if found is None:
        if builtin is None:
            import difflib  # noqa: PLC0415 - suggestions only for a mistake

            close = difflib.get_close_matches(provider_id, known_providers(config), n=3, cutoff=0.6)
            hint = f" Did you mean: {', '.join(close)}?" if close else ""
            raise RefError(f'Unknown provider "{provider_id}".{hint}')
        return builtin
    key, entry = found
    if builtin is not None:
        return replace(builtin, base_url=entry.base_url or builtin.base_url, api=entry.api or builtin.api)
    if not entry.base_url or not entry.api:
        raise ConfigError(
            _CONFIG_FILE,
            f"models.providers.{key}",
            "a provider that is not built in needs both baseUrl and api "
            "(openai-completions or anthropic-messages)",
        )
    # A custom server on this machine (vLLM, llama.cpp, …) usually takes no key; anything remote does.
    local = _is_loopback(entry.base_url)
    return ProviderSpec(
        id=provider_id,
        display_name=key,
        base_url=entry.base_url,
        api=entry.api,
        needs_auth=not local,
        local=local,
    )


def endpoint_for(provider_id: str, config: Config, *, timeout_s: float | None = None) -> Endpoint:
    """Where and how to call ``provider_id``: built-in defaults merged with ``models.providers.<id>``."""
    spec = spec_for(provider_id, config)
    found = provider_config(spec.id, config)
    headers = dict(found[1].headers) if found is not None else {}
    defaults = config.agents.defaults
    timeout = defaults.timeout_seconds if timeout_s is None else timeout_s
    return Endpoint(
        provider=spec.id,
        base_url=spec.base_url,
        api=spec.api,
        headers=headers,
        timeout_s=timeout,
        max_answer_s=max(timeout, defaults.max_answer_seconds),
    )
