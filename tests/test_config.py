"""The config loader: paths, JSON5, env refs, legacy keys, secrets, validation messages and defaults."""

from __future__ import annotations

import re
import types
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

import pytest
from pydantic import BaseModel

from adapters.discord.settings import DiscordChannel
from adapters.telegram.settings import TelegramChannel
from bot.channels import CONSOLE
from bot.config import defaults
from bot.config.defaults import builtin_default, with_default_model
from bot.config.key_paths import format_key_path
from bot.config.loader import LoadedConfig, load_config, migrate_legacy
from bot.config.paths import auth_profiles_path, config_path, default_database_url, state_dir
from bot.config.schema import Config, config_model
from bot.errors import ConfigError
from cli.channels import BUILTIN_CHANNELS as CHANNELS

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.json5"
EXAMPLE_ENV = {"TELEGRAM_BOT_TOKEN": "123:abc", "DISCORD_BOT_TOKEN": "d1", "TOGETHER_API_KEY": "t1"}


def _load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> LoadedConfig:
    path = tmp_path / "config.json5"
    path.write_text(text, encoding="utf-8")
    return load_config(path, env=env or {}, must_exist=True, channels=CHANNELS)


def _error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, text, env)
    assert info.value.file == str(tmp_path / "config.json5")
    assert str(info.value).startswith(str(tmp_path / "config.json5"))
    return info.value


# --- paths -------------------------------------------------------------------------------------------


def test_state_dir_from_env_else_home() -> None:
    """MODELBOT_STATE_DIR wins; without it the state dir is ~/.modelbot."""
    assert state_dir({"MODELBOT_STATE_DIR": "/srv/bot", "HOME": "/home/a"}) == Path("/srv/bot")
    assert state_dir({"HOME": "/home/a"}) == Path("/home/a/.modelbot")
    assert state_dir({"MODELBOT_STATE_DIR": "", "HOME": "/home/a"}) == Path("/home/a/.modelbot")


def test_state_dir_reads_os_environ_when_env_is_none(tmp_path: Path) -> None:
    """With no mapping given, the process environment (set by the autouse fixture) is used."""
    assert state_dir() == tmp_path / "state"


@pytest.mark.parametrize(
    ("cli", "env", "expected"),
    [
        ("/cli.json5", {"MODELBOT_CONFIG": "/env.json5", "MODELBOT_STATE_DIR": "/s"}, "/cli.json5"),
        (None, {"MODELBOT_CONFIG": "/env.json5", "MODELBOT_STATE_DIR": "/s"}, "/env.json5"),
        (None, {"MODELBOT_STATE_DIR": "/s"}, "/s/config.json5"),
        ("", {"MODELBOT_STATE_DIR": "/s"}, "/s/config.json5"),
    ],
)
def test_config_path_precedence(cli: str | None, env: dict[str, str], expected: str) -> None:
    """--config beats MODELBOT_CONFIG, which beats $MODELBOT_STATE_DIR/config.json5."""
    assert config_path(cli, env) == Path(expected)


def test_auth_profiles_and_database_paths() -> None:
    """Auth profiles live per agent; the database URL is an absolute SQLite URL in the state dir."""
    assert auth_profiles_path(Path("/s")) == Path("/s/agents/main/agent/auth-profiles.json")
    assert auth_profiles_path(Path("/s"), "coder") == Path("/s/agents/coder/agent/auth-profiles.json")
    assert default_database_url(Path("/s")) == "sqlite+aiosqlite:////s/modelbot.sqlite"


@pytest.mark.parametrize("agent_id", ["../etc", "a/b", "", ".hidden"])
def test_auth_profiles_path_rejects_path_like_agent_ids(agent_id: str) -> None:
    """An agent id becomes a folder name, so anything path-like is refused."""
    with pytest.raises(ValueError, match="letters, digits"):
        auth_profiles_path(Path("/s"), agent_id)


# --- files and JSON5 ----------------------------------------------------------------------------------


def test_no_path_or_missing_file_gives_the_builtin_default(tmp_path: Path) -> None:
    """No file is not an error unless the caller insists; the default has no path."""
    for loaded in (
        load_config(None, env={}, channels=CHANNELS),
        load_config(tmp_path / "nope.json5", env={}, channels=CHANNELS),
    ):
        assert loaded.path is None
        assert loaded.config.agents.defaults.model.primary == "demo/echo"
        assert loaded.warnings == ()


