"""``modelbot config validate|migrate`` on the config file in use."""

from __future__ import annotations

from pathlib import Path

import json5
import pytest

from tests.cli_helpers import EXAMPLE_CONFIG, run_cli, run_script, write_config

LEGACY = """// my bot
{
  // Which models to use (old style).
  agent: {
    model: {
      primary: "demo/echo", // the everyday model
      fallbacks: ["demo/story"],
    },
    /* aliases */
    models: { "demo/echo": { alias: "e" }, "demo/story": {} },
  },
  logging: { level: "INFO" },
}
"""


def test_validate_the_example_is_ok_and_names_unset_variables(capsys: pytest.CaptureFixture[str]) -> None:
    """The example validates (exit 0); the ${VAR}s it uses but this shell lacks are warnings."""
    result = run_cli(capsys, "config", "validate", "--config", str(EXAMPLE_CONFIG))
    assert result.code == 0
    assert result.out.strip().endswith(": OK")
    assert "`TELEGRAM_BOT_TOKEN` is not set here" in result.err


def test_validate_prints_load_warnings(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Warnings (a legacy key, a fallback outside the allowlist) do not fail validation."""
    config = write_config(tmp_path / "c.json5", LEGACY.replace('"demo/story": {}', '"demo/vision": {}'))
    result = run_cli(capsys, "config", "validate", "--config", config)
    assert result.code == 0
    assert "legacy key `agent`" in result.err
    assert "`demo/story` is not in the allowlist" in result.err


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{ agents: ", "invalid JSON5 at line 1"),
        (
            '{ agents: { defaults: { model: { primary: "nope" } } } }',
            "agents.defaults.model.primary: expected a model",
        ),
        ("{ channels: { telegram: { botToken: 'abc:123' } } }", "channels.telegram.botToken: holds a secret"),
        ("{ sesion: {} }", "unknown key `sesion` (did you mean `session`?)"),
    ],
)
def test_validate_reports_the_error_with_exit_1(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, message: str
) -> None:
    """A broken file: the error with file and key path on stderr, exit 1."""
    config = write_config(tmp_path / "c.json5", text)
    result = run_cli(capsys, "config", "validate", "--config", config)
    assert result.code == 1
    assert message in result.err
    assert config in result.err
    assert "OK" not in result.out


def test_validate_without_a_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """No file at the default location is fine (built-in default); a missing --config file is not."""
    assert "built-in default" in run_cli(capsys, "config", "validate").out
    missing = run_cli(capsys, "config", "validate", "--config", str(tmp_path / "none.json5"))
    assert missing.code == 1
    assert "file not found" in missing.err


def test_validate_follows_modelbot_config(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """$MODELBOT_CONFIG picks the file when --config is not given."""
    config = write_config(tmp_path / "env.json5", "{ agents: 1 }")
    monkeypatch.setenv("MODELBOT_CONFIG", config)
    result = run_cli(capsys, "config", "validate")
    assert result.code == 1
    assert config in result.err


def test_migrate_rewrites_the_legacy_key_keeping_comments(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """``agent`` becomes ``agents.defaults``: same meaning, every comment kept, a backup written."""
    path = tmp_path / "c.json5"
    write_config(path, LEGACY)
    result = run_cli(capsys, "config", "migrate", "--config", str(path))
    assert result.code == 0
    text = path.read_text(encoding="utf-8")
    assert (tmp_path / "c.json5.bak").read_text(encoding="utf-8") == LEGACY
    for comment in (
        "// my bot",
        "// Which models to use (old style).",
        "// the everyday model",
        "/* aliases */",
    ):
        assert comment in text
    data = json5.loads(text)
    assert data["agents"]["defaults"] == json5.loads(LEGACY)["agent"]
    assert "agent" not in data
    assert (
        '  agents: {\n    defaults: {\n      model: {\n        primary: "demo/echo", // the everyday model\n'
        in text
    )
    validate = run_cli(capsys, "config", "validate", "--config", str(path))
    assert validate.code == 0
    assert "legacy" not in validate.err
    again = run_cli(capsys, "config", "migrate", "--config", str(path))
    assert again.code == 0
    assert "Nothing changed." in again.out


def test_migrate_refuses_both_forms_and_a_missing_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Both ``agent`` and ``agents.defaults``: an error, the file untouched; no file: nothing to migrate."""
    text = '{ agent: { model: "demo/echo" }, agents: { defaults: {} } }'
    path = tmp_path / "c.json5"
    write_config(path, text)
    result = run_cli(capsys, "config", "migrate", "--config", str(path))
    assert result.code == 2
    assert "keep only `agents.defaults`" in result.err
    assert path.read_text(encoding="utf-8") == text
    assert run_cli(capsys, "config", "migrate").code == 2


@pytest.mark.slow
def test_the_console_script_validates(tmp_path: Path) -> None:
    """The installed script exits 0 on the example and 1 on a broken file."""
    assert run_script("config", "validate", "--config", str(EXAMPLE_CONFIG)).code == 0
    broken = write_config(tmp_path / "c.json5", "{")
    result = run_script("config", "validate", "--config", broken)
    assert result.code == 1
    assert "invalid JSON5" in result.err
