"""Where modelbot keeps its files: the state dir, the config file, auth profiles and the database."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

STATE_DIR_ENV = "MODELBOT_STATE_DIR"
CONFIG_ENV = "MODELBOT_CONFIG"
SECRET_KEY_ENV = "MODELBOT_SECRET_KEY"  # noqa: S105 - the name of a variable, not its value
CONFIG_FILENAME = "config.json5"
DATABASE_FILENAME = "modelbot.sqlite"
DEFAULT_AGENT_ID = "main"

# Same shape as ``AgentEntry.id`` in the schema; checked here too because an agent id becomes a path segment.
_AGENT_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")


def _env(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    """``$MODELBOT_STATE_DIR``, else ``~/.modelbot`` (an empty variable counts as unset)."""
    env = _env(env)
    configured = env.get(STATE_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    home = env.get("HOME", "").strip()
    return (Path(home) if home else Path.home()) / ".modelbot"


def config_path(cli_path: str | None, env: Mapping[str, str] | None = None) -> Path:
    """``--config`` wins, then ``$MODELBOT_CONFIG``, else ``$STATE_DIR/config.json5``."""
    env = _env(env)
    if cli_path is not None and cli_path.strip():
        return Path(cli_path).expanduser()
    configured = env.get(CONFIG_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    return state_dir(env) / CONFIG_FILENAME


def auth_profiles_path(state_dir: Path, agent_id: str = DEFAULT_AGENT_ID) -> Path:
    """``<state_dir>/agents/<agentId>/agent/auth-profiles.json``; the id must be a plain name, not a path."""
    if not _AGENT_ID_RE.match(agent_id) or len(agent_id) > 64:
        raise ValueError(f"Agent id {agent_id!r} must be letters, digits, '-' or '_'.")
    return state_dir / "agents" / agent_id / "agent" / "auth-profiles.json"


def default_database_url(state_dir: Path) -> str:
    """The SQLite database in the state dir, as an SQLAlchemy async URL."""
    return f"sqlite+aiosqlite:///{(state_dir / DATABASE_FILENAME).as_posix()}"
