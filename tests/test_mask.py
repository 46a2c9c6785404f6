"""Masked secrets never reveal a whole secret, at any length."""

from __future__ import annotations

import random
import string

import pytest

from bot.auth.mask import mask_secret


@pytest.mark.parametrize(
    ("secret", "masked"),
    [
        ("", "(empty)"),
        ("a", "…*"),
        ("abcdefg", "…****"),
        ("abcdefgh", "ab…gh"),
        ("sk-ant-oat01-" + "abcdefghijklmnopqrstuvwxyz", "sk-ant…wxyz"),
        ("0123456789abcdef", "01…ef"),
        ("0123456789abcdefghij", "012345…ghij"),
    ],
)
def test_examples(secret: str, masked: str) -> None:
    """Long keys keep a recognisable prefix and suffix; short ones show nothing of themselves."""
    assert mask_secret(secret) == masked


@pytest.mark.parametrize("length", range(201))
def test_never_reveals_the_secret(length: int) -> None:
    """For every length the secret is absent and at most 10 (and at most half) of its characters show."""
    rng = random.Random(length)
    alphabet = string.ascii_letters + string.digits + "-_"
    for _ in range(5):
        secret = "".join(rng.choice(alphabet) for _ in range(length))
        masked = mask_secret(secret)
        shown = masked.replace("…", "").replace("*", "")
        if length:
            assert secret not in masked
            assert len(shown) <= 10
            # Never more than half of the secret is shown.
            assert len(shown) * 2 <= length
        else:
            assert masked == "(empty)"
