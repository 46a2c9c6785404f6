"""The typed, validated configuration (docs/configuration.md §3–§4). Keys are camelCase in the file, snake_case here.

Without ``from __future__ import annotations``: pydantic would have to evaluate every field's annotation from
its text when the classes are built, a few ms of every command's start-up.
"""

import itertools
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

ApiMode = Literal["openai-completions", "anthropic-messages", "demo"]
InputKind = Literal["text", "image"]


class ConfigSection(BaseModel):
    """Base for every config section: camelCase aliases, unknown keys rejected, immutable."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class ModelChain(ConfigSection):
    """A primary model and its fallbacks, as ``provider/model`` strings."""

    primary: str | None = None
    fallbacks: tuple[str, ...] = ()


def _chain_from_string(value: object) -> object:
    return {"primary": value} if isinstance(value, str) else value


class ModelEntry(ConfigSection):
    """An entry of ``agents.defaults.models``: the catalog/allowlist, with an optional alias."""

    alias: str | None = None


class AgentDefaults(ConfigSection):
    model: ModelChain = ModelChain()
    models: dict[str, ModelEntry] | None = None  # None: no allowlist; {} would allow nothing
    image_model: ModelChain = ModelChain()
    system_prompt: str | None = None
    timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 120.0  # first token, and each gap after it
    max_answer_seconds: Annotated[float, Field(gt=0, le=86_400)] = 600.0  # one whole answer
    max_output_tokens: Annotated[int, Field(gt=0, le=1_000_000)] | None = None
    fallback_note: bool = True  # the quiet "↪ answered by …" line under a reply that came from a fallback
    compaction_threshold: Annotated[float, Field(gt=0.1, le=1.0)] = 0.8  # share of the context window

    @field_validator("model", "image_model", mode="before")
    @classmethod
    def _accept_string(cls, value: object) -> object:
        return _chain_from_string(value)

    @model_validator(mode="after")
    def _answer_outlasts_first_token(self) -> Self:
        if self.max_answer_seconds < self.timeout_seconds:
            raise ValueError(
                f"maxAnswerSeconds ({self.max_answer_seconds:g}) must be at least timeoutSeconds "
                f"({self.timeout_seconds:g}): a whole answer cannot be shorter than the wait for its first token"
            )
        return self


class AgentEntry(ConfigSection):
    id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]
    default: bool = False
    name: str | None = None
    model: ModelChain | None = None
    system_prompt: str | None = None

    @field_validator("model", mode="before")
    @classmethod
    def _accept_string(cls, value: object) -> object:
        return _chain_from_string(value)


class Agents(ConfigSection):
    defaults: AgentDefaults = AgentDefaults()
    list: tuple[AgentEntry, ...] = ()

    @model_validator(mode="after")
    def _unique_ids(self) -> Self:
        ids = [agent.id for agent in self.list]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"agent ids must be unique, repeated: {', '.join(duplicates)}")
        if sum(agent.default for agent in self.list) > 1:
            raise ValueError("at most one agent may have default: true")
        return self


class BindingMatch(ConfigSection):
    channel: str | None = None  # a registered channel's name, or "console" (config_model checks it)
    chat_id: str | None = None
    guild_id: str | None = None

    @field_validator("chat_id", "guild_id", mode="before")
    @classmethod
    def _ids_as_strings(cls, value: object) -> object:
        return str(value) if isinstance(value, int) else value


class Binding(ConfigSection):
    agent_id: str
    match: BindingMatch = BindingMatch()


class AuthProfileMeta(ConfigSection):
    """Routing metadata for a profile; the secret itself lives in auth-profiles.json."""

    provider: str
    mode: Literal["api_key", "token", "oauth"] = "api_key"
    email: str | None = None


MAX_BACKOFF_MINUTES = 24 * 60
StrictMinutes = Annotated[float, Field(strict=True)]  # true or "5" is a mistake, not a number


class Cooldowns(ConfigSection):
    billing_backoff_hours: Annotated[float, Field(gt=0)] = 5.0
    billing_backoff_hours_by_provider: dict[str, Annotated[float, Field(gt=0)]] = {}
    billing_max_hours: Annotated[float, Field(gt=0)] = 24.0
    failure_window_hours: Annotated[float, Field(gt=0)] = 24.0
    # What rate_limit, timeout and empty cool: the (profile, model) pair, or the whole profile (docs/failover.md §6).
    scope: Literal["model", "profile"] = "model"
    # The cooldown ladder: the nth failure in a row cools for the nth step; the last step repeats.
    backoff_minutes: tuple[StrictMinutes, ...] = (1.0, 5.0, 25.0, 60.0)

    @field_validator("backoff_minutes", mode="after")
    @classmethod
    def _ladder(cls, steps: tuple[float, ...]) -> tuple[float, ...]:
        if not steps:
            raise ValueError("expected at least one step in minutes, e.g. [1, 5, 25, 60]")
        for step in steps:
            if not 0 < step <= MAX_BACKOFF_MINUTES:
                raise ValueError(
                    f"expected minutes above 0 and at most {MAX_BACKOFF_MINUTES} (24 h), got {step:g}"
                )
        for earlier, later in itertools.pairwise(steps):
            if later < earlier:
                raise ValueError(f"expected steps that never decrease, got {earlier:g} then {later:g}")
        return steps


class Auth(ConfigSection):
    # database: shared by every host on storage.url (docs/failover.md §10)
    store: Literal["file", "database"] = "file"
    profiles: dict[str, AuthProfileMeta] = {}
    order: dict[str, tuple[str, ...]] = {}
    cooldowns: Cooldowns = Cooldowns()
    # A turn whose every candidate is cooling waits this long at most for the first to come back (docs/failover.md §8).
    wait_seconds: Annotated[float, Field(ge=0, le=600)] = 20.0

    # Provider ids are case-insensitive everywhere (docs/configuration.md §2); the file keeps the operator's spelling.
    def order_for(self, provider: str) -> tuple[str, ...] | None:
        """``auth.order[provider]``, whatever the case of the key."""
        provider = provider.strip().lower()
        return next((ids for key, ids in self.order.items() if key.strip().lower() == provider), None)

    def profile_ids_for(self, provider: str) -> list[str]:
        """The ids of ``auth.profiles`` that belong to ``provider``, whatever the case of its name."""
        provider = provider.strip().lower()
        return [pid for pid, meta in self.profiles.items() if meta.provider.strip().lower() == provider]


class ProviderModel(ConfigSection):
    id: Annotated[str, Field(min_length=1)]
    name: str | None = None
    input: tuple[InputKind, ...] = ("text",)
    context_window: Annotated[int, Field(gt=0)] | None = None
    max_tokens: Annotated[int, Field(gt=0)] | None = None


_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _endpoint_url(value: str | None, *, allow_custom_scheme: bool = False) -> str | None:
    """An OAuth endpoint: https, or http on this machine only (a local proxy or a test server)."""
    if value is None:
        return None
    value = value.strip()
    try:
        parts = urlsplit(value)
    except ValueError:
        raise ValueError("expected a URL") from None
    if not parts.scheme or (parts.scheme in ("http", "https") and not parts.netloc):
        raise ValueError("expected an absolute URL such as https://example.com/oauth/token")
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS):
        return value
    if allow_custom_scheme and parts.scheme not in ("http", "https"):
        return value  # a native app's redirect (com.example.app:/callback) is the provider's business
    raise ValueError("expected an https:// URL (plain http only to 127.0.0.1 or localhost)")


class ProviderOAuth(ConfigSection):
    """Where a provider's OAuth login lives; every key may override the built-in preset of the provider."""

    token_url: str | None = None  # required unless the provider has a built-in preset
    client_id: Annotated[str, Field(min_length=1)] | None = None  # likewise
    authorize_url: str | None = None  # needed for `modelbot auth login`, not for refreshing
    scopes: tuple[str, ...] | None = None
    redirect_uri: str | None = None
    authorize_params: dict[str, str] | None = None  # extra query parameters of the authorization URL
    extra_headers: dict[str, str] | None = None  # sent with model calls made with an OAuth login
    body_format: Literal["form", "json"] | None = None  # RFC 6749 says form; some providers want JSON
    timeout_seconds: Annotated[float, Field(gt=0, le=300)] | None = None

    @field_validator("token_url", "authorize_url")
    @classmethod
    def _endpoint(cls, value: str | None) -> str | None:
        return _endpoint_url(value)

    @field_validator("redirect_uri")
    @classmethod
    def _redirect(cls, value: str | None) -> str | None:
        return _endpoint_url(value, allow_custom_scheme=True)

    @field_validator("scopes", mode="before")
    @classmethod
    def _scope_list(cls, value: object) -> object:
        # "a b c" (the form of the OAuth scope parameter) or ["a", "b", "c"]
        return value.split() if isinstance(value, str) else value

    @field_validator("scopes")
    @classmethod
    def _scope_words(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and any(not s or any(ch.isspace() for ch in s) for s in value):
            raise ValueError("expected scopes as one word each")
        return value


class ProviderConfig(ConfigSection):
    base_url: str | None = None  # None: the built-in provider's default
    api: ApiMode | None = None  # None: the built-in provider's default
    api_key: str | None = None  # only as ${ENV}; literal secrets are rejected by the loader
    headers: dict[str, str] = {}
    models: tuple[ProviderModel, ...] = ()
    oauth: ProviderOAuth | None = None  # OAuth login and refresh endpoints (docs/failover.md §9)


class ModelsSection(ConfigSection):
    providers: dict[str, ProviderConfig] = {}


def _ids_as_strings(value: object) -> object:
    """Platform ids may be written as numbers: ``[12345, "@alice"]`` reads as ``("12345", "@alice")``."""
    if isinstance(value, list | tuple):
        return [str(item) for item in value]
    return value


# A list of a platform's ids (users, roles, guilds) in a channel's settings.
Ids = Annotated[tuple[str, ...], BeforeValidator(_ids_as_strings)]


class ChannelSettings(ConfigSection):
    """The base of a channel's ``channels.<name>`` section; each channel plug-in extends it with its own keys."""

    enabled: bool = False


class Channels(ConfigSection):
    """``channels``: one section per registered channel plug-in (``config_model`` adds them); none of its own."""

    def section(self, name: str) -> ChannelSettings:
        """The settings of channel ``name`` (a registered plug-in's section)."""
        value = getattr(self, name, None)
        if not isinstance(value, ChannelSettings):
            raise KeyError(name)
        return value

    if TYPE_CHECKING:  # the sections are fields made at run time from the plug-ins: `config.channels.<name>`

        def __getattr__(self, name: str) -> Any: ...


class Storage(ConfigSection):
    url: str | None = None  # None: sqlite+aiosqlite in the state dir


class SessionSettings(ConfigSection):
    scope: Literal["chat", "user"] = "chat"  # groups: one shared session per chat, or one per member
    max_message_chars: Annotated[int, Field(gt=0, le=100_000)] = 16_000
    history_limit: Annotated[int, Field(gt=0, le=10_000)] = 200
    # Processes sharing the store order a session's messages with a lease, renewed every third of this; a
    # process that dies mid-turn blocks its session this long at most (docs/failover.md §10).
    lease_seconds: Annotated[float, Field(ge=3, le=3_600)] = 30.0


class Logging(ConfigSection):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Metrics(ConfigSection):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: Annotated[int, Field(gt=0, lt=65536)] = 9464


class Config(ConfigSection):
    """The whole config file."""

    agents: Agents = Agents()
    bindings: tuple[Binding, ...] = ()
    auth: Auth = Auth()
    models: ModelsSection = ModelsSection()
    channels: Channels = Channels()
    storage: Storage = Storage()
    session: SessionSettings = SessionSettings()
    logging: Logging = Logging()
    metrics: Metrics = Metrics()


ChannelSections = tuple[tuple[str, type[ChannelSettings]], ...]


@lru_cache(maxsize=8)
def config_model(sections: ChannelSections, also_bindable: tuple[str, ...] = ()) -> type[Config]:
    """``Config`` with a ``channels.<name>`` section per registered channel, and bindings naming only those.

    The sections are fields like any other, so their errors read and count exactly as the rest of the file's;
    ``also_bindable`` are channels without a section that a binding may name (the terminal's "console").
    """
    fields: dict[str, Any] = {name: (model, Field(default_factory=model)) for name, model in sections}
    channels: Any = create_model("Channels", __base__=Channels, **fields)
    names = (*(name for name, _ in sections), *also_bindable)
    channel: Any = Literal[names] | None if names else None
    match: Any = create_model("BindingMatch", __base__=BindingMatch, channel=(channel, None))
    binding: Any = create_model("Binding", __base__=Binding, match=(match, Field(default_factory=match)))
    model: type[Config] = create_model(
        "Config",
        __base__=Config,
        channels=(channels, Field(default_factory=channels)),
        bindings=(tuple[binding, ...], ()),
    )
    return model
