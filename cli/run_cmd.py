"""``modelbot run``: start every enabled channel, serve until SIGINT/SIGTERM, then shut down in order.

The channels are plug-ins (``bot.channels``): ``cli/channels.py`` lists them, and a plug-in imports its
platform library only when its channel is enabled and built (a bot with Telegram alone never loads
discord.py). Tests pass their own registry.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from collections.abc import Mapping

from bot.app import App, build_app, freeze_startup_heap, load
from bot.channels import ChannelAdapter, ChannelRegistry
from bot.errors import ModelbotError
from bot.logging_setup import LEVELS, configure_logging
from bot.metrics import Metrics, MetricsServer
from cli.channels import BUILTIN_CHANNELS
from cli.common import add_common_options
from cli.output import error

log = logging.getLogger("modelbot.run")

STOP_TIMEOUT_S = 30.0  # per channel: in-flight turns get this long to finish before being cancelled
EXIT_FAILED = 1
EXIT_USAGE = 2


class ChannelUnavailable(ModelbotError):
    """An enabled channel whose adapter cannot be loaded."""


def register(p: argparse.ArgumentParser) -> None:
    add_common_options(p, agent=False)
    p.add_argument(
        "--log-level",
        type=str.upper,
        choices=LEVELS,
        help="DEBUG, INFO, WARNING or ERROR (default: logging.level)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace, channels: ChannelRegistry = BUILTIN_CHANNELS) -> int:
    return asyncio.run(serve(args.config, log_level=args.log_level, channels=channels))


def build_adapters(app: App, channels: ChannelRegistry, enabled: list[str]) -> list[ChannelAdapter]:
    """The adapters of the enabled channels; a plug-in whose platform library is missing is a clean error."""
    plugins = {plugin.name: plugin for plugin in channels}
    adapters: list[ChannelAdapter] = []
    for name in enabled:
        try:
            settings = app.loaded.config.channels.section(name)
            adapters.append(plugins[name].adapter(settings, app.chat()))
        except ImportError as exc:
            raise ChannelUnavailable(
                f"The {name} channel is enabled but its adapter cannot be loaded ({exc}). "
                "Reinstall modelbot (pip install -e .), or disable the channel."
            ) from None
    return adapters


async def serve(
    cli_config: str | None,
    *,
    log_level: str | None = None,
    stop: asyncio.Event | None = None,
    env: Mapping[str, str] | None = None,
    channels: ChannelRegistry = BUILTIN_CHANNELS,
) -> int:
    """Run until ``stop`` is set (when not given: until SIGINT/SIGTERM); returns the exit code."""
    env = dict(os.environ) if env is None else env
    _, loaded = load(cli_config, env, channels)  # refuse a bot without channels before loading the whole bot
    enabled = [name for name in channels.names if loaded.config.channels.section(name).enabled]
    if not enabled:
        where = loaded.path or "the config (none found; the built-in default enables no channel)"
        keys = " or ".join(f"channels.{name}.enabled" for name in channels.names) or "a channel plug-in"
        error(
            f"no channel is enabled in {where}: set {keys} "
            "to true, or use `modelbot chat` to talk to the bot in this terminal."
        )
        return EXIT_USAGE
    metrics = Metrics()
    app = build_app(cli_config=cli_config, env=env, observer=metrics.observe, channels=channels)
    configure_logging(log_level or app.loaded.config.logging.level, redactor=app.redactor)
    for warning in app.loaded.warnings:
        log.warning("%s", warning)
    try:
        adapters = build_adapters(app, channels, enabled)
    except ModelbotError as exc:
        error(app.redactor.known(str(exc)))
        await app.stop()  # closes the provider clients it made
        return EXIT_FAILED
    if stop is not None:
        return await _lifetime(app, adapters, metrics, stop)
    stop = asyncio.Event()
    with _signals(stop):
        return await _lifetime(app, adapters, metrics, stop)


async def _lifetime(app: App, adapters: list[ChannelAdapter], metrics: Metrics, stop: asyncio.Event) -> int:
    settings = app.loaded.config.metrics
    server: MetricsServer | None = None
    started: list[ChannelAdapter] = []
    code = 0
    try:
        await app.start()
        # The configured providers' SDKs are imported now, not in the first turn that needs them: that
        # import takes seconds, and every chat on the event loop would wait for it.
        prepared = app.prepare_clients()
        log.info("provider clients ready: %s", ", ".join(prepared) or "none")
        await app.store.warm()  # the same for the store's rarer work (SQLite: SQLAlchemy's engine)
        if settings.enabled:
            server = metrics.serve(settings.host, settings.port)
            log.info("metrics on http://%s:%d/metrics", settings.host, server.port)
        for adapter in adapters:
            await adapter.start()
            started.append(adapter)
        freeze_startup_heap()
        log.info("modelbot running: %s", ", ".join(a.name for a in started))
        await stop.wait()
        log.info("stopping")
    except ModelbotError as exc:
        error(app.redactor.known(str(exc)))
        code = EXIT_FAILED
    except Exception:
        log.exception("a channel failed to start")
        code = EXIT_FAILED
    finally:
        for adapter in reversed(started):
            await _stop_adapter(adapter)
        if server is not None:
            server.close()
        await app.stop()
    log.info("stopped")
    return code


async def _stop_adapter(adapter: ChannelAdapter) -> None:
    try:
        await asyncio.wait_for(adapter.stop(), STOP_TIMEOUT_S)
    except TimeoutError:
        log.error("the %s channel did not stop within %gs", adapter.name, STOP_TIMEOUT_S)
    except Exception:
        log.exception("stopping the %s channel failed", adapter.name)


class _signals:
    """SIGINT and SIGTERM set ``stop`` while the bot runs; the previous handlers come back afterwards."""

    def __init__(self, stop: asyncio.Event) -> None:
        self._stop = stop
        self._loop = asyncio.get_running_loop()

    def __enter__(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.add_signal_handler(sig, self._stop.set)

    def __exit__(self, *exc: object) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._loop.remove_signal_handler(sig)
