"""Every logger of the code is in one tree under ``modelbot``, so one name filters or silences all of it."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Configures the root handler and quietens the HTTP libraries' own trees: the one place that names others.
CONFIGURES_OTHER_TREES = {"bot/logging_setup.py"}


def _logger_calls(path: Path) -> list[ast.Call]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and (
            (isinstance(node.func, ast.Attribute) and node.func.attr == "getLogger")
            or (isinstance(node.func, ast.Name) and node.func.id == "getLogger")
        )
    ]


def _in_modelbot_tree(call: ast.Call) -> bool:
    """A literal ``"modelbot"``/``"modelbot.…"``, or an f-string that starts with ``modelbot.``."""
    if len(call.args) != 1 or call.keywords:
        return False
    arg = call.args[0]
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
        return arg.value == "modelbot" or arg.value.startswith("modelbot.")
    if isinstance(arg, ast.JoinedStr) and arg.values:
        first = arg.values[0]
        return isinstance(first, ast.Constant) and str(first.value).startswith("modelbot.")
    return False


def test_every_logger_is_in_the_modelbot_tree() -> None:
    sources = sorted(
        path for package in ("bot", "adapters", "cli") for path in (ROOT / package).rglob("*.py")
    )
    found = 0
    problems: list[str] = []
    for path in sources:
        name = path.relative_to(ROOT).as_posix()
        if name in CONFIGURES_OTHER_TREES:
            continue
        for call in _logger_calls(path):
            found += 1
            if not _in_modelbot_tree(call):
                problems.append(f"{name}:{call.lineno}: {ast.unparse(call)}")
    assert found > 0, "no getLogger call found: the walk is wrong"
    assert problems == []
