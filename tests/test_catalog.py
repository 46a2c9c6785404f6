"""The catalog, allowlist and suggestions (docs/failover.md §1–§2), and the provider registry's endpoints."""

from __future__ import annotations

from typing import Any

import pytest

from bot.config.schema import Config
from bot.errors import ConfigError, InvalidRef, ModelNotAllowed, RefError, UnknownModel
from bot.models.catalog import Catalog, CatalogModel
from bot.models.catalog_data import BUILTIN_MODELS
from bot.models.refs import ModelRef, Selection
from bot.providers.registry import BUILTIN_PROVIDERS, endpoint_for, known_providers, spec_for

SONNET = ModelRef("anthropic", "claude-sonnet-4-5")
OPUS = ModelRef("anthropic", "claude-opus-4-5")
GPT = ModelRef("openai", "gpt-5.2")


def config(data: dict[str, Any]) -> Config:
    """A Config from the file's camelCase shape."""
    return Config.model_validate(data)


def allowlist_config() -> Config:
    """The seed's allowlist example: Sonnet and Opus with aliases."""
    return config(
        {
            "agents": {
                "defaults": {
                    "model": {"primary": "anthropic/claude-sonnet-4-5"},
                    "models": {
                        "anthropic/claude-sonnet-4-5": {"alias": "Sonnet"},
                        "anthropic/claude-opus-4-5": {"alias": "Opus"},
                    },
                }
            }
        }
    )


@pytest.fixture
def builtin() -> Catalog:
    """The catalog of an empty config: built-in models only, no allowlist."""
    return Catalog.from_config(Config())


# --- the built-in data -------------------------------------------------------------------------------


def test_builtin_models_belong_to_builtin_providers() -> None:
    """Every built-in model names a built-in provider, and no ref is listed twice."""
    refs = [(provider, model) for provider, model, *_ in BUILTIN_MODELS]
    assert {provider for provider, _ in refs} <= set(BUILTIN_PROVIDERS)
    assert len(refs) == len(set(refs))


def test_a_family_is_offered_by_two_providers(builtin: Catalog) -> None:
    """claude-sonnet-4-5 exists on anthropic and via openrouter, so the picker can group them."""
    families = [model.ref for model in builtin.models() if model.ref.family == "claude-sonnet-4-5"]
    assert families == [SONNET, ModelRef("openrouter", "anthropic/claude-sonnet-4-5")]


def test_demo_models_are_builtin(builtin: Catalog) -> None:
    """The offline demo provider has echo, story, vision and broken; only vision sees images."""
    demo = {model.ref.model: model for model in builtin.models() if model.ref.provider == "demo"}
    assert set(demo) == {"echo", "story", "vision", "broken"}
    assert [name for name, model in sorted(demo.items()) if model.accepts_images] == ["vision"]
    assert all(model.context_window == 8_192 for model in demo.values())


def test_builtin_metadata(builtin: Catalog) -> None:
    """A built-in entry carries its display name, modalities and context window."""
    model = builtin.get(SONNET)
    assert model is not None
    assert (model.name, model.input, model.context_window, model.source) == (
        "Claude Sonnet 4.5",
        ("text", "image"),
        200_000,
        "builtin",
    )
    assert builtin.accepts_images(SONNET)
    assert not builtin.accepts_images(ModelRef("deepseek", "deepseek-chat"))
    assert not builtin.accepts_images(ModelRef("nowhere", "nothing"))


def test_models_are_sorted(builtin: Catalog) -> None:
    """models() is sorted by provider, then model id."""
    refs = [model.ref for model in builtin.models()]
    assert refs == sorted(refs)


def test_context_window_default(builtin: Catalog) -> None:
    """An unknown model (or one without a window) gets the default the caller gives."""
    assert builtin.context_window(GPT) == 400_000
    assert builtin.context_window(ModelRef("x", "y")) == 32_000
    assert builtin.context_window(ModelRef("x", "y"), default=4_096) == 4_096


