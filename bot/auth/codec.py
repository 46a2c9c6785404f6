"""JSON ⇄ ``AuthProfiles``: the on-disk format of auth-profiles.json and of the legacy files it imports."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, cast

from bot.auth.types import AuthProfiles, Credential, CredentialType, ModelStats, UsageStats

# Where each credential type keeps its secret in the file.
SECRET_KEY: dict[str, str] = {"api_key": "key", "token": "token", "oauth": "access"}
_CRED_KEYS = frozenset({"type", "provider", "key", "token", "access", "refresh", "expires", "email"})
_STATS_KEYS = {
    "lastUsed": "last_used",
    "cooldownUntil": "cooldown_until",
    "disabledUntil": "disabled_until",
    "lastFailureAt": "last_failure_at",
}
_PAIR_KEYS = {"cooldownUntil": "cooldown_until", "lastFailureAt": "last_failure_at"}
_TYPE_NAME = re.compile(r"[a-z][a-z0-9_-]{0,23}")
_TOP_KEYS = frozenset({"version", "profiles", "order", "lastGood", "usageStats"})


def _at(path: str, key: str) -> str:
    """``profiles["openai:work"]["key"]``; built for every field, so the common case avoids json.dumps."""
    quoted = json.dumps(key, ensure_ascii=False) if '"' in key or "\\" in key else f'"{key}"'
    return f"{path}[{quoted}]" if path else key


def _object(value: object, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"{path or 'the file'}: expected an object, got {type(value).__name__}")
    return cast(dict[str, Any], value)


def _str(value: object, path: str) -> str:
    if value is None:
        raise ValueError(f"{path}: missing")
    if not isinstance(value, str):
        raise ValueError(f"{path}: expected a string, got {type(value).__name__}")
    return value


def _section(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    """An optional object: absent or null is empty, anything else must be an object."""
    value = raw.get(key)
    return {} if value is None else _object(value, key)


def _opt_str(value: object, path: str) -> str | None:
    return None if value is None else _str(value, path)


def _opt_int(value: object, path: str) -> int | None:
    """Milliseconds or counts; an integral float (hand-edited 1.7e12) is accepted, booleans are not."""
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{path}: expected an integer, got {type(value).__name__}")
    return value


def decode_credential(data: object, path: str = "") -> Credential:
    raw = _object(data, path)
    kind = raw.get("type")
    if kind not in SECRET_KEY:
        # Name the offending type only when it looks like one: a misplaced secret must never reach a message.
        shown = (
            json.dumps(kind) if isinstance(kind, str) and _TYPE_NAME.fullmatch(kind) else type(kind).__name__
        )
        raise ValueError(f"{_at(path, 'type')}: expected one of api_key, token, oauth, got {shown}")
    secret_key = SECRET_KEY[kind]
    if secret_key not in raw:
        raise ValueError(f"{_at(path, secret_key)}: missing (a {kind} credential needs it)")
    # Fields that belong to another type (an api_key with "expires") stay in extra, untouched.
    own = {"type", "provider", secret_key, "email"} | ({"expires"} if kind != "api_key" else set())
    own |= {"refresh"} if kind == "oauth" else set()
    return Credential(
        type=cast(CredentialType, kind),
        # Provider ids are case-insensitive (docs/failover.md §3): a hand-written "MyProxy" is the ref's "myproxy".
        provider=_str(raw.get("provider"), _at(path, "provider")).strip().lower(),
        secret=_str(raw[secret_key], _at(path, secret_key)),
        email=_opt_str(raw.get("email"), _at(path, "email")),
        expires=_opt_int(raw.get("expires"), _at(path, "expires")) if "expires" in own else None,
        refresh=_opt_str(raw.get("refresh"), _at(path, "refresh")) if kind == "oauth" else None,
        extra={k: v for k, v in raw.items() if k not in own},
    )


def encode_credential(cred: Credential) -> dict[str, Any]:
    out: dict[str, Any] = {"type": cred.type, "provider": cred.provider, SECRET_KEY[cred.type]: cred.secret}
    if cred.type == "oauth" and cred.refresh is not None:
        out["refresh"] = cred.refresh
    if cred.type != "api_key" and cred.expires is not None:
        out["expires"] = cred.expires
    if cred.email is not None:
        out["email"] = cred.email
    out.update((k, v) for k, v in cred.extra.items() if k not in out)
    return out


def decode_stats(data: object, path: str = "") -> UsageStats:
    raw = _object(data, path)
    times = {field: _opt_int(raw.get(key), _at(path, key)) for key, field in _STATS_KEYS.items()}
    counts_path = _at(path, "failureCounts")
    counts: dict[str, int] = {}
    raw_counts = raw.get("failureCounts")
    for reason, n in ({} if raw_counts is None else _object(raw_counts, counts_path)).items():
        value = _opt_int(n, _at(counts_path, reason))
        if value:
            counts[reason] = value
    models_path = _at(path, "models")
    raw_models = raw.get("models")
    models = {
        model: decode_model_stats(pair, _at(models_path, model))
        for model, pair in ({} if raw_models is None else _object(raw_models, models_path)).items()
    }
    known = {*_STATS_KEYS, "disabledReason", "errorCount", "failureCounts", "models"}
    return UsageStats(
        last_used=times["last_used"],
        cooldown_until=times["cooldown_until"],
        disabled_until=times["disabled_until"],
        disabled_reason=_opt_str(raw.get("disabledReason"), _at(path, "disabledReason")),
        error_count=_opt_int(raw.get("errorCount"), _at(path, "errorCount")) or 0,
        failure_counts=counts,
        last_failure_at=times["last_failure_at"],
        models=models,
        extra={k: v for k, v in raw.items() if k not in known},
    )


def decode_model_stats(data: object, path: str = "") -> ModelStats:
    """One pair's ``{cooldownUntil, errorCount, lastFailureAt}``; unknown keys kept."""
    raw = _object(data, path)
    times = {field: _opt_int(raw.get(key), _at(path, key)) for key, field in _PAIR_KEYS.items()}
    return ModelStats(
        cooldown_until=times["cooldown_until"],
        error_count=_opt_int(raw.get("errorCount"), _at(path, "errorCount")) or 0,
        last_failure_at=times["last_failure_at"],
        extra={k: v for k, v in raw.items() if k not in {*_PAIR_KEYS, "errorCount"}},
    )


