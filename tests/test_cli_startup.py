"""The command line imports only what the subcommand needs (issue 15): checked in fresh interpreters."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bot.store.migrate import HEAD_REVISION
from bot.store.sql import sqlite_url
from tests.cli_helpers import ROOT, console_script_at_exit
from tests.migration_checks import current_revision, head_revision, upgrade

# What `modelbot --help` must never wait for: provider SDKs and HTTP stacks, platform libraries, the table
# renderer, the database layer, the config schema's validation library.
HEAVY = {
    "openai",
    "anthropic",
    "httpx",
    "httpx2",
    "aiohttp",
    "telegram",
    "discord",
    "rich",
    "sqlalchemy",
    "alembic",
    "pydantic",
}

_SCRIPT = """
import contextlib, io, json, sys
from cli.main import main
rc = None
with contextlib.redirect_stdout(io.StringIO()):
    try:
        rc = main(sys.argv[1:])
    except SystemExit as exc:
        rc = exc.code
print(json.dumps([rc, sorted(sys.modules)]))
"""


def imported(*argv: str, stdin: str = "", exit_code: int | None = None) -> set[str]:
    """Every module ``modelbot ARGV`` imported, in a fresh interpreter (that exited with ``exit_code``)."""
    done = subprocess.run(
        [sys.executable, "-c", _SCRIPT, *argv],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ),
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rc, modules = json.loads(done.stdout.strip().splitlines()[-1])
    if exit_code is not None:
        assert rc == exit_code, done.stderr[-2000:]
    return set(modules)


def packages(modules: set[str]) -> set[str]:
    return {name.split(".")[0] for name in modules}


@pytest.mark.parametrize("argv", [["--help"], [], ["--version"]], ids=["help", "bare", "version"])
def test_the_top_level_imports_nothing_heavy(argv: list[str]) -> None:
    """``modelbot --help`` lists the subcommands without importing any of them."""
    modules = imported(*argv)
    assert packages(modules) & HEAVY == set()
    assert not any(name.startswith("cli.") and name != "cli.main" for name in modules)


def test_models_list_needs_no_database_http_or_platform(state_dir: Path) -> None:
    """``models list`` reads the config and the auth profiles: no SQLAlchemy, no HTTP stack, no platform, and
    into a pipe its table needs no rich; with auth-profiles.json, no database auth store and no cryptography
    (which seals that store's secrets)."""
    modules = imported("models", "list", exit_code=0)  # its table, into a pipe
    assert (
        packages(modules)
        & {"sqlalchemy", "alembic", "aiohttp", "httpx2", "telegram", "discord", "rich", "cryptography"}
        == set()
    )
    # Nor the database's lease machinery (the database auth store's refresh lock: bot.auth.refresh_lease).
    assert {
        "bot.auth.db_store",
        "bot.auth.secret_box",
        "bot.auth.refresh_lease",
        "bot.store.lease",
    } & modules == set()
    # Nor anything of a turn: the failover engine, the pipeline, the provider clients.
    assert {
        "bot.failover.engine",
        "bot.conversation.pipeline",
        "bot.providers.openai_client",
        "bot.providers.http",
    } & modules == set()
    # Nor what other commands of its family need: editing the file (a JSON5 syntax tree), the status view's
    # probes, the OAuth login and token endpoint code, the in-process demo provider.
    assert {
        "bot.config.edit",
        "bot.config.json5_cst",
        "bot.config.config_file",
        "cli.models_status",
        "cli.probe",
        "bot.auth.oauth",
        "bot.auth.oauth_client",
        "bot.providers.clients",
        "bot.providers.demo",
    } & modules == set()
    # Nor what only a mistake or a file needs: the suggestions' fuzzy matching, the JSON5 parser (no config
    # file here: the built-in default), and pydantic's plugin discovery among installed distributions.
    assert {"difflib", "json5", "importlib.metadata"} & modules == set()
    assert "tempfile" not in modules  # what only writing auth-profiles.json needs: a read writes nothing


def test_reading_credentials_from_the_file_starts_no_event_loop(state_dir: Path) -> None:
    """``models list`` and ``auth list`` on auth-profiles.json wait for nothing: asyncio (with ssl) stays
    unloaded; ``auth list`` loads neither the sealing of the database store nor SQLAlchemy, which only
    ``auth export|import|rekey`` need."""
    assert "asyncio" not in imported("models", "list", exit_code=0)
    modules = imported("auth", "list", exit_code=0)
    assert "asyncio" not in modules
    assert packages(modules) & {"sqlalchemy", "cryptography"} == set()


def test_models_list_with_a_config_file_parses_it_once(state_dir: Path) -> None:
    """A config file is read with the loader's JSON5 parser alone: the editing syntax tree stays unloaded."""
    (state_dir / "config.json5").write_text(
        '{ agents: { defaults: { model: { primary: "openai/gpt-5.2" } } },'
        ' models: { providers: { openai: { apiKey: "${MB_TEST_UNSET_KEY}" } } } }',
        encoding="utf-8",
    )
    modules = imported("models", "list", exit_code=0)
    assert {"bot.config.edit", "bot.config.json5_cst"} & modules == set()
    assert "json5" in modules


def test_chat_imports_what_its_first_answer_needs(state_dir: Path) -> None:
    """``modelbot chat`` on the demo: the SQLite store on sqlite3 alone once the schema is at head (no
    SQLAlchemy, no Alembic), no provider SDK or HTTP stack (the demo is in-process), no platform library, no
    table renderer."""
    imported("chat", "--json", stdin="hello\n")  # creates the database and migrates it
    modules = imported("chat", "--json", stdin="hello\n")
    assert {"bot.store.sql", "bot.store.sqlite_turn"} <= modules
    # Nor the store's SQLAlchemy side: its tables and statements.
    assert {"bot.store.tables", "bot.store.sql_ops", "bot.store.lease_sql"} & modules == set()
    # Nor what only commands or mistakes need: the status views, suggestions' fuzzy matching, the parsing of a
    # Retry-After date (email.utils), the JSON5 parser (no config file), pydantic's plugin discovery.
    assert {
        "bot.conversation.status_view",
        "bot.conversation.commands",  # plain chat needs no command parser, nor the handlers and picker
        "bot.conversation.command_handlers",
        "bot.models.picker",
        "difflib",
        "email.utils",
        "json5",
        "importlib.metadata",
    } & modules == set()
    assert (
        packages(modules)
        & {
            "sqlalchemy",
            "alembic",
            "mako",
            "openai",
            "anthropic",
            "aiohttp",
            "httpx2",
            "telegram",
            "discord",
            "rich",
            "cryptography",
        }
        == set()
    )


def test_chat_loads_the_commands_with_the_first_command(state_dir: Path) -> None:
    modules = imported("chat", "--json", stdin="hello\n/model\n")
    assert {"bot.conversation.commands", "bot.conversation.command_handlers", "bot.models.picker"} <= modules


def test_chat_migrates_a_database_that_is_not_at_head(state_dir: Path) -> None:
    """A database of an older schema is still brought to head by ``modelbot chat``'s start: SQLAlchemy and
    Alembic are imported for it, and the turn is saved in the new schema."""
    url = sqlite_url(state_dir / "modelbot.sqlite")
    asyncio.run(upgrade(url, "0001"))
    modules = imported("chat", "--json", stdin="hello\n")
    assert {"sqlalchemy", "alembic"} <= packages(modules)
    assert asyncio.run(current_revision(url)) == HEAD_REVISION
    with contextlib.closing(sqlite3.connect(state_dir / "modelbot.sqlite")) as db:
        assert db.execute("SELECT count(*) FROM messages").fetchone() == (2,)


def test_the_head_revision_constant_is_alembics_head() -> None:
    """The quick start-up check compares with ``HEAD_REVISION``: a new migration must move it."""
    assert head_revision() == HEAD_REVISION


def _models_list_then(given: str | None, then: str) -> str:
    """``models list`` in a fresh interpreter with ``PYDANTIC_DISABLE_PLUGINS`` set to ``given`` (unset for
    None); the last line the statement ``then`` prints afterwards."""
    env = {k: v for k, v in os.environ.items() if k != "PYDANTIC_DISABLE_PLUGINS"}
    if given is not None:
        env["PYDANTIC_DISABLE_PLUGINS"] = given
    script = (
        "import contextlib, io, os, sys\n"
        "from cli.main import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        '    main(["models", "list"])\n'
        f"{then}\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=True,
    )
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize(("given", "seen"), [(None, "__all__"), ("some_plugin", "some_plugin")])
def test_pydantic_plugins_are_not_looked_for_unless_asked(
    state_dir: Path, given: str | None, seen: str
) -> None:
    """The command line spares pydantic's scan of every installed package for plugins; a setting given wins."""
    assert _models_list_then(given, 'print(os.environ.get("PYDANTIC_DISABLE_PLUGINS"))') == seen


@pytest.mark.parametrize(("given", "looked_for"), [(None, False), ("1", False), ("some_plugin", True)])
def test_pydantic_plugins_are_looked_for_only_when_asked(
    state_dir: Path, given: str | None, looked_for: bool
) -> None:
    """With plugins off, pydantic's plugin loader (and the importlib.metadata it imports) is never loaded; a
    plugin setting gets the real loader, which reads the installed distributions' entry points."""
    line = _models_list_then(
        given,
        'import pydantic.plugin._loader as loader; print("importlib.metadata" in sys.modules, loader.get_plugins)',
    )
    metadata, get_plugins = line.split(" ", 1)
    assert metadata == str(looked_for)
    assert (get_plugins == "<class 'tuple'>") is not looked_for


def test_the_console_script_leaves_the_last_full_collection_out(state_dir: Path) -> None:
    """``modelbot`` is ``cli.main:run``: what the command made is frozen before the interpreter's exit, whose
    full collection would walk it all just before the process frees it."""
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["scripts"]
    assert scripts["modelbot"] == "cli.main:run"
    frozen = int(console_script_at_exit(["models", "list", "--plain"], "gc.get_freeze_count()"))
    assert frozen > 10_000
