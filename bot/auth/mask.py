"""Masking secrets for display: enough to recognise a key, never enough to use it, at any length."""

from __future__ import annotations

ELLIPSIS = "…"


def mask_secret(secret: str) -> str:
    """``sk-ant…wxyz`` for long secrets, ``ab…yz`` for mid-length ones, only stars for short ones.

    At most ten characters, and never more than half of the secret, are shown; a short secret shows
    none of its characters (and its length only up to four).
    """
    n = len(secret)
    if n == 0:
        return "(empty)"
    if n >= 20:  # 6 + 4 shown, at least 10 hidden
        return f"{secret[:6]}{ELLIPSIS}{secret[-4:]}"
    if n >= 8:
        return f"{secret[:2]}{ELLIPSIS}{secret[-2:]}"
    return ELLIPSIS + "*" * min(n, 4)
