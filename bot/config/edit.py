"""Comment-preserving edits of JSON5 config text: each one changes only its own bytes.

The ``json5`` package cannot write comments back, so edits work on the text: find the value's span in the
syntax tree (``bot.config.json5_cst``), splice in the smallest change that does the job, and re-parse.
Every edit checks that the new text *means* exactly the old data with that one change, so a bug here can
never write a file that says something else.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from bot.config import json5_cst as cst
from bot.config.key_paths import KeyPath, format_key_path
from bot.errors import ConfigError

Mutation = Callable[[Any], None]


@dataclass(frozen=True)
class Change:
    """One edit for the operator's report: the key path and the value before and after, as JSON5 text."""

    path: str
    old: str | None  # None: the key or item was added
    new: str | None  # None: it was removed

    def __str__(self) -> str:
        if self.old is None:
            return f"{self.path}: added {self.new}"
        if self.new is None:
            return f"{self.path}: removed {self.old}"
        return f"{self.path}: {self.old} → {self.new}"


def _at(data: Any, path: KeyPath) -> Any:
    for part in path:
        data = data[part]
    return data


class Json5Document:
    """A JSON5 text and edits on it; every edit keeps all other bytes (comments, layout, quotes, ``${ENV}``)."""

    def __init__(self, text: str, *, file: str = "<config>") -> None:
        self.file = file
        data = cst.loads(text, file)
        if not isinstance(data, dict):
            raise ConfigError(file, "", "expected an object { … } at the top level")
        self._load(text, data)

    def _load(self, text: str, data: Any) -> None:
        self.text = text
        self.data = data
        self._root = cst.parse(text) if text.strip() else None
        self._q = "'" if text.count("'") > text.count('"') else '"'  # the quote the file mostly uses
        self._qk = cst.quotes_keys(text, self._root)

    def _key(self, key: str) -> str:
        return cst.render_key(key, self._q, always_quote=self._qk)

    def get(self, path: KeyPath, default: Any = None) -> Any:
        """The value at ``path`` (as parsed), or ``default`` when any part of the path is missing."""
        node: Any = self.data
        for part in path:
            if isinstance(part, int):
                if not isinstance(node, list) or not 0 <= part < len(node):
                    return default
            elif not isinstance(node, dict) or part not in node:
                return default
            node = node[part]
        return node

    def has(self, path: KeyPath) -> bool:
        marker = object()
        return self.get(path, marker) is not marker

    def _find(self, path: KeyPath) -> cst.Node:
        assert self._root is not None
        node = self._root
        for part in path:
            node = node.items[node.keys.index(part) if isinstance(part, str) else part]
        return node

    # -- edits

    def set(self, path: KeyPath, value: Any, *, expand: bool = False) -> Change:
        """Replace the value at ``path``, or add the key (and any missing parent objects) at the end.

        ``expand``: a new object value is written one key per line (in a multi-line file), not inline.
        """
        old, existed = self.get(path), self.has(path)

        def mutate(data: Any) -> None:
            target = data
            for part in path[:-1]:
                target = target.setdefault(part, {}) if isinstance(part, str) else target[part]
            target[path[-1]] = copy.deepcopy(value)

        if existed:
            node = self._find(path)
            self._splice(node.start, node.end, cst.render_value(value, self._q), mutate)
        else:
            depth = max(i for i in range(len(path)) if self.has(path[:i]))
            if not isinstance(self.get(path[:depth]), dict):
                where = format_key_path(path[:depth])
                raise ConfigError(self.file, where, "expected an object { … } here to add a key to")
            self._insert_member(
                path[:depth], str(path[depth]), mutate, value=value, parents=path[depth + 1 :], expand=expand
            )
        return Change(
            format_key_path(path), cst.render_value(old) if existed else None, cst.render_value(value)
        )

    def remove(self, path: KeyPath) -> Change:
        """Remove a key from its object, or an item from its array; lines it had to itself go with it."""
        old = cst.render_value(self.get(path))
        parent = self._find(path[:-1])
        index = parent.keys.index(path[-1]) if isinstance(path[-1], str) else path[-1]
        self._remove_element(parent, index, lambda data: _at(data, path[:-1]).__delitem__(path[-1]))
        return Change(format_key_path(path), old, None)

    def append(self, path: KeyPath, value: Any) -> Change:
        """Append to the array at ``path``; a missing array is created holding this one item."""
        if not self.has(path):
            self.set(path, [value])
            return Change(format_key_path((*path, 0)), None, cst.render_value(value))
        count = len(self.get(path))

        def mutate(data: Any) -> None:
            _at(data, path).append(copy.deepcopy(value))

        self._insert_element(self._find(path), cst.render_value(value, self._q), mutate)
        return Change(format_key_path((*path, count)), None, cst.render_value(value))

    def rename_key(self, path: KeyPath, new_key: str) -> None:
        """Rename the last key of ``path`` in place, keeping its quote style."""
        parent = self._find(path[:-1])
        start, end = parent.key_spans[parent.keys.index(str(path[-1]))]
        mark = self.text[start] if self.text[start] in "\"'" else ""
        token = cst.quote(new_key, mark) if mark else self._key(new_key)

        def mutate(data: Any) -> None:
            target = _at(data, path[:-1])
            target[new_key] = target.pop(path[-1])

        self._splice(start, end, token, mutate)

    def migrate_legacy(self) -> bool:
        """Rename the legacy top-level ``agent`` to ``agents.defaults``, keeping its text; False: nothing to do."""
        if "agent" not in self.data:
            return False
        legacy, agents = self.data["agent"], self.data.get("agents")
        if agents is not None and (not isinstance(agents, dict) or "defaults" in agents):
            expected = "both `agent` (legacy) and `agents.defaults` are set; keep only `agents.defaults`"
            raise ConfigError(self.file, "agent", expected)
        node, unit = self._find(("agent",)), cst.indent_unit(self.text, self._root)
        value = self.text[node.start : node.end]
        multiline = cst.is_multiline(self.text, node)
        if agents is None:  # agent: {…}  ⇒  agents: { defaults: {…} }, in place
            if multiline:
                indent = cst.indent_of(self.text, node.start)
                comma = "," if cst.trailing_commas(self.text, self._root) else ""
                value = f"{{\n{indent}{unit}defaults: {cst.reindent(value, unit)}{comma}\n{indent}}}"
            else:
                value = f"{{ defaults: {value} }}"
            self._splice(node.start, node.end, value, lambda data: data.update(agent={"defaults": legacy}))
            self.rename_key(("agent",), "agents")
            return True
        if multiline and cst.is_multiline(self.text, self._find(("agents",))):
            value = cst.reindent(value, unit)
        self._insert_member(
            ("agents",), "defaults", lambda data: data["agents"].update(defaults=legacy), raw=value
        )
        self.remove(("agent",))
        return True

    # -- splicing, with the meaning checked

    def _splice(self, start: int, end: int, new: str, mutate: Mutation) -> None:
        self._replace_text(self.text[:start] + new + self.text[end:], mutate)

    def _replace_text(self, text: str, mutate: Mutation) -> None:
        """Take ``text`` only if it means the current data changed by ``mutate``, and nothing else.

        Only the innermost container around the changed bytes is re-read with ``json5`` (a whole file
        takes it a fifth of a second); the bytes outside it are the old ones, so they mean what they did.
        """
        expected = copy.deepcopy(self.data)
        mutate(expected)
        old = self.text
        prefix = _common_prefix(old, text)
        suffix = _common_prefix(old[prefix:][::-1], text[prefix:][::-1])
        path, node = self._enclosing(prefix, len(old) - suffix)
        try:
            if node is None:
                ok = cst.loads(text, self.file) == expected
            else:
                inner = text[node.start : node.end + len(text) - len(old)]
                outside = copy.deepcopy(expected)
                if path:
                    _at(outside, path[:-1])[path[-1]] = self.get(path)
                else:
                    outside = self.data
                ok = cst.loads(inner, self.file) == _at(expected, path) and outside == self.data
        except ConfigError:
            ok = False
        if not ok:
            raise ConfigError(self.file, "", "this edit could not be made safely; the file was not changed")
        self._load(text, expected)

    def _enclosing(self, start: int, end: int) -> tuple[KeyPath, cst.Node | None]:
        """The innermost container whose brackets enclose ``[start, end)``, and its path."""
        node, path = self._root, cast(KeyPath, ())
        if node is None or node.kind == "scalar" or not node.start < start <= end < node.end:
            return (), None
        while True:
            for index, child in enumerate(node.items):
                if child.kind != "scalar" and child.start < start <= end < child.end:
                    part: str | int = node.keys[index] if node.kind == "object" else index
                    node, path = child, (*path, part)
                    break
            else:
                return path, node

    def _insert_member(
        self,
        path: KeyPath,
        key: str,
        mutate: Mutation,
        *,
        value: Any = None,
        parents: KeyPath = (),
        raw: str | None = None,
        expand: bool = False,
    ) -> None:
        """Add ``key`` to the object at ``path``; missing ``parents`` of the value become new objects."""
        if self._root is None:  # a blank file
            body = (
                raw if raw is not None else self._render_new(parents, value, "  ", block=True, expand=expand)
            )
            self._replace_text("{\n" + f"  {self._key(key)}: {body},\n" + "}\n", mutate)
            return
        node = self._find(path)
        if raw is None:
            indent = cst.child_indent(self.text, self._root, node)
            raw = self._render_new(
                parents, value, indent, block=cst.is_multiline(self.text, node), expand=expand
            )
        self._insert_element(node, f"{self._key(key)}: {raw}", mutate)

    def _render_new(self, parents: KeyPath, value: Any, indent: str, *, block: bool, expand: bool) -> str:
        """New parent objects one key per line in a multi-line file, like the rest of it; the value inline."""
        if not parents and not (block and expand and isinstance(value, dict) and value):
            return cst.render_value(value, self._q)
        unit = cst.indent_unit(self.text, self._root)
        if parents:
            items = [
                (
                    str(parents[0]),
                    self._render_new(parents[1:], value, indent + unit, block=block, expand=expand),
                )
            ]
        else:
            items = [(str(k), cst.render_value(v, self._q)) for k, v in value.items()]
        if not block:
            return f"{{ {self._key(items[0][0])}: {items[0][1]} }}"
        trail = "," if cst.trailing_commas(self.text, self._root) else ""
        lines = ",\n".join(f"{indent}{unit}{self._key(k)}: {v}" for k, v in items)
        return f"{{\n{lines}{trail}\n{indent}}}"

    def _insert_element(self, node: cst.Node, element: str, mutate: Mutation) -> None:
        text, root = self.text, self._root
        indent = cst.child_indent(text, root, node)
        if not node.items:
            close = node.end - 1
            if not cst.is_multiline(text, node):
                inner, pad = text[node.start + 1 : close], " " if node.kind == "object" else ""
                new = pad + element + pad if not inner.strip() else inner.rstrip() + " " + element + pad
                self._splice(node.start + 1, close, new, mutate)
                return
            trail, at = ("," if cst.trailing_commas(text, root) else ""), cst.line_start(text, close)
            if text[at:close].strip():  # something else shares the closing line: open a line of our own
                own = cst.indent_of(text, node.start)
                self._splice(close, close, f"\n{indent}{element}{trail}\n{own}", mutate)
            else:
                self._splice(at, at, f"{indent}{element}{trail}\n", mutate)
            return
        comma = node.commas[-1]
        after = comma + 1 if comma is not None else node.items[-1].end
        if not cst.is_multiline(text, node):
            self._splice(after, after, f" {element}," if comma is not None else f", {element}", mutate)
            return
        eol = cst.end_of_line_after(text, after)
        addition = f"\n{indent}{element}{',' if comma is not None else ''}"
        # Without a trailing comma the previous element needs one now; the new one follows the file's style.
        new = text[:after] + ("," if comma is None else "") + text[after:eol] + addition + text[eol:]
        self._replace_text(new, mutate)

    def _remove_element(self, parent: cst.Node, index: int, mutate: Mutation) -> None:
        text = self.text
        start, comma = parent.element_start(index), parent.commas[index]
        end = comma + 1 if comma is not None else parent.items[index].end
        first, eol = cst.line_start(text, start), cst.end_of_line_after(text, end)
        own_lines = (
            cst.is_multiline(text, parent)
            and not text[first:start].strip()
            and eol < len(text)
            and text[eol] in cst.NEWLINES
        )
        prev_comma = parent.commas[index - 1] if index > 0 else None
        if own_lines:
            cut = (first, eol + (2 if text.startswith("\r\n", eol) else 1))
            if comma is None and prev_comma is not None:
                # The file writes no trailing comma, so the new last element must not keep one either.
                self._replace_text(text[:prev_comma] + text[prev_comma + 1 : cut[0]] + text[cut[1] :], mutate)
                return
        elif comma is not None:
            cut = (start, end + len(text[end:]) - len(text[end:].lstrip(" \t")))
        else:
            cut = (prev_comma if prev_comma is not None else start, end)
        new = text[: cut[0]] + text[cut[1] :]
        close = parent.end - 1 - (cut[1] - cut[0])
        if len(parent.items) == 1 and not new[parent.start + 1 : close].strip():
            new = new[: parent.start + 1] + new[close:]  # `{ alias: "x" }` ⇒ `{}`, not `{  }`
        self._replace_text(new, mutate)


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
