"""Splitting long answers into message-sized chunks: boundaries, code fences, hard splits, a property test."""

from __future__ import annotations

import random

import pytest

from adapters.common.split import (
    MIN_LIMIT,
    Chunk,
    Fence,
    closes_fence,
    fence_opening,
    split_chunks,
    split_message,
    utf16_len,
)


def open_fence_after(text: str, fence: Fence | None = None) -> Fence | None:
    """The code block still open after reading ``text`` line by line from state ``fence``."""
    for line in text.split("\n"):
        if fence is None:
            fence = fence_opening(line)
        elif closes_fence(line, fence):
            fence = None
    return fence


def check_chunks(text: str, limit: int) -> list[Chunk]:
    """Split and check every invariant; return the chunks for more specific assertions."""
    chunks = split_chunks(text, limit)
    assert [chunk.text for chunk in chunks] == split_message(text, limit)
    assert "".join(chunk.body for chunk in chunks) == text
    for index, chunk in enumerate(chunks):
        assert chunk.body, "every chunk carries some of the text"
        assert utf16_len(chunk.text) <= limit
        if chunk.reopen:
            assert fence_opening(chunk.reopen.removesuffix("\n")) is not None
        if chunk.close:
            marker = chunk.close.removeprefix("\n")
            assert marker and set(marker) <= {"`", "~"}
        # Each chunk stands alone: no code block left open, except where the text itself ends open.
        if index < len(chunks) - 1:
            assert open_fence_after(chunk.text) is None
    if chunks:
        assert (open_fence_after(chunks[-1].text) is None) == (open_fence_after(text) is None)
    return chunks


def test_short_text_is_one_chunk() -> None:
    """Text within the limit comes back unchanged; empty text gives no chunks."""
    assert split_message("hello", 2000) == ["hello"]
    assert split_message("x" * 2000, 2000) == ["x" * 2000]
    assert split_message("", 2000) == []


def test_limit_too_small() -> None:
    """A limit too small to hold a reopened fence is refused."""
    with pytest.raises(ValueError, match="at least"):
        split_message("x", MIN_LIMIT - 1)


def test_prefers_paragraphs() -> None:
    """A blank line is the preferred cut, even when a line break comes later."""
    first = "a" * 120 + "\n\n"
    text = first + "b" * 30 + "\n" + "c" * 100
    assert split_message(text, 200) == [first, "b" * 30 + "\n" + "c" * 100]


def test_prefers_lines_then_sentences_then_spaces() -> None:
    """Without a paragraph break: the last newline, else the last sentence end, else the last space."""
    lines = "a" * 100 + "\n" + "b b. " * 10 + "c" * 100
    assert split_message(lines, 200)[0] == "a" * 100 + "\n"
    sentences = "word " * 25 + "end. " + "tail " * 40
    assert split_message(sentences, 200)[0] == "word " * 25 + "end. "
    spaces = "word " * 60
    assert split_message(spaces, 200)[0] == "word " * 40


def test_a_far_away_paragraph_loses_to_a_near_line() -> None:
    """A paragraph break that would leave the chunk less than half full gives way to a later line break."""
    text = "a" * 10 + "\n\n" + ("b" * 49 + "\n") * 4 + "c" * 200
    assert split_message(text, 200)[0] == "a" * 10 + "\n\n" + ("b" * 49 + "\n") * 3


def test_never_starts_a_chunk_with_a_block_marker_mid_line() -> None:
    """A cut mid-line avoids leaving '> ', '# ' or '- ' at the start of the next chunk, where it would
    turn into a quote, heading or bullet."""
    for marker in ("> ", "# ", "- ", "* * *"):
        text = "w" * 150 + " " + marker + " y" * 10 + " " + "z" * 100
        chunks = check_chunks(text, 160)
        assert len(chunks) > 1
        assert not any(chunk.body.startswith(marker[0]) for chunk in chunks[1:])


