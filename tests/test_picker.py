"""The numbered /model picker: families, order, marking, choosing, button tokens and paging (docs/failover.md §2)."""

from __future__ import annotations

import random

import pytest

from bot.errors import CommandError
from bot.models.picker import (
    PICKER_FOOTER,
    PickerEntry,
    autocomplete,
    build_picker,
    choose_from_picker,
    page,
    picker_token,
    render_picker,
    resolve_token,
)
from bot.models.refs import ModelRef

A_SONNET = ModelRef("anthropic", "claude-sonnet-4-5")
OR_SONNET = ModelRef("openrouter", "anthropic/claude-sonnet-4-5")
A_OPUS = ModelRef("anthropic", "claude-opus-4-5")
GPT = ModelRef("openai", "gpt-5.2")
OR_GPT = ModelRef("openrouter", "openai/gpt-5.2")
KIMI = ModelRef("openrouter", "moonshotai/kimi-k2")
ECHO = ModelRef("demo", "echo")

REFS = [A_SONNET, OR_SONNET, A_OPUS, GPT, OR_GPT, KIMI, ECHO]


def nobody(_ref: ModelRef) -> bool:
    """has_auth for a deployment with no keys at all."""
    return False


def test_one_entry_per_family_sorted() -> None:
    """Families are the last '/' segment, sorted, each with its providers in sorted order."""
    entries = build_picker(REFS)
    assert [(e.number, e.family, e.refs) for e in entries] == [
        (1, "claude-opus-4-5", (A_OPUS,)),
        (2, "claude-sonnet-4-5", (A_SONNET, OR_SONNET)),
        (3, "echo", (ECHO,)),
        (4, "gpt-5.2", (GPT, OR_GPT)),
        (5, "kimi-k2", (KIMI,)),
    ]
    assert entries[1].providers == ("anthropic", "openrouter")


def test_families_sort_case_insensitively_with_exact_tie_break() -> None:
    """'Beta' sorts between 'alpha' and 'gamma'; 'B' and 'b' keep a fixed order."""
    refs = [
        ModelRef("p", "gamma"),
        ModelRef("p", "Beta"),
        ModelRef("p", "alpha"),
        ModelRef("p", "b"),
        ModelRef("p", "B"),
    ]
    assert [e.family for e in build_picker(refs)] == ["alpha", "B", "b", "Beta", "gamma"]


def test_numbering_is_stable_under_shuffled_and_repeated_input() -> None:
    """The same set of refs in any order (or with repeats) gives the identical picker."""
    expected = build_picker(REFS)
    rng = random.Random(7)
    for _ in range(20):
        shuffled = REFS * 2
        rng.shuffle(shuffled)
        assert build_picker(shuffled) == expected


def test_empty_picker() -> None:
    """No refs, no entries, and the rendering says so instead of showing an empty list."""
    assert build_picker([]) == []
    assert "No models are available" in render_picker([], None)


def test_render_lines_and_current_marker() -> None:
    """Header, one line per family in the shape of docs/failover.md §2, the current entry marked, then the hint."""
    text = render_picker(build_picker(REFS), OR_SONNET)
    assert text.splitlines() == [
        "Models (current: openrouter/anthropic/claude-sonnet-4-5):",
        "1) claude-opus-4-5 — anthropic",
        "2) claude-sonnet-4-5 — anthropic, openrouter (current: openrouter)",
        "3) echo — demo",
        "4) gpt-5.2 — openai, openrouter",
        "5) kimi-k2 — openrouter",
        PICKER_FOOTER,
    ]


def test_render_single_provider_current_and_no_current() -> None:
    """A single-provider family is marked plainly; with no current model nothing is marked."""
    entries = build_picker(REFS)
    assert "3) echo — demo (current)" in render_picker(entries, ECHO).splitlines()
    plain = render_picker(entries, None)
    assert "current" not in plain
    assert plain.splitlines()[0] == "Models:"
    assert plain.splitlines()[-1] == "Pick with /model <number> or /model provider/model."


def test_render_current_outside_picker_only_in_header() -> None:
    """A current model the picker does not offer is named in the header and marks no line."""
    text = render_picker(build_picker(REFS), ModelRef("openai", "o3"))
    assert text.splitlines()[0] == "Models (current: openai/o3):"
    assert sum("current" in line for line in text.splitlines()) == 1


def test_render_same_provider_twice_shows_full_refs() -> None:
    """Two vendors' copies on one provider are told apart by their full ref."""
    refs = [ModelRef("openrouter", "a/llama"), ModelRef("openrouter", "b/llama"), ModelRef("groq", "llama")]
    line = render_picker(build_picker(refs), None).splitlines()[1]
    assert line == "1) llama — groq, openrouter/a/llama, openrouter/b/llama"


def test_choose_keeps_the_current_provider() -> None:
    """If the family is offered by the session's current provider, that provider is kept."""
    entries = build_picker(REFS)
    chosen = choose_from_picker(entries, 4, current=ModelRef("openrouter", "x/other"), has_auth=nobody)
    assert chosen == OR_GPT


def test_choose_the_current_model_itself() -> None:
    """Picking the family of the current model returns the current model unchanged."""
    entries = build_picker(REFS)
    assert (
        choose_from_picker(entries, 2, current=OR_SONNET, has_auth=lambda r: r.provider == "anthropic")
        == OR_SONNET
    )


