"""The one redaction of texts that may carry a secret: every credential the process holds, then key shapes.

Provider texts (error details, probe results, summaries) get both steps; log lines and status views get the
known secrets only, so that masked keys and ids in them stay readable. docs/failover.md §5: whatever a secret's length.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING

from bot.config.key_paths import value_at
from bot.errors import AuthError

if TYPE_CHECKING:
    from bot.auth.port import AuthStateStore
    from bot.config.loader import LoadedConfig

REDACTED = "[redacted]"
KEY_SHAPED = "…"  # what a key-shaped string of unknown origin becomes
# Environment variables whose values are credentials (provider keys, bot tokens, the store's secret key).
SECRET_ENV_SUFFIXES = ("_API_KEY", "_TOKEN", "_SECRET", "_SECRET_KEY", "_PASSWORD", "_ACCESS_KEY")
# Anything that looks like a credential: known key prefixes, or a long run of letters and digits.
_KEY_SHAPED_RE = re.compile(
    r"\b(?:(?:sk|pk|rk)[-_]|AIza)[-_A-Za-z0-9*]{6,}|\b(?=[A-Za-z_-]*\d)[A-Za-z0-9_-]{32,}"
)
# Shorter secrets are replaced only where they stand alone, so that "abc" does not eat "abcdef".
_PLAIN_REPLACE_LENGTH = 8
_WORD = r"[A-Za-z0-9]"

SecretSource = Callable[[], Iterable[str]]


def mask_key_shaped(text: str) -> str:
    """Cut out what looks like a key, whoever it belongs to (a provider may echo another one)."""
    return _KEY_SHAPED_RE.sub(KEY_SHAPED, text)


@lru_cache(maxsize=8)
def _pattern(secrets: frozenset[str]) -> re.Pattern[str] | None:
    """One pattern for a set of secrets, longest first so a secret inside another goes with it."""
    parts = [
        re.escape(s) if len(s) >= _PLAIN_REPLACE_LENGTH else rf"(?<!{_WORD}){re.escape(s)}(?!{_WORD})"
        for s in sorted(secrets, key=lambda s: (-len(s), s))
    ]
    return re.compile("|".join(parts)) if parts else None


def redact_known(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every one of ``secrets`` (any length) replaced by ``[redacted]``."""
    pattern = _pattern(frozenset(s for s in (x.strip() for x in secrets) if s))
    return text if pattern is None else pattern.sub(REDACTED, text)


class Redactor:
    """Redacts with the secrets ``source`` yields now (keys are added while the bot runs, so it is re-read)."""

    def __init__(self, source: SecretSource | None = None) -> None:
        self._source: SecretSource = source if source is not None else tuple

    def provider_text(self, text: str) -> str:
        """For anything a provider said: the known secrets, then anything key-shaped."""
        return mask_key_shaped(redact_known(text, self._source()))

    def known(self, text: str) -> str:
        """For log lines and status views: the known secrets only."""
        return redact_known(text, self._source())


def process_secrets(
    loaded: LoadedConfig, env: Mapping[str, str], stores: Iterable[AuthStateStore]
) -> Iterator[str]:
    """Every credential a bot process holds: channel tokens, provider keys and headers, env keys, profiles."""
    config = loaded.config
    # The channels' secret keys (bot tokens, webhook secrets), as their plug-ins declared them.
    yield from (
        s for s in (value_at(loaded.raw, path) for path in loaded.secret_paths) if isinstance(s, str) and s
    )
    for key, provider in config.models.providers.items():
        if provider.api_key:
            yield provider.api_key
        # Header values can only hold a secret through ${ENV} (literal secrets are refused at load).
        for name, value in provider.headers.items():
            if ("models", "providers", key, "headers", name) in loaded.env_refs:
                yield value
    yield from (value for name, value in env.items() if name.upper().endswith(SECRET_ENV_SUFFIXES) and value)
    for store in stores:
        try:
            profiles = store.load().profiles
        except AuthError:  # a corrupt file, or the database not read yet: its keys cannot be known here
            continue
        for cred in profiles.values():
            yield from (s for s in (cred.secret, cred.refresh) if s)
