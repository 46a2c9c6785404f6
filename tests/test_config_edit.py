"""The comment-preserving JSON5 editor: every edit changes only its own bytes and means exactly what was asked."""

from __future__ import annotations

import copy
import difflib
import os
import stat
from pathlib import Path
from typing import Any

import json5
import pytest

from bot.config import json5_cst
from bot.config.config_file import (
    BACKUP_SUFFIX,
    NEW_FILE_TEXT,
    check_text,
    open_config,
    save_config,
)
from bot.config.edit import Json5Document
from bot.config.env_refs import env_names
from bot.config.key_paths import KeyPath
from bot.errors import ConfigError
from cli.channels import BUILTIN_CHANNELS as CHANNELS

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = (ROOT / "config.example.json5").read_text(encoding="utf-8")


def changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    """(removed lines, added lines) between two texts."""
    diff = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    return [d[2:] for d in diff if d.startswith("- ")], [d[2:] for d in diff if d.startswith("+ ")]


def scalar_paths(value: Any, path: KeyPath = ()) -> list[KeyPath]:
    """Every path to a string, number or boolean in parsed data."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in scalar_paths(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in scalar_paths(v, (*path, i))]
    return [path]


def test_replacing_any_scalar_of_the_example_changes_only_that_value() -> None:
    """Every leaf of config.example.json5 can be replaced; the rest of the file stays byte for byte."""
    base = Json5Document(EXAMPLE)
    paths = scalar_paths(base.data)
    assert len(paths) > 60
    for path in paths:
        doc = copy.deepcopy(base)
        old = doc.get(path)
        new: Any = "X-new" if isinstance(old, str) else 7 if not isinstance(old, bool) else not old
        doc.set(path, new)
        node = json5_cst.parse(EXAMPLE)
        for part in path:
            node = node.items[node.keys.index(part) if isinstance(part, str) else part]
        rendered = json5_cst.render_value(new)
        assert doc.text == EXAMPLE[: node.start] + rendered + EXAMPLE[node.end :], path


def test_set_replaces_a_string_keeping_the_trailing_comment() -> None:
    """A value followed by a comment on its line keeps the comment."""
    doc = Json5Document(EXAMPLE)
    change = doc.set(("agents", "defaults", "imageModel", "primary"), "demo/vision")
    removed, added = changed_lines(EXAMPLE, doc.text)
    assert removed == ['        primary: "openai/gpt-5.2", // default: none']
    assert added == ['        primary: "demo/vision", // default: none']
    assert str(change) == 'agents.defaults.imageModel.primary: "openai/gpt-5.2" → "demo/vision"'


def test_adding_a_key_matches_the_indentation_of_its_siblings() -> None:
    """A new key goes after the last one, on its own line, indented like the others, with a trailing comma."""
    doc = Json5Document(EXAMPLE)
    change = doc.set(("metrics", "path"), "/metrics")
    removed, added = changed_lines(EXAMPLE, doc.text)
    assert removed == []
    assert added == ['    path: "/metrics",']
    assert doc.text.index('    path: "/metrics",') > doc.text.index("    port: 9464,")
    assert change.old is None


def test_missing_parent_objects_are_created_one_key_per_line() -> None:
    """Setting a deep path creates the missing objects laid out like the rest of the file."""
    text = "{\n  // keep me\n  a: 1,\n}\n"
    doc = Json5Document(text)
    doc.set(("agents", "defaults", "model", "primary"), "demo/echo")
    assert doc.text == (
        "{\n  // keep me\n  a: 1,\n  agents: {\n    defaults: {\n      model: {\n"
        '        primary: "demo/echo",\n      },\n    },\n  },\n}\n'
    )


def test_a_new_object_value_is_inline_unless_expanded() -> None:
    """An object value is written inline like the allowlist entries; ``expand`` writes one key per line."""
    doc = Json5Document("{\n  models: {\n    a: {},\n  },\n}\n")
    doc.set(("models", "b/c"), {"alias": "bc"})
    assert '    "b/c": { alias: "bc" },\n' in doc.text
    doc.set(("list",), {"x/y": {}, "z/w": {}}, expand=True)
    assert '  list: {\n    "x/y": {},\n    "z/w": {},\n  },\n' in doc.text


def test_inline_arrays_and_objects_stay_inline() -> None:
    """Appending to or removing from a one-line container keeps it on one line."""
    doc = Json5Document("{a: [1, 2, 3], b: {x: 1}, c: [], d: {}}")
    doc.remove(("a", 1))
    assert doc.text == "{a: [1, 3], b: {x: 1}, c: [], d: {}}"
    doc.remove(("a", 1))
    doc.remove(("a", 0))
    doc.remove(("b", "x"))
    doc.append(("c",), "q")
    doc.append(("c",), "r")
    doc.set(("d", "k"), True)
    assert doc.text == '{a: [], b: {}, c: ["q", "r"], d: { k: true }}'


def test_multiline_array_append_and_remove_keep_other_lines_and_comments() -> None:
    """Items of a multi-line array are added and removed as whole lines; comments between them stay."""
    text = '{\n  list: [\n    "a", // first\n    // about b\n    "b",\n  ],\n}\n'
    doc = Json5Document(text)
    doc.append(("list",), "c")
    assert doc.text == '{\n  list: [\n    "a", // first\n    // about b\n    "b",\n    "c",\n  ],\n}\n'
    doc.remove(("list", 2))
    assert doc.text == text
    doc.remove(("list", 0))
    assert doc.text == '{\n  list: [\n    // about b\n    "b",\n  ],\n}\n'


def test_a_file_without_trailing_commas_keeps_that_style() -> None:
    """Strict-JSON style: no trailing commas are introduced, keys are quoted, removal restores the original."""
    text = '{\n  "a": [\n    1,\n    2\n  ],\n  "b": {\n    "x": 1\n  }\n}'
    doc = Json5Document(text)
    doc.append(("a",), 3)
    doc.set(("b", "y"), 2)
    assert doc.text == '{\n  "a": [\n    1,\n    2,\n    3\n  ],\n  "b": {\n    "x": 1,\n    "y": 2\n  }\n}'
    doc.remove(("a", 2))
    doc.remove(("b", "y"))
    assert doc.text == text


def test_single_quotes_tabs_and_crlf_are_respected() -> None:
    """The file's quote character, tab indentation and CRLF line ends carry over to new lines."""
    text = "{\r\n\tname: 'x',\r\n\tlist: [\r\n\t\t'a',\r\n\t],\r\n}\r\n"
    doc = Json5Document(text)
    doc.set(("other",), "y")
    doc.append(("list",), "b")
    assert "\tother: 'y'," in doc.text
    assert "\t\t'b'," in doc.text
    doc.remove(("list", 0))
    assert "'a'" not in doc.text
    assert json5.loads(doc.text) == {"name": "x", "list": ["b"], "other": "y"}