def encode_model_stats(pair: ModelStats) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if pair.cooldown_until is not None:
        out["cooldownUntil"] = pair.cooldown_until
    if pair.error_count:
        out["errorCount"] = pair.error_count
    if pair.last_failure_at is not None:
        out["lastFailureAt"] = pair.last_failure_at
    out.update((k, v) for k, v in pair.extra.items() if k not in out)
    return out


def encode_stats(stats: UsageStats) -> dict[str, Any]:
    """Zero counters and absent times are left out, as the reference writes them."""
    out: dict[str, Any] = {}
    for key, field in _STATS_KEYS.items():
        if key == "lastFailureAt":
            continue  # written after the counters, where the reference keeps it
        value = getattr(stats, field)
        if value is not None:
            out[key] = value
    if stats.disabled_reason is not None:
        out["disabledReason"] = stats.disabled_reason
    if stats.error_count:
        out["errorCount"] = stats.error_count
    if stats.failure_counts:
        out["failureCounts"] = dict(stats.failure_counts)
    if stats.last_failure_at is not None:
        out["lastFailureAt"] = stats.last_failure_at
    models = {model: encode_model_stats(pair) for model, pair in stats.models.items()}
    if models := {model: pair for model, pair in models.items() if pair}:  # a cleared pair says nothing
        out["models"] = models
    out.update((k, v) for k, v in stats.extra.items() if k not in out)
    return out


def decode(data: object) -> AuthProfiles:
    """The typed store; ``ValueError`` names the exact place of anything malformed."""
    raw = _object(data, "")
    version = _opt_int(raw.get("version"), "version")
    profiles = {
        pid: decode_credential(cred, _at("profiles", pid)) for pid, cred in _section(raw, "profiles").items()
    }
    order: dict[str, list[str]] = {}
    for provider, ids in _section(raw, "order").items():
        if not isinstance(ids, list):
            raise ValueError(f"{_at('order', provider)}: expected a list of profile ids")
        order[provider.strip().lower()] = [
            _str(pid, f"{_at('order', provider)}[{i}]") for i, pid in enumerate(ids)
        ]
    last_good = {
        provider.strip().lower(): _str(pid, _at("lastGood", provider))
        for provider, pid in _section(raw, "lastGood").items()
    }
    usage = {
        pid: decode_stats(stats, _at("usageStats", pid)) for pid, stats in _section(raw, "usageStats").items()
    }
    return AuthProfiles(
        profiles=profiles,
        order=order,
        last_good=last_good,
        usage_stats=usage,
        version=1 if version is None else version,
        extra={k: v for k, v in raw.items() if k not in _TOP_KEYS},
    )


def encode(doc: AuthProfiles) -> dict[str, Any]:
    out: dict[str, Any] = {
        "version": doc.version,
        "profiles": {pid: encode_credential(cred) for pid, cred in doc.profiles.items()},
    }
    if doc.order:
        out["order"] = {provider: list(ids) for provider, ids in doc.order.items()}
    if doc.last_good:
        out["lastGood"] = dict(doc.last_good)
    stats = {pid: encode_stats(s) for pid, s in doc.usage_stats.items()}
    if stats := {pid: s for pid, s in stats.items() if s}:  # an all-default entry says nothing
        out["usageStats"] = stats
    out.update((k, v) for k, v in doc.extra.items() if k not in out)
    return out


def dumps(doc: AuthProfiles) -> str:
    return json.dumps(encode(doc), indent=2, ensure_ascii=False) + "\n"


def legacy_api_keys(data: object, path: str = "auth.json") -> dict[str, Credential]:
    """The flat legacy ``{provider: key}`` (or ``{provider: {key}}``) as ``provider:default`` profiles."""
    out: dict[str, Credential] = {}
    for provider, value in _object(data, path).items():
        entry = _object(value, _at(path, provider)) if isinstance(value, dict) else {"key": value}
        key = entry.get("key", entry.get("apiKey"))
        name = provider.strip().lower()
        if isinstance(key, str) and key.strip() and name:
            out[f"{name}:default"] = Credential(type="api_key", provider=name, secret=key.strip())
    return out


def legacy_oauth(
    data: object, taken: Mapping[str, object], path: str = "oauth.json"
) -> dict[str, Credential]:
    """Legacy ``credentials/oauth.json``: ``{provider: {access, refresh, expires, email?}}`` or a list."""
    entries: list[tuple[str | None, object, str]]
    if isinstance(data, list):
        entries = [(None, item, f"{path}[{i}]") for i, item in enumerate(data)]
    else:
        entries = [(p, item, _at(path, p)) for p, item in _object(data, path).items()]
    out: dict[str, Credential] = {}
    for provider, item, where in entries:
        raw = dict(_object(item, where))
        name = _str(raw.pop("provider", provider), _at(where, "provider")).strip().lower()
        raw.pop("type", None)
        cred = decode_credential({"type": "oauth", "provider": name, **raw}, where)
        pid = f"{name}:{cred.email}" if cred.email else f"{name}:default"
        if pid in taken or pid in out:  # an imported api key already holds provider:default
            pid = f"{name}:oauth"
        out[pid] = cred
    return out
