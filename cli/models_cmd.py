"""``modelbot models``: its subcommands, and ``list`` (the configured models, or the whole catalog).

``status`` (bare ``models``) is in ``cli.models_status``; the subcommands that edit the config
(``set``, ``set-image``, ``aliases``, ``fallbacks``) are in ``cli.models_edit``.
"""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from bot.auth.backend import StoreAuthBackend
from bot.auth.resolver import CredentialResolver, credential_source
from bot.clock import SystemClock
from bot.models.agents import AgentModels, agent_models
from bot.models.catalog import Catalog, CatalogModel
from bot.models.refs import ModelRef
from cli import models_edit
from cli.common import (
    Context,
    add_common_options,
    agent_of,
    backend_for,
    load_context,
    provider_spec,
    read_credentials,
)
from cli.output import format_tokens, print_json, print_lines, print_table

DEFAULT_PROBE_TIMEOUT_S = 20.0


def register(models: argparse.ArgumentParser) -> None:
    _status_options(models, inherit=False)
    models.set_defaults(func=run_status)
    msub = models.add_subparsers(dest="models_command", metavar="SUBCOMMAND")
    p = msub.add_parser("list", help="the configured models (--all: the whole catalog)")
    add_common_options(p, inherit=True)
    p.add_argument("--all", action="store_true", help="every model of the catalog")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="JSON for scripts")
    out.add_argument("--plain", action="store_true", help="one model per line")
    p.set_defaults(func=run_list)
    p = msub.add_parser("status", help="chain, aliases, allowlist and auth per provider")
    _status_options(p, inherit=True)
    p.set_defaults(func=run_status)
    models_edit.register(msub)


def _status_options(p: argparse.ArgumentParser, *, inherit: bool) -> None:
    add_common_options(p, inherit=inherit)
    unset: Any = argparse.SUPPRESS if inherit else False
    p.add_argument("--json", action="store_true", default=unset, help="JSON for scripts")
    p.add_argument(
        "--check",
        action="store_true",
        default=unset,
        help="exit 1 if the chain's providers have missing or expired auth (with --probe: or none "
        "of a provider's profiles answers), 2 if a credential expires within 24h",
    )
    p.add_argument(
        "--probe", action="store_true", default=unset, help="send one tiny request per auth profile"
    )
    p.add_argument(
        "--probe-timeout",
        type=float,
        default=argparse.SUPPRESS if inherit else DEFAULT_PROBE_TIMEOUT_S,
        metavar="S",
        help=f"seconds per probe (default {DEFAULT_PROBE_TIMEOUT_S:g})",
    )


def run_status(args: argparse.Namespace) -> int:
    from cli.models_status import run_status as run  # noqa: PLC0415 - the status views and probes only here

    return run(args)


# -- list ----------------------------------------------------------------------------------------------


def run_list(args: argparse.Namespace) -> int:
    ctx = load_context(args)
    agent = agent_of(args, ctx.config)
    rows = read_credentials(ctx, agent, lambda resolver: _list_rows(args, ctx, agent, resolver))
    if getattr(args, "json", False):
        print_json(rows)
    elif args.plain:
        print_lines([row["model"] for row in rows])
    else:
        table = [
            [
                row["model"],
                "+".join(row["input"]),
                format_tokens(row["contextWindow"]),
                {True: "yes", False: "no", None: "?"}[row["local"]],
                row["auth"],
                ", ".join(row["tags"]),
            ]
            for row in rows
        ]
        print_table(["model", "input", "context", "local", "auth", "tags"], table)
    return 0


def _list_rows(
    args: argparse.Namespace, ctx: Context, agent: str, resolver: CredentialResolver
) -> list[dict[str, Any]]:
    chain = agent_models(ctx.config, agent)
    catalog = Catalog.from_config(ctx.config)
    backend = backend_for(ctx, resolver)
    tags = _tags(chain, catalog)
    models = catalog.models() if args.all else [m for m in catalog.models() if m.ref in tags]
    if not args.all:  # the chain first, in chain order, then the rest of the configured models
        order = list(tags)
        models.sort(key=lambda m: order.index(m.ref))
    now = SystemClock().now_ms()
    auth: dict[str, str] = {}
    return [
        _model_row(m, tags.get(m.ref, []), ctx=ctx, resolver=resolver, backend=backend, auth=auth, now=now)
        for m in models
    ]


def _tags(chain: AgentModels, catalog: Catalog) -> dict[ModelRef, list[str]]:
    """Every configured model with its tags: default, fallback#N, image, image-fallback#N, configured."""
    tags: dict[ModelRef, list[str]] = {}
    tags.setdefault(chain.primary, []).append("default")
    for i, ref in enumerate(chain.fallbacks, 1):
        tags.setdefault(ref, []).append(f"fallback#{i}")
    if chain.image_primary is not None:
        tags.setdefault(chain.image_primary, []).append("image")
    for i, ref in enumerate(chain.image_fallbacks, 1):
        tags.setdefault(ref, []).append(f"image-fallback#{i}")
    allowlist = catalog.allowlist()
    for model in catalog.models():
        if model.source == "config" or (allowlist is not None and model.ref in allowlist):
            tags.setdefault(model.ref, []).append("configured")
    for alias, ref in sorted(catalog.aliases().items()):
        tags.setdefault(ref, []).append(f"alias:{alias}")
    for ref, items in tags.items():
        if not catalog.is_allowed(ref):
            items.append("not-allowed")
    return tags


def _model_row(
    model: CatalogModel,
    tags: list[str],
    *,
    ctx: Context,
    resolver: CredentialResolver,
    backend: StoreAuthBackend,
    auth: dict[str, str],
    now: int,
) -> dict[str, Any]:
    provider = model.ref.provider
    spec = provider_spec(provider, ctx)
    if provider not in auth:
        auth[provider] = (
            "unknown provider" if spec is None else auth_summary(resolver, backend, provider, now)
        )
    return {
        "model": str(model.ref),
        "name": model.name,
        "input": list(model.input),
        "contextWindow": model.context_window,
        "local": None if spec is None else spec.local,
        "auth": auth[provider],
        "tags": tags,
    }


# How each kind of credential is named in the auth column, in the order the rotation prefers them (docs/failover.md §4).
_AUTH_LABELS = {
    "oauth": "oauth",
    "token": "token",
    "api_key": "api_key",
    "env": "env",
    "config": "config",
    "builtin": "built-in",
    "local": "none (local)",
}


def auth_summary(resolver: CredentialResolver, backend: StoreAuthBackend, provider: str, now: int) -> str:
    """Which auth a model of ``provider`` will use (docs/commands.md §2.2): ``api_key ×2``, ``none (local)``, ``env``,
    ``missing``; with "(cooling down)" or "(expired)" when none of it can be used right now."""
    kinds: Counter[str] = Counter(
        cred.type if credential_source(cred) == "stored" else credential_source(cred)
        for _, cred, _ in resolver.all_profiles(provider, now)
    )
    if not kinds:
        return "missing"
    text = ", ".join(
        label if kinds[kind] == 1 else f"{label} ×{kinds[kind]}"
        for kind, label in _AUTH_LABELS.items()
        if kinds[kind]
    )
    if backend.has_usable_auth(provider, now):
        return text
    return f"{text} (cooling down)" if backend.rotation(provider, now) else f"{text} (expired)"
