"""``modelbot auth``: the credentials — list, add, remove, order, tokens and cooldowns (export, import and the
database's secret key: ``auth_transfer_cmd``), on the store ``auth.store`` names: auth-profiles.json or the
database.

Secrets come from a prompt, or from stdin when it is not a terminal; they are never printed (only masked).
Every change is one pure edit (``doc_edits``) applied by the store's ``aupdate`` (a locked atomic file write, or
a row-locked transaction), so a running bot loses nothing.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

from bot.auth import doc_edits
from bot.auth.backend import profile_line
from bot.auth.mask import mask_secret
from bot.auth.resolver import CredentialResolver, credential_source
from bot.auth.types import Credential, CredentialType
from bot.clock import SystemClock
from bot.conversation.status_view import pairs_json, profile_flags
from bot.errors import CommandError
from bot.providers.registry import known_providers, spec_for
from cli import auth_transfer_cmd
from cli.auth_cooldowns import run_clear_cooldown, run_cooldowns
from cli.common import Context, add_common_options, agent_of, load_context, read_credentials, with_resolver
from cli.output import format_time, print_json, print_table, warn

SETUP_TOKEN_PREFIX = "sk-ant-oat01-"  # noqa: S105 - the shape of a token, not a token
MAX_PROFILE_NAME = 128


def register(auth: argparse.ArgumentParser) -> None:
    asub = auth.add_subparsers(dest="auth_command", metavar="ACTION", required=True)
    p = _leaf(asub, "list", "every credential, masked, with its state", run_list)
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    p = _leaf(asub, "add", "store an API key (or a token) for a provider", run_add)
    _profile_options(p)
    p.add_argument("--type", choices=("api_key", "token"), default="api_key", help="default: api_key")
    p.add_argument("--key", help="the secret itself (visible in shell history; prefer the prompt or stdin)")
    p = _leaf(asub, "paste-token", "store a static bearer token for a provider", run_paste_token)
    _profile_options(p)
    p = _leaf(
        asub, "setup-token", "store an Anthropic setup-token (from `claude setup-token`)", run_setup_token
    )
    p.add_argument("--profile-id", help="profile id (default: anthropic:default)")
    p.add_argument("--email", help="the account, shown in status")
    p = _leaf(
        asub, "login", "log in to a provider with OAuth (browser login, refreshed automatically)", run_login
    )
    p.add_argument(
        "--provider", required=True, help="e.g. anthropic (Claude Pro/Max), or one with an oauth config"
    )
    p.add_argument(
        "--profile-id", help="provider:name (default: provider:<email> of the login, else provider:default)"
    )
    p.add_argument("--timeout", type=float, default=600, help="seconds to wait for the login (default 600)")
    p = _leaf(asub, "remove", "delete a profile", run_remove)
    p.add_argument("profile_id", metavar="ID")
    p = _leaf(
        asub,
        "clear-cooldown",
        "end a profile's cooldowns (all its models) and billing disable",
        run_clear_cooldown,
    )
    p.add_argument("profile_id", metavar="ID")
    p.add_argument(
        "--model", metavar="M", help="clear only the cooldown of this model (its id as sent, e.g. gpt-5.2)"
    )
    p = _leaf(asub, "cooldowns", "profiles resting now, and recent failures with reasons", run_cooldowns)
    p.add_argument("--since", default="24h", help="history window, e.g. 24h, 7d, 90m (default 24h)")
    p.add_argument("--limit", type=int, default=50, help="at most this many events (default 50)")
    p.add_argument("--json", action="store_true", help="JSON for scripts")

    auth_transfer_cmd.register(asub)

    order = asub.add_parser("order", help="the rotation order of a provider's profiles")
    osub = order.add_subparsers(dest="order_command", metavar="ACTION", required=True)
    for name, help_text, func in (
        ("get", "show the stored, configured and effective order", run_order_get),
        ("set", "pin the order (profile ids, best first)", run_order_set),
        ("clear", "forget the stored order", run_order_clear),
    ):
        p = _leaf(osub, name, help_text, func)
        p.add_argument("--provider", required=True)
        if name == "set":
            p.add_argument("ids", nargs="+", metavar="ID")


def _leaf(
    sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_text: str, func: Any
) -> argparse.ArgumentParser:
    p = sub.add_parser(name, help=help_text)
    add_common_options(p)
    p.set_defaults(func=func)
    return p


def _profile_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--provider", required=True, help="e.g. anthropic, openai, openrouter")
    p.add_argument("--profile-id", help="provider:name, or just the name (default: <provider>:default)")
    p.add_argument("--email", help="the account, shown in status")


def _provider(ctx: Context, text: str) -> str:
    """The provider id, lower-cased; any provider may hold keys but the built-in demo (docs/failover.md §3)."""
    provider = text.strip().lower()
    # Unknown providers raise, with suggestions. A local server (vLLM, a LiteLLM proxy) may run with keys.
    if spec_for(provider, ctx.config).builtin_profiles:
        raise CommandError(f'Provider "{provider}" needs no credentials.')
    return provider


def profile_id_for(provider: str, given: str | None) -> str:
    """``provider:default``, or the given id; a bare name gets the provider's prefix."""
    if given is None:
        return f"{provider}:default"
    given = given.strip()
    head, colon, name = given.partition(":")
    if not colon:
        head, name = provider, given
    if head.strip().lower() != provider:
        raise CommandError(f'Profile id "{given}" must start with "{provider}:".')
    if not name or len(name) > MAX_PROFILE_NAME or any(ch.isspace() or not ch.isprintable() for ch in name):
        raise CommandError("A profile name is one word of printable characters (at most 128).")
    return f"{provider}:{name}"