# --- resolving what users type -------------------------------------------------------------------------


def test_resolve_known_refs(builtin: Catalog) -> None:
    """Qualified refs, bare names of the default provider and profiles resolve to a Selection."""
    assert builtin.resolve("openai/gpt-5.2", "anthropic") == Selection(GPT, None)
    assert builtin.resolve("claude-opus-4-5", "anthropic") == Selection(OPUS, None)
    assert builtin.resolve("gpt-5.2@openai:work", "openai") == Selection(GPT, "openai:work")
    assert builtin.resolve("openrouter/moonshotai/kimi-k2", "anthropic").ref.model == "moonshotai/kimi-k2"


def test_resolve_alias_case_insensitive() -> None:
    """An alias resolves whatever its case, with a profile kept."""
    catalog = Catalog.from_config(allowlist_config())
    assert catalog.resolve("sonnet", "openai") == Selection(SONNET, None)
    assert catalog.resolve("OPUS@anthropic:work", "openai") == Selection(OPUS, "anthropic:work")
    assert catalog.alias("sOnNeT") == SONNET
    assert catalog.alias("haiku") is None
    assert catalog.aliases() == {"Sonnet": SONNET, "Opus": OPUS}


def test_aliases_returns_a_copy() -> None:
    """Changing the returned dict does not change the catalog."""
    catalog = Catalog.from_config(allowlist_config())
    catalog.aliases()["Sonnet"] = GPT
    assert catalog.alias("sonnet") == SONNET


def test_invalid_syntax_raises_invalid_ref(builtin: Catalog) -> None:
    """Bad syntax is InvalidRef, not UnknownModel."""
    with pytest.raises(InvalidRef):
        builtin.resolve("anthropic/", "anthropic")


def test_misspelling_suggests_and_never_switches(builtin: Catalog) -> None:
    """A typo raises UnknownModel naming what was typed, with the intended model among ≤3 suggestions."""
    with pytest.raises(UnknownModel) as info:
        builtin.resolve("claude-sonet-4-5", "anthropic")
    error = info.value
    assert error.ref == "anthropic/claude-sonet-4-5"
    assert error.suggestions[0] == "anthropic/claude-sonnet-4-5"
    assert "openrouter/anthropic/claude-sonnet-4-5" in error.suggestions
    assert len(error.suggestions) <= 3
    assert str(error).startswith('Unknown model "anthropic/claude-sonet-4-5". Did you mean: ')


def test_case_difference_is_unknown_with_exact_suggestion(builtin: Catalog) -> None:
    """Model ids keep their case: a wrong case is reported with the right spelling first, not switched."""
    with pytest.raises(UnknownModel) as info:
        builtin.resolve("openai/GPT-5.2", "anthropic")
    assert info.value.suggestions[0] == "openai/gpt-5.2"


@pytest.mark.parametrize(
    ("typed", "expected"),
    [
        ("gpt-5.2", "openai/gpt-5.2"),  # right model, wrong default provider
        ("openrouter/kimi-k2", "openrouter/moonshotai/kimi-k2"),  # forgot the vendor segment
        ("antropic/claude-opus-4-5", "anthropic/claude-opus-4-5"),  # misspelled provider
        ("anthropic/opus", "anthropic/claude-opus-4-5"),  # a fragment of the id
        ("ech", "demo/echo"),
    ],
)
def test_suggestions_are_relevant(builtin: Catalog, typed: str, expected: str) -> None:
    """The best suggestion is the model the user evidently meant."""
    with pytest.raises(UnknownModel) as info:
        builtin.resolve(typed, "anthropic")
    assert info.value.suggestions[0] == expected
    assert len(info.value.suggestions) <= 3


