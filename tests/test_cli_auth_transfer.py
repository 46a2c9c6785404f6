"""``modelbot auth export|import|gen-key|rekey`` on the file store and on the database (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest

from bot.auth.secret_box import SecretBox, generate_key
from bot.auth.store import AuthStore
from bot.config.paths import SECRET_KEY_ENV, auth_profiles_path, default_database_url
from tests.cli_helpers import run_cli, write_config
from tests.pg import pg_url, truncate_all  # noqa: F401
from tests.test_auth_store import SEED, seed_text

SQL_BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]
Capsys = pytest.CaptureFixture[str]


def _seed_file_store(state_dir: Path) -> AuthStore:
    store = AuthStore(auth_profiles_path(state_dir))
    store.path.parent.mkdir(parents=True)
    store.path.write_text(seed_text(), encoding="utf-8")
    return store


@pytest.fixture(params=SQL_BACKENDS)
def database_config(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A config with ``auth.store: "database"`` on an empty database, and a secret key in the environment.

    The tests using it are synchronous: the CLI runs its own event loop."""
    if request.param == "sqlite":
        url = default_database_url(tmp_path / "shared")
    else:
        url = str(request.getfixturevalue("pg_url"))
        asyncio.run(truncate_all(url))
    monkeypatch.setenv("TEST_DATABASE_URL", url)
    monkeypatch.setenv(SECRET_KEY_ENV, KEY)
    text = '{auth: {store: "database"}, storage: {url: "${TEST_DATABASE_URL}"}}'
    return write_config(tmp_path / "database.json5", text)


KEY = generate_key()


# --- the file store ---------------------------------------------------------------------------------------


def test_export_prints_the_file_store_in_the_seed_format(capsys: Capsys, state_dir: Path) -> None:
    """Bare export writes the document to stdout, exactly the seed's JSON."""
    _seed_file_store(state_dir)
    result = run_cli(capsys, "auth", "export")
    assert result.code == 0, result.err
    assert json.loads(result.out) == SEED


def test_export_to_a_file_is_private_even_over_an_open_file(
    capsys: Capsys, state_dir: Path, tmp_path: Path
) -> None:
    """--file writes mode 0600, replacing a world-readable file rather than writing into it."""
    _seed_file_store(state_dir)
    target = tmp_path / "backup.json"
    target.write_text("old")
    target.chmod(0o644)
    result = run_cli(capsys, "auth", "export", "--file", str(target))
    assert result.code == 0, result.err
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert json.loads(target.read_text()) == SEED
    assert "clear text" in result.out and "sk-" not in result.out


def test_import_reports_what_it_did_and_is_idempotent(
    capsys: Capsys, state_dir: Path, tmp_path: Path
) -> None:
    """First import: added and updated items named; second: nothing to import, the file left untouched."""
    store = AuthStore(auth_profiles_path(state_dir))
    store.path.parent.mkdir(parents=True)
    old = {
        "version": 1,
        "profiles": {"openai:work": {"type": "api_key", "provider": "openai", "key": "sk-old"}},
    }
    store.path.write_text(json.dumps(old))
    source = tmp_path / "export.json"
    source.write_text(seed_text())

    dry = run_cli(capsys, "auth", "import", str(source), "--dry-run")
    assert dry.code == 0 and dry.out.startswith(f"Would import {source} into {store.path}:")
    assert store.reload().profiles["openai:work"].secret == "sk-old"

    first = run_cli(capsys, "auth", "import", str(source))
    assert first.code == 0, first.err
    assert f"Imported {source} into {store.path}:" in first.out
    assert "  added:   profile anthropic:default, profile anthropic:setup," in first.out
    assert "  updated: profile openai:work\n" in first.out
    assert "sk-" not in first.out
    assert json.loads(store.path.read_text()) == SEED
    written = store.path.stat().st_mtime_ns

    second = run_cli(capsys, "auth", "import", str(source))
    assert second.code == 0
    assert second.out == f"Nothing to import: {source} holds nothing that {store.path} lacks (10 skipped).\n"
    assert store.path.stat().st_mtime_ns == written


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            b'{"profiles": {"x:y": {"type": "magic", "provider": "x"}}}',
            'profiles["x:y"]["type"]: expected one of',
        ),
        (b"\xff\xfe not text", "not UTF-8 text"),
    ],
)
def test_a_bad_import_file_changes_nothing(
    capsys: Capsys, state_dir: Path, tmp_path: Path, content: bytes, message: str
) -> None:
    """A malformed file is refused with its place; the store stays as it was."""
    store = _seed_file_store(state_dir)
    source = tmp_path / "bad.json"
    source.write_bytes(content)
    result = run_cli(capsys, "auth", "import", str(source))
    assert result.code == 2 and message in result.err and "Nothing was imported" in result.err
    assert store.path.read_text() == seed_text()
    missing = run_cli(capsys, "auth", "import", str(tmp_path / "nope.json"))
    assert missing.code == 1 and "nope.json" in missing.err


