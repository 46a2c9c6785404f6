"""Reads the JSON5 config into a validated ``Config``: env refs, legacy keys, no literal secrets, warnings."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import ValidationError

from bot.auth.oauth_presets import oauth_config_problem
from bot.channels import CONSOLE, NO_CHANNELS, ChannelRegistry
from bot.config.defaults import builtin_default, with_default_model
from bot.config.env_refs import env_names, has_env_ref, is_env_ref, substitute
from bot.config.key_paths import KeyPath, format_key_path, value_at
from bot.config.pydantic_errors import describe
from bot.config.schema import Config, ModelChain, config_model
from bot.errors import ConfigError, InvalidRef
from bot.models.refs import ModelRef, parse_model_ref

BUILTIN_NAME = "built-in default"

_JSON5_POS_RE = re.compile(r"^<string>:(\d+) (.*) at column (\d+)$", re.DOTALL)
_SECRET_HEADER_RE = re.compile(r"auth|key|token|secret|passw|cookie", re.IGNORECASE)
_SECRET_VALUE_RE = re.compile(r"^\s*(bearer|basic)\s|^\s*sk-", re.IGNORECASE)
_LEGACY_WARNING = "legacy key `agent` — run `modelbot config migrate` (it is now `agents.defaults`)"


@dataclass(frozen=True)
class LoadedConfig:
    """A validated config and where it came from."""

    config: Config
    path: Path | None  # None: the built-in default, no file
    warnings: tuple[str, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict)  # the file after env substitution and legacy mapping
    env_refs: Mapping[KeyPath, str] = field(default_factory=dict)  # key path in `raw` ⇒ the text as written
    secret_paths: tuple[KeyPath, ...] = ()  # the channels' secret keys, where `raw` holds their values


def load_config(
    path: Path | None,
    *,
    env: Mapping[str, str] | None = None,
    must_exist: bool = False,
    channels: ChannelRegistry = NO_CHANNELS,
) -> LoadedConfig:
    """Load ``path``; with no path, or a missing file when ``must_exist`` is False, the built-in default.

    ``channels`` are the channel plug-ins whose ``channels.<name>`` sections the file may hold.
    """
    env = os.environ if env is None else env
    if path is None or (not path.exists() and not must_exist):
        return _build(builtin_default(env), {}, env, file=BUILTIN_NAME, path=None, channels=channels)
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: tolerate the BOM some editors add
    except FileNotFoundError:
        raise ConfigError(file, "", "file not found") from None
    except UnicodeDecodeError:
        raise ConfigError(file, "", "expected UTF-8 text") from None
    except OSError as exc:
        raise ConfigError(file, "", f"cannot read the file ({exc.strerror or exc})") from None
    return parse_config_text(text, file=file, path=path, env=env, channels=channels)


def parse_config_text(
    text: str,
    *,
    file: str = "<config>",
    path: Path | None = None,
    env: Mapping[str, str] | None = None,
    channels: ChannelRegistry = NO_CHANNELS,
) -> LoadedConfig:
    """The whole pipeline on a file's text: parse, reject secrets, substitute env refs, migrate, validate."""
    env = os.environ if env is None else env
    return _parse_data(_parse_json5(text, file), env, file=file, path=path, channels=channels)


def parse_config_text_lenient(
    text: str, *, file: str, path: Path | None, env: Mapping[str, str], channels: ChannelRegistry
) -> tuple[LoadedConfig, list[str]]:
    """``parse_config_text`` where a ``${VAR}`` that is not set reads as empty; also the names of those.

    For the management commands, so an operator can inspect and edit a config on a machine without the
    bot's secrets. A config that is invalid that way is reported as the strict parse reports it.
    """
    data = _parse_json5(text, file)
    missing = sorted(env_names(data) - set(env))
    lenient = {**env, **dict.fromkeys(missing, "")}
    try:
        return _parse_data(data, lenient, file=file, path=path, channels=channels), missing
    except ConfigError:
        if missing:  # an unset variable may be why: the strict parse names it
            _parse_data(data, env, file=file, path=path, channels=channels)
        raise


