"""Where each provider's OAuth login lives: built-in presets, overridden key by key by the config.

Every fact of a preset was checked against public sources (open-source clients of the same login, and
issue threads reporting what the servers do); the source is named beside each. Providers change these
endpoints without notice: ``models.providers.<id>.oauth`` overrides any key of a preset.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from types import MappingProxyType

from bot.auth.oauth_settings import OAuthClientSettings
from bot.config.schema import Config, ProviderOAuth

# Anthropic: the login of Claude Pro/Max subscriptions (the one Claude Code uses).
ANTHROPIC = OAuthClientSettings(
    provider="anthropic",
    # Token endpoint. sst/opencode-anthropic-auth (index.mjs) and rodmena-limited/trust5
    # (trust5/core/auth/claude.py) use https://console.anthropic.com/v1/oauth/token, but that host answers
    # 404 since about 2026-06-12 (Wei-Shaw/claude-relay-service#1207, TopiCsarno/yapcap#13,
    # NousResearch/hermes-agent#48706); the live endpoint is platform.claude.com, as in
    # badlogic/pi-mono (packages/ai/src/utils/oauth/anthropic.ts) and Wei-Shaw/claude-relay-service
    # (src/utils/oauthHelper.js). Both the code exchange and the refresh go there.
    token_url="https://platform.claude.com/v1/oauth/token",  # noqa: S106 - an endpoint, not a secret
    # Claude Code's public client id: sst/opencode-anthropic-auth (CLIENT_ID), badlogic/pi-mono (base64 of
    # it), Wei-Shaw/claude-relay-service; described as public and shared in mrilikecoding/llm-orc#32.
    client_id="9d1c250a-e61b-44d9-88ed-5944d1962f5e",
    # The Pro/Max authorize page: sst/opencode-anthropic-auth (authorize("max")), badlogic/pi-mono; kept
    # unchanged by the 2026 host migration (TopiCsarno/yapcap#13).
    authorize_url="https://claude.ai/oauth/authorize",
    # sst/opencode-anthropic-auth, rodmena-limited/trust5. Newer clients also ask for user:sessions:claude_code,
    # user:mcp_servers and user:file_upload (badlogic/pi-mono), which a chat bot does not use.
    scopes=("org:create_api_key", "user:profile", "user:inference"),
    # The hosted callback page that shows the user "code#state" to paste (coder/mux#841, canyavall/nori's
    # notes on the flow). sst/opencode-anthropic-auth used the console.anthropic.com page; it moved with the
    # token host (Wei-Shaw/claude-relay-service oauthHelper.js, gsd-build/gsd-2#1608).
    redirect_uri="https://platform.claude.com/oauth/code/callback",
    # code=true asks the authorize page to show the code for pasting instead of redirecting to a local
    # server: sst/opencode-anthropic-auth, rodmena-limited/trust5, Wei-Shaw/claude-relay-service.
    authorize_params=MappingProxyType({"code": "true"}),
    # The token endpoint takes JSON bodies, not RFC 6749 forms: every client above posts JSON;
    # canyavall/nori's notes report "Invalid request format" for a form, and NousResearch/hermes-agent#3246
    # moved its refresh from form to JSON. The exchange also carries the pasted state (opencode's exchange()).
    body_format="json",
    # On the Messages API an OAuth access token goes as "Authorization: Bearer" with the beta flag
    # "anthropic-beta: oauth-2025-04-20" (sst/opencode-anthropic-auth's fetch wrapper, badlogic/pi-mono's
    # anthropic provider, rodmena-limited/trust5's validate()). bot/providers/anthropic_client.py adds both
    # for every bearer credential (setup-tokens need them too), so nothing extra is sent here.
    # NOT done, and said so in the README: anthropics/claude-code#40515 reports that for models other than
    # Haiku the API answers 400 unless the system prompt starts with Claude Code's own identity sentence
    # (badlogic/pi-mono prepends it). modelbot does not impersonate Claude Code.
    # Who logged in: the token answer carries an "account" object (Wei-Shaw/claude-relay-service reads
    # data.account and data.organization); that its address is account.email_address was only seen in clients
    # found by code search without a named repository, so it is read when present and the profile is
    # anthropic:default otherwise.
    extra_headers=MappingProxyType({}),
)

PRESETS: Mapping[str, OAuthClientSettings] = MappingProxyType({ANTHROPIC.provider: ANTHROPIC})


def _configured(provider: str, config: Config) -> tuple[str, ProviderOAuth] | None:
    """The ``oauth`` block of ``models.providers.<id>`` (ids match case-insensitively) and the key it is under."""
    for key, entry in config.models.providers.items():
        if key.strip().lower() == provider and entry.oauth is not None:
            return key, entry.oauth
    return None


def oauth_settings(provider: str, config: Config) -> OAuthClientSettings | None:
    """The provider's OAuth settings: its preset with every key the config sets, or None when it has none."""
    provider = provider.strip().lower()
    preset = PRESETS.get(provider)
    found = _configured(provider, config)
    if found is None:
        return preset
    block = found[1]
    if preset is None:
        if block.token_url is None or block.client_id is None:
            return None  # reported at load (``oauth_config_problem``); a refresh is then impossible
        preset = OAuthClientSettings(provider=provider, token_url=block.token_url, client_id=block.client_id)
    return replace(
        preset,
        token_url=block.token_url or preset.token_url,
        client_id=block.client_id or preset.client_id,
        authorize_url=block.authorize_url or preset.authorize_url,
        scopes=preset.scopes if block.scopes is None else block.scopes,
        redirect_uri=block.redirect_uri or preset.redirect_uri,
        authorize_params=preset.authorize_params
        if block.authorize_params is None
        else MappingProxyType(dict(block.authorize_params)),
        extra_headers=preset.extra_headers
        if block.extra_headers is None
        else MappingProxyType(dict(block.extra_headers)),
        body_format=block.body_format or preset.body_format,
        timeout_s=block.timeout_seconds or preset.timeout_s,
    )


def oauth_config_problem(config: Config) -> tuple[tuple[str, ...], str] | None:
    """``(key path, what is expected)`` for an ``oauth`` block that names no endpoint and has no preset."""
    for key, entry in config.models.providers.items():
        block = entry.oauth
        if block is None or key.strip().lower() in PRESETS:
            continue
        for name, value in (("tokenUrl", block.token_url), ("clientId", block.client_id)):
            if value is None:
                return (
                    ("models", "providers", key, "oauth", name),
                    f"missing required key `{name}` (there is no built-in OAuth preset for `{key}`)",
                )
    return None
