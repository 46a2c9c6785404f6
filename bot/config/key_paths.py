"""Key paths into parsed config data: ``("agents", "list", 0, "id")``, as messages show them and as values
are found by them."""

from __future__ import annotations

import re

KeyPath = tuple[str | int, ...]

_PLAIN_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")


def format_key_path(path: KeyPath) -> str:
    """``("agents", "list", 0, "id")`` ⇒ ``agents.list[0].id``; odd keys are quoted: ``models["a/b"]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _PLAIN_KEY_RE.match(part):
            out += f".{part}" if out else part
        else:
            out += '["' + part.replace("\\", "\\\\").replace('"', '\\"') + '"]'
    return out


def value_at(data: object, path: KeyPath) -> object:
    """The value at ``path`` in parsed config data, or None where the path does not lead."""
    for key in path:
        if isinstance(key, str) and isinstance(data, dict):
            data = data.get(key)
        elif isinstance(key, int) and isinstance(data, list) and -len(data) <= key < len(data):
            data = data[key]
        else:
            return None
    return data