def test_missing_file_is_an_error_when_it_must_exist(tmp_path: Path) -> None:
    """--config pointing nowhere names the file."""
    with pytest.raises(ConfigError, match="file not found") as info:
        load_config(tmp_path / "nope.json5", env={}, must_exist=True, channels=CHANNELS)
    assert info.value.file == str(tmp_path / "nope.json5")


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    """A directory or non-UTF-8 bytes end as ConfigError, not a traceback."""
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path, env={}, must_exist=True, channels=CHANNELS)
    bad = tmp_path / "bad.json5"
    bad.write_bytes(b"{a: '\xff'}")
    with pytest.raises(ConfigError, match="UTF-8"):
        load_config(bad, env={}, channels=CHANNELS)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{\n  agents: {\n    defaults: { model: 'a/b' ]\n  }\n}", "invalid JSON5 at line 3 column"),
        ('{ logging: { level: "INFO" }', "invalid JSON5 at line 1 column"),
        ("{ logging: {}, logging: {} }", 'Duplicate key "logging"'),
        ("[1, 2]", "expected an object { … } at the top level"),
    ],
)
def test_json5_syntax_errors(tmp_path: Path, text: str, expected: str) -> None:
    """Syntax errors give the line and column; duplicates and non-objects are refused."""
    error = _error(tmp_path, text)
    assert error.key_path == ""
    assert expected in error.expected


def test_json5_position_is_exact(tmp_path: Path) -> None:
    """The reported position is where the parser stopped."""
    error = _error(tmp_path, "{\n  a: 1\n  b: 2\n}")
    assert error.expected.startswith("invalid JSON5 at line 3 column 3:")


def test_json5_features_and_empty_file(tmp_path: Path) -> None:
    """Comments, trailing commas and unquoted keys parse; an empty file is an empty config."""
    loaded = _load(tmp_path, "// hi\n{ logging: { level: 'DEBUG', }, /* x */ }")
    assert loaded.config.logging.level == "DEBUG"
    assert _load(tmp_path, "  \n").config.session.scope == "chat"