def test_strings_that_look_like_syntax_do_not_confuse_the_parser() -> None:
    """Braces, commas, colons and comment markers inside strings are just text."""
    text = '{\n  a: "} , ] // not a comment",\n  \'b:c\': "/* nor this */",\n  $d_1: 0x1F, e: -Infinity,\n}\n'
    doc = Json5Document(text)
    doc.set(("b:c",), "new")
    assert "'b:c': \"new\"," in doc.text
    doc.set(("$d_1",), 2)
    doc.remove(("a",))
    assert json5.loads(doc.text) == {"b:c": "new", "$d_1": 2, "e": float("-inf")}


def test_block_comments_and_env_refs_survive_edits() -> None:
    """Block comments and ``${ENV}`` values around an edit are untouched."""
    text = '{\n  /* header\n     block */\n  key: "${API_KEY}",\n  n: 1, /* inline */\n}\n'
    doc = Json5Document(text)
    doc.set(("n",), 2)
    doc.set(("m",), 3)
    assert "/* header\n     block */" in doc.text
    assert '"${API_KEY}"' in doc.text
    assert "n: 2, /* inline */\n  m: 3,\n" in doc.text


def test_an_empty_file_and_the_new_file_template_accept_edits() -> None:
    """A blank text and the commented skeleton both grow a proper structure, keeping the comments."""
    blank = Json5Document("")
    blank.set(("a", "b"), 1)
    assert json5.loads(blank.text) == {"a": {"b": 1}}
    doc = Json5Document(NEW_FILE_TEXT)
    doc.set(("agents", "defaults", "model", "primary"), "demo/echo")
    assert doc.text.startswith(NEW_FILE_TEXT.split("{")[0])
    assert json5.loads(doc.text) == {"agents": {"defaults": {"model": {"primary": "demo/echo"}}}}


