"""A concrete syntax tree of JSON5 text: where each value, key and comma is, and how the file is laid out.

Only spans are kept; whitespace and comments are never tokens, so they stay in the text untouched. The
parser trusts its input: callers check the text with ``json5`` first.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

import json5

from bot.errors import ConfigError

NEWLINES = "\n\r\u2028\u2029"
_IDENT_RE = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
_PUNCT = "{}[]:,"
_JSON5_POS_RE = re.compile(r"^<string>:(\d+) (.*) at column (\d+)$", re.DOTALL)


@dataclass
class Node:
    """A value's span ``[start, end)``; containers also know their elements and the commas after them."""

    kind: Literal["object", "array", "scalar"]
    start: int
    end: int
    keys: list[str] = field(default_factory=list)  # objects: decoded keys, parallel to ``items``
    key_spans: list[tuple[int, int]] = field(default_factory=list)
    items: list[Node] = field(default_factory=list)
    commas: list[int | None] = field(default_factory=list)  # the comma after each element, if any

    def element_start(self, index: int) -> int:
        return self.key_spans[index][0] if self.kind == "object" else self.items[index].start


def tokens(text: str) -> list[tuple[int, int]]:
    """Spans of punctuation, strings and words; whitespace and comments are skipped."""
    spans: list[tuple[int, int]] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch.isspace() or ch == "\ufeff":
            i += 1
        elif text.startswith("//", i):
            while i < n and text[i] not in NEWLINES:
                i += 1
        elif text.startswith("/*", i):
            i = text.index("*/", i + 2) + 2
        elif ch in _PUNCT:
            spans.append((i, i + 1))
            i += 1
        elif ch in "\"'":
            j = i + 1
            while text[j] != ch:
                j += 2 if text[j] == "\\" else 1
            spans.append((i, j + 1))
            i = j + 1
        else:  # a number, a literal or an unquoted key: runs to the next separator
            j = i
            while j < n and not (text[j].isspace() or text[j] in _PUNCT or text.startswith(("//", "/*"), j)):
                j += 1
            spans.append((i, j))
            i = j
    return spans


def parse(text: str) -> Node:
    """The tree of the top-level value; recursive descent over ``tokens``."""
    toks = tokens(text)
    pos = 0

    def value() -> Node:
        nonlocal pos
        start, end = toks[pos]
        pos += 1
        if text[start] not in "{[":
            return Node("scalar", start, end)
        node = Node("object" if text[start] == "{" else "array", start, end)
        close = "}" if node.kind == "object" else "]"
        while text[toks[pos][0]] != close:
            if node.kind == "object":
                node.keys.append(_decode_key(text[toks[pos][0] : toks[pos][1]]))
                node.key_spans.append(toks[pos])
                pos += 2  # the key and the colon
            node.items.append(value())
            comma = toks[pos][0] if text[toks[pos][0]] == "," else None
            pos += comma is not None
            node.commas.append(comma)
        node.end = toks[pos][1]
        pos += 1
        return node

    return value()


def _decode_key(token: str) -> str:
    if token[0] in "\"'" or "\\" in token:
        decoded: dict[str, Any] = json5.loads("{" + token + ":0}")
        return next(iter(decoded))
    return token


def loads(text: str, file: str) -> Any:
    """``json5.loads`` with duplicate keys refused and errors as ``ConfigError``; blank text is ``{}``."""
    if not text.strip():
        return {}
    try:
        return json5.loads(text, allow_duplicate_keys=False)
    except ValueError as exc:
        detail = str(exc)
        if match := _JSON5_POS_RE.match(detail):  # the loader's wording: line, then column
            line, message, column = match.groups()
            detail = f"at line {line} column {column}: {message}"
        raise ConfigError(
            file, "", f"invalid JSON5 {detail}" if match else f"invalid JSON5: {detail}"
        ) from None
    except RecursionError:
        raise ConfigError(file, "", "invalid JSON5: nested too deeply") from None


# -- writing values ------------------------------------------------------------------------------------


def quote(text: str, mark: str) -> str:
    body = text.replace("\\", "\\\\").replace(mark, "\\" + mark).replace("\n", "\\n")
    return mark + body + mark