def test_bare_name_does_not_suggest_every_model_of_the_default_provider(builtin: Catalog) -> None:
    """The default provider glued onto a bare typo does not make its unrelated models look close."""
    with pytest.raises(UnknownModel) as info:
        builtin.resolve("echo2", "anthropic")
    assert info.value.suggestions == ("demo/echo",)


def test_gibberish_gets_no_suggestions(builtin: Catalog) -> None:
    """Nothing close: the error has no 'Did you mean'."""
    with pytest.raises(UnknownModel) as info:
        builtin.resolve("zzqxv/wxyz", "anthropic")
    assert info.value.suggestions == ()
    assert str(info.value) == 'Unknown model "zzqxv/wxyz".'


# --- the allowlist -------------------------------------------------------------------------------------


def test_no_allowlist_allows_everything(builtin: Catalog) -> None:
    """Without agents.defaults.models every known model may be chosen."""
    assert builtin.allowlist() is None
    assert builtin.is_allowed(GPT)


def test_allowlist_rejects_with_exact_text() -> None:
    """A known model outside the allowlist gets exactly the sentence of docs/failover.md §2."""
    catalog = Catalog.from_config(allowlist_config())
    assert catalog.allowlist() == frozenset({SONNET, OPUS})
    with pytest.raises(ModelNotAllowed) as info:
        catalog.resolve("openai/gpt-5.2", "anthropic")
    assert str(info.value) == 'Model "openai/gpt-5.2" is not allowed. Use /model to list available models.'
    assert catalog.resolve("anthropic/claude-opus-4-5", "anthropic") == Selection(OPUS, None)


def test_empty_allowlist_allows_nothing() -> None:
    """``models: {}`` is an allowlist with no entries, unlike a missing key."""
    catalog = Catalog.from_config(config({"agents": {"defaults": {"models": {}}}}))
    assert catalog.allowlist() == frozenset()
    with pytest.raises(ModelNotAllowed):
        catalog.resolve("anthropic/claude-sonnet-4-5", "anthropic")


def test_unknown_model_under_allowlist_suggests_only_allowed() -> None:
    """With an allowlist, suggestions never offer a model the user could not pick."""
    catalog = Catalog.from_config(allowlist_config())
    with pytest.raises(UnknownModel) as info:
        catalog.resolve("claude-sonet-4-5", "anthropic")
    assert info.value.suggestions[0] == "anthropic/claude-sonnet-4-5"
    allowed = {"anthropic/claude-sonnet-4-5", "anthropic/claude-opus-4-5", "Sonnet", "Opus"}
    assert set(info.value.suggestions) <= allowed
    with pytest.raises(UnknownModel) as info:
        catalog.resolve("openai/gpt-5.3", "anthropic")
    assert info.value.suggestions == ()


def test_misspelled_alias_suggests_the_alias() -> None:
    """A typo of an alias suggests the alias itself, which the user can type back."""
    catalog = Catalog.from_config(allowlist_config())
    with pytest.raises(UnknownModel) as info:
        catalog.resolve("sonet", "anthropic")
    assert info.value.suggestions == ("Sonnet",)


def test_selectable_without_allowlist_filters_by_provider(builtin: Catalog) -> None:
    """The picker's refs are the models of the providers the caller says are usable."""
    refs = builtin.selectable(["demo", "Anthropic"])
    assert {ref.provider for ref in refs} == {"anthropic", "demo"}
    assert SONNET in refs
    assert refs == sorted(refs)
    assert builtin.selectable([]) == []


def test_selectable_with_allowlist_is_the_allowlist() -> None:
    """With an allowlist the picker offers exactly its models."""
    assert Catalog.from_config(allowlist_config()).selectable(["openai"]) == [OPUS, SONNET]


# --- config additions and overrides ------------------------------------------------------------------


def test_provider_models_override_only_given_fields() -> None:
    """An override of the context window keeps the built-in name and image input."""
    override = {"id": "claude-sonnet-4-5", "contextWindow": 100_000}
    catalog = Catalog.from_config(config({"models": {"providers": {"anthropic": {"models": [override]}}}}))
    assert catalog.get(SONNET) == CatalogModel(
        SONNET, "Claude Sonnet 4.5", ("text", "image"), 100_000, 64_000, "config"
    )