def test_adding_a_key_under_a_non_object_is_refused() -> None:
    """A path through a string or list cannot get keys; the error names the key path."""
    doc = Json5Document('{ model: "a/b" }')
    with pytest.raises(ConfigError, match=r"model: expected an object"):
        doc.set(("model", "fallbacks"), [])
    assert doc.text == '{ model: "a/b" }'


def test_an_edit_whose_text_would_mean_something_else_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """If the spliced text does not parse to the intended data, nothing changes (guards editor bugs)."""
    doc = Json5Document("{ a: 1 }")
    monkeypatch.setattr(json5_cst, "render_value", lambda value, mark='"': "2")
    with pytest.raises(ConfigError, match="could not be made safely"):
        doc.set(("a",), 3)
    assert doc.text == "{ a: 1 }"
    assert doc.data == {"a": 1}


def test_invalid_json5_and_non_object_roots_are_config_errors() -> None:
    """The document refuses text that is not a JSON5 object."""
    with pytest.raises(ConfigError, match="invalid JSON5"):
        Json5Document("{ a: ")
    with pytest.raises(ConfigError, match="at the top level"):
        Json5Document("[1, 2]")
    with pytest.raises(ConfigError, match="invalid JSON5"):
        Json5Document("{ a: 1, a: 2 }")


def test_rename_key_keeps_quotes_and_position() -> None:
    """A renamed key stays where it was, quoted if it was quoted."""
    doc = Json5Document('{ "agent": 1, b: 2 }')
    doc.rename_key(("agent",), "agents")
    assert doc.text == '{ "agents": 1, b: 2 }'


LEGACY = """// my config
{
  // the agent section
  agent: {
    // the primary
    model: "demo/echo", // short form
    systemPrompt: "one \\
two",
  },
  /* channels */ channels: {},
}
"""


def test_migrate_renames_agent_to_agents_defaults_keeping_comments() -> None:
    """``agent: {…}`` becomes ``agents: { defaults: {…} }`` in place, re-indented, every comment kept."""
    doc = Json5Document(LEGACY)
    assert doc.migrate_legacy() is True
    assert (
        doc.text
        == """// my config
{
  // the agent section
  agents: {
    defaults: {
      // the primary
      model: "demo/echo", // short form
      systemPrompt: "one \\
two",
    },
  },
  /* channels */ channels: {},
}
"""
    )
    assert doc.migrate_legacy() is False


def test_migrate_moves_agent_into_an_existing_agents_section() -> None:
    """With ``agents.list`` present, the legacy section becomes ``agents.defaults`` and ``agent`` goes."""
    text = '{\n  agents: {\n    list: [{ id: "main" }],\n  },\n  // legacy\n  agent: {\n    model: "a/b",\n  },\n}\n'
    doc = Json5Document(text)
    doc.migrate_legacy()
    assert doc.data == {"agents": {"list": [{"id": "main"}], "defaults": {"model": "a/b"}}}
    assert '    defaults: {\n      model: "a/b",\n    },\n' in doc.text
    assert "// legacy" in doc.text


def test_migrate_refuses_when_both_forms_are_present() -> None:
    """``agent`` and ``agents.defaults`` together are an error that names the key, and nothing changes."""
    text = '{ agent: { model: "a/b" }, agents: { defaults: {} } }'
    doc = Json5Document(text)
    with pytest.raises(ConfigError, match="agent: both"):
        doc.migrate_legacy()
    assert doc.text == text


def test_env_names_come_from_values_not_comments() -> None:
    """Only ``${VAR}`` in string values count; comments and ``$${ESCAPED}`` do not."""
    data = json5.loads('{\n  // ${IN_COMMENT}\n  a: "${ONE}-${TWO}", b: ["$${ESCAPED}", "${THREE}"],\n}')
    assert env_names(data) == {"ONE", "TWO", "THREE"}


def test_check_text_accepts_unset_env_refs_but_rejects_bad_structure() -> None:
    """Validation before writing fills unset ``${VAR}``s with a placeholder; a bad value is still an error."""
    loaded = check_text(EXAMPLE, file="x", path=None, env={}, channels=CHANNELS)
    assert loaded.config.channels.telegram.bot_token == "modelbot-placeholder"
    with pytest.raises(ConfigError, match=r"x: agents.defaults.timeoutSeconds: expected a number"):
        check_text("{ agents: { defaults: { timeoutSeconds: 0 } } }", file="x", path=None, env={})


