"""The config file on disk for editing: read it, validate an edit, back it up and write it atomically."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.channels import NO_CHANNELS, ChannelRegistry
from bot.config import json5_cst as cst
from bot.config.edit import Json5Document
from bot.config.env_refs import env_names
from bot.config.loader import LoadedConfig, parse_config_text
from bot.errors import ConfigError

BACKUP_SUFFIX = ".bak"
NEW_FILE_MODE = 0o644
NEW_FILE_TEXT = (
    "// modelbot config (JSON5). Every key is described in config.example.json5.\n"
    "// Check it with `modelbot config validate`; `modelbot models …` edits keep comments and layout.\n"
    "{\n}\n"
)
_PLACEHOLDER = "modelbot-placeholder"


@dataclass
class ConfigFile:
    """The config file being edited: its document, and the text it had when read (to detect races)."""

    path: Path
    doc: Json5Document
    original: str | None  # None: the file does not exist yet
    bom: bool = False


def open_config(path: Path) -> ConfigFile:
    """Read the config for editing; a missing file starts as a small commented skeleton."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ConfigFile(path, Json5Document(NEW_FILE_TEXT, file=str(path)), None)
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), "", f"cannot read the file ({exc})") from None
    bom = text.startswith("\ufeff")
    return ConfigFile(path, Json5Document(text.removeprefix("\ufeff"), file=str(path)), text, bom)


def check_text(
    text: str,
    *,
    file: str,
    path: Path | None,
    env: Mapping[str, str],
    channels: ChannelRegistry = NO_CHANNELS,
) -> LoadedConfig:
    """Validate as the bot loads it; ``${VAR}``s missing here get a placeholder (``config validate`` checks them)."""
    missing = env_names(cst.loads(text, file)) - set(env)
    placeheld = {**env, **dict.fromkeys(missing, _PLACEHOLDER)}
    return parse_config_text(text, file=file, path=path, env=placeheld, channels=channels)


def save_config(
    config: ConfigFile, env: Mapping[str, str], channels: ChannelRegistry = NO_CHANNELS
) -> tuple[LoadedConfig, Path | None]:
    """Validate, back the old file up to ``<name>.bak``, write atomically; returns the result and the backup."""
    path = config.path
    loaded = check_text(config.doc.text, file=str(path), path=path, env=env, channels=channels)
    target = path.resolve()  # a symlinked config is updated where it lives, and stays a symlink
    try:
        current: str | None = target.read_text(encoding="utf-8")
    except FileNotFoundError:
        current = None
    if current != config.original:
        raise ConfigError(str(path), "", "the file changed while it was being edited; nothing was written")
    backup = None
    text = ("\ufeff" if config.bom else "") + config.doc.text
    try:
        if current is not None:
            backup = target.with_name(target.name + BACKUP_SUFFIX)
            write_atomic(backup, current, mode=target.stat().st_mode & 0o777)
        write_atomic(target, text, mode=target.stat().st_mode & 0o777 if current is not None else None)
    except OSError as exc:
        # The rename is the last step, so a failure anywhere before it leaves the config as it was.
        raise ConfigError(str(path), "", f"cannot write the file ({exc.strerror or exc})") from None
    return loaded, backup


def write_atomic(path: Path, text: str, *, mode: int | None = None) -> None:
    """Temp file in the same directory, fsync, rename over ``path``, fsync the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            # mkstemp makes 0600; a new config holds no secrets (they are ${ENV} only), so 0644 like any file.
            os.fchmod(f.fileno(), mode if mode is not None else NEW_FILE_MODE)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
