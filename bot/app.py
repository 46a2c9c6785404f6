"""The composition root: builds every long-lived component from the config, shared by the CLI and tests."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bot.agents import agent_ids, agent_models
from bot.auth.backend import StoreAuthBackend
from bot.auth.cooldowns import CooldownPolicy
from bot.auth.oauth_client import TokenRefresher
from bot.auth.oauth_presets import oauth_settings
from bot.auth.resolver import CredentialResolver
from bot.auth.store import AuthStore
from bot.catalog import Catalog
from bot.clock import Clock, SystemClock
from bot.config.loader import LoadedConfig, load_config
from bot.config.paths import auth_profiles_path, config_path, default_database_url, state_dir
from bot.config.schema import Config
from bot.errors import ModelbotError
from bot.providers.base import Endpoint
from bot.providers.clients import ProviderClients, build_clients, close_clients
from bot.providers.registry import BUILTIN_PROVIDERS, endpoint_for, known_providers, spec_for
from bot.redaction import Redactor, process_secrets
from bot.refs import parse_model_ref

if TYPE_CHECKING:  # imported by build_app: the CLI's management commands use this module without them
    from bot.engine import Engine
    from bot.pipeline import ChatPipeline, TurnObserver
    from bot.store.protocol import SessionStore


@dataclass(frozen=True)
class Paths:
    state_dir: Path
    config: Path


def resolve_paths(cli_config: str | None, env: Mapping[str, str]) -> Paths:
    return Paths(state_dir=state_dir(env), config=config_path(cli_config, env))


def load(cli_config: str | None, env: Mapping[str, str]) -> tuple[Paths, LoadedConfig]:
    """The config in use: ``--config`` must exist; the default location may be absent (built-in default)."""
    paths = resolve_paths(cli_config, env)
    return paths, load_config(paths.config, env=env, must_exist=cli_config is not None)


@dataclass
class App:
    """Everything a running bot needs; ``start``/``stop`` bracket its life."""

    loaded: LoadedConfig
    paths: Paths
    catalog: Catalog
    store: SessionStore
    clients: ProviderClients
    clock: Clock
    backends: dict[str, StoreAuthBackend] = field(default_factory=dict)
    engines: dict[str, Engine] = field(default_factory=dict)
    pipeline: ChatPipeline | None = None
    redactor: Redactor = field(default_factory=Redactor)
    _endpoints: dict[str, Endpoint] = field(default_factory=dict, repr=False)

    async def start(self) -> None:
        await self.store.start()

    async def stop(self) -> None:
        for backend in self.backends.values():
            await backend.flush()
        await close_clients(self.clients)
        await self.store.stop()

    def endpoint(self, provider: str) -> Endpoint:
        """Where to call ``provider``; built once per provider from the config (every attempt asks)."""
        endpoint = self._endpoints.get(provider)
        if endpoint is None:
            endpoint = self._endpoints[provider] = endpoint_for(provider, self.loaded.config)
        return endpoint

    def prepare_clients(self) -> list[str]:
        """Make the provider clients of the API modes the configured models use; the API modes made.

        A provider SDK takes one to three seconds to import: a bot that serves chats calls this before it
        starts, so that no turn, and no other chat's turn on the same event loop, waits for that import.
        """
        config = self.loaded.config
        providers: set[str] = set()
        for agent_id in agent_ids(config):
            try:
                chain = agent_models(config, agent_id)
            except ModelbotError:  # a bad ref is the turn's error to report, not start-up's
                continue
            refs = [chain.primary, *chain.fallbacks, *chain.image_fallbacks]
            if chain.image_primary is not None:
                refs.append(chain.image_primary)
            providers.update(ref.provider for ref in refs)
        providers.update(_allowlisted_providers(config))
        made: list[str] = []
        for provider in sorted(providers):
            try:
                api = self.endpoint(provider).api
            except ModelbotError:
                continue
            if api in self.clients and api not in made:
                self.clients[api]  # the lookup makes the client (ProviderClients), importing its SDK
                made.append(api)
        return made

    def backend(self, agent_id: str) -> StoreAuthBackend:
        return self.backends[agent_id] if agent_id in self.backends else self.backends["main"]

    def engine(self, agent_id: str) -> Engine:
        return self.engines[agent_id] if agent_id in self.engines else self.engines["main"]

    def chat(self) -> ChatPipeline:
        assert self.pipeline is not None
        return self.pipeline


def _allowlisted_providers(config: Config) -> set[str]:
    """The providers of ``agents.defaults.models`` (the models a session may switch to), as far as they parse."""
    found: set[str] = set()
    for key in config.agents.defaults.models or {}:
        try:
            found.add(parse_model_ref(key).provider)
        except ModelbotError:
            continue
    return found


def auth_store_for(paths: Paths, agent_id: str) -> AuthStore:
    return AuthStore(
        auth_profiles_path(paths.state_dir, agent_id),
        legacy_oauth_path=paths.state_dir / "credentials" / "oauth.json",
    )


def build_resolver(loaded: LoadedConfig, store: AuthStore, env: Mapping[str, str]) -> CredentialResolver:
    """The credentials of one agent; OAuth logins refresh through their provider's preset or config."""
    config = loaded.config
    providers = {*BUILTIN_PROVIDERS, *known_providers(config)}
    specs = {p: spec_for(p, config) for p in providers}
    return CredentialResolver(
        store,
        config,
        env=env,
        provider_env_vars={p: s.env_vars for p, s in specs.items()},
        providers_without_auth=[p for p, s in specs.items() if not s.needs_auth],
        builtin_profiles={p: s.builtin_profiles for p, s in specs.items() if s.builtin_profiles},
        refresher=TokenRefresher(lambda provider: oauth_settings(provider, config)),
    )


