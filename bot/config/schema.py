"""The typed, validated configuration (spec §1). Keys are camelCase in the file, snake_case here."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

ApiMode = Literal["openai-completions", "anthropic-messages", "demo"]
InputKind = Literal["text", "image"]


class _Model(BaseModel):
    """Base for every config section: camelCase aliases, unknown keys rejected, immutable."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class ModelChain(_Model):
    """A primary model and its fallbacks, as ``provider/model`` strings."""

    primary: str | None = None
    fallbacks: tuple[str, ...] = ()


def _chain_from_string(value: object) -> object:
    return {"primary": value} if isinstance(value, str) else value


class ModelEntry(_Model):
    """An entry of ``agents.defaults.models``: the catalog/allowlist, with an optional alias."""

    alias: str | None = None


class AgentDefaults(_Model):
    model: ModelChain = ModelChain()
    models: dict[str, ModelEntry] | None = None  # None: no allowlist; {} would allow nothing
    image_model: ModelChain = ModelChain()
    system_prompt: str | None = None
    timeout_seconds: Annotated[float, Field(gt=0, le=3600)] = 120.0
    max_output_tokens: Annotated[int, Field(gt=0, le=1_000_000)] | None = None
    fallback_note: bool = True  # the quiet "↪ answered by …" line under a reply that came from a fallback
    compaction_threshold: Annotated[float, Field(gt=0.1, le=1.0)] = 0.8  # share of the context window

    @field_validator("model", "image_model", mode="before")
    @classmethod
    def _accept_string(cls, value: object) -> object:
        return _chain_from_string(value)


class AgentEntry(_Model):
    id: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]*$")]
    default: bool = False
    name: str | None = None
    model: ModelChain | None = None
    system_prompt: str | None = None

    @field_validator("model", mode="before")
    @classmethod
    def _accept_string(cls, value: object) -> object:
        return _chain_from_string(value)


class Agents(_Model):
    defaults: AgentDefaults = AgentDefaults()
    list: tuple[AgentEntry, ...] = ()

    @model_validator(mode="after")
    def _unique_ids(self) -> Agents:
        ids = [agent.id for agent in self.list]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"agent ids must be unique, repeated: {', '.join(duplicates)}")
        if sum(agent.default for agent in self.list) > 1:
            raise ValueError("at most one agent may have default: true")
        return self


class BindingMatch(_Model):
    channel: Literal["telegram", "discord", "console"] | None = None
    chat_id: str | None = None
    guild_id: str | None = None

    @field_validator("chat_id", "guild_id", mode="before")
    @classmethod
    def _ids_as_strings(cls, value: object) -> object:
        return str(value) if isinstance(value, int) else value


class Binding(_Model):
    agent_id: str
    match: BindingMatch = BindingMatch()


class AuthProfileMeta(_Model):
    """Routing metadata for a profile; the secret itself lives in auth-profiles.json."""

    provider: str
    mode: Literal["api_key", "token", "oauth"] = "api_key"
    email: str | None = None


class Cooldowns(_Model):
    billing_backoff_hours: Annotated[float, Field(gt=0)] = 5.0
    billing_backoff_hours_by_provider: dict[str, Annotated[float, Field(gt=0)]] = {}
    billing_max_hours: Annotated[float, Field(gt=0)] = 24.0
    failure_window_hours: Annotated[float, Field(gt=0)] = 24.0


class Auth(_Model):
    store: Literal["file", "database"] = "file"  # database: shared by every host on storage.url (spec §11.6)
    profiles: dict[str, AuthProfileMeta] = {}
    order: dict[str, tuple[str, ...]] = {}
    cooldowns: Cooldowns = Cooldowns()


class ProviderModel(_Model):
    id: Annotated[str, Field(min_length=1)]
    name: str | None = None
    input: tuple[InputKind, ...] = ("text",)
    context_window: Annotated[int, Field(gt=0)] | None = None
    max_tokens: Annotated[int, Field(gt=0)] | None = None


class ProviderConfig(_Model):
    base_url: str | None = None  # None: the built-in provider's default
    api: ApiMode | None = None  # None: the built-in provider's default
    api_key: str | None = None  # only as ${ENV}; literal secrets are rejected by the loader
    headers: dict[str, str] = {}
    models: tuple[ProviderModel, ...] = ()


class ModelsSection(_Model):
    providers: dict[str, ProviderConfig] = {}


class TelegramWebhook(_Model):
    url: str
    listen: str = "127.0.0.1"
    port: Annotated[int, Field(gt=0, lt=65536)] = 8443
    secret_token: str | None = None


class TelegramChannel(_Model):
    enabled: bool = False
    bot_token: str | None = None
    api_base_url: str = "https://api.telegram.org"
    allow_from: tuple[str, ...] | None = None  # None: everyone; ids or @usernames
    admins: tuple[str, ...] = ()
    require_mention: bool = True
    silent_refusal_in_groups: bool = False
    webhook: TelegramWebhook | None = None

    @field_validator("allow_from", "admins", mode="before")
    @classmethod
    def _ids_as_strings(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return [str(item) for item in value]
        return value

    @model_validator(mode="after")
    def _token_when_enabled(self) -> TelegramChannel:
        if self.enabled and not self.bot_token:
            raise ValueError("botToken is required when the Telegram channel is enabled")
        return self


class DiscordChannel(_Model):
    enabled: bool = False
    token: str | None = None
    api_base_url: str = "https://discord.com/api/v10"
    gateway_url: str = "wss://gateway.discord.gg"
    allow_from: tuple[str, ...] | None = None  # None: everyone; user ids, role:<id>, channel:<id>
    admins: tuple[str, ...] = ()
    guild_ids: tuple[str, ...] = ()  # sync slash commands per guild so they appear at once
    require_mention: bool = True
    shard_count: Annotated[int, Field(gt=0)] | None = None

    @field_validator("allow_from", "admins", "guild_ids", mode="before")
    @classmethod
    def _ids_as_strings(cls, value: object) -> object:
        if isinstance(value, list | tuple):
            return [str(item) for item in value]
        return value

    @model_validator(mode="after")
    def _token_when_enabled(self) -> DiscordChannel:
        if self.enabled and not self.token:
            raise ValueError("token is required when the Discord channel is enabled")
        return self


class Channels(_Model):
    telegram: TelegramChannel = TelegramChannel()
    discord: DiscordChannel = DiscordChannel()


class Storage(_Model):
    url: str | None = None  # None: sqlite+aiosqlite in the state dir


class SessionSettings(_Model):
    scope: Literal["chat", "user"] = "chat"  # groups: one shared session per chat, or one per member
    max_message_chars: Annotated[int, Field(gt=0, le=100_000)] = 16_000
    history_limit: Annotated[int, Field(gt=0, le=10_000)] = 200


class Logging(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


class Metrics(_Model):
    enabled: bool = False
    host: str = "127.0.0.1"
    port: Annotated[int, Field(gt=0, lt=65536)] = 9464


class Config(_Model):
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
