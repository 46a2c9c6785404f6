"""``modelbot models status``: the chain, aliases, allowlist and auth per provider; ``--check`` and ``--probe``."""

from __future__ import annotations

import argparse
from typing import Any

from bot.auth.resolver import CredentialResolver, credential_source
from bot.clock import HOUR_MS, Clock, SystemClock
from bot.conversation.status_view import ProviderStatus, pairs_json, profile_flags
from bot.errors import ModelbotError
from bot.models.agents import AgentModels, agent_models
from bot.models.catalog import Catalog
from bot.models.refs import ModelRef
from bot.providers.registry import known_providers
from bot.redaction import Redactor, process_secrets
from cli.common import Context, agent_of, backend_for, load_context, provider_spec, with_resolver
from cli.output import error, format_time, print_json, print_pairs, print_table
from cli.probe import ProbeResult, probe_all

EXPIRING_MS = 24 * HOUR_MS
EXIT_MISSING, EXIT_EXPIRING = 1, 2


def run_status(args: argparse.Namespace) -> int:
    try:
        return _status(args)
    except ModelbotError as exc:
        if not args.check:
            raise
        error(str(exc))  # a config that cannot be read is as bad as missing auth for a check
        return EXIT_MISSING


def _status(args: argparse.Namespace) -> int:
    ctx = load_context(args)
    agent = agent_of(args, ctx.config)
    return with_resolver(ctx, agent, lambda resolver: _status_of(args, ctx, agent, resolver))


async def _status_of(args: argparse.Namespace, ctx: Context, agent: str, resolver: CredentialResolver) -> int:
    chain = agent_models(ctx.config, agent)
    catalog = Catalog.from_config(ctx.config)
    backend = backend_for(ctx, resolver)
    clock = SystemClock()
    now = clock.now_ms()
    first_model: dict[str, str] = {}  # a provider's rotation is shown for the first chain model it serves
    for ref in _chain_refs(chain):
        first_model.setdefault(ref.provider, ref.model)
    in_chain = list(first_model)
    others = [p for p in known_providers(ctx.config) if p not in in_chain and backend.has_credentials(p)]
    statuses = [backend.provider_status(p, now, first_model.get(p)) for p in [*in_chain, *others]]
    missing = [s.provider for s in statuses if s.provider in in_chain and s.missing_auth]
    allowlist = catalog.allowlist()
    data: dict[str, Any] = {
        "config": None if ctx.loaded.path is None else str(ctx.loaded.path),
        "agent": agent,
        "default": str(chain.primary),
        "fallbacks": [str(r) for r in chain.fallbacks],
        "imageModel": None if chain.image_primary is None else str(chain.image_primary),
        "imageFallbacks": [str(r) for r in chain.image_fallbacks],
        "aliases": {alias: str(ref) for alias, ref in sorted(catalog.aliases().items())},
        "allowlist": None if allowlist is None else sorted(str(r) for r in allowlist),
        "providers": [_provider_json(s, s.provider in in_chain, now) for s in statuses],
        "missingAuth": missing,
        "warnings": list(ctx.loaded.warnings),
    }
    problems: list[dict[str, Any]] = auth_problems(resolver, in_chain, ctx, now) if args.check else []
    if args.probe:
        probes = await _probe(
            ctx, resolver, chain=chain, providers=in_chain, clock=clock, timeout_s=args.probe_timeout
        )
        data["probes"] = [p.as_json() for p in probes]
        for provider in in_chain:  # with --check, a provider none of whose profiles answered is a problem
            tried = [p for p in probes if p.provider == provider]
            if args.check and tried and not any(p.ok for p in tried):
                problems.append(
                    {"provider": provider, "profile": None, "problem": "unreachable", "expires": None}
                )
    code = check_exit_code(problems)
    if args.check:
        data["check"] = {"exitCode": code, "problems": problems}
    if args.json:
        print_json(data)
    else:
        _print_status(data, statuses, now)
    return code


def _chain_refs(chain: AgentModels) -> list[ModelRef]:
    image = [chain.image_primary] if chain.image_primary is not None else []
    return [chain.primary, *chain.fallbacks, *image, *chain.image_fallbacks]


def _provider_json(status: ProviderStatus, in_chain: bool, now: int) -> dict[str, Any]:
    return {
        "provider": status.provider,
        "baseUrl": status.base_url,
        "api": status.api,
        "inChain": in_chain,
        "missingAuth": status.missing_auth,
        "rotationFor": status.model,
        "profiles": [
            {
                "id": line.profile_id,
                "type": line.type,
                "secret": line.masked,
                "expires": line.expires,
                "expired": line.expired,
                "canRefresh": line.refreshable,
                "cooldownUntil": line.cooldown_until,
                "disabledUntil": line.disabled_until,
                "disabledReason": line.disabled_reason,
                "models": pairs_json(line),
                "state": ", ".join(profile_flags(line, now_ms=now, pin=None, pin_source=None, is_next=False))
                or "ok",
            }
            for line in status.profiles
        ],
    }


