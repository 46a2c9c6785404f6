"""The model catalog: which models exist, what they accept, their aliases and the allowlist (docs/failover.md §1–§2)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from bot.config.schema import Config, InputKind, ModelChain, ProviderModel
from bot.errors import ConfigError, InvalidRef, ModelNotAllowed, UnknownModel
from bot.models.catalog_data import BUILTIN_MODELS, TEXT, VISION
from bot.models.refs import ModelRef, Selection, parse_model_ref, parse_ref, resolve_ref

MAX_SUGGESTIONS = 3
DEFAULT_CONTEXT_WINDOW = 32_000
# Below this similarity a "suggestion" is noise: "gpt-5" should not be offered for "claude".
_SUGGESTION_CUTOFF = 0.6
# "opus" is far from "claude-opus-4-5" by edit distance yet plainly means it.
_MIN_FRAGMENT = 3
_FRAGMENT_SCORE = 0.75
# ``Config`` does not know which file it came from; the loader reports the same problems with the path.
_CONFIG_FILE = "config"

Source = Literal["builtin", "config"]


@dataclass(frozen=True)
class CatalogModel:
    """One model the bot can name: its ref, display name, input modalities and limits."""

    ref: ModelRef
    name: str
    input: tuple[InputKind, ...] = TEXT
    context_window: int | None = None
    max_tokens: int | None = None
    source: Source = "builtin"

    @property
    def accepts_images(self) -> bool:
        return "image" in self.input


def builtin_models() -> list[CatalogModel]:
    """The built-in catalog as ``CatalogModel`` values."""
    return [
        CatalogModel(ModelRef(provider, model), name, inputs, context, max_tokens, "builtin")
        for provider, model, name, inputs, context, max_tokens in BUILTIN_MODELS
    ]


def _parse(text: str, key_path: str) -> ModelRef:
    try:
        return parse_model_ref(text)
    except InvalidRef as exc:
        raise ConfigError(_CONFIG_FILE, key_path, f"a model written as provider/model ({exc})") from exc


def _merge(base: CatalogModel | None, ref: ModelRef, entry: ProviderModel) -> CatalogModel:
    """A config entry overrides only the fields it sets, so ``{id, contextWindow}`` keeps built-in vision."""
    given = entry.model_fields_set
    if base is None:
        base = CatalogModel(ref, entry.id, TEXT, None, None, "config")
    return CatalogModel(
        ref=ref,
        name=entry.name if "name" in given and entry.name else base.name,
        input=entry.input if "input" in given else base.input,
        context_window=entry.context_window if "context_window" in given else base.context_window,
        max_tokens=entry.max_tokens if "max_tokens" in given else base.max_tokens,
        source="config",
    )


def _chain(chain: ModelChain | None, path: str) -> Iterator[tuple[str, str]]:
    if chain is None:
        return
    if chain.primary:
        yield f"{path}.primary", chain.primary
    for index, text in enumerate(chain.fallbacks):
        yield f"{path}.fallbacks[{index}]", text


def _operator_refs(config: Config) -> Iterator[tuple[str, str, bool]]:
    """Every model the operator named outside the allowlist: (key path, text, named as an image model)."""
    defaults = config.agents.defaults
    for path, text in _chain(defaults.model, "agents.defaults.model"):
        yield path, text, False
    for path, text in _chain(defaults.image_model, "agents.defaults.imageModel"):
        yield path, text, True
    for index, agent in enumerate(config.agents.list):
        for path, text in _chain(agent.model, f"agents.list[{index}].model"):
            yield path, text, False


def _ratio(a: str, b: str) -> float:
    import difflib  # noqa: PLC0415 - suggestions only for a mistake or a search, not at start-up

    return difflib.SequenceMatcher(None, a, b).ratio()


def _similarity(typed: str, name: str) -> float:
    """How well ``typed`` matches ``name``; a typed fragment ("opus") counts as a fair match."""
    score = _ratio(typed, name)
    if len(typed) >= _MIN_FRAGMENT and typed in name:
        score = max(score, _FRAGMENT_SCORE)
    return score


class Catalog:
    """Known models, aliases and the optional allowlist; validates what users pick."""

    def __init__(
        self,
        models: Iterable[CatalogModel],
        *,
        aliases: Mapping[str, ModelRef] | None = None,
        allowlist: Iterable[ModelRef] | None = None,
    ) -> None:
        self._models = {model.ref: model for model in models}
        self._aliases = dict(aliases or {})
        self._aliases_lower = {name.lower(): ref for name, ref in self._aliases.items()}
        self._allowlist = None if allowlist is None else frozenset(allowlist)

    @classmethod
    def from_config(cls, config: Config) -> Catalog:
        """Built-in models, then ``models.providers.*.models``, then every model the operator named."""
        models = {model.ref: model for model in builtin_models()}
        for key, provider in config.models.providers.items():
            provider_id = key.strip().lower()
            for index, entry in enumerate(provider.models):
                ref = _parse(
                    f"{provider_id}/{entry.id.strip()}", f"models.providers.{key}.models[{index}].id"
                )
                models[ref] = _merge(models.get(ref), ref, entry)

        named: list[ModelRef] = []
        image_refs: set[ModelRef] = set()
        aliases: dict[str, ModelRef] = {}
        allowlist: set[ModelRef] | None = None
        if config.agents.defaults.models is not None:
            allowlist = set()
            for text, allowed in config.agents.defaults.models.items():
                ref = _parse(text, f'agents.defaults.models["{text}"]')
                allowlist.add(ref)
                named.append(ref)
                if allowed.alias and allowed.alias.strip():
                    aliases[allowed.alias.strip()] = ref
        for path, text, is_image in _operator_refs(config):
            ref = _parse(text, path)
            named.append(ref)
            if is_image:
                image_refs.add(ref)
        for ref in named:
            # A model the operator wrote down exists even if we have never heard of it; one named as an
            # image model is trusted to see images, or the image route could never be used.
            if ref not in models:
                inputs = VISION if ref in image_refs else TEXT
                models[ref] = CatalogModel(ref, ref.model, inputs, None, None, "config")
        return cls(models.values(), aliases=aliases, allowlist=allowlist)

    def get(self, ref: ModelRef) -> CatalogModel | None:
        return self._models.get(ref)

    def __contains__(self, ref: object) -> bool:
        return ref in self._models

    def models(self) -> list[CatalogModel]:
        """Every known model, sorted by provider then model id."""
        return sorted(self._models.values(), key=lambda model: model.ref)

    def accepts_images(self, ref: ModelRef) -> bool:
        model = self._models.get(ref)
        return model is not None and model.accepts_images

    def context_window(self, ref: ModelRef, default: int = DEFAULT_CONTEXT_WINDOW) -> int:
        model = self._models.get(ref)
        if model is None or model.context_window is None:
            return default
        return model.context_window

    def aliases(self) -> dict[str, ModelRef]:
        """Alias ⇒ ref, with the alias spelled as in the config."""
        return dict(self._aliases)

    def alias(self, name: str) -> ModelRef | None:
        """The ref an alias stands for, matched case-insensitively."""
        return self._aliases_lower.get(name.strip().lower())

    def allowlist(self) -> frozenset[ModelRef] | None:
        """The refs of ``agents.defaults.models``, or None when there is no allowlist."""
        return self._allowlist

    def is_allowed(self, ref: ModelRef) -> bool:
        return self._allowlist is None or ref in self._allowlist

    def resolve(self, text: str, default_provider: str) -> Selection:
        """Parse and validate what a user typed; raises InvalidRef, UnknownModel or ModelNotAllowed."""
        raw = parse_ref(text)
        selection = resolve_ref(raw, aliases=self._aliases, default_provider=default_provider.strip().lower())
        ref = selection.ref
        if ref not in self._models:
            # Never switch to the closest match on the user's behalf: offer it and let them choose.
            raise UnknownModel(str(ref), self.suggestions(ref))
        if not self.is_allowed(ref):
            raise ModelNotAllowed(str(ref))
        return selection

    def suggestions(self, ref: ModelRef, limit: int = MAX_SUGGESTIONS) -> list[str]:
        """Up to ``limit`` allowed refs or aliases close to ``ref``, best first."""
        wanted_model, wanted_full = ref.model.lower(), str(ref).lower()
        best: dict[ModelRef, tuple[float, float, str]] = {}
        for display, target, keys in self._candidates():
            score = max(_similarity(wanted_model, key) for key in keys)
            # The provider only breaks ties: a bare name got the default provider glued on, which must
            # not make every model of that provider look alike.
            tie = _ratio(wanted_full, str(target).lower())
            # One suggestion per target: an alias replaces its ref only when it matches strictly better.
            if score >= _SUGGESTION_CUTOFF and (score, tie) > best.get(target, (0.0, 0.0, ""))[:2]:
                best[target] = (score, tie, display)
        ranked = sorted(best.values(), key=lambda item: (-item[0], -item[1], item[2].lower(), item[2]))
        return [display for _, _, display in ranked[:limit]]

    def _candidates(self) -> Iterator[tuple[str, ModelRef, tuple[str, ...]]]:
        """(what to show, the ref it means, the lower-cased names a typo is compared with)."""
        for ref in sorted(self._models):
            if self.is_allowed(ref):
                yield str(ref), ref, (ref.model.lower(), ref.family.lower())
        for name, ref in sorted(self._aliases.items()):
            if self.is_allowed(ref):
                yield name, ref, (name.lower(),)

    def selectable(self, configured_providers: Iterable[str]) -> list[ModelRef]:
        """What the picker offers: the allowlist if set, else the models of the usable providers."""
        if self._allowlist is not None:
            return sorted(self._allowlist)
        providers = {provider.strip().lower() for provider in configured_providers}
        return sorted(ref for ref in self._models if ref.provider in providers)