# --- validation messages ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key_path", "expected"),
    [
        ("{agents: {defaults: {model: {fallbacks: ['a/b', 3]}}}}", "agents.defaults.model.fallbacks[1]", "expected a string"),
        ("{agents: {defaults: {model: {primry: 'a/b'}}}}", "agents.defaults.model.primry", "unknown key `primry` (did you mean `primary`?)"),
        ("{agnets: {}}", "agnets", "unknown key `agnets` (did you mean `agents`?)"),
        ("{models: {providers: {x: {api: 'grpc'}}}}", "models.providers.x.api", "expected one of: openai-completions, anthropic-messages, demo"),
        ("{models: {providers: {x: {models: [{id: 'm', input: ['audio']}]}}}}", "models.providers.x.models[0].input[0]", "expected one of: text, image"),
        ("{agents: {defaults: {timeoutSeconds: 'soon'}}}", "agents.defaults.timeoutSeconds", "expected a number"),
        ("{agents: {defaults: {timeoutSeconds: 0}}}", "agents.defaults.timeoutSeconds", "expected a number greater than 0"),
        ("{agents: {defaults: {maxAnswerSeconds: 'long'}}}", "agents.defaults.maxAnswerSeconds", "expected a number"),
        ("{agents: {defaults: {maxAnswerSeconds: -1}}}", "agents.defaults.maxAnswerSeconds", "expected a number greater than 0"),
        ("{agents: {defaults: {maxAnswerSeconds: 90000}}}", "agents.defaults.maxAnswerSeconds", "expected a number at most 86400"),
        ("{agents: {defaults: {timeoutSeconds: 300, maxAnswerSeconds: 200}}}", "agents.defaults", "maxAnswerSeconds (200) must be at least timeoutSeconds (300)"),
        ("{metrics: {port: 70000}}", "metrics.port", "expected a number less than 65536"),
        ("{agents: {defaults: {compactionThreshold: 2}}}", "agents.defaults.compactionThreshold", "expected a number at most 1"),
        ("{metrics: {enabled: 'maybe'}}", "metrics.enabled", "expected true or false"),
        ("{agents: {defaults: {model: 5}}}", "agents.defaults.model", 'expected a model "provider/model" or an object'),
        ("{logging: null}", "logging", "expected an object { … }"),
        ("{agents: {list: 'main'}}", "agents.list", "expected a list [ … ]"),
        ("{auth: {profiles: {'openai:x': {}}}}", 'auth.profiles["openai:x"].provider', "missing required key `provider`"),
        ("{agents: {list: [{id: 'a b'}]}}", "agents.list[0].id", "expected letters, digits, '-' or '_'"),
        ("{agents: {list: [{id: ''}]}}", "agents.list[0].id", "expected a non-empty string"),
        ("{agents: {list: [{id: 'a'}, {id: 'a'}]}}", "agents", "agent ids must be unique, repeated: a"),
        ("{channels: {telegram: {enabled: true}}}", "channels.telegram", "botToken is required"),
        ("{bindings: [{agentId: 'main', match: {channel: 'irc'}}]}", "bindings[0].match.channel", "expected one of: telegram, discord, console"),
        ("{agents: {defaults: {models: {'a/b': {alias: 3}}}}}", 'agents.defaults.models["a/b"].alias', "expected a string"),
        ("{auth: {cooldowns: {backoffMinutes: [5, 1]}}}", "auth.cooldowns.backoffMinutes", "expected steps that never decrease, got 5 then 1"),
        ("{auth: {cooldowns: {backoffMinutes: [1, 0]}}}", "auth.cooldowns.backoffMinutes", "expected minutes above 0 and at most 1440 (24 h), got 0"),
        ("{auth: {cooldowns: {backoffMinutes: [1, 1441]}}}", "auth.cooldowns.backoffMinutes", "expected minutes above 0 and at most 1440 (24 h), got 1441"),
        ("{auth: {cooldowns: {backoffMinutes: []}}}", "auth.cooldowns.backoffMinutes", "expected at least one step in minutes"),
        ("{auth: {cooldowns: {backoffMinutes: [1, '5']}}}", "auth.cooldowns.backoffMinutes[1]", "expected a number"),
        ("{auth: {cooldowns: {backoffMinutes: 5}}}", "auth.cooldowns.backoffMinutes", "expected a list [ … ]"),
        ("{auth: {cooldowns: {scope: 'key'}}}", "auth.cooldowns.scope", "expected one of: model, profile"),
        ("{auth: {waitSeconds: -1}}", "auth.waitSeconds", "expected a number at least 0"),
        ("{auth: {waitSeconds: 601}}", "auth.waitSeconds", "expected a number at most 600"),
        ("{session: {leaseSeconds: 1}}", "session.leaseSeconds", "expected a number at least 3"),
        ("{auth: {store: 'redis'}}", "auth.store", "expected one of: file, database"),
        ("{channels: {discord: {shardIds: [0]}}}", "channels.discord", "shardIds needs shardCount"),
        ("{channels: {discord: {shardCount: 2, shardIds: [2]}}}", "channels.discord", "expected shardIds between 0 and 1"),
        ("{channels: {discord: {shardCount: 2, shardIds: [1, 1]}}}", "channels.discord", "expected shardIds as a non-empty list"),
        ("{channels: {discord: {shardCount: 2, shardIds: [-1]}}}", "channels.discord.shardIds[0]", "expected a number at least 0"),
    ],
)  # fmt: skip
def test_validation_errors_name_key_path_and_expectation(
    tmp_path: Path, text: str, key_path: str, expected: str
) -> None:
    """Each schema violation names the file, the camelCase key path and what was expected."""
    error = _error(tmp_path, text)
    assert error.key_path == key_path
    assert error.expected.startswith(expected)
    assert "more problem" not in error.expected


def test_several_validation_errors_report_the_first_and_a_count(tmp_path: Path) -> None:
    """Only the first problem is spelled out; the rest are counted."""
    error = _error(tmp_path, "{metrics: {enabled: 'x', port: 0, host: 1}}")
    assert error.key_path == "metrics.enabled"
    assert error.expected == "expected true or false (and 2 more problems)"


