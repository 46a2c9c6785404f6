"""``modelbot auth cooldowns`` and ``auth clear-cooldown``: what rests now, per profile and per (profile, model)
pair (docs/failover.md §6), and the recent failover history."""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from bot.auth.backend import profile_line
from bot.auth.resolver import CredentialResolver
from bot.auth.types import AuthProfiles, Credential
from bot.clock import SystemClock, format_wait
from bot.conversation.status_view import profile_flags
from bot.errors import CommandError
from cli.common import Context, agent_of, load_context, run_async, session_store, with_resolver
from cli.output import format_time, print_json, print_table
from cli.sessions_cmd import parse_duration


def run_clear_cooldown(args: argparse.Namespace) -> int:
    ctx = load_context(args, quiet=True)
    model = args.model.strip() if args.model is not None else None
    if model == "":
        raise CommandError("--model needs a model id, e.g. --model gpt-5.2.")

    async def clear(resolver: CredentialResolver) -> None:
        await resolver.store.aclear_cooldown(args.profile_id, model)

    with_resolver(ctx, agent_of(args, ctx.config), clear)
    if model is not None:
        print(f"Cleared the cooldown of {args.profile_id} for {model}.")
    else:
        print(f"Cleared the cooldowns (every model) and billing disable of {args.profile_id}.")
    return 0


def run_cooldowns(args: argparse.Namespace) -> int:
    ctx = load_context(args, quiet=True)
    since_ms = parse_duration(args.since)
    if args.limit <= 0:
        raise CommandError("--limit must be a positive number.")
    now = SystemClock().now_ms()

    async def current_state(resolver: CredentialResolver) -> list[dict[str, Any]]:
        return resting_now(resolver.store.load(), now)

    current = with_resolver(ctx, agent_of(args, ctx.config), current_state)
    history = run_async(_history(ctx, now - since_ms, args.limit))
    if args.json:
        print_json({"current": current, "history": history})
        return 0
    rows = [
        [c["id"], c["model"] or "(all)", c["state"], str(c["errorCount"]), format_time(c["lastFailureAt"])]
        for c in current
    ]
    print_table(
        ["profile", "model", "state", "errors", "last failure"], rows, title="Resting now", empty="none"
    )
    print()
    events = [
        [format_time(e["at"]), e["profile"] or "-", e["model"], e["reason"], e["session"] or "-"]
        for e in history
    ]
    title = f"Failures in the last {args.since}"
    print_table(["time", "profile", "model", "reason", "session"], events, title=title, empty="none")
    return 0


def resting_now(doc: AuthProfiles, now: int) -> list[dict[str, Any]]:
    """One row per resting scope: a profile as a whole (``model`` null), or one of its (profile, model) pairs."""
    rows: list[dict[str, Any]] = []
    for pid, stats in sorted(doc.usage_stats.items()):
        if stats.unavailable_until(now) is not None:  # the profile as a whole rests
            line = replace(profile_line(pid, doc.profiles.get(pid) or _unknown(pid), doc, now), pairs=())
            rows.append(
                {
                    "id": pid,
                    "model": None,
                    "state": ", ".join(
                        profile_flags(line, now_ms=now, pin=None, pin_source=None, is_next=False)
                    ),
                    "cooldownUntil": stats.cooldown_until,
                    "disabledUntil": stats.disabled_until,
                    "disabledReason": stats.disabled_reason,
                    "errorCount": stats.error_count,
                    "failureCounts": dict(stats.failure_counts),
                    "lastFailureAt": stats.last_failure_at,
                }
            )
        for model, pair in sorted(stats.models.items()):
            if pair.cooling_until(now) is None:
                continue
            assert pair.cooldown_until is not None
            rows.append(
                {
                    "id": pid,
                    "model": model,
                    "state": f"cooldown {format_wait(pair.cooldown_until - now)}",
                    "cooldownUntil": pair.cooldown_until,
                    "disabledUntil": None,
                    "disabledReason": None,
                    "errorCount": pair.error_count,
                    "failureCounts": {},
                    "lastFailureAt": pair.last_failure_at,
                }
            )
    return rows


def _unknown(profile_id: str) -> Credential:
    """Usage stats can outlive their profile (implicit ids like ``openai:env``); show them anyway."""
    return Credential(type="api_key", provider=profile_id.split(":", 1)[0], secret="")


async def _history(ctx: Context, since_ms: int, limit: int) -> list[dict[str, Any]]:
    async with session_store(ctx) as store:
        events = await store.events(since_ms=since_ms, limit=limit)
    return [
        {
            "at": e.at,
            "profile": e.profile_id,
            "model": e.ref,
            "reason": e.reason,
            "cooldownUntil": e.cooldown_until,
            "session": e.session_key,
        }
        for e in events
    ]
