"""What the management subcommands share: common options, the config in use, auth, the session store, edits."""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, TypeVar

from bot.app import Paths, auth_store_for, build_resolver, resolve_paths
from bot.auth.backend import StoreAuthBackend
from bot.auth.cooldowns import CooldownPolicy
from bot.auth.port import AuthStateStore
from bot.auth.resolver import CredentialResolver
from bot.config.env_refs import env_names
from bot.config.key_paths import KeyPath
from bot.config.loader import LoadedConfig, load_config, parse_config_text_lenient
from bot.config.paths import default_database_url
from bot.config.schema import Config
from bot.errors import CommandError, ConfigError, ModelbotError
from bot.models.agents import agent_ids, default_agent_id
from bot.providers.registry import ProviderSpec, endpoint_for, spec_for
from cli.channels import BUILTIN_CHANNELS as CHANNELS
from cli.output import warn

if TYPE_CHECKING:
    from bot.config.edit import Change, Json5Document
    from bot.store.sql import SqlSessionStore

Edit: TypeAlias = "Callable[[Json5Document], list[Change]]"
T = TypeVar("T")


def add_common_options(parser: argparse.ArgumentParser, *, agent: bool = True, inherit: bool = False) -> None:
    """``--config`` (and ``--agent``); with ``inherit`` a subcommand leaves its parent's value alone."""
    # argparse lets a subparser's defaults overwrite what its parent parsed (`models --config X list`).
    default = argparse.SUPPRESS if inherit else None
    parser.add_argument(
        "--config",
        default=default,
        help="config file (default: $MODELBOT_CONFIG or $MODELBOT_STATE_DIR/config.json5)",
    )
    if agent:
        parser.add_argument("--agent", default=default, help="agent id (default: the default agent)")


@dataclass(frozen=True)
class Context:
    """The config in use, where state lives, and the environment it was read with."""

    paths: Paths
    loaded: LoadedConfig
    env: Mapping[str, str]

    @property
    def config(self) -> Config:
        return self.loaded.config


def load_context(args: argparse.Namespace, *, quiet: bool = False) -> Context:
    """Load the config for a management command.

    ``${VAR}``s that are not set here count as empty (with a warning), so an operator can inspect and edit
    a config on a machine that does not hold the bot's secrets; ``modelbot run`` stays strict.
    """
    env = dict(os.environ)
    cli_config = getattr(args, "config", None)
    paths = resolve_paths(cli_config, env)
    if not paths.config.exists():
        must_exist = cli_config is not None
        return Context(
            paths, load_config(paths.config, env=env, must_exist=must_exist, channels=CHANNELS), env
        )
    file = str(paths.config)
    try:
        text = paths.config.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(file, "", f"cannot read the file ({exc})") from None
    loaded, missing = parse_config_text_lenient(
        text, file=file, path=paths.config, env=env, channels=CHANNELS
    )
    if not quiet:
        for warning in loaded.warnings:
            warn(warning)
        if missing:
            warn("not set in this environment, so treated as empty here: " + ", ".join(missing))
    return Context(paths, loaded, env)


def agent_of(args: argparse.Namespace, config: Config) -> str:
    """``--agent`` checked against the config's agents, else the default agent."""
    agent = getattr(args, "agent", None)
    if agent is None:
        return default_agent_id(config)
    known = agent_ids(config)
    if agent not in known:
        raise CommandError(f'Unknown agent "{agent}". Known agents: {", ".join(known)}.')
    return str(agent)


@asynccontextmanager
async def opened_auth(ctx: Context, agent: str) -> AsyncIterator[AuthStateStore]:
    """The agent's auth store as ``auth.store`` says: auth-profiles.json, or the database (the key checked and
    the state read first; without ``MODELBOT_SECRET_KEY`` it refuses before opening anything)."""
    if ctx.config.auth.store == "file":
        yield auth_store_for(ctx.paths, agent)
        return
    # Only for the database store: SQLAlchemy, and the sealing of secrets (cryptography, ~10 ms of start-up).
    from bot.auth.db_store import DbAuthStore  # noqa: PLC0415
    from bot.auth.secret_box import SecretBox  # noqa: PLC0415
    from bot.store.auth_state import SqlAuthState  # noqa: PLC0415
    from bot.store.engine import parse_url  # noqa: PLC0415

    box = SecretBox.from_env(ctx.env)
    url = database_url(ctx)
    async with session_store(ctx) as sessions:  # its engine: one per process and database file
        where = f"the database {parse_url(url).render_as_string(hide_password=True)}"
        store = DbAuthStore(SqlAuthState(lambda: sessions.database), box, agent_id=agent, where=where)
        await store.start()
        try:
            yield store
        finally:
            await store.stop()