def test_unknown_key_without_close_match_lists_the_allowed_keys(tmp_path: Path) -> None:
    """When nothing is close, the message says which keys are allowed there."""
    error = _error(tmp_path, "{metrics: {zzz: 1}}")
    assert error.expected == "unknown key `zzz` (allowed here: enabled, host, port)"


def test_format_key_path_quotes_odd_keys() -> None:
    """Dots and slashes in keys are quoted so the path stays unambiguous."""
    assert format_key_path(("agents", "list", 0, "id")) == "agents.list[0].id"
    assert format_key_path(("models", "providers", "my-llm", "apiKey")) == "models.providers.my-llm.apiKey"
    assert format_key_path(("m", "a/b.c", "x")) == 'm["a/b.c"].x'


# --- env substitution ---------------------------------------------------------------------------------


def test_env_substitution_whole_embedded_and_escaped(tmp_path: Path) -> None:
    """${X} is replaced anywhere in a string; $${X} stays a literal ${X}; refs are remembered."""
    text = """{
      agents: { defaults: {
        model: { primary: "${PRIMARY}", fallbacks: ["openai/${OPENAI_MODEL}"] },
        systemPrompt: "Use $${NAME} literally, greet ${WHO}.",
      } },
      metrics: { port: 9464 },
    }"""
    env = {"PRIMARY": "anthropic/claude-sonnet-4-5", "OPENAI_MODEL": "gpt-5.2", "WHO": "Ann", "NAME": "no"}
    loaded = _load(tmp_path, text, env)
    chain = loaded.config.agents.defaults.model
    assert chain.primary == "anthropic/claude-sonnet-4-5"
    assert chain.fallbacks == ("openai/gpt-5.2",)
    assert loaded.config.agents.defaults.system_prompt == "Use ${NAME} literally, greet Ann."
    assert loaded.raw["agents"]["defaults"]["model"]["primary"] == "anthropic/claude-sonnet-4-5"
    assert loaded.env_refs == {
        ("agents", "defaults", "model", "primary"): "${PRIMARY}",
        ("agents", "defaults", "model", "fallbacks", 0): "openai/${OPENAI_MODEL}",
        ("agents", "defaults", "systemPrompt"): "Use $${NAME} literally, greet ${WHO}.",
    }


def test_missing_env_variable_names_key_path_and_variable(tmp_path: Path) -> None:
    """An unset variable is an error at the key that uses it."""
    error = _error(tmp_path, '{channels: {discord: {enabled: true, token: "${DISCORD_BOT_TOKEN}"}}}')
    assert error.key_path == "channels.discord.token"
    assert error.expected == "environment variable `DISCORD_BOT_TOKEN` is not set"


def test_escaped_reference_needs_no_variable(tmp_path: Path) -> None:
    """$${X} is never looked up, so an unset X is fine."""
    loaded = _load(tmp_path, '{agents: {defaults: {systemPrompt: "$${UNSET}"}}}')
    assert loaded.config.agents.defaults.system_prompt == "${UNSET}"


# --- legacy keys --------------------------------------------------------------------------------------


def test_legacy_agent_key_maps_to_agents_defaults_with_a_warning(tmp_path: Path) -> None:
    """The seed's own `agent:` example loads, as agents.defaults, and asks for a migration."""
    text = """{
      agent: {
        model: { primary: "${PRIMARY}" },
        models: { "anthropic/claude-sonnet-4-5": { alias: "Sonnet" }, "anthropic/claude-opus-4-5": { alias: "Opus" } },
      },
      agents: { list: [{ id: "main" }] },
    }"""
    loaded = _load(tmp_path, text, {"PRIMARY": "anthropic/claude-sonnet-4-5"})
    assert loaded.config.agents.defaults.model.primary == "anthropic/claude-sonnet-4-5"
    assert loaded.config.agents.list[0].id == "main"
    assert "agent" not in loaded.raw
    assert loaded.raw["agents"]["defaults"]["models"]["anthropic/claude-opus-4-5"] == {"alias": "Opus"}
    assert loaded.env_refs == {("agents", "defaults", "model", "primary"): "${PRIMARY}"}
    assert len(loaded.warnings) == 1
    assert "legacy key `agent`" in loaded.warnings[0]
    assert "modelbot config migrate" in loaded.warnings[0]


