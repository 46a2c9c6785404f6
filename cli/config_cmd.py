"""``modelbot config validate|migrate``: check the config file in use, or rewrite its legacy keys in place.

``validate`` checks the file as the bot reads it. ``${VAR}`` references that are not set in this shell are
reported as warnings, not errors: the file is what is being checked (a CI job holds no secrets), and
``modelbot run`` still refuses to start without them.
"""

from __future__ import annotations

import argparse
import os

from bot.app import resolve_paths
from bot.config.config_file import check_text
from bot.config.edit import Change, Json5Document
from bot.config.env_refs import env_names
from bot.config.json5_cst import loads
from bot.errors import ConfigError
from cli.channels import BUILTIN_CHANNELS
from cli.common import add_common_options, edit_config, load_context
from cli.output import error, warn

EXIT_INVALID = 1


def register(config: argparse.ArgumentParser) -> None:
    csub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    p = csub.add_parser("validate", help="print OK and any warnings (exit 0), or the error (exit 1)")
    add_common_options(p, agent=False)
    p.set_defaults(func=run_validate)
    p = csub.add_parser(
        "migrate", help="rewrite the legacy `agent` key as `agents.defaults`, keeping comments"
    )
    add_common_options(p, agent=False)
    p.set_defaults(func=run_migrate)


def run_validate(args: argparse.Namespace) -> int:
    env = dict(os.environ)
    paths = resolve_paths(args.config, env)
    path = paths.config
    if not path.exists():
        if args.config is not None:
            error(f"{path}: file not found")
            return EXIT_INVALID
        print(f"No config file at {path}: the built-in default is used. OK")
        return 0
    try:
        text = path.read_text(encoding="utf-8-sig")
        loaded = check_text(text, file=str(path), path=path, env=env, channels=BUILTIN_CHANNELS)
        missing = sorted(env_names(loads(text, str(path))) - set(env))
    except (OSError, UnicodeDecodeError) as exc:
        error(f"{path}: cannot read the file ({exc})")
        return EXIT_INVALID
    except ConfigError as exc:
        error(str(exc))
        return EXIT_INVALID
    for warning in loaded.warnings:
        warn(warning)
    for name in missing:
        warn(f"environment variable `{name}` is not set here; `modelbot run` needs it")
    print(f"{path}: OK")
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    ctx = load_context(args, quiet=True)
    if not ctx.paths.config.exists():
        raise ConfigError(str(ctx.paths.config), "", "file not found; there is nothing to migrate")

    def edit(doc: Json5Document) -> list[Change]:
        if not doc.migrate_legacy():
            return []
        return [Change("agent", "{ … }", "agents.defaults (renamed; comments and layout kept)")]

    return edit_config(ctx, edit)
