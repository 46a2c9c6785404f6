"""``modelbot auth login --provider P``: an OAuth login (authorization code + PKCE) stored as an oauth profile.

The URL is printed for the user to open; the code comes back pasted (the provider's page shows it) or, when
the redirect URI is a loopback address, through a one-request server on this machine (pasting still works,
for a browser on another machine). Tokens are never printed, only masked.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import threading
from collections.abc import Awaitable

from bot.auth import doc_edits
from bot.auth.mask import mask_secret
from bot.auth.oauth import (
    LoginStart,
    PastedCode,
    TokenGrant,
    authorization_url,
    new_login,
    parse_pasted_code,
)
from bot.auth.oauth_client import TokenEndpointClient
from bot.auth.oauth_presets import PRESETS, oauth_settings
from bot.auth.oauth_redirect import LoopbackReceiver
from bot.auth.oauth_settings import OAuthClientSettings
from bot.auth.resolver import CredentialResolver
from bot.auth.types import Credential
from bot.clock import SystemClock
from bot.errors import CommandError
from bot.providers.registry import spec_for
from cli.auth_cmd import profile_id_for, warn_outside_order
from cli.common import Context, agent_of, load_context, with_resolver
from cli.output import format_time, warn

DEFAULT_WAIT_S = 600.0  # authorization codes live about ten minutes; waiting longer only delays the error


def run_login(args: argparse.Namespace) -> int:
    ctx = load_context(args, quiet=True)
    provider = args.provider.strip().lower()
    spec_for(provider, ctx.config)  # an unknown provider is an error, with suggestions
    settings = oauth_settings(provider, ctx.config)
    if settings is None:
        presets = ", ".join(sorted(PRESETS))
        raise CommandError(
            f'Provider "{provider}" has no OAuth login: built-in logins exist for {presets}; for another '
            f"provider set models.providers.{provider}.oauth (tokenUrl, clientId, authorizeUrl, redirectUri)."
        )
    if args.timeout <= 0:
        raise CommandError("--timeout must be a positive number of seconds.")
    chosen = profile_id_for(provider, args.profile_id) if args.profile_id is not None else None
    login = new_login()
    url = authorization_url(settings, login)  # before any output: a missing authorizeUrl is a plain error
    grant = asyncio.run(_authorize(settings, login, url, args.timeout))
    profile_id = chosen or _profile_id(provider, grant.email)
    with_resolver(
        ctx,
        agent_of(args, ctx.config),
        lambda resolver: _store(ctx, resolver, provider, profile_id, grant),
    )
    return 0


async def _authorize(settings: OAuthClientSettings, login: LoginStart, url: str, wait_s: float) -> TokenGrant:
    receiver = LoopbackReceiver.for_redirect(settings.redirect_uri, login.state)
    _say(f"Open this address in a browser and log in to {settings.provider}:\n\n  {url}\n")
    try:
        pasted = await asyncio.wait_for(_code(receiver, settings), wait_s)
    except TimeoutError:
        raise CommandError(f"No login within {wait_s:g} s; nothing was stored.") from None
    _say("Exchanging the code for tokens…")
    return await TokenEndpointClient(settings).exchange_code(pasted, login, now_ms=SystemClock().now_ms())


async def _code(receiver: LoopbackReceiver | None, settings: OAuthClientSettings) -> PastedCode:
    """The code from the loopback redirect or from stdin, whichever comes first."""
    if receiver is not None:
        try:
            async with receiver:
                _say(
                    f"Waiting for the browser to come back to {settings.redirect_uri} … "
                    "(if the browser runs on another machine, paste the address it ends up on here)"
                )
                return await _first(receiver.wait(), _pasted())
        except OSError as exc:  # the port is taken: pasting still works
            warn(f"cannot listen on {receiver.host}:{receiver.port} ({exc.strerror or exc}); paste instead")
    _say("Then paste the code the page shows (or the whole address of that page) here:")
    return await _pasted()


async def _first(*waits: Awaitable[PastedCode]) -> PastedCode:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        result: PastedCode = next(iter(done)).result()
        return result
    finally:
        for task in tasks:
            task.cancel()


async def _pasted() -> PastedCode:
    """One line of stdin, read in a daemon thread: a blocked read must not keep the process alive."""
    loop = asyncio.get_running_loop()
    line: asyncio.Future[str] = loop.create_future()

    def deliver(text: str) -> None:
        if not line.done():  # the redirect may have won meanwhile
            line.set_result(text)

    def read() -> None:
        text = sys.stdin.readline()
        with contextlib.suppress(RuntimeError):  # the login ended (redirect won) and its loop is closed
            loop.call_soon_threadsafe(deliver, text)

    threading.Thread(target=read, name="modelbot-login-stdin", daemon=True).start()
    return parse_pasted_code(await line)


def _profile_id(provider: str, email: str | None) -> str:
    if email is None:
        return f"{provider}:default"
    try:
        return profile_id_for(provider, email)
    except CommandError:  # an address that cannot be a profile name (too long): the default id
        return f"{provider}:default"


async def _store(
    ctx: Context, resolver: CredentialResolver, provider: str, profile_id: str, grant: TokenGrant
) -> None:
    store = resolver.store
    existed = profile_id in (await store.areload()).profiles
    cred = Credential(
        type="oauth",
        provider=provider,
        secret=grant.access,
        refresh=grant.refresh,
        expires=grant.expires_ms,
        email=grant.email,
    )
    stored = doc_edits.with_profile(profile_id, cred)
    # A fresh login ends the rest the old one was given.
    rested = doc_edits.without_cooldown(profile_id)
    doc = await store.aupdate(lambda d: rested(stored(d)) if existed else stored(d))
    who = f" as {grant.email}" if grant.email else ""
    print(f"Logged in to {provider}{who}.")
    verb = "Replaced" if existed else "Stored"
    print(f"{verb} {profile_id} (oauth, {mask_secret(grant.access)}) in {store.where}.")
    expires = format_time(grant.expires_ms)
    if resolver.can_refresh(cred):
        print(f"The access token expires {expires}; modelbot refreshes it before then.")
    else:
        print(f"The access token expires {expires} and cannot be refreshed: log in again before then.")
    warn_outside_order(ctx, doc.order.get(provider), provider, profile_id)


def _say(text: str) -> None:
    # stderr would do for prompts, but a script driving the login reads the URL from stdout; flush at once.
    print(text, flush=True)
