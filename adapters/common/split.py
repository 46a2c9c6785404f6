"""Split a long answer into message-sized chunks without breaking fenced code blocks.

Lengths count UTF-16 code units, the unit Telegram and Discord measure in (an emoji outside the
Basic Multilingual Plane counts two); for other text that equals ``len()``.
"""

from __future__ import annotations

import re
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass
from itertools import accumulate

# Below this a chunk could not hold a reopened fence, its close and some content.
MIN_LIMIT = 160
# Longer lines are not taken for fences: a chunk must always have room for a whole fence line.
MAX_FENCE_LINE = 64
_FENCE_RE = re.compile(r"[ \t]*(`{3,10}|~{3,10})([^`\n]*)")
# What a line may start with to become a heading, quote, bullet or rule: a cut that would start the
# next chunk with one of these, mid-line, would change how that chunk renders.
_BLOCK_START_RE = re.compile(r"[ \t]*(?:#{1,6}[ \t]|>|[-*+][ \t]|[-*_][ \t]*[-*_][ \t]*[-*_])")


@dataclass(frozen=True)
class Fence:
    """An open fenced code block: its opening line (without newline) and its marker (```` ``` ````, ``~~~``)."""

    line: str
    marker: str


def fence_opening(line: str) -> Fence | None:
    """The fence that ``line`` (without its newline) opens, or None: shared with the Markdown renderer."""
    line = line.rstrip("\r")
    if len(line) > MAX_FENCE_LINE:
        return None
    match = _FENCE_RE.fullmatch(line)
    if match is None or (match.group(1)[0] == "~" and "~" in match.group(2)):
        return None
    return Fence(line, match.group(1))


def closes_fence(line: str, fence: Fence) -> bool:
    """Whether ``line`` ends the block that ``fence`` opened: the same character, at least as many."""
    stripped = line.strip()
    char = fence.marker[0]
    return len(stripped) >= len(fence.marker) and stripped == char * len(stripped)


@dataclass(frozen=True)
class Chunk:
    """One message: a slice of the text, with the fence lines added to keep code blocks closed."""

    reopen: str  # the block's opening line + "\n" when the chunk starts inside a code block
    body: str  # an exact slice of the original text
    close: str  # "\n```" (or "```" after a newline) when the chunk ends inside a code block

    @property
    def text(self) -> str:
        """What is sent."""
        return self.reopen + self.body + self.close


def utf16_len(text: str) -> int:
    """The length Telegram and Discord count: characters outside the BMP take two units."""
    return len(text) + sum(1 for ch in text if ord(ch) > 0xFFFF)


def split_message(text: str, limit: int) -> list[str]:
    """Split ``text`` into chunks of at most ``limit`` units, preferring paragraph, line, sentence, space.

    A code block that a chunk boundary cuts is closed at the end of the chunk and reopened, with the
    same language tag, at the start of the next. A blank chunk only arises from a run of whitespace
    longer than the limit; senders may skip it.
    """
    return [chunk.text for chunk in split_chunks(text, limit)]


def split_chunks(text: str, limit: int) -> list[Chunk]:
    """``split_message`` with the added fence lines kept apart: the bodies joined give back ``text``."""
    if limit < MIN_LIMIT:
        raise ValueError(f"limit must be at least {MIN_LIMIT}")
    return _Splitter(text, limit).run()


