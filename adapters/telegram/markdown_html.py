"""Render a model's Markdown as the HTML subset Telegram accepts, or as plain text for the fallback.

Split first, render second: ``split_for_telegram`` cuts the *Markdown* (closing and reopening code
fences), so every chunk renders to well-formed HTML on its own; a chunk whose HTML grew past the limit
is cut again, smaller. Unbalanced markers stay literal text, and every tag the renderer opens it closes.
"""

from __future__ import annotations

import html
import re
import string
import unicodedata
from bisect import bisect_right
from dataclasses import dataclass
from urllib.parse import urlsplit

from adapters.common.split import MIN_LIMIT, closes_fence, fence_opening, split_message, utf16_len

TELEGRAM_LIMIT = 4096
# Escaping alone can make text five times longer ('&' ⇒ '&amp;'); a chunk of MIN_LIMIT characters
# that still renders too long is sent as escaped plain text, which then always fits (see ``_fit``).
MIN_RENDER_LIMIT = 5 * MIN_LIMIT
_LINK_SCHEMES = frozenset({"http", "https", "tg"})
_LANG_RE = re.compile(r"[A-Za-z0-9_+#.\-]{1,32}")
_HEADING_RE = re.compile(r" {0,3}#{1,6}[ \t]+(.*?)(?:[ \t]+#+)?[ \t]*")
_RULE_RE = re.compile(r" {0,3}([-*_])(?:[ \t]*\1){2,}[ \t]*")
_BULLET_RE = re.compile(r"([ \t]*)[-*+][ \t]+(.*)")
_QUOTE_RE = re.compile(r" {0,3}> ?(.*)")
_AUTOLINK_RE = re.compile(r"<((?:https?|tg)://[^\s<>]+)>", re.IGNORECASE)
_BARE_URL_RE = re.compile(r"(?:https?|tg)://[^\s<>]*[^\s<>.,;:!?'\")\]*_~]", re.IGNORECASE)
# "(url)" or "(<url>)", parentheses balanced one level deep (Wikipedia), an optional "title" ignored.
_LINK_TARGET_RE = re.compile(r"\(\s*(<[^<>\n]*>|(?:[^\s()]|\([^\s()]*\))+)(?:\s+\"[^\"\n]*\")?\s*\)")
_WRAPPED_BOLD_RE = re.compile(r"(\*\*|__)(.+)\1")
_PUNCTUATION = frozenset(string.punctuation)


def markdown_to_telegram_html(md: str) -> str:
    """Telegram HTML (<b>, <i>, <s>, <code>, <pre>, <a href>, <blockquote>) for a chunk of Markdown."""
    return _Renderer(as_html=True).document(md)


def strip_markdown(md: str) -> str:
    """Plain text for when Telegram rejects the entities: markers dropped, links as "text (url)"."""
    return _Renderer(as_html=False).document(md)


def split_for_telegram(md: str, limit: int = TELEGRAM_LIMIT) -> list[tuple[str, str]]:
    """(html, plain) message pairs, each at most ``limit`` UTF-16 units; blank chunks are skipped.

    Telegram counts its limit after parsing the entities, so requiring the HTML itself to fit is a
    conservative choice: it can never be rejected as too long.
    """
    if limit < MIN_RENDER_LIMIT:
        raise ValueError(f"limit must be at least {MIN_RENDER_LIMIT}")
    pairs: list[tuple[str, str]] = []
    _fit(md, limit, limit, pairs)
    return pairs


