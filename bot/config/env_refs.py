"""``${VAR}`` references in config values: which variables a config names, and their substitution.

``$${VAR}`` is the escape for a literal ``${VAR}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from bot.config.key_paths import KeyPath, format_key_path
from bot.errors import ConfigError

_ENV_REF_RE = re.compile(r"\$(\$)?\{([A-Za-z_][A-Za-z0-9_]*)\}")  # group 1: the escape
_ONLY_REF_RE = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*\}")  # used with fullmatch
_ANY_REF_RE = re.compile(r"(?<!\$)\$\{[A-Za-z_][A-Za-z0-9_]*\}")


def is_env_ref(value: str) -> bool:
    """Whether ``value`` is one ``${VAR}`` and nothing else."""
    return _ONLY_REF_RE.fullmatch(value) is not None


def has_env_ref(value: str) -> bool:
    """Whether ``value`` refers to a variable anywhere (an escaped ``$${VAR}`` does not)."""
    return _ANY_REF_RE.search(value) is not None


def env_names(value: Any) -> set[str]:
    """The ``${VAR}`` names the string values of parsed config data refer to (comments do not count)."""
    if isinstance(value, dict):
        return set().union(*(env_names(item) for item in value.values()))
    if isinstance(value, list):
        return set().union(*(env_names(item) for item in value))
    return (
        {match[1] for match in _ENV_REF_RE.findall(value) if not match[0]}
        if isinstance(value, str)
        else set()
    )


def substitute(
    value: Any,
    env: Mapping[str, str],
    file: str,
    path: KeyPath,
    refs: dict[KeyPath, str],
    *,
    optional: Callable[[KeyPath], bool],
) -> Any:
    """Replace ``${VAR}`` in every string value; ``$${VAR}`` is the escape for a literal ``${VAR}``.

    An unset variable is an error, except at paths ``optional`` accepts, where it reads as empty.
    """
    if isinstance(value, dict):
        return {
            key: substitute(item, env, file, (*path, key), refs, optional=optional)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [
            substitute(item, env, file, (*path, i), refs, optional=optional) for i, item in enumerate(value)
        ]
    if not isinstance(value, str) or "${" not in value:
        return value

    def replace(match: re.Match[str]) -> str:
        escaped, name = match.groups()
        if escaped:
            return "${" + name + "}"
        if name not in env:
            if optional(path):
                return ""
            raise ConfigError(file, format_key_path(path), f"environment variable `{name}` is not set")
        return env[name]

    if _ENV_REF_RE.search(value):
        refs[path] = value
    return _ENV_REF_RE.sub(replace, value)