def read_secret(prompt: str, given: str | None = None) -> str:
    """The secret from ``--key``, a hidden prompt (terminal) or stdin; checked, never echoed."""
    if given is not None:
        warn("--key leaves the secret in your shell history and the process list; prefer the prompt or stdin")
        secret = given
    elif sys.stdin.isatty():
        secret = getpass.getpass(prompt)
    else:
        secret = sys.stdin.read()
    secret = secret.strip()
    if not secret:
        raise CommandError("No secret was given; nothing was stored.")
    if any(ch.isspace() or not ch.isprintable() for ch in secret):
        raise CommandError(
            "The secret contains spaces, line breaks or control characters; nothing was stored."
        )
    return secret


def _store(
    ctx: Context,
    args: argparse.Namespace,
    *,
    provider: str,
    kind: CredentialType,
    secret: str,
    profile_id: str,
) -> int:
    cred = Credential(type=kind, provider=provider, secret=secret, email=args.email)

    async def store(resolver: CredentialResolver) -> None:
        existed = profile_id in (await resolver.store.areload()).profiles
        doc = await resolver.store.aupdate(doc_edits.with_profile(profile_id, cred))
        verb = "Replaced" if existed else "Stored"
        print(f"{verb} {profile_id} ({kind}, {mask_secret(secret)}) in {resolver.store.where}.")
        warn_outside_order(ctx, doc.order.get(provider), provider, profile_id)

    with_resolver(ctx, agent_of(args, ctx.config), store)
    return 0


def warn_outside_order(ctx: Context, stored: list[str] | None, provider: str, profile_id: str) -> None:
    """A new profile that an explicit rotation order (stored, else configured) leaves out is never used."""
    order = stored or ctx.config.auth.order_for(provider)
    if order and profile_id not in order:
        warn(
            f"{provider} has an explicit rotation order without {profile_id}, so it will not be used; "
            f"add it with `modelbot auth order set --provider {provider} …`"
        )


def run_add(args: argparse.Namespace) -> int:
    ctx = load_context(args, quiet=True)
    provider = _provider(ctx, args.provider)
    profile_id = profile_id_for(provider, args.profile_id)
    secret = read_secret(f"{'Token' if args.type == 'token' else 'API key'} for {profile_id}: ", args.key)
    return _store(ctx, args, provider=provider, kind=args.type, secret=secret, profile_id=profile_id)


def run_paste_token(args: argparse.Namespace) -> int:
    ctx = load_context(args, quiet=True)
    provider = _provider(ctx, args.provider)
    profile_id = profile_id_for(provider, args.profile_id)
    secret = read_secret(f"Token for {profile_id}: ")
    return _store(ctx, args, provider=provider, kind="token", secret=secret, profile_id=profile_id)


def run_setup_token(args: argparse.Namespace) -> int:
    ctx = load_context(args, quiet=True)
    profile_id = profile_id_for("anthropic", args.profile_id)
    secret = read_secret("Anthropic setup-token (from `claude setup-token`): ")
    if not secret.startswith(SETUP_TOKEN_PREFIX) or len(secret) <= len(SETUP_TOKEN_PREFIX):
        raise CommandError(
            f'That is not an Anthropic setup-token (they start with "{SETUP_TOKEN_PREFIX}"; '
            "run `claude setup-token` to get one). Nothing was stored."
        )
    return _store(ctx, args, provider="anthropic", kind="token", secret=secret, profile_id=profile_id)


def run_login(args: argparse.Namespace) -> int:
    from cli.auth_login import run_login as login  # noqa: PLC0415 - only a login needs the OAuth client

    return login(args)


def run_remove(args: argparse.Namespace) -> int:
    ctx = load_context(args, quiet=True)

    async def remove(resolver: CredentialResolver) -> None:
        await resolver.store.aupdate(doc_edits.without_profile(args.profile_id))

    with_resolver(ctx, agent_of(args, ctx.config), remove)
    print(f"Removed {args.profile_id}.")
    provider = args.profile_id.split(":", 1)[0].strip().lower()
    if args.profile_id in (ctx.config.auth.order_for(provider) or ()):
        warn(f"{args.profile_id} is still listed in auth.order.{provider} of the config")
    return 0


# -- list ------------------------------------------------------------------------------------------------


def run_list(args: argparse.Namespace) -> int:
    ctx = load_context(args, quiet=True)
    rows = read_credentials(ctx, agent_of(args, ctx.config), lambda resolver: _list_rows(ctx, resolver))
    if args.json:
        print_json(rows)
        return 0
    table = [
        [r["id"], r["type"], r["secret"], r["email"] or "-", format_time(r["expires"]), r["state"]]
        for r in rows
    ]
    print_table(["profile", "type", "secret", "email", "expires", "state"], table, empty="no credentials")
    return 0


def _list_rows(ctx: Context, resolver: CredentialResolver) -> list[dict[str, Any]]:
    now = SystemClock().now_ms()
    doc = resolver.store.load()
    creds: dict[str, Credential] = dict(sorted(doc.profiles.items()))
    for provider in known_providers(ctx.config):  # keys from the environment or the config count too
        for pid, cred in resolver.implicit_profiles(provider, doc).items():
            if credential_source(cred) in ("env", "config"):
                creds[pid] = cred
    rows: list[dict[str, Any]] = []
    for pid, cred in creds.items():
        line = profile_line(pid, cred, doc, now, refreshable=resolver.can_refresh(cred))
        flags = profile_flags(line, now_ms=now, pin=None, pin_source=None, is_next=False)
        stats = doc.stats(pid)
        rows.append(
            {
                "id": pid,
                "provider": cred.provider,
                "type": line.type,
                "secret": line.masked,
                "email": cred.email,
                "expires": cred.expires,
                "expired": line.expired,
                "canRefresh": line.refreshable,
                "cooldownUntil": stats.cooldown_until,
                "disabledUntil": stats.disabled_until,
                "disabledReason": stats.disabled_reason,
                "errorCount": stats.error_count,
                "lastUsed": stats.last_used,
                "models": pairs_json(line),
                "state": ", ".join(flags) or "ok",
            }
        )
    return rows


# -- order -----------------------------------------------------------------------------------------------


def run_order_get(args: argparse.Namespace) -> int:
    ctx = load_context(args, quiet=True)
    provider = args.provider.strip().lower()
    spec_for(provider, ctx.config)

    def show(resolver: CredentialResolver) -> None:
        stored = resolver.store.load().order.get(provider)
        configured = ctx.config.auth.order_for(provider)
        print(f"stored:     {', '.join(stored) if stored else '-'}")
        print(f"config:     {', '.join(configured) if configured else '-'}")
        effective = resolver.candidates(provider, SystemClock().now_ms())
        print(f"rotation:   {', '.join(effective) or '(no usable profile)'}")

    read_credentials(ctx, agent_of(args, ctx.config), show)
    return 0


def run_order_set(args: argparse.Namespace) -> int:
    ctx = load_context(args, quiet=True)
    provider = args.provider.strip().lower()
    spec_for(provider, ctx.config)

    async def set_order(resolver: CredentialResolver) -> None:
        doc = await resolver.store.areload()
        known = {pid for pid, cred in doc.profiles.items() if cred.provider == provider}
        known |= set(resolver.implicit_profiles(provider, doc))
        unknown = [pid for pid in args.ids if pid not in known]
        if unknown:
            raise CommandError(
                f'No profile "{unknown[0]}" for {provider}. Profiles: {", ".join(sorted(known)) or "none"}.'
            )
        await resolver.store.aupdate(doc_edits.with_order(provider, args.ids))

    with_resolver(ctx, agent_of(args, ctx.config), set_order)
    print(f"Rotation order of {provider}: {', '.join(dict.fromkeys(args.ids))}.")
    return 0


def run_order_clear(args: argparse.Namespace) -> int:
    ctx = load_context(args, quiet=True)
    provider = args.provider.strip().lower()
    spec_for(provider, ctx.config)

    async def clear(resolver: CredentialResolver) -> None:
        await resolver.store.aupdate(doc_edits.without_order(provider))

    with_resolver(ctx, agent_of(args, ctx.config), clear)
    print(f"Cleared the stored rotation order of {provider}.")
    return 0