def test_choose_first_provider_with_auth() -> None:
    """Otherwise the first provider (in picker order) that has usable auth wins."""
    entries = build_picker(REFS)
    assert (
        choose_from_picker(entries, 2, current=GPT, has_auth=lambda r: r.provider == "openrouter")
        == OR_SONNET
    )
    assert choose_from_picker(entries, 2, current=None, has_auth=lambda r: True) == A_SONNET


def test_choose_falls_back_to_first_provider() -> None:
    """With no usable auth anywhere, the first provider is chosen (the engine reports the auth problem)."""
    assert choose_from_picker(build_picker(REFS), 2, current=None, has_auth=nobody) == A_SONNET


@pytest.mark.parametrize("number", [0, -1, 6, 100])
def test_choose_out_of_range(number: int) -> None:
    """An out-of-range number names the valid range."""
    with pytest.raises(CommandError, match=r"^Pick a number from 1 to 5\.$"):
        choose_from_picker(build_picker(REFS), number, current=None, has_auth=nobody)


def test_choose_from_empty_picker() -> None:
    """An empty picker gives a clear message instead of 'from 1 to 0'."""
    with pytest.raises(CommandError) as info:
        choose_from_picker([], 1, current=None, has_auth=nobody)
    assert "no models" in str(info.value)
    assert "1 to 0" not in str(info.value)


def test_tokens_are_short_and_never_model_ids() -> None:
    """Button tokens fit Telegram's 64 bytes even for huge ids, and carry no model id."""
    long_family = "x" * 500
    entries = build_picker([*REFS, ModelRef("openrouter", "vendor/" + long_family)])
    for entry in entries:
        token = picker_token(entry)
        assert len(token.encode()) <= 64
        assert entry.family not in token
        assert resolve_token(entries, token) == entry
    assert picker_token(entries[0]).startswith("m:1:")


def test_stale_token_is_detected() -> None:
    """A token from an older picker whose number now holds another family resolves to None."""
    old = build_picker(REFS)
    token = picker_token(old[1])  # 2) claude-sonnet-4-5
    new = build_picker([ModelRef("anthropic", "claude-haiku-4-5"), *REFS])  # haiku takes number 1
    assert new[1].family == "claude-opus-4-5"
    assert resolve_token(new, token) is None


def test_token_survives_a_change_that_keeps_the_number() -> None:
    """A new provider for the same family at the same number keeps the token valid."""
    token = picker_token(build_picker(REFS)[1])
    grown = build_picker([*REFS, ModelRef("bedrock", "claude-sonnet-4-5")])
    entry = resolve_token(grown, token)
    assert entry is not None
    assert ModelRef("bedrock", "claude-sonnet-4-5") in entry.refs


@pytest.mark.parametrize(
    "token",
    ["", "m", "m:1", "m:1:deadbeef:x", "x:1:deadbeef", "m:one:deadbeef", "m:99:deadbeef", "m:1:" + "0" * 100],
)
def test_malformed_tokens_resolve_to_none(token: str) -> None:
    """Junk, foreign prefixes, out-of-range numbers and overlong tokens resolve to None."""
    assert resolve_token(build_picker(REFS), token) is None


def test_paging() -> None:
    """Pages are 1-based slices; the count rounds up; out-of-range pages are clamped."""
    entries = build_picker(REFS)  # 5 entries
    assert page(entries, 1, 2) == (entries[0:2], 3)
    assert page(entries, 3, 2) == (entries[4:5], 3)
    assert page(entries, 9, 2) == (entries[4:5], 3)
    assert page(entries, 0, 2) == (entries[0:2], 3)
    assert page(entries, 1, 10) == (entries, 1)
    assert page([], 1, 5) == ([], 1)


def test_paging_rejects_nonpositive_page_size() -> None:
    """per_page below 1 is a programming error."""
    with pytest.raises(ValueError, match="per_page"):
        page(build_picker(REFS), 1, 0)


def test_picker_entry_is_immutable() -> None:
    """Entries are frozen values, safe to share between renders."""
    entry = PickerEntry(1, "f", (ECHO,))
    with pytest.raises(AttributeError):
        entry.number = 2  # type: ignore[misc]


@pytest.mark.parametrize(
    ("typed", "limit", "expected"),
    [
        (
            "",
            3,
            [
                "anthropic/claude-opus-4-5",
                "anthropic/claude-sonnet-4-5",
                "openrouter/anthropic/claude-sonnet-4-5",
            ],
        ),
        (
            "GPT",
            25,
            ["openai/gpt-5.2", "openrouter/openai/gpt-5.2"],
        ),  # case-insensitive, the model id's start
        (
            "open",
            25,
            [
                "openrouter/anthropic/claude-sonnet-4-5",  # picker order: the sonnet family comes first
                "openai/gpt-5.2",
                "openrouter/openai/gpt-5.2",
                "openrouter/moonshotai/kimi-k2",
            ],
        ),
        (
            "sonnet",
            25,
            ["anthropic/claude-sonnet-4-5", "openrouter/anthropic/claude-sonnet-4-5"],
        ),  # contained
        ("kimi", 25, ["openrouter/moonshotai/kimi-k2"]),
        ("nothing", 25, []),
    ],
)
def test_autocomplete(typed: str, limit: int, expected: list[str]) -> None:
    """Models matching what was typed, in picker order, those that start with it before those that contain it."""
    assert autocomplete(build_picker(REFS), typed, limit=limit) == expected
