"""The composition root: builds every long-lived component from the config, shared by the CLI and tests."""

from __future__ import annotations

import gc
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bot.auth.backend import StoreAuthBackend
from bot.auth.cooldowns import CooldownPolicy
from bot.auth.oauth_presets import oauth_settings
from bot.auth.port import AuthStateStore
from bot.auth.resolver import CredentialResolver
from bot.auth.store import AuthStore
from bot.auth.token_refresher import TokenRefresher
from bot.channels import NO_CHANNELS, ChannelRegistry
from bot.clock import Clock, SystemClock
from bot.config.loader import LoadedConfig, load_config
from bot.config.paths import auth_profiles_path, config_path, default_database_url, state_dir
from bot.config.schema import Config
from bot.errors import ModelbotError
from bot.models.agents import agent_ids, agent_models
from bot.models.catalog import Catalog
from bot.models.refs import parse_model_ref
from bot.providers.base import Endpoint
from bot.providers.registry import BUILTIN_PROVIDERS, endpoint_for, known_providers, spec_for
from bot.redaction import Redactor, process_secrets

if TYPE_CHECKING:  # imported by build_app: the CLI's management commands use this module without them
    from bot.auth.db_store import DbAuthStore
    from bot.conversation.pipeline import ChatPipeline
    from bot.conversation.turn_log import TurnObserver
    from bot.failover.engine import Engine
    from bot.providers.clients import ProviderClients
    from bot.store.lease import LeaseKeeper
    from bot.store.protocol import SessionStore
    from bot.store.sql import SqlSessionStore


@dataclass(frozen=True)
class Paths:
    state_dir: Path
    config: Path


def resolve_paths(cli_config: str | None, env: Mapping[str, str]) -> Paths:
    return Paths(state_dir=state_dir(env), config=config_path(cli_config, env))


def load(
    cli_config: str | None, env: Mapping[str, str], channels: ChannelRegistry = NO_CHANNELS
) -> tuple[Paths, LoadedConfig]:
    """The config in use: ``--config`` must exist; the default location may be absent (built-in default)."""
    paths = resolve_paths(cli_config, env)
    return paths, load_config(paths.config, env=env, must_exist=cli_config is not None, channels=channels)


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
    db_auth: list[DbAuthStore] = field(default_factory=list)  # auth.store "database": started with the app
    auth_database: SqlSessionStore | None = None  # their database, when the session store is not SQL (tests)
    session_leases: LeaseKeeper | None = (
        None  # the store is shared with other processes: sessions take leases
    )
    _endpoints: dict[str, Endpoint] = field(default_factory=dict, repr=False)

    async def start(self) -> None:
        """Open the session store, then (auth.store "database") check the secret key and read the auth state."""
        await self.store.start()
        if self.auth_database is not None:
            await self.auth_database.start()
        for auth in self.db_auth:
            await auth.start()

    async def stop(self) -> None:
        for backend in self.backends.values():
            await backend.flush()
        for auth in self.db_auth:
            await auth.stop()
        if self.session_leases is not None:
            await self.session_leases.stop()
        from bot.providers.clients import close_clients  # noqa: PLC0415 - loaded by build_app

        await close_clients(self.clients)
        if self.auth_database is not None:
            await self.auth_database.stop()
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