def _parse_data(
    data: dict[str, Any], env: Mapping[str, str], *, file: str, path: Path | None, channels: ChannelRegistry
) -> LoadedConfig:
    _reject_literal_secrets(data, file, channels)
    env_refs: dict[KeyPath, str] = {}
    # A channel that is not enabled needs none of its values: an unset ${VAR} there (its token, typically)
    # reads as empty instead of stopping `modelbot chat` on a machine that does not hold the bot's secrets.
    disabled = {
        name
        for name, section in _dict(data.get("channels")).items()
        if _dict(section).get("enabled") is not True
    }
    substituted = substitute(
        data,
        env,
        file,
        (),
        env_refs,
        optional=lambda p: len(p) > 1 and p[0] == "channels" and p[1] in disabled,
    )
    return _build(substituted, env_refs, env, file=file, path=path, channels=channels)


def migrate_legacy(raw: dict[str, Any], *, file: str = "<config>") -> tuple[dict[str, Any], list[str]]:
    """Map the legacy top-level ``agent`` to ``agents.defaults``; returns a new dict and the warnings."""
    if "agent" not in raw:
        return dict(raw), []
    legacy = raw["agent"]
    if not isinstance(legacy, dict):
        raise ConfigError(file, "agent", "expected an object (the legacy form of `agents.defaults`)")
    agents = raw.get("agents", {})
    if not isinstance(agents, dict):
        raise ConfigError(file, "agents", "expected an object")
    if "defaults" in agents:
        raise ConfigError(
            file, "agent", "both `agent` (legacy) and `agents.defaults` are set; keep only `agents.defaults`"
        )
    migrated = {key: value for key, value in raw.items() if key != "agent"}
    migrated["agents"] = {"defaults": legacy, **agents}
    return migrated, [_LEGACY_WARNING]


def _build(
    data: dict[str, Any],
    env_refs: dict[KeyPath, str],
    env: Mapping[str, str],
    *,
    file: str,
    path: Path | None,
    channels: ChannelRegistry,
) -> LoadedConfig:
    legacy = "agent" in data
    migrated, warnings = migrate_legacy(data, file=file)
    if legacy:
        env_refs = {_to_new_form(key): text for key, text in env_refs.items()}
    model = config_model(channels.sections, (CONSOLE,))
    try:
        config = model.model_validate(with_default_model(migrated, env))
    except ValidationError as exc:
        raise _translate(exc, file, legacy, model, channels) from None
    warnings += _semantic_checks(config, migrated, file, legacy)
    secret_paths = tuple(path for path, _ in channels.secret_fields())
    return LoadedConfig(config, path, tuple(warnings), migrated, env_refs, secret_paths)


def _parse_json5(text: str, file: str) -> dict[str, Any]:
    if not text.strip():
        return {}
    import json5  # noqa: PLC0415 - a file to parse: the built-in default (no file) needs no parser

    try:
        data = json5.loads(text, allow_duplicate_keys=False)
    except ValueError as exc:
        detail = str(exc)
        if match := _JSON5_POS_RE.match(detail):
            line, message, column = match.groups()
            raise ConfigError(file, "", f"invalid JSON5 at line {line} column {column}: {message}") from None
        raise ConfigError(file, "", f"invalid JSON5: {detail}") from None
    except RecursionError:
        raise ConfigError(file, "", "invalid JSON5: nested too deeply") from None
    if not isinstance(data, dict):
        raise ConfigError(file, "", "expected an object { … } at the top level")
    return data


