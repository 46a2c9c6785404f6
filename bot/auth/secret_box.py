"""Credential secrets at rest: Fernet encryption keyed from ``MODELBOT_SECRET_KEY`` (several keys while rotating).

The variable holds one Fernet key (44 characters of URL-safe base64, as ``modelbot auth gen-key`` prints), or
several separated by commas during a key rotation: the first one encrypts, every one of them decrypts.
A random key rather than a passphrase: it needs no key-derivation function tuned against guessing, no salt
stored beside the data, and no second of CPU at every start of the bot and of each CLI command; operators
already keep such keys in their secret stores (like a bot token).

Rotation, with every host kept running: ``MODELBOT_SECRET_KEY=NEW,OLD`` on every host (they read both and
write with NEW), ``modelbot auth rekey`` (re-encrypts every stored secret with NEW in one transaction), then
``MODELBOT_SECRET_KEY=NEW``.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping, Sequence
from typing import Final

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from bot.config.paths import SECRET_KEY_ENV
from bot.errors import SecretKeyError

MISSING_KEY: Final = (
    f'{SECRET_KEY_ENV} is not set, and auth.store "database" keeps credentials encrypted with it. '
    "Make a key with `modelbot auth gen-key`, keep it in your secret store, and set "
    f"{SECRET_KEY_ENV} to it on every host (all hosts of one database need the same key)."
)


def generate_key() -> str:
    """A new random key in the format ``MODELBOT_SECRET_KEY`` takes."""
    return Fernet.generate_key().decode("ascii")


def parse_keys(value: str) -> list[str]:
    """The comma-separated keys of the variable, blanks dropped; never echoes a key in an error."""
    keys = [part.strip() for part in value.split(",") if part.strip()]
    if not keys:
        raise SecretKeyError(MISSING_KEY)
    for position, key in enumerate(keys, start=1):
        try:
            Fernet(key)
        except (ValueError, binascii.Error):
            which = f"key {position} of {len(keys)}" if len(keys) > 1 else "its value"
            raise SecretKeyError(
                f"{SECRET_KEY_ENV} is not a valid key ({which}): expected 44 characters of URL-safe base64 "
                "as `modelbot auth gen-key` prints them; several keys are separated by commas."
            ) from None
    return keys


class SecretBox:
    """Seals text with the first key and opens what any of the keys sealed."""

    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise SecretKeyError(MISSING_KEY)
        self._fernet = MultiFernet([Fernet(key) for key in keys])
        self.key_count = len(keys)

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SecretBox:
        """The box of ``MODELBOT_SECRET_KEY``; ``SecretKeyError`` when it is missing or malformed."""
        value = env.get(SECRET_KEY_ENV, "")
        if not value.strip():
            raise SecretKeyError(MISSING_KEY)
        return cls(parse_keys(value))

    def seal(self, plaintext: str) -> str:
        """The ciphertext (a Fernet token: ASCII, authenticated, a fresh IV each time)."""
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def open(self, token: str, *, what: str) -> str:
        """The plaintext of ``token``; ``SecretKeyError`` naming ``what`` when no key opens it."""
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise wrong_key(what) from None

    def reseal(self, token: str, what: str) -> str:
        """``token`` sealed again with the first key (a rotation step)."""
        try:
            return self._fernet.rotate(token.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError):
            raise wrong_key(what) from None


def wrong_key(what: str) -> SecretKeyError:
    return SecretKeyError(
        f"{SECRET_KEY_ENV} does not decrypt the stored credentials ({what}): it is not the key they were "
        "encrypted with. Set the key that was in use when they were stored; while rotating keys, give the "
        f"new and the old one: {SECRET_KEY_ENV}=NEW,OLD."
    )