def _fit(md: str, limit: int, md_limit: int, pairs: list[tuple[str, str]]) -> None:
    for chunk in split_message(md, md_limit):
        rendered, plain = markdown_to_telegram_html(chunk), strip_markdown(chunk)
        longest = max(utf16_len(rendered), utf16_len(plain))
        size = utf16_len(chunk)
        if longest > limit and size > MIN_LIMIT:
            # Rendering grew the chunk: cut it again, in proportion to the growth and a little under.
            _fit(chunk, limit, max(MIN_LIMIT, min(size - 1, size * limit * 9 // (10 * longest))), pairs)
            continue
        if longest > limit:
            # Tags on nearly every character (a page of one-character quotes): give up the formatting.
            # No Markdown character becomes more than five of escaped plain text ('&', or '>' ⇒ '&gt; '),
            # so this is at most 5 × MIN_LIMIT = MIN_RENDER_LIMIT.
            rendered = html.escape(plain, quote=False)
        if plain.strip():
            pairs.append((rendered, plain))


@dataclass
class _Delim:
    """A run of '*', '_' or '~' that may open or close emphasis; what is left unmatched stays literal."""

    char: str
    count: int
    can_open: bool
    can_close: bool


_Node = str | _Delim  # str: finished output (already escaped)
_TAGS = {("*", 1): "i", ("_", 1): "i", ("*", 2): "b", ("_", 2): "b", ("~", 2): "s"}


class _Renderer:
    """One renderer for both outputs, so the plain fallback says exactly what the HTML shows."""

    def __init__(self, *, as_html: bool) -> None:
        self.as_html = as_html

    def escape(self, text: str) -> str:
        return html.escape(text, quote=False) if self.as_html else text

    def wrap(self, tag: str, inner: str, *, attrs: str = "") -> str:
        return f"<{tag}{attrs}>{inner}</{tag}>" if self.as_html else inner

    def document(self, md: str) -> str:
        """Block structure line by line: fences, headings, rules, quotes, bullets, paragraphs."""
        lines = md.split("\n")
        parts: list[str] = []
        paragraph: list[str] = []

        def flush() -> None:
            if paragraph:
                parts.append(self.inline("\n".join(paragraph)))
                paragraph.clear()

        i = 0
        while i < len(lines):
            line = lines[i]
            fence = fence_opening(line)
            heading = _HEADING_RE.fullmatch(line)
            bullet = _BULLET_RE.fullmatch(line)
            if fence is not None:
                flush()
                end = i + 1
                while end < len(lines) and not closes_fence(lines[end], fence):
                    end += 1
                info = fence.line.strip().lstrip(fence.marker[0]).split()
                parts.append(self.code_block("\n".join(lines[i + 1 : end]), info[0] if info else ""))
                i = end + 1  # an unclosed fence runs to the end, as in CommonMark
                continue
            if _QUOTE_RE.fullmatch(line):
                flush()
                quoted: list[str] = []
                while i < len(lines) and (match := _QUOTE_RE.fullmatch(lines[i])) is not None:
                    quoted.append(match.group(1))
                    i += 1
                parts.append(self.quote(quoted))
                continue
            if heading is not None:
                flush()
                title = heading.group(1)
                wrapped = _WRAPPED_BOLD_RE.fullmatch(title)
                title = wrapped.group(2) if wrapped is not None else title
                parts.append(self.wrap("b", self.inline(title, inside=frozenset({"b"}))))
            elif _RULE_RE.fullmatch(line):
                flush()
                parts.append("———")
            elif bullet is not None:
                flush()
                parts.append(self.escape(bullet.group(1)) + "• " + self.inline(bullet.group(2)))
            elif not line.strip():
                flush()
                parts.append(line)
            else:
                paragraph.append(line)
            i += 1
        flush()
        return "\n".join(parts)

    def code_block(self, code: str, lang: str) -> str:
        if not self.as_html or not code:
            return code  # an empty <pre> is an empty entity, which Telegram may refuse
        body = html.escape(code, quote=False)
        if _LANG_RE.fullmatch(lang):
            return f'<pre><code class="language-{lang}">{body}</code></pre>'
        return f"<pre>{body}</pre>"

    def quote(self, lines: list[str]) -> str:
        if not self.as_html:
            return "\n".join("> " + self.inline(line) for line in lines)
        text = self.inline("\n".join(lines))
        return self.wrap("blockquote", text) if text.strip() else text  # no empty entity

    def inline(self, text: str, *, inside: frozenset[str] = frozenset()) -> str:
        """Code spans, links, URLs and escapes first (atomic), then emphasis by delimiter matching."""
        return self._resolve(self._tokens(text, inside), inside)

    def _tokens(self, text: str, inside: frozenset[str]) -> list[_Node]:
        nodes: list[_Node] = []
        literal: list[str] = []
        closers = _backtick_runs(text)
        brackets = _bracket_pairs(text) if "a" not in inside else {}

        def emit(node: _Node) -> None:
            if literal:
                nodes.append(self.escape("".join(literal)))
                literal.clear()
            nodes.append(node)

        i, n = 0, len(text)
        while i < n:
            char = text[i]
            if char == "\\" and i + 1 < n and text[i + 1] in _PUNCTUATION:
                literal.append(text[i + 1])
                i += 2
            elif char == "`":
                run = _run_length(text, i)
                same = closers.get(run, [])
                after = bisect_right(same, i)
                if after < len(same):  # a span ends at the next run of exactly as many backticks
                    emit(self.code_span(text[i + run : same[after]]))
                    i = same[after] + run
                else:
                    literal.append("`" * run)
                    i += run
            elif char == "[" and i in brackets and (link := self._link(text, i, brackets[i], inside)):
                emit(link[0])
                i = link[1]
            elif char == "<" and (auto := _AUTOLINK_RE.match(text, i)) is not None:
                literal.append(auto.group(1))  # Telegram links bare URLs itself
                i = auto.end()
            elif (
                char in "hHtT"
                and (i == 0 or not text[i - 1].isalnum())
                and (url := _BARE_URL_RE.match(text, i))
            ):
                emit(self.escape(url.group()))  # atomic, so '_' and '*' inside a URL stay as they are
                i = url.end()
            elif char in "*_~" and (char != "~" or text.startswith("~~", i)):
                run = _run_length(text, i)
                emit(_delimiter(text, i, run))
                i += run
            else:
                literal.append(char)
                i += 1
        if literal:
            nodes.append(self.escape("".join(literal)))
        return nodes

    def code_span(self, code: str) -> str:
        if len(code) > 2 and code[0] == code[-1] == " " and code.strip():
            code = code[1:-1]  # CommonMark: one space each side lets a span start or end with '`'
        return self.wrap("code", self.escape(code))

    def _link(self, text: str, start: int, close: int, inside: frozenset[str]) -> tuple[str, int] | None:
        """``[label](url)`` with its ']' at ``close``: (rendered, end), or None when it is not a link."""
        match = _LINK_TARGET_RE.match(text, close + 1)
        if match is None:
            return None
        url = match.group(1).removeprefix("<").removesuffix(">")
        label = self.inline(text[start + 1 : close], inside=inside | {"a"}) or self.escape(url)
        if not _allowed_url(url):
            return label, match.end()
        if not self.as_html:
            return (label if label == url else f"{label} ({url})"), match.end()
        return self.wrap("a", label, attrs=f' href="{html.escape(url, quote=True)}"'), match.end()

    def _resolve(self, nodes: list[_Node], inside: frozenset[str]) -> str:
        """Match closers to the nearest opener of the same kind; the matched span becomes one node."""
        # CommonMark's "openers bottom": below it a closer of that kind already found no opener,
        # which keeps a text full of unmatched markers linear.
        bottom: dict[str, int] = {}
        i = 0
        while i < len(nodes):
            closer = nodes[i]
            if not isinstance(closer, _Delim) or not closer.can_close or closer.count == 0:
                i += 1
                continue
            floor = bottom.get(closer.char, -1)
            j = i - 1
            while j > floor and not _pairs(nodes[j], closer):
                j -= 1
            if j <= floor:
                bottom[closer.char] = i - 1
                i += 1
                continue
            opener = nodes[j]
            assert isinstance(opener, _Delim)
            used = 2 if opener.count >= 2 and closer.count >= 2 else 1
            tag = _TAGS[(closer.char, used)]
            inner = _flatten(nodes[j + 1 : i])
            nodes[j + 1 : i] = [inner if tag in inside else self.wrap(tag, inner)]
            bottom = {char: min(index, j - 1) for char, index in bottom.items()}  # nodes above j moved
            opener.count -= used
            closer.count -= used
            i = j + 2
            if opener.count == 0:
                del nodes[j]
                i -= 1
        return _flatten(nodes)


def _pairs(node: _Node, closer: _Delim) -> bool:
    if not isinstance(node, _Delim) or node.char != closer.char or not node.can_open or node.count == 0:
        return False
    return node.char != "~" or (node.count >= 2 and closer.count >= 2)


def _flatten(nodes: list[_Node]) -> str:
    return "".join(node if isinstance(node, str) else node.char * node.count for node in nodes)


def _delimiter(text: str, start: int, run: int) -> _Delim:
    """CommonMark's flanking rules: whether a run can open or close, and no intraword '_' emphasis."""
    before = text[start - 1] if start > 0 else " "
    after = text[start + run] if start + run < len(text) else " "
    before_space, after_space = before.isspace(), after.isspace()
    before_punct, after_punct = _is_punct(before), _is_punct(after)
    left = not after_space and (not after_punct or before_space or before_punct)
    right = not before_space and (not before_punct or after_space or after_punct)
    char = text[start]
    if char == "_":
        return _Delim(char, run, left and (not right or before_punct), right and (not left or after_punct))
    return _Delim(char, run, left, right)


def _backtick_runs(text: str) -> dict[int, list[int]]:
    """Where each run of backticks starts, by run length: the closers a code span can end at."""
    runs: dict[int, list[int]] = {}
    for match in re.finditer(r"`+", text):
        runs.setdefault(len(match.group()), []).append(match.start())
    return runs


def _bracket_pairs(text: str) -> dict[int, int]:
    """Each '[' and its matching ']' (backslash escapes skipped), found in one pass."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 1
        elif text[i] == "[":
            stack.append(i)
        elif text[i] == "]" and stack:
            pairs[stack.pop()] = i
        i += 1
    return pairs


def _run_length(text: str, start: int) -> int:
    """How many times ``text[start]`` repeats from ``start`` on."""
    end = start
    while end < len(text) and text[end] == text[start]:
        end += 1
    return end - start


def _is_punct(char: str) -> bool:
    return unicodedata.category(char)[0] in "PS"


def _allowed_url(url: str) -> bool:
    """Only http(s) with a host, and tg: links; anything else (javascript:, file:, relative) is text."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    scheme = parts.scheme.lower()
    if scheme not in _LINK_SCHEMES or any(ch.isspace() or ord(ch) < 32 for ch in url):
        return False
    return scheme == "tg" or bool(parts.netloc)
