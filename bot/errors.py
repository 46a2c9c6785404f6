"""The one error tree of modelbot.

Every error the core raises on purpose derives from ``ModelbotError``; foreign exceptions (SDKs,
HTTP, SQL, the file system) are translated into it at the edge where they occur::

    ModelbotError
    ├── ConfigError              malformed config: names the file, the key path and what was expected
    ├── RefError                 a model reference the user or config gave cannot be used
    │   ├── InvalidRef           syntactically wrong (empty parts, profile without a model, junk)
    │   ├── UnknownModel         well-formed but not in the catalog; carries close suggestions
    │   └── ModelNotAllowed      outside the allowlist (the sentence of docs/failover.md §2)
    ├── AuthError                credentials and the auth store
    │   ├── AuthStoreCorrupt     auth-profiles.json unreadable; a backup was kept, nothing overwritten
    │   ├── UnknownProfile       a profile id that the store does not hold
    │   ├── OAuthError           an OAuth login or refresh was refused, timed out, or is not configured
    │   └── SecretKeyError       MODELBOT_SECRET_KEY missing, malformed, or not the key the secrets were sealed with
    ├── ProviderError            one failed attempt, already classified into a ``Reason``
    ├── TurnError                a whole turn ended without a complete answer
    │   ├── AllCandidatesFailed  every (model, profile) pair failed; carries the attempts
    │   ├── TurnStopped          a stopping reason (context overflow, content filter, bad request, …)
    │   └── StreamInterrupted    the stream broke after text had reached the user
    ├── StoreError               the session store failed or holds unexpected data
    │   └── LeaseTimeout         a lease (a session's turn, an OAuth refresh) stayed held by another too long
    ├── CommandError             a chat or CLI command was malformed or not permitted
    └── DeliveryFailed           the chat platform did not take a reply (already logged and told by the sink)

``str(error)`` is always a short sentence fit to show a user: no traceback, no secret.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bot.failover.reasons import Reason


class ModelbotError(Exception):
    """Base of every error modelbot raises on purpose."""


class ConfigError(ModelbotError):
    """The config file (or a value in it) is not what modelbot expects."""

    def __init__(self, file: str, key_path: str, expected: str) -> None:
        self.file = file
        self.key_path = key_path
        self.expected = expected
        where = f"{file}: {key_path}" if key_path else file
        super().__init__(f"{where}: {expected}")


class RefError(ModelbotError):
    """A model reference cannot be used."""


class InvalidRef(RefError):
    """The reference is not of the form ``provider/model[@profile]`` (or an alias)."""


class UnknownModel(RefError):
    """A well-formed reference to a model the catalog does not know."""

    def __init__(self, ref: str, suggestions: Sequence[str] = ()) -> None:
        self.ref = ref
        self.suggestions = tuple(suggestions)
        text = f'Unknown model "{ref}".'
        if self.suggestions:
            text += " Did you mean: " + ", ".join(self.suggestions) + "?"
        super().__init__(text)


class ModelNotAllowed(RefError):
    """The model is outside ``agents.defaults.models`` (the allowlist)."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        super().__init__(f'Model "{ref}" is not allowed. Use /model to list available models.')


class AuthError(ModelbotError):
    """Credentials or the auth store."""


class AuthStoreCorrupt(AuthError):
    """auth-profiles.json cannot be parsed; it was copied to ``backup`` and left untouched."""

    def __init__(self, path: str, backup: str | None, detail: str) -> None:
        self.path = path
        self.backup = backup
        kept = f" A copy was kept at {backup}." if backup else ""
        super().__init__(f"{path} is not a valid auth store ({detail}); it was left as it is.{kept}")


class UnknownProfile(AuthError):
    """A profile id that the store does not hold."""

    def __init__(self, profile_id: str) -> None:
        self.profile_id = profile_id
        super().__init__(f'No auth profile "{profile_id}".')


class OAuthError(AuthError):
    """A token endpoint refused or failed a login or a refresh, or none is known for the provider.

    ``code`` is the RFC 6749 §5.2 error (``invalid_grant``, …) or one of ``timeout``, ``network``,
    ``http_<status>``, ``bad_answer``, ``not_configured``, ``input``; the message never holds a token.
    """

    def __init__(self, code: str, message: str, *, status: int | None = None) -> None:
        self.code = code
        self.status = status
        super().__init__(message)


class SecretKeyError(AuthError):
    """The key that encrypts credentials at rest (``MODELBOT_SECRET_KEY``) is missing, malformed or wrong."""


class ProviderError(ModelbotError):
    """One attempt failed; ``reason`` (see ``bot.failover.reasons``) says what kind of failure it was."""

    def __init__(
        self,
        reason: Reason,
        message: str,
        *,
        status: int | None = None,
        retry_after_ms: int | None = None,
    ) -> None:
        self.reason = reason
        self.status = status
        self.retry_after_ms = retry_after_ms
        super().__init__(message)


class TurnError(ModelbotError):
    """A turn ended without a complete answer."""


@dataclass(frozen=True)
class AttemptRecord:
    """One provider call of a turn: which model and profile, and how it ended."""

    ref: str
    profile_id: str | None
    reason: Reason | None  # None: it answered
    detail: str = ""
    skipped: bool = False  # True: not called at all (every profile was cooling down)


class AllCandidatesFailed(TurnError):
    """Every candidate of the chain failed; the message is the one-line summary for the user."""

    def __init__(self, summary: str, attempts: Sequence[AttemptRecord], soonest_ms: int | None) -> None:
        self.attempts = tuple(attempts)
        self.soonest_ms = soonest_ms
        super().__init__(summary)


class TurnStopped(TurnError):
    """A reason that ends the turn (not worth another model): context overflow, content filter, …"""

    def __init__(self, reason: Reason, message: str, attempts: Sequence[AttemptRecord] = ()) -> None:
        self.reason = reason
        self.attempts = tuple(attempts)
        super().__init__(message)


class StreamInterrupted(TurnError):
    """The answer broke off after part of it had been shown; never presented as finished."""

    def __init__(self, partial_text: str, ref: str, profile_id: str | None, reason: Reason) -> None:
        self.partial_text = partial_text
        self.ref = ref
        self.profile_id = profile_id
        self.reason = reason
        super().__init__("The answer was interrupted before it finished. Send /retry to try again.")


class StoreError(ModelbotError):
    """The session store failed."""


class LeaseTimeout(StoreError):
    """Waiting for a lease that another process (or task) kept holding took longer than allowed."""


class CommandError(ModelbotError):
    """A command was malformed, had absurd arguments, or is not permitted for this user."""


class DeliveryFailed(ModelbotError):
    """A reply could not be shown in the chat; the sink that raises it has logged it and told the user."""