def auth_problems(
    resolver: CredentialResolver, providers: list[str], ctx: Context, now: int
) -> list[dict[str, Any]]:
    """Missing, expired and soon-expiring credentials of the providers the chain uses.

    A provider is judged by the keys it has: a local server may have none, but the keys it has must be valid.
    """
    problems: list[dict[str, Any]] = []
    for provider in providers:
        spec = provider_spec(provider, ctx)
        if spec is None:
            continue
        creds = [
            (pid, cred)
            for pid, cred, _ in resolver.all_profiles(provider, now)
            if credential_source(cred) in ("stored", "env", "config")
        ]
        if not creds and spec.needs_auth:
            problems.append({"provider": provider, "profile": None, "problem": "missing", "expires": None})
        for pid, cred in creds:
            if cred.expires is None or resolver.can_refresh(cred):
                continue  # an OAuth login whose token endpoint is known renews itself
            if cred.expires <= now:
                problem = "expired"
            elif cred.expires - now <= EXPIRING_MS:
                problem = "expiring"
            else:
                continue
            problems.append(
                {"provider": provider, "profile": pid, "problem": problem, "expires": cred.expires}
            )
    return problems


def check_exit_code(problems: list[dict[str, Any]]) -> int:
    kinds = {p["problem"] for p in problems}
    if kinds & {"missing", "expired", "unreachable"}:
        return EXIT_MISSING
    return EXIT_EXPIRING if "expiring" in kinds else 0


async def _probe(
    ctx: Context,
    resolver: CredentialResolver,
    *,
    chain: AgentModels,
    providers: list[str],
    clock: Clock,
    timeout_s: float,
) -> list[ProbeResult]:
    # Imported here: the provider clients (and their SDKs) are what only a probe needs.
    from bot.providers.clients import build_clients, close_clients  # noqa: PLC0415

    refs = _chain_refs(chain)
    now = clock.now_ms()
    targets = [
        (next(r for r in refs if r.provider == provider), pid)
        for provider in providers
        for pid, _, _ in resolver.all_profiles(provider, now)
    ]
    redactor = Redactor(lambda: process_secrets(ctx.loaded, ctx.env, [resolver.store]))
    clients = build_clients()
    try:
        return await probe_all(
            resolver,
            clients,
            ctx.config,
            targets,
            clock=clock,
            timeout_s=timeout_s,
            redact=redactor.provider_text,
        )
    finally:
        await close_clients(clients)


def _print_status(data: dict[str, Any], statuses: list[ProviderStatus], now: int) -> None:
    image = data["imageModel"] or "none"
    if data["imageFallbacks"]:
        image += " (fallbacks: " + ", ".join(data["imageFallbacks"]) + ")"
    allowlist = data["allowlist"]
    print_pairs(
        [
            ("Config", data["config"] or "built-in default (no config file)"),
            ("Agent", data["agent"]),
            ("Default", data["default"]),
            ("Fallbacks", ", ".join(data["fallbacks"]) or "none"),
            ("Image model", image),
            ("Aliases", ", ".join(f"{a} → {r}" for a, r in data["aliases"].items()) or "none"),
            (
                "Allowlist",
                "not set (any catalog model)" if allowlist is None else ", ".join(allowlist) or "empty",
            ),
        ]
    )
    print()
    endpoints = [
        [s.provider, s.api, s.base_url, "yes" if p["inChain"] else "no"]
        for s, p in zip(statuses, data["providers"], strict=True)
    ]
    print_table(["provider", "api", "endpoint", "in chain"], endpoints, title="Providers")
    print()
    rows = [
        [p["provider"], prof["id"], prof["type"], prof["secret"], format_time(prof["expires"]), prof["state"]]
        for p in data["providers"]
        for prof in p["profiles"]
    ]
    print_table(["provider", "profile", "type", "secret", "expires", "state"], rows, title="Auth")
    if data["missingAuth"]:
        print(f"\nMissing auth: {', '.join(data['missingAuth'])} (add a key with `modelbot auth add`)")
    if "check" in data:
        _print_check(data["check"])
    if "probes" in data:
        print()
        probes = [
            [
                p["provider"],
                p["profile"],
                p["model"],
                "ok" if p["ok"] else p["reason"],
                f"{p['latencyMs']:.0f} ms",
                p["detail"],
            ]
            for p in data["probes"]
        ]
        print_table(["provider", "profile", "model", "result", "latency", "detail"], probes, title="Probes")


def _print_check(check: dict[str, Any]) -> None:
    print()
    if not check["problems"]:
        print("Check: OK")
        return
    for problem in check["problems"]:
        who = problem["profile"] or problem["provider"]
        when = f" ({format_time(problem['expires'])})" if problem["expires"] else ""
        print(f"Check: {who}: {problem['problem']}{when}")
