"""``modelbot chat``: the console adapter on the configured (or built-in) models."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from adapters.console import ConsoleAdapter
from bot.app import App, build_app, freeze_startup_heap
from bot.config.defaults import DEMO_PROVIDER
from bot.logging_setup import configure_logging
from bot.models.agents import agent_models, default_agent_id
from cli.channels import BUILTIN_CHANNELS

DEMO_DELAY_S = 0.02  # a visible stream in a terminal; pipes get the answer at once


def register(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config", help="config file (default: $MODELBOT_CONFIG or $MODELBOT_STATE_DIR/config.json5)"
    )
    p.add_argument("--agent", help="agent id (default: the default agent)")
    p.add_argument("--session", default="main", help="session name (default: main)")
    p.add_argument("--user", default=None, help="user name (default: $USER)")
    p.add_argument("--json", action="store_true", help="one JSON object per reply")
    p.set_defaults(func=run_chat)


def run_chat(args: argparse.Namespace) -> int:
    return asyncio.run(_chat(args))


async def _chat(args: argparse.Namespace) -> int:
    interactive = sys.stdin.isatty() and sys.stdout.isatty() and not args.json
    delay = DEMO_DELAY_S if interactive else 0.0
    app = build_app(cli_config=args.config, demo_delay_s=delay, channels=BUILTIN_CHANNELS)
    # Warnings only (a turn's log line would break into the conversation), through the same redaction as
    # `modelbot run`: a provider's error text or a client library's record may quote a key.
    configure_logging("WARNING", redactor=app.redactor)
    for warning in app.loaded.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.agent is not None and args.agent not in app.engines:
        print(f'error: unknown agent "{args.agent}"', file=sys.stderr)
        return 2
    await app.start()
    try:
        adapter = ConsoleAdapter(
            app.chat(),
            session=args.session,
            user=args.user or os.environ.get("USER") or "console",
            agent_id=args.agent,
            json_mode=args.json,
            interactive=interactive,
            banner=_banner(app),
        )
        freeze_startup_heap()
        return await adapter.run()
    finally:
        await app.stop()


def _banner(app: App) -> str:
    models = agent_models(app.loaded.config, default_agent_id(app.loaded.config))
    where = str(app.loaded.path) if app.loaded.path else "built-in default (no config file)"
    lines = [f"modelbot — config: {where}", f"model: {models.primary}"]
    if models.primary.provider == DEMO_PROVIDER:
        lines.append(
            "This is the offline DEMO provider: no real model is called. Set ANTHROPIC_API_KEY or "
            "OPENAI_API_KEY, or write a config, to talk to a real model."
        )
    lines.append("Type a message, or /help. Ctrl-D quits.")
    return "\n".join(lines)