def test_provider_models_can_turn_images_off() -> None:
    """An explicit input list replaces the built-in one."""
    catalog = Catalog.from_config(
        config({"models": {"providers": {"openai": {"models": [{"id": "gpt-5.2", "input": ["text"]}]}}}})
    )
    assert not catalog.accepts_images(GPT)


def test_provider_models_add_new_models() -> None:
    """A model only in config is known with its own metadata, even on a custom provider."""
    catalog = Catalog.from_config(
        config(
            {
                "models": {
                    "providers": {
                        "ollama": {"models": [{"id": "llama3.3:70b", "contextWindow": 65_536}]},
                        "MyProxy": {
                            "baseUrl": "https://llm.example/v1",
                            "api": "openai-completions",
                            "models": [{"id": "vendor/Big-1", "name": "Big", "input": ["text", "image"]}],
                        },
                    }
                }
            }
        )
    )
    llama = ModelRef("ollama", "llama3.3:70b")
    assert catalog.context_window(llama) == 65_536
    assert catalog.get(llama) == CatalogModel(llama, "llama3.3:70b", ("text",), 65_536, None, "config")
    big = catalog.resolve("myproxy/vendor/Big-1", "anthropic").ref
    assert catalog.get(big) == CatalogModel(big, "Big", ("text", "image"), None, None, "config")


def test_models_the_operator_named_are_known() -> None:
    """Primary, fallbacks, image models and per-agent models exist even if no catalog lists them."""
    catalog = Catalog.from_config(
        config(
            {
                "agents": {
                    "defaults": {
                        "model": {"primary": "acme/brain-1", "fallbacks": ["acme/brain-0"]},
                        "imageModel": {"primary": "acme/eyes-1"},
                    },
                    "list": [{"id": "ops", "model": "acme/ops-1"}],
                }
            }
        )
    )
    for name in ("brain-1", "brain-0", "ops-1"):
        model = catalog.get(ModelRef("acme", name))
        assert model == CatalogModel(ModelRef("acme", name), name, ("text",), None, None, "config")
    assert catalog.accepts_images(ModelRef("acme", "eyes-1"))
    assert catalog.context_window(ModelRef("acme", "brain-1")) == 32_000
    assert catalog.allowlist() is None


def test_operator_naming_a_builtin_keeps_its_metadata() -> None:
    """Listing a built-in model in the allowlist does not reset its vision or context window."""
    catalog = Catalog.from_config(allowlist_config())
    assert catalog.accepts_images(SONNET)
    assert catalog.context_window(SONNET) == 200_000


@pytest.mark.parametrize(
    ("data", "key_path"),
    [
        ({"agents": {"defaults": {"model": {"primary": "no-provider"}}}}, "agents.defaults.model.primary"),
        (
            {"agents": {"defaults": {"model": {"fallbacks": ["a/b", "x/"]}}}},
            "agents.defaults.model.fallbacks[1]",
        ),
        ({"agents": {"defaults": {"models": {"a/b@a:c": {}}}}}, 'agents.defaults.models["a/b@a:c"]'),
        ({"agents": {"list": [{"id": "x", "model": "/m"}]}}, "agents.list[0].model.primary"),
    ],
)
def test_bad_refs_in_config_name_the_key(data: dict[str, Any], key_path: str) -> None:
    """A malformed ref in config is a ConfigError naming the key path."""
    with pytest.raises(ConfigError) as info:
        Catalog.from_config(config(data))
    assert info.value.key_path == key_path


# --- providers and endpoints ---------------------------------------------------------------------------