def test_legacy_and_new_key_together_is_an_error(tmp_path: Path) -> None:
    """`agent` and `agents.defaults` at once would be ambiguous."""
    error = _error(tmp_path, "{agent: {}, agents: {defaults: {}}}")
    assert error.key_path == "agent"
    assert "both" in error.expected


def test_errors_under_legacy_key_use_the_files_spelling(tmp_path: Path) -> None:
    """A mistake inside `agent:` is reported at `agent.…`, where the user will look for it."""
    error = _error(tmp_path, "{agent: {model: {fallbacks: [1]}}}")
    assert error.key_path == "agent.model.fallbacks[0]"


def test_migrate_legacy_is_pure() -> None:
    """The input dict is left as it was; a config without legacy keys passes through."""
    raw: dict[str, Any] = {"agent": {"timeoutSeconds": 5}, "logging": {}}
    migrated, warnings = migrate_legacy(raw)
    assert raw == {"agent": {"timeoutSeconds": 5}, "logging": {}}
    assert migrated == {"logging": {}, "agents": {"defaults": {"timeoutSeconds": 5}}}
    assert len(warnings) == 1
    assert migrate_legacy({"logging": {}}) == ({"logging": {}}, [])


# --- secrets ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key_path"),
    [
        ('{channels: {telegram: {botToken: "123456:AAHsecretsecret"}}}', "channels.telegram.botToken"),
        ('{channels: {telegram: {botToken: "${TG}\\n"}}}', "channels.telegram.botToken"),
        ('{channels: {telegram: {webhook: {url: "https://x", secretToken: "s3cr3t-value"}}}}', "channels.telegram.webhook.secretToken"),
        ('{channels: {discord: {token: "MTIzNDU2.secretsecret"}}}', "channels.discord.token"),
        ('{models: {providers: {openai: {apiKey: "sk-secretsecret"}}}}', "models.providers.openai.apiKey"),
        ('{models: {providers: {openai: {apiKey: "sk-${KEY}"}}}}', "models.providers.openai.apiKey"),
        ('{models: {providers: {x: {headers: {Authorization: "Bearer secretsecret"}}}}}', "models.providers.x.headers.Authorization"),
        ('{models: {providers: {x: {headers: {"x-api-key": "secretsecret"}}}}}', "models.providers.x.headers.x-api-key"),
        ('{models: {providers: {x: {headers: {"X-Custom": "sk-secretsecret"}}}}}', "models.providers.x.headers.X-Custom"),
        ('{storage: {url: "postgresql+asyncpg://bot:secretsecret@db/modelbot"}}', "storage.url"),
    ],
)  # fmt: skip
def test_literal_secrets_are_rejected_without_echoing_them(tmp_path: Path, text: str, key_path: str) -> None:
    """A secret written into the file is refused, with advice to use ${ENV_VAR}, and never repeated."""
    error = _error(tmp_path, text, {"KEY": "x"})
    assert error.key_path == key_path
    assert "${" in error.expected
    assert "secretsecret" not in str(error)
    assert "s3cr3t" not in str(error)


def test_secrets_through_env_references_are_accepted(tmp_path: Path) -> None:
    """Env references (whole value, or inside an auth header / database URL) load."""
    text = """{
      channels: { telegram: { botToken: "${TG}" }, discord: { token: "${DC}" } },
      models: { providers: { x: { baseUrl: "http://127.0.0.1:1/v1", api: "openai-completions", apiKey: "${XK}",
        headers: { Authorization: "Bearer ${XK}", "X-Title": "modelbot" } } } },
      storage: { url: "postgresql+asyncpg://bot:${PGPASSWORD}@db/modelbot" },
    }"""
    env = {"TG": "1:a", "DC": "d", "XK": "k", "PGPASSWORD": "p"}
    loaded = _load(tmp_path, text, env)
    assert loaded.config.channels.telegram.bot_token == "1:a"
    assert loaded.config.models.providers["x"].headers["Authorization"] == "Bearer k"
    assert loaded.config.storage.url == "postgresql+asyncpg://bot:p@db/modelbot"
    assert _load(tmp_path, '{channels: {discord: {token: ""}}}').config.channels.discord.token == ""