def test_hard_split_of_a_long_line() -> None:
    """A line with no spaces is cut at exactly the limit."""
    chunks = check_chunks("x" * 450, 200)
    assert [len(chunk.body) for chunk in chunks] == [200, 200, 50]


def test_code_block_is_closed_and_reopened_with_its_language() -> None:
    """A cut inside a code block closes it and reopens it, with the language, in the next chunk."""
    code = "".join(f"print({n})\n" for n in range(40))
    text = "Here:\n\n```python\n" + code + "```\nDone."
    chunks = check_chunks(text, 200)
    assert len(chunks) > 2
    assert chunks[0].body.endswith("```python\n") is False  # never an empty block at a chunk's end
    for chunk in chunks[1:-1]:
        assert chunk.text.startswith("```python\n")
        assert chunk.text.endswith("\n```")
    assert chunks[-1].text.startswith("```python\n")
    assert chunks[-1].text.endswith("```\nDone.")


def test_tilde_fences_and_long_markers() -> None:
    """``~~~`` and four-backtick fences are closed with their own marker."""
    text = "~~~sh\n" + "echo hi\n" * 40 + "~~~\n\n````md\n" + "```x\n" * 40 + "````\n"
    chunks = check_chunks(text, 160)
    closes = {chunk.close.strip() for chunk in chunks if chunk.close}
    assert closes == {"~~~", "````"}


def test_hard_split_inside_code_reopens_mid_line() -> None:
    """A code line longer than the limit is hard-split, and both halves stay inside a code block."""
    text = "```js\n" + "x" * 500 + "\n```"
    chunks = check_chunks(text, 200)
    assert chunks[0].close == "\n```"
    assert chunks[1].reopen == "```js\n"


def test_unclosed_block_in_the_text() -> None:
    """An answer that ends inside a code block keeps it open at the end, as the model wrote it."""
    text = "```\n" + "line\n" * 100
    chunks = check_chunks(text, 160)
    assert chunks[-1].close == ""


def test_counts_utf16_units_and_keeps_graphemes() -> None:
    """Emoji outside the BMP count two; a ZWJ sequence or combining mark is never cut apart."""
    chunks = check_chunks("😀" * 300, 200)
    assert [len(chunk.body) for chunk in chunks] == [100, 100, 100]
    family = "👨\u200d👩\u200d👧"
    for chunk in check_chunks("a" * 197 + family * 3, 200):
        assert not chunk.body.startswith("\u200d")
        assert not chunk.body.endswith("\u200d")
    accented = "e\u0301" * 150
    for chunk in check_chunks(accented, 200):
        assert chunk.body.startswith("e")


def test_other_line_separators_do_not_confuse_fences() -> None:
    """Only \\n ends a line: a vertical tab or U+2028 inside a code block is just content."""
    text = "```py\n" + "a = 1\x0b```\u2028\n" * 30 + "```\n"
    check_chunks(text, 160)


_PIECES = [
    "word ",
    "Sentence ends here. ",
    "\n",
    "\n\n",
    "```python\n",
    "```\n",
    "~~~\n",
    "````\n",
    "  ```js\n",
    "x = [1, 2, 3]\n",
    "😀",
    "e\u0301",
    "a" * 90,
    "**bold** ",
    "- item\n",
    "\t",
    " ",
    # Text that becomes a fence if a cut lands in the wrong place.
    "``` foo `x`",
    "x ```",
    "```` ",
    "   ````md\n",
    "`",
    "\r\n",
]


@pytest.mark.parametrize("block", range(6))
def test_property_random_texts(block: int) -> None:
    """For many generated texts: chunks fit, are non-empty, stand alone, and join back to the text."""
    for seed in range(block * 50, block * 50 + 50):
        rng = random.Random(seed)
        text = "".join(rng.choice(_PIECES) for _ in range(rng.randint(0, 400)))
        limit = rng.choice([MIN_LIMIT, 200, 333, 1000, 2000, 4096])
        try:
            check_chunks(text, limit)
        except AssertionError as error:
            raise AssertionError(f"seed {seed}, limit {limit}: {error}") from error
