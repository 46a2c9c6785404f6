"""Import boundaries of the codebase (docs/architecture.md, 'Import rules'): checked by walking every module's imports."""

from __future__ import annotations

import ast
import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PLATFORM_SDKS = {"telegram", "discord"}
PROVIDER_SDKS = {"openai", "anthropic"}
SQL = {"sqlalchemy", "alembic", "aiosqlite", "asyncpg"}


def _modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def test_core_imports_no_platform_sdk() -> None:
    """Only adapters/ may import telegram or discord."""
    offenders = [_rel(p) for p in _modules("bot") if _imports(p) & PLATFORM_SDKS]
    assert offenders == []


def test_only_provider_clients_import_provider_sdks() -> None:
    """openai and anthropic are imported by their client modules and nowhere else."""
    allowed = {"bot/providers/openai_client.py", "bot/providers/anthropic_client.py"}
    offenders = [
        _rel(p)
        for p in _modules("bot") + _modules("adapters")
        if _imports(p) & PROVIDER_SDKS and _rel(p) not in allowed
    ]
    assert offenders == []


def test_http_exceptions_are_translated_where_the_calls_are_made() -> None:
    """httpx2 and aiohttp are imported only by the provider clients (with what they share, http.py and
    direct_post.py) and the OAuth client: their exceptions become the bot's own errors there and nowhere else."""
    allowed = {
        "bot/providers/http.py",
        "bot/providers/direct_post.py",
        "bot/providers/openai_client.py",
        "bot/providers/anthropic_client.py",
        "bot/auth/oauth_client.py",
    }
    offenders = [
        _rel(p) for p in _modules("bot") if _imports(p) & {"httpx2", "aiohttp"} and _rel(p) not in allowed
    ]
    assert offenders == []


def test_only_the_store_imports_sql() -> None:
    """SQLAlchemy and its drivers stay inside bot/store/."""
    offenders = [
        _rel(p)
        for p in _modules("bot") + _modules("adapters")
        if _imports(p) & SQL and not _rel(p).startswith("bot/store/")
    ]
    assert offenders == []


def test_the_core_imports_neither_adapters_nor_the_cli() -> None:
    """Imports run one way: cli -> adapters -> bot. The core owns the ports; adapters plug into them and the
    command line composes both, so nothing in bot/ may import either, and adapters never import the CLI."""
    offenders = [_rel(p) for p in _modules("bot") if _imports(p) & {"adapters", "cli"}]
    offenders += [_rel(p) for p in _modules("adapters") if "cli" in _imports(p)]
    assert offenders == []


def test_the_core_names_no_channel() -> None:
    """Channels are plug-ins behind the port in bot/channels.py: no code in bot/ spells a platform's name (only
    the terminal's "console"), so a channel is added without touching the core."""
    offenders = [
        f"{_rel(path)}:{node.lineno}: {node.value!r}"
        for path in _modules("bot")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.lower() in PLATFORM_SDKS
    ]
    assert offenders == []


def test_channel_settings_live_with_their_adapters() -> None:
    """The core's schema has no channel section of its own: each plug-in brings its settings model."""
    from bot.config.schema import Channels, ChannelSettings, Config  # noqa: PLC0415

    assert Channels.model_fields == {}
    assert Config().channels == Channels()
    assert set(ChannelSettings.model_fields) == {"enabled"}


def test_the_channel_list_loads_no_platform_library() -> None:
    """cli/channels.py (every plug-in with its settings) is imported by each command: it must stay cheap."""
    script = "import sys, cli.channels; print(sorted({m.split('.')[0] for m in sys.modules}))"
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120, check=True
    )
    loaded = set(ast.literal_eval(done.stdout.strip()))
    assert loaded & (PLATFORM_SDKS | PROVIDER_SDKS | SQL) == set()


def test_adapters_do_not_reach_into_engine_internals() -> None:
    """Adapters talk to the chat pipeline, not to the engine, the auth store or provider clients."""
    forbidden = ("bot.failover", "bot.auth", "bot.providers", "bot.store")
    offenders = []
    for path in _modules("adapters"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(forbidden):
                offenders.append(f"{_rel(path)}: {node.module}")
    assert offenders == []


@pytest.mark.parametrize("package", ["bot", "adapters", "cli"])
def test_importing_every_module_has_no_side_effects(package: str) -> None:
    """Every module imports cleanly in a fresh interpreter without starting loops, threads or engines."""
    names = [m.name for m in pkgutil.walk_packages([str(ROOT / package)], prefix=f"{package}.")]
    names = [n for n in names if ".migrations." not in n]  # alembic scripts run only inside alembic
    script = (
        "import sys, threading, asyncio\n"
        f"names = {names!r}\n"
        "import importlib\n"
        "for n in names: importlib.import_module(n)\n"
        "assert threading.active_count() == 1, threading.enumerate()\n"
        "try:\n"
        "    asyncio.get_running_loop()\n"
        "    raise SystemExit('a loop is running')\n"
        "except RuntimeError:\n"
        "    pass\n"
        "print(len(names))\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip()) == len(names)
    assert importlib.import_module(package)


def _declared_distributions() -> set[str]:
    """The runtime dependencies of pyproject.toml, as normalised distribution names."""
    import re  # noqa: PLC0415
    import tomllib  # noqa: PLC0415

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {
        re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0].lower().replace("_", "-")
        for spec in project["dependencies"]
    }


def test_every_third_party_import_is_declared() -> None:
    """What bot/ and adapters/ import from outside the standard library is a declared runtime dependency.

    A package that only arrives as another package's dependency (httpx2 under the SDKs) can vanish or
    change under us with that package's next release.
    """
    from importlib.metadata import packages_distributions  # noqa: PLC0415

    distributions = packages_distributions()
    declared = _declared_distributions()
    missing: dict[str, str] = {}
    for path in _modules("bot") + _modules("adapters"):
        for name in _imports(path) - set(sys.stdlib_module_names) - {"bot", "adapters"}:
            owners = {d.lower().replace("_", "-") for d in distributions.get(name, [])}
            if owners and not owners & declared:
                missing[name] = _rel(path)
    assert missing == {}
