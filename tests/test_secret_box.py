"""Secrets at rest: the Fernet box keyed from MODELBOT_SECRET_KEY, its refusals and key rotation."""

from __future__ import annotations

import pytest

from bot.auth.secret_box import SecretBox, generate_key, parse_keys
from bot.config.paths import SECRET_KEY_ENV
from bot.errors import AuthError, SecretKeyError

SECRET = "sk-live-0123456789abcdef"


def test_round_trip_never_stores_the_plaintext() -> None:
    """What is sealed opens to the same text, and the ciphertext does not contain it."""
    box = SecretBox([generate_key()])
    token = box.seal(SECRET)
    assert SECRET not in token
    assert box.seal(SECRET) != token  # a fresh IV each time
    assert box.open(token, what="profile p:x") == SECRET
    assert box.open(box.seal("ünïcødé ✓"), what="x") == "ünïcødé ✓"


@pytest.mark.parametrize("value", [None, "", "  ", " , "])
def test_missing_key_is_refused_with_how_to_make_one(value: str | None) -> None:
    """No key: a clear refusal naming the variable and the command that makes one."""
    env = {} if value is None else {SECRET_KEY_ENV: value}
    with pytest.raises(SecretKeyError, match=SECRET_KEY_ENV) as caught:
        SecretBox.from_env(env)
    assert "modelbot auth gen-key" in str(caught.value)
    assert isinstance(caught.value, AuthError)


@pytest.mark.parametrize("value", ["hunter2-not-a-key", "a" * 44, f"{generate_key()},short-and-wrong"])
def test_malformed_key_is_refused_without_echoing_it(value: str) -> None:
    """A value that is no Fernet key is refused; the message never repeats what was given."""
    with pytest.raises(SecretKeyError, match="not a valid key") as caught:
        SecretBox.from_env({SECRET_KEY_ENV: value})
    for part in value.split(","):
        assert part not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_wrong_key_is_a_clear_error_never_garbage() -> None:
    """A token sealed with another key does not open: the error says so and names what it was."""
    token = SecretBox([generate_key()]).seal(SECRET)
    with pytest.raises(SecretKeyError, match=f"{SECRET_KEY_ENV} does not decrypt") as caught:
        SecretBox([generate_key()]).open(token, what="profile openai:work of agent main")
    assert "openai:work" in str(caught.value)
    assert f"{SECRET_KEY_ENV}=NEW,OLD" in str(caught.value)


def test_tampered_ciphertext_is_refused() -> None:
    """Fernet authenticates: a changed byte is an error, not a different secret."""
    box = SecretBox([generate_key()])
    token = box.seal(SECRET)
    flipped = token[:20] + ("A" if token[20] != "A" else "B") + token[21:]
    with pytest.raises(SecretKeyError):
        box.open(flipped, what="x")
    with pytest.raises(SecretKeyError):
        box.open("not even base64 ✗", what="x")


def test_rotation_new_key_first_opens_both_and_reseal_moves_to_the_new_key() -> None:
    """NEW,OLD opens what OLD sealed and seals with NEW; a resealed token needs NEW only."""
    old, new = generate_key(), generate_key()
    sealed_old = SecretBox([old]).seal(SECRET)
    rotating = SecretBox.from_env({SECRET_KEY_ENV: f" {new} , {old} "})
    assert rotating.key_count == 2
    assert rotating.open(sealed_old, what="x") == SECRET
    assert SecretBox([new]).open(rotating.seal(SECRET), what="x") == SECRET
    resealed = rotating.reseal(sealed_old, what="x")
    assert SecretBox([new]).open(resealed, what="x") == SECRET
    with pytest.raises(SecretKeyError):
        SecretBox([old]).open(resealed, what="x")
    with pytest.raises(SecretKeyError, match="does not decrypt"):
        SecretBox([new]).reseal(sealed_old, what="x")


def test_generated_keys_parse_and_differ() -> None:
    """gen-key output is accepted as is, and two runs never give the same key."""
    first, second = generate_key(), generate_key()
    assert first != second and len(first) == 44
    assert parse_keys(f"{first},{second},") == [first, second]