def render_key(key: str, mark: str, *, always_quote: bool = False) -> str:
    return key if _IDENT_RE.match(key) and not always_quote else quote(key, mark)


def render_value(value: Any, mark: str = '"') -> str:
    """A Python value as inline JSON5: ``"x"``, ``["a", "b"]``, ``{ alias: "x" }``, ``{}``."""
    if isinstance(value, str):
        return quote(value, mark)
    if value is None or isinstance(value, bool):
        return "null" if value is None else str(value).lower()
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(render_value(item, mark) for item in value) + "]"
    if isinstance(value, dict):
        parts = [f"{render_key(k, mark)}: {render_value(v, mark)}" for k, v in value.items()]
        return "{ " + ", ".join(parts) + " }" if parts else "{}"
    raise TypeError(f"cannot write {type(value).__name__} to a config file")


# -- layout ----------------------------------------------------------------------------------------------


def leading_ws(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def line_start(text: str, pos: int) -> int:
    return max(text.rfind(nl, 0, pos) for nl in NEWLINES) + 1


def indent_of(text: str, pos: int) -> str:
    """The indentation of the line ``pos`` is on."""
    return leading_ws(text[line_start(text, pos) : pos])


def end_of_line_after(text: str, pos: int) -> int:
    """Past spaces and comments on the same line; stops at a newline or at anything else."""
    n = len(text)
    while pos < n:
        if text[pos] in " \t":
            pos += 1
        elif text.startswith("//", pos):
            while pos < n and text[pos] not in NEWLINES:
                pos += 1
        elif text.startswith("/*", pos) and not any(
            nl in text[pos : text.index("*/", pos)] for nl in NEWLINES
        ):
            pos = text.index("*/", pos) + 2
        else:
            return pos
    return pos


def is_multiline(text: str, node: Node) -> bool:
    return any(ch in NEWLINES for ch in text[node.start : node.end])


def indent_unit(text: str, root: Node | None) -> str:
    """The file's indentation step: that of the top-level keys, else two spaces."""
    if root is not None and root.items and is_multiline(text, root):
        prefix = text[line_start(text, root.element_start(0)) : root.element_start(0)]
        if prefix and not prefix.strip():
            return prefix
    return "  "


def child_indent(text: str, root: Node | None, node: Node) -> str:
    """The indentation of a container's elements, else one unit more than the container's own line."""
    if node.items:
        first = node.element_start(0)
        prefix = text[line_start(text, first) : first]
        if not prefix.strip():
            return prefix
    return indent_of(text, node.start) + indent_unit(text, root)


def trailing_commas(text: str, root: Node | None) -> bool:
    """Whether the file puts a comma after the last element of multi-line containers (the default)."""
    votes: list[bool] = []
    todo = [root] if root is not None else []
    while todo:
        node = todo.pop()
        todo.extend(node.items)
        if node.items and is_multiline(text, node):
            votes.append(node.commas[-1] is not None)
    return not votes or 2 * sum(votes) >= len(votes)


def quotes_keys(text: str, root: Node | None) -> bool:
    """Whether the file quotes even plain keys (strict-JSON style); then new keys are quoted too."""
    plain = quoted = 0
    todo = [root] if root is not None else []
    while todo:
        node = todo.pop()
        todo.extend(node.items)
        for key, (start, _) in zip(node.keys, node.key_spans, strict=True):
            if _IDENT_RE.match(key):
                quoted += text[start] in "\"'"
                plain += text[start] not in "\"'"
    return quoted > plain


def reindent(text: str, unit: str) -> str:
    """``text`` with every line after the first indented by ``unit``; string contents stay as they are."""
    strings = [(s, e) for s, e in tokens(text) if text[s] in "\"'"]
    out, last = [], 0
    for match in re.finditer("\n", text):
        pos = match.end()
        if not any(s < pos < e for s, e in strings) and text[pos : pos + 1] not in ("\n", ""):
            out.append(text[last:pos] + unit)
            last = pos
    return "".join(out) + text[last:]