# --- semantic checks ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key_path", "expected"),
    [
        ("{agents: {defaults: {model: {primary: 'claude'}}}}", "agents.defaults.model.primary", "expected a model as provider/model"),
        ("{agents: {defaults: {model: 'claude'}}}", "agents.defaults.model", "expected a model as provider/model"),
        ("{agents: {defaults: {model: {primary: 'a/b', fallbacks: ['x/y@openai:work']}}}}", "agents.defaults.model.fallbacks[0]", "must not name a profile"),
        ("{agents: {defaults: {imageModel: {fallbacks: ['/y']}}}}", "agents.defaults.imageModel.fallbacks[0]", "expected a model"),
        ("{agents: {list: [{id: 'a', model: 'nope'}]}}", "agents.list[0].model", "expected a model"),
        ("{agents: {defaults: {models: {'gpt': {}}}}}", "agents.defaults.models.gpt", "expected a model"),
        ("{agents: {defaults: {models: {'a/b': {alias: 'X'}, 'a/c': {alias: 'x'}}}}}", 'agents.defaults.models["a/c"].alias', "alias `x` is already used for a/b"),
        ("{agents: {defaults: {models: {'a/b': {alias: 'my/alias'}}}}}", 'agents.defaults.models["a/b"].alias', "expected an alias of one word"),
        ("{agents: {list: [{id: 'main'}]}, bindings: [{agentId: 'coder'}]}", "bindings[0].agentId", "unknown agent `coder`; known agents: main"),
        ("{bindings: [{agentId: 'coder'}]}", "bindings[0].agentId", "unknown agent `coder`; known agents: main"),
    ],
)  # fmt: skip
def test_semantic_errors(tmp_path: Path, text: str, key_path: str, expected: str) -> None:
    """Refs, aliases and bindings that cannot work are errors naming where they are."""
    error = _error(tmp_path, text)
    assert error.key_path == key_path
    assert expected in error.expected


def test_refs_outside_the_allowlist_are_warned_about_never_dropped(tmp_path: Path) -> None:
    """Each chain ref missing from agents.defaults.models gets a warning naming the ref and key path."""
    text = """{
      agents: {
        defaults: {
          model: { primary: "anthropic/claude-sonnet-4-5", fallbacks: ["OpenAI/gpt-5.2", "openai/gpt-4o"] },
          models: { "anthropic/claude-sonnet-4-5": {}, "openai/gpt-5.2": {} },
          imageModel: { primary: "google/gemini-2.5-flash", fallbacks: ["openai/gpt-5.2"] },
        },
        list: [{ id: "a", model: { primary: "xai/grok-4", fallbacks: ["anthropic/claude-sonnet-4-5"] } }],
      },
    }"""
    loaded = _load(tmp_path, text)
    assert loaded.config.agents.defaults.model.fallbacks == ("OpenAI/gpt-5.2", "openai/gpt-4o")
    assert len(loaded.warnings) == 3
    expected = [
        ("agents.defaults.model.fallbacks[1]", "openai/gpt-4o"),
        ("agents.defaults.imageModel.primary", "google/gemini-2.5-flash"),
        ("agents.list[0].model.primary", "xai/grok-4"),
    ]
    for warning, (key_path, ref) in zip(loaded.warnings, expected, strict=True):
        assert warning.startswith(f"{key_path}: `{ref}` is not in the allowlist")


def test_without_an_allowlist_nothing_is_warned(tmp_path: Path) -> None:
    """No agents.defaults.models means every model is allowed."""
    loaded = _load(tmp_path, "{agents: {defaults: {model: {primary: 'a/b', fallbacks: ['c/d']}}}}")
    assert loaded.warnings == ()


def test_auth_ids_of_another_provider_are_warned_about(tmp_path: Path) -> None:
    """auth.order and auth.profiles ids must start with their provider; otherwise a warning."""
    text = """{auth: {
      order: { anthropic: ["anthropic:work", "openai:default", "nocolon"] },
      profiles: { "openai:x": { provider: "anthropic" }, "Anthropic:y": { provider: "anthropic" } },
    }}"""
    warnings = _load(tmp_path, text).warnings
    assert len(warnings) == 3
    assert warnings[0].startswith("auth.order.anthropic[1]: profile `openai:default`")
    assert warnings[1].startswith("auth.order.anthropic[2]: profile `nocolon`")
    assert warnings[2].startswith('auth.profiles["openai:x"]: the id does not start')