def test_save_writes_atomically_with_a_backup_and_keeps_the_mode(tmp_path: Path) -> None:
    """The old bytes go to ``.bak``; the new text replaces the file; its permission bits are kept."""
    path = tmp_path / "config.json5"
    path.write_text(EXAMPLE, encoding="utf-8")
    path.chmod(0o640)
    config = open_config(path)
    config.doc.set(("metrics", "port"), 9999)
    loaded, backup = save_config(config, env={}, channels=CHANNELS)
    assert backup == tmp_path / ("config.json5" + BACKUP_SUFFIX)
    assert backup.read_text(encoding="utf-8") == EXAMPLE
    assert path.read_text(encoding="utf-8") == EXAMPLE.replace("port: 9464,", "port: 9999,")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert loaded.config.metrics.port == 9999
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_save_creates_a_missing_file_from_the_template(tmp_path: Path) -> None:
    """A config that does not exist yet is created (no backup), commented, with the edit in it."""
    path = tmp_path / "sub" / "config.json5"
    config = open_config(path)
    config.doc.set(("logging", "level"), "DEBUG")
    _, backup = save_config(config, env={}, channels=CHANNELS)
    assert backup is None
    text = path.read_text(encoding="utf-8")
    assert text.startswith("// modelbot config")
    assert json5.loads(text) == {"logging": {"level": "DEBUG"}}


def test_save_refuses_an_invalid_result_and_leaves_the_file(tmp_path: Path) -> None:
    """An edit that makes the config invalid is reported with its key path; no byte is written."""
    path = tmp_path / "config.json5"
    path.write_text(EXAMPLE, encoding="utf-8")
    config = open_config(path)
    config.doc.set(("session", "scope"), "galaxy")
    with pytest.raises(ConfigError, match=r"session.scope: expected one of: chat, user"):
        save_config(config, env={}, channels=CHANNELS)
    assert path.read_text(encoding="utf-8") == EXAMPLE
    assert not (tmp_path / ("config.json5" + BACKUP_SUFFIX)).exists()


def test_save_refuses_when_the_file_changed_meanwhile(tmp_path: Path) -> None:
    """Someone else's edit between read and write is never overwritten."""
    path = tmp_path / "config.json5"
    path.write_text("{ session: {} }", encoding="utf-8")
    config = open_config(path)
    config.doc.set(("logging",), {"level": "INFO"})
    path.write_text("{ session: { scope: 'user' } }", encoding="utf-8")
    with pytest.raises(ConfigError, match="changed while it was being edited"):
        save_config(config, env={}, channels=CHANNELS)
    assert path.read_text(encoding="utf-8") == "{ session: { scope: 'user' } }"


def test_save_through_a_symlink_updates_the_target(tmp_path: Path) -> None:
    """A symlinked config stays a symlink; the file it points to is the one rewritten."""
    real = tmp_path / "real.json5"
    real.write_text("{\n  logging: { level: 'INFO' },\n}\n", encoding="utf-8")
    link = tmp_path / "config.json5"
    os.symlink(real, link)
    config = open_config(link)
    config.doc.set(("logging", "level"), "ERROR")
    save_config(config, env={}, channels=CHANNELS)
    assert link.is_symlink()
    assert "level: 'ERROR'" in real.read_text(encoding="utf-8")


def test_a_byte_order_mark_survives(tmp_path: Path) -> None:
    """A file saved with a BOM by some editor keeps it."""
    path = tmp_path / "config.json5"
    path.write_text("\ufeff{ logging: { level: 'INFO' } }", encoding="utf-8")
    config = open_config(path)
    config.doc.set(("logging", "level"), "DEBUG")
    save_config(config, env={}, channels=CHANNELS)
    assert path.read_text(encoding="utf-8") == "\ufeff{ logging: { level: 'DEBUG' } }"


def test_a_failed_write_is_a_config_error_and_leaves_the_file(tmp_path: Path) -> None:
    """If the backup cannot be written (here: a directory is in the way), the config is not touched."""
    path = tmp_path / "config.json5"
    path.write_text("{ logging: { level: 'INFO' } }", encoding="utf-8")
    (tmp_path / ("config.json5" + BACKUP_SUFFIX)).mkdir()
    config = open_config(path)
    config.doc.set(("logging", "level"), "DEBUG")
    with pytest.raises(ConfigError, match="cannot write the file"):
        save_config(config, env={}, channels=CHANNELS)
    assert path.read_text(encoding="utf-8") == "{ logging: { level: 'INFO' } }"
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []
