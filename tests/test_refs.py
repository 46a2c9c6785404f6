"""Table tests of model-reference parsing and resolution (docs/failover.md §1)."""

from __future__ import annotations

import pytest

from bot.errors import InvalidRef
from bot.models.refs import (
    MAX_REF_LENGTH,
    ModelRef,
    RawRef,
    Selection,
    parse_model_ref,
    parse_ref,
    resolve_ref,
    split_profile,
)

PARSED = [
    ("anthropic/claude-sonnet-4-5", RawRef("anthropic", "claude-sonnet-4-5", None)),
    ("  anthropic/claude-sonnet-4-5\t", RawRef("anthropic", "claude-sonnet-4-5", None)),
    ("OpenAI/GPT-5.2", RawRef("openai", "GPT-5.2", None)),
    ("openrouter/moonshotai/kimi-k2", RawRef("openrouter", "moonshotai/kimi-k2", None)),
    ("openrouter/a/b/c", RawRef("openrouter", "a/b/c", None)),
    ("anthropic/claude-3-5-sonnet@20241022", RawRef("anthropic", "claude-3-5-sonnet@20241022", None)),
    ("ollama/llama3@q8_0", RawRef("ollama", "llama3@q8_0", None)),
    ("lmstudio/qwen@4bit", RawRef("lmstudio", "qwen@4bit", None)),
    ("google/gemini-2.5-pro@google:me@x.com", RawRef("google", "gemini-2.5-pro", "google:me@x.com")),
    (
        "anthropic/claude-3-5-sonnet@20241022@anthropic:work",
        RawRef("anthropic", "claude-3-5-sonnet@20241022", "anthropic:work"),
    ),
    ("anthropic/claude-opus-4-5@anthropic:work", RawRef("anthropic", "claude-opus-4-5", "anthropic:work")),
    ("openrouter/vendor@x:y/model", RawRef("openrouter", "vendor@x:y/model", None)),
    ("cloudflare/@cf/meta/llama-3.1-8b", RawRef("cloudflare", "@cf/meta/llama-3.1-8b", None)),
    ("anthropic/claude@nocolon", RawRef("anthropic", "claude@nocolon", None)),
    ("Sonnet", RawRef(None, "Sonnet", None)),
    ("sonnet@anthropic:work", RawRef(None, "sonnet", "anthropic:work")),
    ("gpt-5.2", RawRef(None, "gpt-5.2", None)),
]


@pytest.mark.parametrize(("text", "expected"), PARSED)
def test_parse_ref(text: str, expected: RawRef) -> None:
    """Each well-formed input splits into provider, model and profile as docs/failover.md §1 says."""
    assert parse_ref(text) == expected


INVALID = [
    "",
    "   ",
    "/claude",
    "anthropic/",
    "/",
    "anthropic//claude",
    "anthropic/claude/",
    "anthropic/../etc",
    "@anthropic:work",
    "anthropic/@anthropic:work",
    "anthropic/claude sonnet",
    "anthropic /claude",
    "anthropic/claude\x00",
    "anthropic/claude\n4",
    "anthropic/claude\u200b",
    "anthropic/claude\u00a0x",
    "anthropic/" + "x" * MAX_REF_LENGTH,
]


@pytest.mark.parametrize("text", INVALID)
def test_parse_ref_rejects(text: str) -> None:
    """Empty parts, a profile without a model, spaces, control characters and overlong input are invalid."""
    with pytest.raises(InvalidRef):
        parse_ref(text)


def test_parse_ref_accepts_exactly_max_length() -> None:
    """The length limit is inclusive: a ref of exactly MAX_REF_LENGTH characters parses."""
    text = "p/" + "m" * (MAX_REF_LENGTH - 2)
    assert parse_ref(text).model == "m" * (MAX_REF_LENGTH - 2)


def test_invalid_ref_message_is_short_and_plain() -> None:
    """The error text is one sentence a user can read, not a repr or traceback."""
    with pytest.raises(InvalidRef) as info:
        parse_ref("@anthropic:work")
    assert "profile but no model" in str(info.value)
    assert "\n" not in str(info.value)


SPLIT = [
    ("a/b", ("a/b", None)),
    ("a/b@p:x", ("a/b", "p:x")),
    ("a/b@2024@p:x", ("a/b@2024", "p:x")),
    ("a@p:x/b", ("a@p:x/b", None)),
    ("a/b@p:me@x.com", ("a/b", "p:me@x.com")),
    ("a/b@nocolon", ("a/b@nocolon", None)),
]


@pytest.mark.parametrize(("text", "expected"), SPLIT)
def test_split_profile(text: str, expected: tuple[str, str | None]) -> None:
    """Only an '@' after the last '/' that starts a ``provider:name`` id splits off a profile."""
    assert split_profile(text) == expected


ALIASES = {"Sonnet": ModelRef("anthropic", "claude-sonnet-4-5"), "fast": ModelRef("openai", "gpt-5-mini")}

RESOLVED = [
    ("sonnet", Selection(ModelRef("anthropic", "claude-sonnet-4-5"), None)),
    ("SONNET", Selection(ModelRef("anthropic", "claude-sonnet-4-5"), None)),
    ("Fast@openai:work", Selection(ModelRef("openai", "gpt-5-mini"), "openai:work")),
    ("claude-opus-4-5", Selection(ModelRef("anthropic", "claude-opus-4-5"), None)),
    ("openai/sonnet", Selection(ModelRef("openai", "sonnet"), None)),
    ("openrouter/moonshotai/kimi-k2", Selection(ModelRef("openrouter", "moonshotai/kimi-k2"), None)),
]


@pytest.mark.parametrize(("text", "expected"), RESOLVED)
def test_resolve_ref(text: str, expected: Selection) -> None:
    """A bare name is an alias (any case) or a model of the default provider; a qualified ref is kept."""
    assert resolve_ref(parse_ref(text), aliases=ALIASES, default_provider="anthropic") == expected


def test_model_ref_str_and_family() -> None:
    """A ref prints as provider/model and its family is the last '/' segment of the model id."""
    ref = ModelRef("openrouter", "anthropic/claude-sonnet-4-5")
    assert str(ref) == "openrouter/anthropic/claude-sonnet-4-5"
    assert ref.family == "claude-sonnet-4-5"
    assert ModelRef("anthropic", "claude-sonnet-4-5").family == "claude-sonnet-4-5"


def test_model_refs_sort_by_provider_then_model() -> None:
    """Refs order by provider first, which the catalog and picker rely on for stable output."""
    refs = [ModelRef("openai", "a"), ModelRef("anthropic", "z"), ModelRef("anthropic", "b")]
    assert sorted(refs) == [ModelRef("anthropic", "b"), ModelRef("anthropic", "z"), ModelRef("openai", "a")]


def test_parse_model_ref_accepts_qualified() -> None:
    """Config refs parse to a ModelRef with the provider lower-cased."""
    assert parse_model_ref("Anthropic/claude-opus-4-5@20250101") == ModelRef(
        "anthropic", "claude-opus-4-5@20250101"
    )


@pytest.mark.parametrize("text", ["claude-opus-4-5", "anthropic/claude-opus-4-5@anthropic:work", ""])
def test_parse_model_ref_rejects(text: str) -> None:
    """Config refs must be provider/model, without a profile."""
    with pytest.raises(InvalidRef):
        parse_model_ref(text)


@pytest.mark.parametrize("text", ["../x", "a@b/c", "pro vider/x", "p$/m"])
def test_provider_part_must_be_an_id(text: str) -> None:
    """Provider ids are plain identifiers: path junk and '@' never become a provider."""
    with pytest.raises(InvalidRef):
        parse_ref(text)