# --- the example config -------------------------------------------------------------------------------


def test_answer_bounds_reach_every_endpoint(tmp_path: Path) -> None:
    """timeoutSeconds and maxAnswerSeconds (default 600) reach the endpoint the engine and the SDKs use."""
    from bot.providers.registry import endpoint_for  # noqa: PLC0415

    config = _load(tmp_path, "{}").config
    assert config.agents.defaults.max_answer_seconds == 600
    assert (endpoint_for("openai", config).timeout_s, endpoint_for("openai", config).max_answer_s) == (
        120,
        600,
    )
    config = _load(tmp_path, "{agents: {defaults: {timeoutSeconds: 30, maxAnswerSeconds: 90}}}").config
    endpoint = endpoint_for("anthropic", config)
    assert (endpoint.timeout_s, endpoint.max_answer_s) == (30, 90)


def test_example_config_loads_without_warnings() -> None:
    """config.example.json5 is valid, complete documentation: it loads cleanly with its env vars set."""
    loaded = load_config(EXAMPLE, env=EXAMPLE_ENV, must_exist=True, channels=CHANNELS)
    assert loaded.warnings == ()
    config = loaded.config
    assert config.agents.defaults.model.primary == "anthropic/claude-sonnet-4-5"
    assert [agent.id for agent in config.agents.list] == ["main", "coder"]
    assert config.channels.telegram.bot_token == "123:abc"
    assert not config.channels.telegram.enabled
    assert not config.channels.discord.enabled
    assert config.models.providers["together"].api == "openai-completions"


def _schema_keys(model: type[BaseModel]) -> set[str]:
    keys: set[str] = set()
    for name, info in model.model_fields.items():
        keys.add(info.alias or name)
        pending: list[Any] = [info.annotation]
        while pending:
            annotation = pending.pop()
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                keys |= _schema_keys(annotation)
            elif get_origin(annotation) in (Annotated, Union, types.UnionType, tuple, dict, list):
                pending.extend(get_args(annotation))
    return keys


def test_example_config_documents_every_schema_key() -> None:
    """Each camelCase key of the schema occurs in the example, so a new key must be documented."""
    text = EXAMPLE.read_text(encoding="utf-8")
    keys = _schema_keys(
        config_model(CHANNELS.sections, (CONSOLE,))
    )  # the schema with this modelbot's channels
    assert {"agentId", "billingBackoffHoursByProvider", "secretToken", "shardCount"} <= keys
    missing = sorted(key for key in keys if not re.search(rf'(?<![\w-])"?{re.escape(key)}"?\s*:', text))
    assert missing == []


def test_example_config_needs_its_env_vars() -> None:
    """The example's tokens are env references: without the variables it says which one is missing."""
    with pytest.raises(ConfigError) as info:
        load_config(EXAMPLE, env={}, must_exist=True, channels=CHANNELS)
    assert info.value.key_path == "models.providers.together.apiKey"
    assert info.value.expected == "environment variable `TOGETHER_API_KEY` is not set"


# --- built-in default ---------------------------------------------------------------------------------


def test_builtin_default_without_keys_is_the_demo() -> None:
    """No provider keys: demo/echo with demo/story as fallback and demo/vision for images."""
    raw = builtin_default({})
    assert raw["agents"]["defaults"]["model"] == {"primary": "demo/echo", "fallbacks": ["demo/story"]}
    assert raw["agents"]["defaults"]["imageModel"] == {"primary": "demo/vision"}
    Config.model_validate(raw)


def test_builtin_default_uses_env_keys_in_preference_order() -> None:
    """The first key found is the primary, the others fallbacks, and demo/echo answers last."""
    env = {"GROQ_API_KEY": "g", "OPENAI_API_KEY": "o", "ANTHROPIC_API_KEY": " ", "XAI_API_KEY": "x"}
    model = builtin_default(env)["agents"]["defaults"]["model"]
    assert model == {
        "primary": "openai/gpt-5.2",
        "fallbacks": ["groq/llama-3.3-70b-versatile", "xai/grok-4", "demo/echo"],
    }
    assert "imageModel" not in builtin_default(env)["agents"]["defaults"]


