"""Where one provider's OAuth login lives, as plain data: what the config loader checks and the login and
refresh code (``bot.auth.oauth``, ``bot.auth.oauth_client``) use. Apart so that loading a config does not
load the PKCE and token-answer code (hashing, secrets, JSON, URL parsing)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

DEFAULT_TIMEOUT_S = 30.0

BodyFormat = Literal["form", "json"]


@dataclass(frozen=True)
class OAuthClientSettings:
    """Where one provider's OAuth login lives: a built-in preset merged with ``models.providers.<id>.oauth``."""

    provider: str
    token_url: str
    client_id: str
    authorize_url: str | None = None
    scopes: tuple[str, ...] = ()
    redirect_uri: str | None = None
    authorize_params: Mapping[str, str] = field(default_factory=dict)
    extra_headers: Mapping[str, str] = field(default_factory=dict)  # on model calls made with the login
    body_format: BodyFormat = "form"
    timeout_s: float = DEFAULT_TIMEOUT_S