def _reject_literal_secrets(data: dict[str, Any], file: str, channels: ChannelRegistry) -> None:
    """Secrets may only come from the environment, so a config file can be shared and committed."""
    for secret_path, variable in channels.secret_fields():
        _env_only(file, secret_path, value_at(data, secret_path), variable)
    for provider, provider_entry in _dict(_dict(data.get("models")).get("providers")).items():
        entry = _dict(provider_entry)
        variable = re.sub(r"[^A-Z0-9]+", "_", provider.upper()).strip("_") + "_API_KEY"
        _env_only(file, ("models", "providers", provider, "apiKey"), entry.get("apiKey"), variable)
        extra = _dict(_dict(entry.get("oauth")).get("extraHeaders"))  # sent with OAuth logins' calls
        headers: list[tuple[KeyPath, object]] = [
            (("headers", n), v) for n, v in _dict(entry.get("headers")).items()
        ]
        headers += [(("oauth", "extraHeaders", n), v) for n, v in extra.items()]
        for where, value in headers:
            looks_secret = _SECRET_HEADER_RE.search(str(where[-1])) or _SECRET_VALUE_RE.search(str(value))
            if isinstance(value, str) and looks_secret and not has_env_ref(value):
                path = format_key_path(("models", "providers", provider, *where))
                raise ConfigError(file, path, _secret_advice(f"Bearer ${{{variable}}}"))
    url = _dict(data.get("storage")).get("url")
    if isinstance(url, str) and "${" not in url:
        try:
            password = urlsplit(url).password
        except ValueError:
            password = None  # a malformed URL is the store's error to report, with its own context
        if password:
            raise ConfigError(file, "storage.url", _secret_advice("${DATABASE_URL}", what="a password"))


def _env_only(file: str, path: KeyPath, value: object, variable: str) -> None:
    if isinstance(value, str) and value and not is_env_ref(value):
        raise ConfigError(file, format_key_path(path), _secret_advice(f"${{{variable}}}"))


def _secret_advice(example: str, what: str = "a secret") -> str:
    return (
        f"holds {what} written into the file; config files must not contain secrets — "
        f'write "{example}" and set that environment variable instead'
    )


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _to_new_form(path: KeyPath) -> KeyPath:
    return ("agents", "defaults", *path[1:]) if path[:1] == ("agent",) else path


def _display(path: KeyPath, legacy: bool) -> str:
    """The key path as the file spells it: under the legacy ``agent`` key when the file used it."""
    if legacy and path[:2] == ("agents", "defaults"):
        path = ("agent", *path[2:])
    return format_key_path(path)


def _semantic_checks(config: Config, raw: dict[str, Any], file: str, legacy: bool) -> list[str]:
    """Checks across keys that the schema cannot express: ref syntax, aliases, bindings, allowlist."""
    refs = [(path, _parse_ref(text, path, file, legacy)) for path, text in _all_chain_refs(config, raw)]
    warnings = _check_allowlist(config, refs, file, legacy)
    known = [agent.id for agent in config.agents.list] or ["main"]
    for i, binding in enumerate(config.bindings):
        if binding.agent_id not in known:
            expected = f"unknown agent `{binding.agent_id}`; known agents: {', '.join(known)}"
            raise ConfigError(file, format_key_path(("bindings", i, "agentId")), expected)
    for provider, ids in config.auth.order.items():
        for i, profile_id in enumerate(ids):
            if _profile_provider(profile_id) != provider.strip().lower():
                warnings.append(
                    f"{format_key_path(('auth', 'order', provider, i))}: profile `{profile_id}` does not "
                    f"belong to provider `{provider}` (profile ids are `{provider}:<name>`)"
                )
    for profile_id, meta in config.auth.profiles.items():
        if _profile_provider(profile_id) != meta.provider.strip().lower():
            path = format_key_path(("auth", "profiles", profile_id))
            warnings.append(f"{path}: the id does not start with its provider `{meta.provider}:`")
    if problem := oauth_config_problem(config):
        raise ConfigError(file, format_key_path(problem[0]), problem[1])
    return warnings