def test_builtin_default_reads_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """load_config with no env mapping sees the process environment."""
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    loaded = load_config(None)
    assert loaded.config.agents.defaults.model.primary == "anthropic/claude-sonnet-5-5"
    assert loaded.config.agents.defaults.model.fallbacks == ("demo/echo",)


def test_every_env_provider_default_is_a_valid_ref() -> None:
    """Each env-derived default model parses as provider/model with the provider the key is for."""
    for variable, ref in defaults.ENV_PROVIDER_MODELS:
        model = builtin_default({variable: "k"})["agents"]["defaults"]["model"]
        assert model["primary"] == ref
        Config.model_validate(builtin_default({variable: "k"}))


def test_a_file_without_a_model_gets_the_builtin_chain(tmp_path: Path) -> None:
    """A config that only sets up a channel still answers, with the same chain as no file at all."""
    loaded = _load(tmp_path, "{logging: {level: 'DEBUG'}}", {"OPENAI_API_KEY": "o"})
    assert loaded.config.agents.defaults.model.primary == "openai/gpt-5.2"
    assert loaded.config.agents.defaults.model.fallbacks == ("demo/echo",)
    assert "agents" not in loaded.raw  # the file's own content, not the filled-in default


def test_default_model_fill_keeps_what_the_file_says() -> None:
    """Own fallbacks survive; agents that all name a primary need no default one."""
    kept = with_default_model({"agents": {"defaults": {"model": {"fallbacks": ["a/b"]}}}}, {})
    assert kept["agents"]["defaults"]["model"] == {"primary": "demo/echo", "fallbacks": ["a/b"]}
    assert "imageModel" not in kept["agents"]["defaults"]
    own = {"agents": {"list": [{"id": "a", "model": "x/y"}]}}
    assert with_default_model(own, {}) == own
    named = {"agents": {"defaults": {"model": "x/y"}}}
    assert with_default_model(named, {}) is named


def test_unset_variables_of_a_disabled_channel_read_as_empty(tmp_path: Path) -> None:
    """A disabled channel's unset ${VAR} does not stop the bot; an enabled one still needs it."""
    text = (
        '{channels: {telegram: {enabled: false, botToken: "${TELEGRAM_BOT_TOKEN}"},'
        ' discord: {enabled: false, token: "${DISCORD_BOT_TOKEN}"}}}'
    )
    loaded = _load(tmp_path, text)
    assert loaded.config.channels.telegram.bot_token == ""
    assert loaded.config.channels.discord.token == ""
    enabled = text.replace("telegram: {enabled: false", "telegram: {enabled: true")
    error = _error(tmp_path, enabled)
    assert error.key_path == "channels.telegram.botToken"
    assert "TELEGRAM_BOT_TOKEN" in str(error)
    elsewhere = _error(
        tmp_path, '{models: {providers: {x: {baseUrl: "${X_URL}", api: "openai-completions"}}}}'
    )
    assert "X_URL" in str(elsewhere)


def test_platform_ids_written_as_numbers_read_as_strings(tmp_path: Path) -> None:
    """Ids in allowFrom, admins and guildIds may be numbers in the file; the adapters compare strings."""
    channels = _load(
        tmp_path,
        "{ channels: { telegram: { allowFrom: [12345, '@alice'], admins: [7] },"
        " discord: { allowFrom: [11, 'role:21'], admins: [99], guildIds: [42] } } }",
    ).config.channels
    telegram, discord = channels.section("telegram"), channels.section("discord")
    assert isinstance(telegram, TelegramChannel)
    assert isinstance(discord, DiscordChannel)
    assert (telegram.allow_from, telegram.admins) == (("12345", "@alice"), ("7",))
    assert (discord.allow_from, discord.admins, discord.guild_ids) == (("11", "role:21"), ("99",), ("42",))
    unset = _load(tmp_path, "{ channels: { telegram: {} } }").config.channels.section("telegram")
    assert isinstance(unset, TelegramChannel)
    assert unset.allow_from is None  # everyone, unlike an empty list