class _Splitter:
    """Greedy splitting over precomputed line and fence state."""

    def __init__(self, text: str, limit: int) -> None:
        self.text = text
        self.limit = limit
        self.cost = [0, *accumulate(2 if ord(ch) > 0xFFFF else 1 for ch in text)]
        self.line_starts: list[int] = []
        self.fence_before: list[Fence | None] = []  # the block open at the start of each line
        self.fence_line: list[bool] = []  # the line is an opening or closing fence: never cut inside
        self.opens: list[bool] = []
        fence: Fence | None = None
        start = 0
        # Only "\n" ends a line, here and in the renderer (str.splitlines also splits on \v, \x1c, …).
        for content in text.split("\n"):
            self.line_starts.append(start)
            self.fence_before.append(fence)
            opened = fence_opening(content) if fence is None else None
            closed = fence is not None and closes_fence(content, fence)
            self.fence_line.append(opened is not None or closed)
            self.opens.append(opened is not None)
            fence = opened if opened is not None else (None if closed else fence)
            start += len(content) + 1

    def run(self) -> list[Chunk]:
        chunks: list[Chunk] = []
        pos, end = 0, len(self.text)
        while pos < end:
            fence = self._fence_at(pos) if pos else None
            reopen = fence.line + "\n" if fence is not None else ""
            budget = self.limit - utf16_len(reopen)
            if self.cost[end] - self.cost[pos] <= budget:
                chunks.append(Chunk(reopen, self.text[pos:], ""))
                break
            cut = self._choose_cut(pos, budget)
            close = self._close_at(cut)
            chunks.append(Chunk(reopen, self.text[pos:cut], close))
            pos = cut
        return chunks

    def _line_index(self, pos: int) -> int:
        return bisect_right(self.line_starts, pos) - 1  # the last line starting at or before pos

    def _fence_at(self, pos: int) -> Fence | None:
        return self.fence_before[self._line_index(pos)]

    def _close_at(self, pos: int) -> str:
        fence = self._fence_at(pos)
        if fence is None:
            return ""
        return fence.marker if self.text[pos - 1] == "\n" else "\n" + fence.marker

    def _valid(self, pos: int, cut: int, budget: int, *, strict: bool) -> bool:
        """A cut must fit with its closing fence and never split a fence line; ``strict`` also refuses
        a cut right after an opening fence (an empty block), inside a grapheme, or one that would start
        the next chunk with a block marker such as '> ' or '# '."""
        index = self._line_index(cut)
        at_line_start = self.line_starts[index] == cut
        if not at_line_start and (self.fence_line[index] or self._makes_fence(index, pos, cut)):
            return False
        if strict and (
            _joins_grapheme(self.text, cut)
            or (at_line_start and index > 0 and self.opens[index - 1])
            or (not at_line_start and _BLOCK_START_RE.match(self.text, cut) is not None)
        ):
            return False
        return self.cost[cut] - self.cost[pos] + utf16_len(self._close_at(cut)) <= budget

    def _makes_fence(self, index: int, pos: int, cut: int) -> bool:
        """Whether cutting this line at ``cut`` would leave a half that reads as a fence on its own
        (``word ```js`` cut after "word " starts the next chunk with an opening fence); the chunk
        may itself have started in this line, at ``pos``."""
        start = max(self.line_starts[index], pos)
        end = self.line_starts[index + 1] - 1 if index + 1 < len(self.line_starts) else len(self.text)
        fence = self.fence_before[index]
        for half_start, half_end in ((start, cut), (cut, end)):
            if half_end - half_start > MAX_FENCE_LINE:
                continue
            half = self.text[half_start:half_end]
            if (fence_opening(half) is not None) if fence is None else closes_fence(half, fence):
                return True
        return False

    def _choose_cut(self, pos: int, budget: int) -> int:
        hi = bisect_right(self.cost, self.cost[pos] + budget) - 1  # the furthest end within budget
        # The latest boundary of each kind: 0 paragraph, 1 line, 2 sentence, 3 space.
        best: list[int | None] = [None, None, None, None]
        text = self.text
        for cut in range(hi, pos, -1):
            if not text[cut - 1].isspace():
                continue
            kind = _boundary_kind(text, cut)
            if best[kind] is None and self._valid(pos, cut, budget, strict=True):
                best[kind] = cut
                if kind == 0 or None not in best:
                    break
        # A better kind of boundary wins only if it keeps the chunk at least half full.
        for candidate in best:
            if candidate is not None and candidate - pos >= (hi - pos) // 2:
                return candidate
        found = [candidate for candidate in best if candidate is not None]
        if found:
            return max(found)
        for strict in (True, False):
            for cut in range(hi, pos, -1):
                if self._valid(pos, cut, budget, strict=strict):
                    return cut
        return max(hi, pos + 1)  # unreachable with limit >= MIN_LIMIT; guarantees progress


def _boundary_kind(text: str, cut: int) -> int:
    """0 after a blank line, 1 after a newline, 2 after a sentence end and a space, 3 after a space."""
    if text[cut - 1] == "\n":
        line = text[text.rfind("\n", 0, cut - 1) + 1 : cut - 1]
        return 1 if line.strip() else 0
    before = text[max(0, cut - 8) : cut].rstrip()[-3:].rstrip("\"')]*_”’»")
    return 2 if before.endswith((".", "!", "?", "…", "。")) else 3


def _joins_grapheme(text: str, cut: int) -> bool:
    """Whether a cut at ``cut`` would separate a combining mark, ZWJ sequence or "\\r\\n"."""
    if cut >= len(text):
        return False
    nxt, prev = text[cut], text[cut - 1]
    if prev == "\u200d" or nxt == "\u200d" or (prev == "\r" and nxt == "\n"):
        return True
    if "\ufe00" <= nxt <= "\ufe0f" or "\U0001f3fb" <= nxt <= "\U0001f3ff":
        return True
    return unicodedata.category(nxt) in ("Mn", "Mc", "Me")