def _profile_provider(profile_id: str) -> str | None:
    provider, colon, _ = profile_id.partition(":")
    return provider.strip().lower() if colon else None


def _all_chain_refs(config: Config, raw: dict[str, Any]) -> list[tuple[KeyPath, str]]:
    """Every model ref of every chain (defaults, image model, each agent) with its key path."""
    defaults = config.agents.defaults
    raw_agents = _dict(raw.get("agents"))
    raw_defaults = _dict(raw_agents.get("defaults"))
    refs = _chain_refs(defaults.model, raw_defaults.get("model"), ("agents", "defaults", "model"))
    image_path: KeyPath = ("agents", "defaults", "imageModel")
    refs += _chain_refs(defaults.image_model, raw_defaults.get("imageModel"), image_path)
    raw_list = raw_agents.get("list")
    for i, agent in enumerate(config.agents.list):
        if agent.model is not None:
            raw_model = _dict(raw_list[i] if isinstance(raw_list, list) else None).get("model")
            refs += _chain_refs(agent.model, raw_model, ("agents", "list", i, "model"))
    return refs


def _check_allowlist(
    config: Config, refs: list[tuple[KeyPath, ModelRef]], file: str, legacy: bool
) -> list[str]:
    """Allowlist keys and aliases must be valid; chain refs outside the allowlist are warned about."""
    models = config.agents.defaults.models
    if models is None:
        return []
    allowed: set[ModelRef] = set()
    seen: dict[str, str] = {}
    for key, entry in models.items():
        path: KeyPath = ("agents", "defaults", "models", key)
        allowed.add(_parse_ref(key, path, file, legacy))
        if entry.alias is None:
            continue
        alias, alias_path = entry.alias.strip(), _display((*path, "alias"), legacy)
        if not alias or any(ch.isspace() or ch in "/@" for ch in alias):
            raise ConfigError(file, alias_path, "expected an alias of one word, without '/', '@' or spaces")
        if alias.lower() in seen:
            taken = f"alias `{alias}` is already used for {seen[alias.lower()]} (aliases ignore case)"
            raise ConfigError(file, alias_path, taken)
        seen[alias.lower()] = key
    where = _display(("agents", "defaults", "models"), legacy)
    return [
        f"{_display(path, legacy)}: `{ref}` is not in the allowlist ({where}); add it there or remove it here"
        for path, ref in refs
        if ref not in allowed
    ]


def _chain_refs(chain: ModelChain, raw_value: object, base: KeyPath) -> list[tuple[KeyPath, str]]:
    """Each ref of a chain with its key path; the string form ``model: "p/m"`` is its own path."""
    refs: list[tuple[KeyPath, str]] = []
    if chain.primary is not None:
        refs.append((base if isinstance(raw_value, str) else (*base, "primary"), chain.primary))
    refs += [((*base, "fallbacks", i), ref) for i, ref in enumerate(chain.fallbacks)]
    return refs


def _parse_ref(text: str, path: KeyPath, file: str, legacy: bool) -> ModelRef:
    try:
        return parse_model_ref(text)
    except InvalidRef as exc:
        raise ConfigError(
            file, _display(path, legacy), f"expected a model as provider/model: {exc}"
        ) from None


def _translate(
    exc: ValidationError, file: str, legacy: bool, model: type[Config], channels: ChannelRegistry
) -> ConfigError:
    """The first pydantic error in plain words, with the file's key path and a count of the rest."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    if first["type"] == "extra_forbidden" and len(first["loc"]) == 2 and first["loc"][0] == "channels":
        known = ", ".join(channels.names) or "none"
        expected = f"unknown channel `{first['loc'][1]}` (channels of this modelbot: {known})"
    else:
        expected = describe(first, model)
    if len(errors) > 1:
        more = len(errors) - 1
        expected += f" (and {more} more problem{'s' if more > 1 else ''})"
    return ConfigError(file, _display(tuple(first["loc"]), legacy), expected)