def test_builtin_endpoints() -> None:
    """Built-in providers have their documented base URL and API mode; the timeout comes from config."""
    openai = endpoint_for("openai", Config())
    assert (openai.provider, openai.base_url, openai.api, dict(openai.headers), openai.timeout_s) == (
        "openai",
        "https://api.openai.com/v1",
        "openai-completions",
        {},
        120.0,
    )
    assert endpoint_for("anthropic", Config()).api == "anthropic-messages"
    assert (
        endpoint_for("google", Config()).base_url == "https://generativelanguage.googleapis.com/v1beta/openai"
    )
    assert endpoint_for("demo", Config()).base_url == "builtin://demo"
    assert endpoint_for("openai", Config(), timeout_s=5.0).timeout_s == 5.0


def test_builtin_auth_facts() -> None:
    """Env fallbacks and which providers need no key."""
    assert BUILTIN_PROVIDERS["openai"].env_vars == ("OPENAI_API_KEY",)
    assert BUILTIN_PROVIDERS["google"].env_vars == ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    assert BUILTIN_PROVIDERS["openrouter"].env_vars == ("OPENROUTER_API_KEY",)
    assert sorted(p.id for p in BUILTIN_PROVIDERS.values() if not p.needs_auth) == [
        "demo",
        "lmstudio",
        "ollama",
    ]
    assert BUILTIN_PROVIDERS["ollama"].local
    assert BUILTIN_PROVIDERS["demo"].builtin_profiles == ("demo:main", "demo:busy")
    assert all(not p.builtin_profiles for p in BUILTIN_PROVIDERS.values() if p.id != "demo")


def test_config_overrides_merge_into_builtin() -> None:
    """baseUrl and headers from config replace the defaults; an unset api keeps the built-in one."""
    cfg = config(
        {
            "agents": {"defaults": {"timeoutSeconds": 30}},
            "models": {
                "providers": {"OpenAI": {"baseUrl": "https://proxy.example/v1", "headers": {"X-T": "1"}}}
            },
        }
    )
    endpoint = endpoint_for("openai", cfg)
    assert (endpoint.base_url, endpoint.api, dict(endpoint.headers), endpoint.timeout_s) == (
        "https://proxy.example/v1",
        "openai-completions",
        {"X-T": "1"},
        30.0,
    )


def test_custom_provider_endpoint() -> None:
    """A provider only in config works when it has baseUrl and api; a loopback one needs no key."""
    cfg = config(
        {
            "models": {
                "providers": {"vllm": {"baseUrl": "http://localhost:8000/v1", "api": "openai-completions"}}
            }
        }
    )
    endpoint = endpoint_for("vllm", cfg)
    assert (endpoint.base_url, endpoint.api) == ("http://localhost:8000/v1", "openai-completions")
    assert not spec_for("vllm", cfg).needs_auth
    assert "vllm" in known_providers(cfg)
    remote = config(
        {"models": {"providers": {"corp": {"baseUrl": "https://llm.corp/v1", "api": "anthropic-messages"}}}}
    )
    assert spec_for("corp", remote).needs_auth


@pytest.mark.parametrize("entry", [{"baseUrl": "https://x.example/v1"}, {"api": "openai-completions"}])
def test_custom_provider_without_base_url_or_api(entry: dict[str, Any]) -> None:
    """A custom provider missing baseUrl or api is a ConfigError naming models.providers.<id>."""
    with pytest.raises(ConfigError) as info:
        endpoint_for("corp", config({"models": {"providers": {"corp": entry}}}))
    assert info.value.key_path == "models.providers.corp"
    assert "baseUrl" in str(info.value)


def test_unknown_provider_suggests_close_ids() -> None:
    """An unknown provider is a RefError that names it and offers close provider ids."""
    with pytest.raises(RefError) as info:
        endpoint_for("opnai", Config())
    assert str(info.value) == 'Unknown provider "opnai". Did you mean: openai?'
    with pytest.raises(RefError, match=r'^Unknown provider "zzz"\.$'):
        endpoint_for("zzz", Config())