def build_app(
    *,
    cli_config: str | None = None,
    env: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    demo_delay_s: float = 0.0,
    store: SessionStore | None = None,
    observer: TurnObserver | None = None,
) -> App:
    """Wire the bot from its config. Raises ``ConfigError`` for a bad config; starts nothing."""
    # Here rather than at the top: `modelbot models …`, `auth …` and `config …` import this module for the
    # helpers above and never need the engine, the pipeline or SQLAlchemy (half a second of start-up).
    from bot.engine import Engine  # noqa: PLC0415
    from bot.pipeline import ChatPipeline  # noqa: PLC0415
    from bot.store.sql import SqlSessionStore  # noqa: PLC0415

    env = dict(os.environ) if env is None else env
    clock = SystemClock() if clock is None else clock
    paths, loaded = load(cli_config, env)
    config = loaded.config
    catalog = Catalog.from_config(config)
    if store is None:
        store = SqlSessionStore(config.storage.url or default_database_url(paths.state_dir))
    app = App(
        loaded=loaded,
        paths=paths,
        catalog=catalog,
        store=store,
        clients=build_clients(demo_delay_s=demo_delay_s),
        clock=clock,
    )
    policy = CooldownPolicy.from_config(config.auth.cooldowns)
    agents = sorted({"main", *agent_ids(config)})
    stores = {agent_id: auth_store_for(paths, agent_id) for agent_id in agents}
    app.redactor = Redactor(lambda: process_secrets(loaded, env, stores.values()))
    for agent_id in agents:
        resolver = build_resolver(loaded, stores[agent_id], env)
        backend = StoreAuthBackend(resolver, policy=policy, endpoint_for=app.endpoint)
        app.backends[agent_id] = backend
        app.engines[agent_id] = Engine(
            auth=backend,
            clients=app.clients,
            endpoint_for=app.endpoint,
            clock=clock,
            redact=app.redactor.provider_text,
            wait_ms=round(config.auth.wait_seconds * 1000),
        )
    app.pipeline = ChatPipeline(
        config=config,
        catalog=catalog,
        engine_for=app.engine,
        store=store,
        auth_for=app.backend,
        clock=clock,
        observer=observer,
        redact=app.redactor.known,
    )
    return app