def run_async(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, importing asyncio (~25 ms with ssl) only for commands that run a coroutine: the
    reads of ``read_credentials`` on auth-profiles.json need none."""
    import asyncio  # noqa: PLC0415

    return asyncio.run(main)


def read_credentials(ctx: Context, agent: str, read: Callable[[CredentialResolver], T]) -> T:
    """``read`` the agent's credentials, for commands that only read them (``models list``, ``auth list``).

    From auth-profiles.json without an event loop: asyncio is not even imported (a tenth of their
    start-up); the database store is opened as ``with_resolver`` opens it.
    """
    if ctx.config.auth.store == "file":
        return read(build_resolver(ctx.loaded, auth_store_for(ctx.paths, agent), ctx.env))

    async def work(resolver: CredentialResolver) -> T:
        return read(resolver)

    return with_resolver(ctx, agent, work)


def with_resolver(ctx: Context, agent: str, work: Callable[[CredentialResolver], Awaitable[T]]) -> T:
    """Run ``work`` on the agent's credentials, in the store that ``auth.store`` names, opened for it."""

    async def run() -> T:
        async with opened_auth(ctx, agent) as store:
            return await work(build_resolver(ctx.loaded, store, ctx.env))

    return run_async(run())


def provider_spec(provider: str, ctx: Context) -> ProviderSpec | None:
    try:
        return spec_for(provider, ctx.config)
    except ModelbotError:  # an unknown provider, or a custom one missing baseUrl or api
        return None


def backend_for(ctx: Context, resolver: CredentialResolver) -> StoreAuthBackend:
    return StoreAuthBackend(
        resolver,
        policy=CooldownPolicy.from_config(ctx.config.auth.cooldowns),
        endpoint_for=lambda provider: endpoint_for(provider, ctx.config),
    )


def database_url(ctx: Context) -> str:
    """``storage.url``, else the SQLite file in the state dir; refused while a ``${VAR}`` in it is unset."""
    unset = sorted(env_names(ctx.loaded.env_refs.get(("storage", "url"), "")) - set(ctx.env))
    if unset:  # an empty password or host would reach a different database, or none
        expected = f"environment variable `{unset[0]}` is not set"
        raise ConfigError(str(ctx.paths.config), "storage.url", expected)
    return ctx.config.storage.url or default_database_url(ctx.paths.state_dir)


@asynccontextmanager
async def session_store(ctx: Context) -> AsyncIterator[SqlSessionStore]:
    """The bot's session store (SQLite by default, or ``storage.url``), started for one command."""
    from bot.store.sql import SqlSessionStore  # noqa: PLC0415 - SQLAlchemy only for commands that need it

    store = SqlSessionStore(database_url(ctx))
    await store.start()
    try:
        yield store
    finally:
        await store.stop()


def defaults_path(doc: Json5Document) -> KeyPath:
    """Where the agent defaults live in this file: ``agents.defaults``, or the legacy ``agent``."""
    return ("agent",) if "agent" in doc.data else ("agents", "defaults")


def edit_config(ctx: Context, edit: Edit) -> int:
    """Apply ``edit`` to the config file, keeping its comments; validate, back up, write, report."""
    # The editing machinery (a JSON5 syntax tree) only for the commands that edit.
    from bot.config.config_file import open_config, save_config  # noqa: PLC0415

    config = open_config(ctx.paths.config)
    changes = edit(config.doc)
    if not changes:
        print("Nothing changed.")
        return 0
    loaded, backup = save_config(config, ctx.env, CHANNELS)
    for change in changes:
        print(change)
    where = f"backup: {backup}" if backup is not None else "new file"
    print(f"Updated {ctx.paths.config} ({where}).")
    for warning in loaded.warnings:
        warn(warning)
    return 0