# --- the database ---------------------------------------------------------------------------------------------


def test_a_file_store_moves_into_the_database_and_back_with_nothing_lost(
    capsys: Capsys, state_dir: Path, tmp_path: Path, database_config: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """file → export → import into the database → export → import into a fresh file store: the seed, exactly."""
    _seed_file_store(state_dir)
    exported = tmp_path / "from-file.json"
    assert run_cli(capsys, "auth", "export", "--file", str(exported)).code == 0

    into_db = run_cli(capsys, "auth", "import", str(exported), "--config", database_config)
    assert into_db.code == 0, into_db.err
    assert "into the database " in into_db.out and "(agent main)" in into_db.out
    assert "TEST_DATABASE_URL" not in into_db.out
    again = run_cli(capsys, "auth", "import", str(exported), "--config", database_config)
    assert again.out.startswith("Nothing to import")

    from_db = run_cli(capsys, "auth", "export", "--config", database_config)
    assert from_db.code == 0, from_db.err
    assert json.loads(from_db.out) == SEED

    monkeypatch.setenv("MODELBOT_STATE_DIR", str(tmp_path / "another-host"))
    back = tmp_path / "from-db.json"
    back.write_text(from_db.out)
    assert run_cli(capsys, "auth", "import", str(back)).code == 0
    assert json.loads(auth_profiles_path(tmp_path / "another-host").read_text()) == SEED


def test_the_database_store_refuses_without_its_key(
    capsys: Capsys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No MODELBOT_SECRET_KEY: a clear refusal that says how to make one, before any database is touched."""
    database = tmp_path / "db" / "modelbot.sqlite"
    monkeypatch.setenv("TEST_DATABASE_URL", default_database_url(database.parent))
    config = write_config(
        tmp_path / "c.json5", '{auth: {store: "database"}, storage: {url: "${TEST_DATABASE_URL}"}}'
    )
    result = run_cli(capsys, "auth", "export", "--config", config)
    assert result.code == 2
    assert SECRET_KEY_ENV in result.err and "modelbot auth gen-key" in result.err
    assert not database.exists()


def test_a_wrong_key_is_a_clear_error(
    capsys: Capsys, database_config: str, state_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Data sealed with one key, read with another: an error naming the variable, no output of secrets."""
    _seed_file_store(state_dir)
    assert (
        run_cli(
            capsys, "auth", "import", str(auth_profiles_path(state_dir)), "--config", database_config
        ).code
        == 0
    )
    monkeypatch.setenv(SECRET_KEY_ENV, generate_key())
    result = run_cli(capsys, "auth", "export", "--config", database_config)
    assert result.code == 2
    assert f"{SECRET_KEY_ENV} does not decrypt the stored credentials" in result.err
    assert result.out == ""


def test_gen_key_prints_a_fresh_usable_key(capsys: Capsys) -> None:
    """The printed key is accepted as MODELBOT_SECRET_KEY, and two runs differ."""
    first, second = run_cli(capsys, "auth", "gen-key"), run_cli(capsys, "auth", "gen-key")
    assert first.code == 0 and first.out != second.out
    SecretBox.from_env({SECRET_KEY_ENV: first.out.strip()})


def test_rekey_rotates_to_the_new_key(
    capsys: Capsys, database_config: str, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NEW,OLD then rekey: NEW alone reads everything, OLD alone no longer does; one key is refused."""
    _seed_file_store(state_dir)
    assert (
        run_cli(
            capsys, "auth", "import", str(auth_profiles_path(state_dir)), "--config", database_config
        ).code
        == 0
    )
    one_key = run_cli(capsys, "auth", "rekey", "--config", database_config)
    assert one_key.code == 2 and "NEW,OLD" in one_key.err

    new = generate_key()
    monkeypatch.setenv(SECRET_KEY_ENV, f"{new},{KEY}")
    rekeyed = run_cli(capsys, "auth", "rekey", "--config", database_config)
    assert rekeyed.code == 0, rekeyed.err
    assert "Re-encrypted the secrets of 4 profile(s)" in rekeyed.out

    monkeypatch.setenv(SECRET_KEY_ENV, new)
    assert json.loads(run_cli(capsys, "auth", "export", "--config", database_config).out) == SEED
    monkeypatch.setenv(SECRET_KEY_ENV, KEY)
    assert run_cli(capsys, "auth", "export", "--config", database_config).code == 2


def test_rekey_of_a_file_store_is_refused(capsys: Capsys, monkeypatch: pytest.MonkeyPatch) -> None:
    """auth-profiles.json is not encrypted: nothing to rekey, said plainly."""
    monkeypatch.setenv(SECRET_KEY_ENV, f"{generate_key()},{generate_key()}")
    result = run_cli(capsys, "auth", "rekey")
    assert result.code == 2 and 'auth.store is "file"' in result.err
