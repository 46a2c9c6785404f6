"""``modelbot sessions``: list, show and reset the conversations in the session store (an admin's tool)."""

from __future__ import annotations

import argparse
import dataclasses
import re
from typing import Any

from bot.clock import SystemClock
from bot.errors import CommandError
from bot.store.protocol import SessionStore
from bot.store.types import SessionRecord
from cli.common import add_common_options, load_context, run_async, session_store
from cli.output import format_time, print_json, print_pairs, print_table

_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_DURATION_RE = re.compile(r"(\d{1,6})([smhdw])")
_PAGE = 500
_PREVIEW_CHARS = 200


def parse_duration(text: str) -> int:
    """``30d``, ``12h``, ``90m``, ``1h30m`` ⇒ milliseconds."""
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION_RE.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise CommandError(f'"{text}" is not a duration; use e.g. 30d, 12h, 90m or 1h30m.')
    total = sum(int(number) * _UNIT_MS[unit] for number, unit in parts)
    if total <= 0:
        raise CommandError("A duration must be longer than zero.")
    return total


def register(sessions: argparse.ArgumentParser) -> None:
    ssub = sessions.add_subparsers(dest="sessions_command", metavar="ACTION", required=True)
    p = ssub.add_parser("list", help="sessions, most recently active first")
    _options(p, filters=True)
    p.add_argument("--limit", type=int, default=100, help="at most this many (default 100)")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    p.set_defaults(func=run_list)
    p = ssub.add_parser("show", help="one session: settings and its last messages")
    _options(p)
    p.add_argument("key", metavar="KEY")
    p.add_argument("--messages", type=int, default=10, help="how many of the last messages (default 10)")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    p.set_defaults(func=run_show)
    p = ssub.add_parser("reset", help="clear history and pins (the chosen model stays)")
    _options(p, filters=True)
    p.add_argument("key", metavar="KEY", nargs="?")
    p.add_argument("--all", action="store_true", help="every session (matching the filters)")
    p.add_argument("--older-than", metavar="DURATION", help="with --all: only sessions idle this long (30d)")
    p.set_defaults(func=run_reset)


def _options(p: argparse.ArgumentParser, *, filters: bool = False) -> None:
    add_common_options(p, agent=False)
    if filters:
        p.add_argument("--platform", help="telegram, discord or console")
        p.add_argument("--chat", help="a chat id")
        p.add_argument("--user", help="a user id")


def _record(record: SessionRecord) -> dict[str, Any]:
    return {_camel(k): v for k, v in dataclasses.asdict(record).items()}


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def run_list(args: argparse.Namespace) -> int:
    if args.limit <= 0:
        raise CommandError("--limit must be a positive number.")
    records = run_async(_list(args))
    if args.json:
        print_json([_record(r) for r in records])
        return 0
    rows = [
        [
            r.key,
            r.agent_id,
            r.model_override or "-",
            r.pin_profile or "-",
            str(r.message_count),
            format_time(r.updated_at),
        ]
        for r in records
    ]
    print_table(
        ["key", "agent", "model", "pinned profile", "messages", "last active"], rows, empty="no sessions"
    )
    return 0


async def _list(args: argparse.Namespace) -> list[SessionRecord]:
    async with session_store(load_context(args, quiet=True)) as store:
        return await store.list_sessions(
            platform=args.platform, chat_id=args.chat, user_id=args.user, limit=args.limit
        )


def run_show(args: argparse.Namespace) -> int:
    if args.messages < 0:
        raise CommandError("--messages must not be negative.")
    record, messages = run_async(_show(args))
    if args.json:
        history = [
            {"id": m.id, "role": m.role, "content": m.content, "createdAt": m.created_at} for m in messages
        ]
        print_json({"session": _record(record), "messages": history})
        return 0
    print_pairs(
        [
            ("Session", record.key),
            ("Agent", record.agent_id),
            (
                "Model",
                f"{record.model_override} ({record.model_source})"
                if record.model_override
                else "agent default",
            ),
            ("Pinned profile", f"{record.pin_profile} ({record.pin_source})" if record.pin_profile else "-"),
            ("Last answer", f"{record.last_model or '-'} via {record.last_profile or '-'}"),
            ("Messages", str(record.message_count)),
            ("Compactions", str(record.compaction_count)),
            ("Created", format_time(record.created_at)),
            ("Last active", format_time(record.updated_at)),
        ]
    )
    if messages:
        print()
        rows = [[format_time(m.created_at), m.role, _preview(m.content)] for m in messages]
        print_table(["time", "role", "text"], rows, title=f"Last {len(messages)} messages")
    return 0


def _preview(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= _PREVIEW_CHARS else flat[: _PREVIEW_CHARS - 1] + "…"


async def _show(args: argparse.Namespace) -> tuple[SessionRecord, list[Any]]:
    async with session_store(load_context(args, quiet=True)) as store:
        record = await store.get(args.key)
        if record is None:
            raise CommandError(f'No session "{args.key}". See `modelbot sessions list`.')
        messages = await store.history(args.key, limit=args.messages) if args.messages else []
        return record, messages


def run_reset(args: argparse.Namespace) -> int:
    filtered = any((args.platform, args.chat, args.user))
    if args.all == (args.key is not None):
        raise CommandError("Give either a session KEY or --all.")
    if not args.all and (args.older_than or filtered):
        raise CommandError("--older-than and the filters go with --all.")
    cutoff = None
    if args.older_than:
        cutoff = SystemClock().now_ms() - parse_duration(args.older_than)
    count = run_async(_reset(args, cutoff, filtered))
    if args.key is not None:
        print(f"Reset {args.key}: history and profile pins cleared, the chosen model kept.")
    else:
        print(f"Reset {count} session{'s' if count != 1 else ''}.")
    return 0


async def _reset(args: argparse.Namespace, cutoff: int | None, filtered: bool) -> int:
    now = SystemClock().now_ms()
    async with session_store(load_context(args, quiet=True)) as store:
        if args.key is not None:
            await store.reset(args.key, keep_model=True, now_ms=now)
            return 1
        if not filtered:
            return await store.reset_all(older_than_ms=cutoff)
        keys = await _matching(store, args, cutoff)
        for key in keys:
            await store.reset(key, keep_model=True, now_ms=now)
        return len(keys)


async def _matching(store: SessionStore, args: argparse.Namespace, cutoff: int | None) -> list[str]:
    """Every key the filters match; collected before any reset, which reorders the listing."""
    keys: list[str] = []
    offset = 0
    while True:
        page = await store.list_sessions(
            platform=args.platform, chat_id=args.chat, user_id=args.user, limit=_PAGE, offset=offset
        )
        keys += [r.key for r in page if cutoff is None or r.updated_at < cutoff]
        if len(page) < _PAGE:
            return keys
        offset += _PAGE