def database_auth_stores(
    url: str, agents: list[str], env: Mapping[str, str], store: SessionStore
) -> tuple[dict[str, DbAuthStore], SqlSessionStore | None]:
    """auth.store "database": each agent's store on the session store's database (one engine per process),
    or on a database of their own at ``url`` when the session store is not SQL. Refuses without the key."""
    # Only when it is used: SQLAlchemy, and the sealing of secrets (cryptography).
    from bot.auth.db_store import DbAuthStore  # noqa: PLC0415
    from bot.auth.secret_box import SecretBox  # noqa: PLC0415
    from bot.store.auth_state import SqlAuthState  # noqa: PLC0415
    from bot.store.engine import parse_url  # noqa: PLC0415
    from bot.store.sql import SqlSessionStore  # noqa: PLC0415

    box = SecretBox.from_env(env)
    own = None if isinstance(store, SqlSessionStore) else SqlSessionStore(url)
    sql = store if isinstance(store, SqlSessionStore) else own
    assert sql is not None
    state = SqlAuthState(lambda: sql.database)
    where = f"the database {parse_url(url).render_as_string(hide_password=True)}"
    # The cache's age and the refresh lease are real time, whatever clock the cooldowns run on.
    return {agent: DbAuthStore(state, box, agent_id=agent, where=where) for agent in agents}, own


def build_resolver(loaded: LoadedConfig, store: AuthStateStore, env: Mapping[str, str]) -> CredentialResolver:
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


def freeze_startup_heap() -> None:
    """Take what start-up left alive out of the cyclic garbage collector's sight (``gc.freeze``); a process
    that serves chats calls it once it is ready (``modelbot run``, ``modelbot chat``).

    A full collection walks every tracked object: with the HTTP stack and both platform libraries loaded
    that took ~0.2 s here, and ~70 ms in ``modelbot chat``'s process, a pause of every chat each time one
    runs (it was most of bench.pipeline's paced p99). Modules, classes and the config live as long as the
    process, so later full collections walk only what the bot has made since (~15 ms). No collection first:
    at this point one found nothing to free, and took 35 ms of ``modelbot chat``'s first answer. Frozen
    objects are still freed when nothing refers to them.
    """
    gc.freeze()


def build_app(
    *,
    cli_config: str | None = None,
    env: Mapping[str, str] | None = None,
    clock: Clock | None = None,
    demo_delay_s: float = 0.0,
    store: SessionStore | None = None,
    observer: TurnObserver | None = None,
    channels: ChannelRegistry = NO_CHANNELS,
) -> App:
    """Wire the bot from its config (whose ``channels`` sections are those of ``channels``). Raises
    ``ConfigError`` for a bad config; starts nothing and builds no channel (``modelbot run`` does)."""
    # Here rather than at the top: `modelbot models …`, `auth …` and `config …` import this module for the
    # helpers above and never need the engine, the pipeline or SQLAlchemy (half a second of start-up).
    from bot.conversation.pipeline import ChatPipeline  # noqa: PLC0415
    from bot.failover.engine import Engine  # noqa: PLC0415
    from bot.providers.clients import build_clients  # noqa: PLC0415
    from bot.store.lease import LeaseKeeper, LeaseTiming  # noqa: PLC0415
    from bot.store.sql import SqlSessionStore  # noqa: PLC0415

    env = dict(os.environ) if env is None else env
    clock = SystemClock() if clock is None else clock
    paths, loaded = load(cli_config, env, channels)
    config = loaded.config
    catalog = Catalog.from_config(config)
    url = config.storage.url or default_database_url(paths.state_dir)
    if store is None:
        store = SqlSessionStore(url)
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
    stores: dict[str, AuthStateStore]
    if config.auth.store == "database":
        db_stores, app.auth_database = database_auth_stores(url, agents, env, store)
        app.db_auth, stores = list(db_stores.values()), dict(db_stores)
    else:
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
    if isinstance(store, SqlSessionStore) and store.shared:
        # Other processes, on this host or others, may use the same database: order their turns too.
        ttl_ms = round(config.session.lease_seconds * 1000)
        timing = LeaseTiming(ttl_ms=ttl_ms, renew_every_ms=ttl_ms // 3)
        app.session_leases = LeaseKeeper(store, clock=clock, timing=timing)
    app.pipeline = ChatPipeline(
        config=config,
        catalog=catalog,
        engine_for=app.engine,
        store=store,
        auth_for=app.backend,
        clock=clock,
        observer=observer,
        redact=app.redactor.known,
        session_leases=app.session_leases,
    )
    return app
