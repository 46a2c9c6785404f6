"""``modelbot``: the entry point. Each subcommand lives in its own module, imported only when it runs.

``modelbot --help`` lists the subcommands from ``SUBCOMMANDS`` without importing any of them: their imports
(the config schema, SQLAlchemy, rich, the provider SDKs, the platform libraries) are most of what a command line waits
for. A subcommand is a row here plus a module with ``register(parser)`` (its arguments, ``set_defaults(func=…)``
for each action) and its handlers; a handler imports what only it needs inside itself.
``tests/test_cli_startup.py`` checks that ``--help`` stays light.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import os
import sys
import types
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from bot import __version__

if TYPE_CHECKING:
    from cli.dataclass_cache import DataclassCodeCache

# name: (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "chat": ("cli.chat_cmd", "chat in the terminal (one message per line)"),
    "run": ("cli.run_cmd", "run the enabled channels (Telegram, Discord) until SIGINT/SIGTERM"),
    "models": ("cli.models_cmd", "models, fallbacks, aliases and their auth (bare: status)"),
    "auth": ("cli.auth_cmd", "auth profiles: keys, tokens, OAuth logins, rotation order, cooldowns"),
    "sessions": ("cli.sessions_cmd", "list, show and reset conversations"),
    "config": ("cli.config_cmd", "check the config file, or migrate its legacy keys"),
}


# Pydantic looks for plugins among every installed distribution's entry points when the config schema is
# built (~3 ms of each command's start-up, measured); modelbot uses none. Read by pydantic at that moment, so
# setting it here suffices; an explicit setting wins.
PYDANTIC_PLUGINS_ENV = "PYDANTIC_DISABLE_PLUGINS"
_PLUGINS_OFF = ("__all__", "1", "true")  # the values with which pydantic's get_plugins() returns () at once
_PLUGIN_LOADER = "pydantic.plugin._loader"


def _without_plugin_loader() -> None:
    """With plugins off, stand in for pydantic's plugin loader, whose one function then returns nothing.

    Importing the real one imports ``importlib.metadata`` (email, zipfile, csv …) before it even reads the
    setting: ~50M instructions, 6% of ``modelbot models list``. It is loaded by the first model built, so this
    must run before a subcommand imports the config schema (``--help`` imports no pydantic at all); a loader
    already imported, or plugins asked for, is left be.
    """
    if os.environ.get(PYDANTIC_PLUGINS_ENV) not in _PLUGINS_OFF or _PLUGIN_LOADER in sys.modules:
        return
    loader = types.ModuleType(_PLUGIN_LOADER, "pydantic's plugin loader while plugins are off: none to load")
    loader.get_plugins = tuple  # type: ignore[attr-defined]  # get_plugins() -> ()
    sys.modules[_PLUGIN_LOADER] = loader


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the arguments of the subcommand ``argv`` names (of every one when ``argv`` is None)."""
    parser = argparse.ArgumentParser(
        prog="modelbot", description="A chat bot with model selection and failover."
    )
    parser.add_argument("--version", action="version", version=f"modelbot {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # The top level has no option that takes a value, so the first word that is not an option is the command.
    wanted = None if argv is None else next((a for a in argv if not a.startswith("-")), "")
    for name, (module, help_text) in SUBCOMMANDS.items():
        command = sub.add_parser(name, help=help_text)
        if wanted is None or wanted == name:
            _without_plugin_loader()  # before the subcommand's imports build the config schema
            importlib.import_module(module).register(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    os.environ.setdefault(PYDANTIC_PLUGINS_ENV, "__all__")
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    import logging  # noqa: PLC0415 - not needed by --help and usage errors

    from bot.errors import ModelbotError  # noqa: PLC0415 - the same

    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(args.func(args))
    except ModelbotError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file or socket the command needed: say which, without a traceback
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"error: {exc.strerror or exc}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def run() -> NoReturn:
    """The ``modelbot`` console script: ``main`` in a process of its own, which then exits.

    At exit the interpreter runs a full collection over every object the command made, just before the
    process frees them all (~36M instructions, 4% of ``modelbot models list``): frozen, they are not walked.
    Not in ``main``, which tests call in their own process. The same goes for the dataclass methods compiled
    during the run (``cli.dataclass_cache``): kept for the next start, a quarter of ``modelbot chat``'s.
    """
    cache = _dataclass_cache(sys.argv[1:])
    try:
        sys.exit(main())
    finally:
        if cache is not None:
            cache.save()
        gc.freeze()


def _dataclass_cache(argv: Sequence[str]) -> DataclassCodeCache | None:
    """The cache of compiled dataclass methods, installed for a subcommand; none for ``--help`` and usage
    errors, which make no dataclass (and would pay for importing ``dataclasses`` itself)."""
    if not argv or argv[0] not in SUBCOMMANDS:
        return None
    from cli.dataclass_cache import DataclassCodeCache, default_path  # noqa: PLC0415 - see above

    cache = DataclassCodeCache(default_path())
    cache.install()
    return cache


if __name__ == "__main__":
    run()
