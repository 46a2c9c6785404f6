"""``modelbot models``: list, status (--json, --check, --probe) and the comment-preserving config edits."""

from __future__ import annotations

import asyncio
import difflib
import json
import re
import shutil
import time
from pathlib import Path

import json5
import pytest

from bot.auth import doc_edits
from bot.auth.cooldowns import CooldownPolicy
from bot.auth.store import AuthStore
from bot.auth.types import Credential
from bot.clock import HOUR_MS
from bot.config.paths import auth_profiles_path
from bot.failover.reasons import Reason
from cli.main import main
from tests.app_helpers import AUTH_STORES, auth_env
from tests.auth_stores import SyncAuth, auth_of
from tests.cli_helpers import EXAMPLE_CONFIG, run_cli, run_script, write_config
from tests.fakes.provider_server import FakeProviderServer, status

EXAMPLE = EXAMPLE_CONFIG.read_text(encoding="utf-8")
SECRET = "sk-live-" + "abcdefghijklmnopqrstuvwxyz0123"  # fake; split so secret scanners stay quiet
ROW_KEYS = {"model", "name", "input", "contextWindow", "local", "auth", "tags"}


def store(state_dir: Path, agent: str = "main") -> AuthStore:
    return AuthStore(auth_profiles_path(state_dir, agent))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """A copy of config.example.json5 to edit."""
    path = tmp_path / "config.json5"
    shutil.copy(EXAMPLE_CONFIG, path)
    return path


@pytest.fixture(params=AUTH_STORES)
def stored_example(
    request: pytest.FixtureRequest, tmp_path: Path, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, SyncAuth]:
    """config.example.json5 with ``auth.store`` set to each store, and that store of the state dir."""
    path = tmp_path / "config.json5"
    text = EXAMPLE.replace('store: "file",', f'store: "{request.param}",')
    assert text != EXAMPLE or request.param == "file"
    path.write_text(text, encoding="utf-8")
    for name, value in auth_env(request.param).items():
        monkeypatch.setenv(name, value)
    return path, auth_of(state_dir, request.param)


def diff(before: str, after: str) -> tuple[list[str], list[str]]:
    lines = list(difflib.ndiff(before.splitlines(), after.splitlines()))
    return [d[2:] for d in lines if d.startswith("- ")], [d[2:] for d in lines if d.startswith("+ ")]


# -- list ------------------------------------------------------------------------------------------------


def test_list_json_tags_the_builtin_default_chain(capsys: pytest.CaptureFixture[str]) -> None:
    """With no config the demo chain is listed in chain order, tagged default, fallback#1 and image."""
    result = run_cli(capsys, "models", "list", "--json")
    assert result.code == 0
    rows = json.loads(result.out)
    assert [(r["model"], r["tags"]) for r in rows] == [
        ("demo/echo", ["default"]),
        ("demo/story", ["fallback#1"]),
        ("demo/vision", ["image"]),
    ]
    assert all(set(r) == ROW_KEYS for r in rows)
    assert rows[2]["input"] == ["text", "image"]
    assert rows[0]["local"] is True
    assert rows[0]["auth"] == "built-in ×2"  # the demo's two profiles, no key (docs/commands.md §2.2)


def test_list_all_shows_the_whole_catalog_and_plain_prints_refs(capsys: pytest.CaptureFixture[str]) -> None:
    """``--all`` lists catalog models beyond the chain; ``--plain`` is one ref per line."""
    every = json.loads(run_cli(capsys, "models", "list", "--all", "--json").out)
    refs = [r["model"] for r in every]
    assert "anthropic/claude-sonnet-4-5" in refs
    assert len(refs) > 10
    assert refs == sorted(refs)
    plain = run_cli(capsys, "models", "list", "--plain").out
    assert plain.splitlines() == ["demo/echo", "demo/story", "demo/vision"]


def test_list_shows_auth_per_provider_and_configured_tags(
    capsys: pytest.CaptureFixture[str], stored_example: tuple[Path, SyncAuth]
) -> None:
    """The auth column names what a provider will use (a stored key: "api_key"); allowlist entries are
    "configured" with their alias."""
    example, auth = stored_example
    auth.update(doc_edits.with_profile("openai:default", Credential("api_key", "openai", SECRET)))
    rows = {
        r["model"]: r
        for r in json.loads(run_cli(capsys, "models", "list", "--json", "--config", str(example)).out)
    }
    assert rows["openai/gpt-5.2"]["auth"] == "api_key"
    assert rows["anthropic/claude-sonnet-4-5"]["auth"] == "missing"
    assert rows["anthropic/claude-sonnet-4-5"]["tags"] == ["default", "configured", "alias:sonnet"]
    assert rows["openai/gpt-5.2"]["tags"] == ["fallback#1", "image", "configured", "alias:gpt"]
    assert "configured" in rows["together/meta-llama/Llama-3.3-70B-Instruct-Turbo"]["tags"]
    table = run_cli(capsys, "models", "list", "--config", str(example)).out
    assert table.splitlines()[0].split() == ["model", "input", "context", "local", "auth", "tags"]
    assert "200k" in table


def test_list_marks_chain_models_outside_the_allowlist(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A fallback missing from the allowlist is tagged not-allowed (and warned about at load)."""
    config = write_config(
        tmp_path / "c.json5",
        '{ agents: { defaults: { model: { primary: "demo/echo", fallbacks: ["demo/story"] },'
        ' models: { "demo/echo": {} } } } }',
    )
    result = run_cli(capsys, "models", "list", "--json", "--config", config)
    rows = {r["model"]: r["tags"] for r in json.loads(result.out)}
    assert rows["demo/story"] == ["fallback#1", "not-allowed"]
    assert "not in the allowlist" in result.err


# -- status ----------------------------------------------------------------------------------------------


def test_status_json_shape_with_masked_secrets(
    capsys: pytest.CaptureFixture[str], stored_example: tuple[Path, SyncAuth]
) -> None:
    """Status shows the chain, aliases, allowlist and each provider's profiles masked; never a secret."""
    example, auth = stored_example
    auth.update(doc_edits.with_profile("openai:default", Credential("api_key", "openai", SECRET)))
    auth.record_failure(
        "openai:default", Reason.RATE_LIMIT, provider="openai", now_ms=now_ms(), policy=CooldownPolicy()
    )
    result = run_cli(capsys, "models", "status", "--json", "--config", str(example))
    assert result.code == 0
    assert SECRET not in result.out + result.err
    data = json.loads(result.out)
    assert data["default"] == "anthropic/claude-sonnet-4-5"
    assert data["fallbacks"] == ["openai/gpt-5.2", "openrouter/anthropic/claude-sonnet-4.5"]
    assert data["imageModel"] == "openai/gpt-5.2"
    assert data["imageFallbacks"] == ["openrouter/google/gemini-2.5-flash"]
    assert data["aliases"]["sonnet"] == "anthropic/claude-sonnet-4-5"
    assert "together/meta-llama/Llama-3.3-70B-Instruct-Turbo" in data["allowlist"]
    assert data["missingAuth"] == ["anthropic", "openrouter"]
    providers = {p["provider"]: p for p in data["providers"]}
    assert providers["anthropic"]["baseUrl"] == "https://api.anthropic.com"
    assert providers["anthropic"]["api"] == "anthropic-messages"
    (profile,) = providers["openai"]["profiles"]
    assert profile["id"] == "openai:default"
    assert profile["secret"] == "sk-liv…0123"
    assert profile["state"].startswith("cooldown ")
    assert profile["cooldownUntil"] > now_ms()


def test_bare_models_is_status(capsys: pytest.CaptureFixture[str], example: Path) -> None:
    """``modelbot models`` prints exactly what ``modelbot models status`` prints."""
    bare = run_cli(capsys, "models", "--config", str(example))
    status_ = run_cli(capsys, "models", "status", "--config", str(example))
    assert bare.code == status_.code == 0
    assert bare.out == status_.out
    assert "Default:     anthropic/claude-sonnet-4-5" in bare.out
    assert "Missing auth: anthropic, openai, openrouter" in bare.out


def test_options_before_the_subcommand_are_kept(capsys: pytest.CaptureFixture[str], example: Path) -> None:
    """``models --config X list`` uses X (a subcommand's defaults do not overwrite it)."""
    rows = json.loads(run_cli(capsys, "models", "--config", str(example), "list", "--json").out)
    assert rows[0]["model"] == "anthropic/claude-sonnet-4-5"


CHECK_CONFIG = '{ agents: { defaults: { model: { primary: "openai/gpt-5.2" } } } }'


@pytest.mark.parametrize(
    ("cred", "code", "problem"),
    [
        (None, 1, "missing"),
        (Credential("api_key", "openai", SECRET), 0, None),
        (Credential("token", "openai", SECRET, expires=1), 1, "expired"),
        (Credential("token", "openai", SECRET, expires=-1), 2, "expiring"),
        # No token endpoint is known for openai (no preset, no oauth config): its refresh token cannot help.
        (Credential("oauth", "openai", SECRET, expires=1, refresh="r-token-123456"), 1, "expired"),
    ],
)
def test_check_exit_codes(
    capsys: pytest.CaptureFixture[str],
    *,
    tmp_path: Path,
    state_dir: Path,
    cred: Credential | None,
    code: int,
    problem: str | None,
) -> None:
    """1 for missing or expired auth, 2 for a token expiring within 24 h, 0 otherwise."""
    config = write_config(tmp_path / "c.json5", CHECK_CONFIG)
    if cred is not None:
        if cred.expires == -1:
            cred = Credential("token", "openai", SECRET, expires=now_ms() + 2 * HOUR_MS)
        store(state_dir).update(doc_edits.with_profile("openai:default", cred))
    result = run_cli(capsys, "models", "status", "--check", "--json", "--config", config)
    assert result.code == code
    check = json.loads(result.out)["check"]
    assert check["exitCode"] == code
    assert [p["problem"] for p in check["problems"]] == ([problem] if problem else [])


def test_check_ignores_providers_outside_the_chain(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, state_dir: Path
) -> None:
    """An expired token of a provider the chain does not use is shown but does not fail the check."""
    config = write_config(tmp_path / "c.json5", '{ agents: { defaults: { model: "demo/echo" } } }')
    store(state_dir).update(
        doc_edits.with_profile("openai:old", Credential("token", "openai", SECRET, expires=1))
    )
    result = run_cli(capsys, "models", "status", "--check", "--config", config)
    assert result.code == 0
    assert "openai:old" in result.out
    assert "Check: OK" in result.out


def test_check_with_a_broken_config_exits_1(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """A config that cannot be read fails the check with the error, not the "expiring" code."""
    config = write_config(tmp_path / "c.json5", "{ agents: ")
    result = run_cli(capsys, "models", "status", "--check", "--config", config)
    assert result.code == 1
    assert "invalid JSON5" in result.err


async def test_probe_reports_each_profile_and_records_no_cooldown(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, state_dir: Path
) -> None:
    """One request per profile through the client; a 429 is reported as rate_limit but never booked."""
    auth = store(state_dir)
    auth.update(doc_edits.with_profile("openai:good", Credential("api_key", "openai", "good-key-0123456789")))
    auth.update(doc_edits.with_profile("openai:busy", Credential("api_key", "openai", "busy-key-0123456789")))
    async with FakeProviderServer() as server:
        server.script("busy-key-0123456789", default=status(429))
        config = write_config(
            tmp_path / "c.json5",
            '{ agents: { defaults: { model: "openai/gpt-5.2" } },'
            f' models: {{ providers: {{ openai: {{ baseUrl: "{server.openai_base_url}" }} }} }} }}',
        )
        capsys.readouterr()
        argv = ["models", "status", "--probe", "--check", "--json", "--config", config]
        code = await asyncio.to_thread(main, argv)  # main runs its own event loop
        out = capsys.readouterr().out
        assert len(server.requests) == 2
    data = json.loads(out)
    probes = {p["profile"]: p for p in data["probes"]}
    assert probes["openai:good"]["ok"] is True
    assert probes["openai:good"]["model"] == "openai/gpt-5.2"
    assert probes["openai:good"]["latencyMs"] >= 0
    assert probes["openai:busy"]["reason"] == "rate_limit"
    assert code == 0  # one profile answered, so the provider is reachable
    stats = auth.reload().stats("openai:busy")
    assert stats.cooldown_until is None
    assert stats.error_count == 0
    assert stats.failure_counts == {}


def test_probe_on_the_demo_provider(capsys: pytest.CaptureFixture[str], state_dir: Path) -> None:
    """The demo's busy profile probes as rate-limited and stays out of cooldown; the other answers."""
    result = run_cli(capsys, "models", "status", "--probe")
    assert result.code == 0
    assert re.search(r"demo:busy\s+demo/echo\s+rate_limit", result.out)
    assert re.search(r"demo:main\s+demo/echo\s+ok", result.out)
    assert not auth_profiles_path(state_dir).exists()  # nothing was recorded anywhere


# -- edits -----------------------------------------------------------------------------------------------

COMMENTS = [line.strip() for line in EXAMPLE.splitlines() if line.strip().startswith("//")]
ENV_REFS = re.findall(r"\$\{[A-Z_]+\}", EXAMPLE)


def test_edits_round_trip_the_example_keeping_every_comment(
    capsys: pytest.CaptureFixture[str], example: Path
) -> None:
    """Each edit changes exactly its own line; comments and ${ENV} references all survive."""
    steps: list[tuple[list[str], list[str], list[str]]] = [
        (
            ["set", "opus"],
            ['        primary: "anthropic/claude-sonnet-4-5",'],
            ['        primary: "anthropic/claude-opus-4-5",'],
        ),
        (
            ["fallbacks", "add", "anthropic/claude-sonnet-4-5"],
            ['        fallbacks: ["openai/gpt-5.2", "openrouter/anthropic/claude-sonnet-4.5"],'],
            [
                '        fallbacks: ["openai/gpt-5.2", "openrouter/anthropic/claude-sonnet-4.5",'
                ' "anthropic/claude-sonnet-4-5"],'
            ],
        ),
        (
            ["fallbacks", "remove", "gpt"],
            [
                '        fallbacks: ["openai/gpt-5.2", "openrouter/anthropic/claude-sonnet-4.5",'
                ' "anthropic/claude-sonnet-4-5"],'
            ],
            ['        fallbacks: ["openrouter/anthropic/claude-sonnet-4.5", "anthropic/claude-sonnet-4-5"],'],
        ),
        (
            ["fallbacks", "clear"],
            ['        fallbacks: ["openrouter/anthropic/claude-sonnet-4.5", "anthropic/claude-sonnet-4-5"],'],
            ["        fallbacks: [],"],
        ),
        (
            ["aliases", "add", "s45", "openrouter/anthropic/claude-sonnet-4.5"],
            ['        "openrouter/anthropic/claude-sonnet-4.5": {},'],
            ['        "openrouter/anthropic/claude-sonnet-4.5": { alias: "s45" },'],
        ),
        (
            ["aliases", "remove", "FLASH"],
            ['        "openrouter/google/gemini-2.5-flash": { alias: "flash" },'],
            ['        "openrouter/google/gemini-2.5-flash": {},'],
        ),
        (
            ["set-image", "anthropic/claude-opus-4-5"],
            ['        primary: "openai/gpt-5.2", // default: none'],
            ['        primary: "anthropic/claude-opus-4-5", // default: none'],
        ),
    ]
    for argv, removed, added in steps:
        before = example.read_text(encoding="utf-8")
        result = run_cli(capsys, "models", *argv, "--config", str(example))
        assert result.code == 0, (argv, result.err)
        after = example.read_text(encoding="utf-8")
        assert diff(before, after) == (removed, added), argv
        assert "→" in result.out or "added" in result.out or "removed" in result.out
        assert (example.parent / "config.json5.bak").read_text(encoding="utf-8") == before
    final = example.read_text(encoding="utf-8")
    assert [line.strip() for line in final.splitlines() if line.strip().startswith("//")] == COMMENTS
    assert re.findall(r"\$\{[A-Z_]+\}", final) == ENV_REFS
    defaults = json5.loads(final)["agents"]["defaults"]
    assert defaults["model"] == {"primary": "anthropic/claude-opus-4-5", "fallbacks": []}
    assert defaults["imageModel"]["primary"] == "anthropic/claude-opus-4-5"


def test_edit_reports_old_and_new(capsys: pytest.CaptureFixture[str], example: Path) -> None:
    """The change is printed as key path: old → new, then where the backup went."""
    result = run_cli(capsys, "models", "set", "openai/gpt-5.2", "--config", str(example))
    assert result.out.splitlines() == [
        'agents.defaults.model.primary: "anthropic/claude-sonnet-4-5" → "openai/gpt-5.2"',
        f"Updated {example} (backup: {example}.bak).",
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["set", "anthropic/claude-sonet-4-5"], 'Unknown model "anthropic/claude-sonet-4-5". Did you mean:'),
        (["set", "nosuch/model"], 'Unknown provider "nosuch"'),
        (["set", "openai/gpt-5.2@openai:work"], "A profile cannot be configured here"),
        (["set", ""], "Empty model reference"),
        (["fallbacks", "remove", "demo/echo"], "demo/echo is not a fallback"),
        (
            ["aliases", "add", "opus", "openai/gpt-5.2"],
            'Alias "opus" already stands for anthropic/claude-opus-4-5',
        ),
        (["aliases", "add", "a/b", "openai/gpt-5.2"], "An alias is one word"),
        (["aliases", "remove", "nope"], 'No alias "nope". Aliases: flash, gpt, llama, opus, sonnet.'),
    ],
)
def test_bad_edits_exit_nonzero_and_change_nothing(
    capsys: pytest.CaptureFixture[str], example: Path, argv: list[str], message: str
) -> None:
    """Every refused edit says why, exits non-zero and leaves the file and its backup alone."""
    result = run_cli(capsys, "models", *argv, "--config", str(example))
    assert result.code != 0
    assert message in result.err
    assert example.read_text(encoding="utf-8") == EXAMPLE
    assert not Path(f"{example}.bak").exists()


def test_a_model_outside_the_allowlist_needs_allow(capsys: pytest.CaptureFixture[str], example: Path) -> None:
    """The sentence of docs/failover.md §2 plus how to fix it; ``--allow`` adds the entry and makes the change."""
    refused = run_cli(capsys, "models", "fallbacks", "add", "openai/gpt-5-mini", "--config", str(example))
    assert refused.code == 2
    assert 'Model "openai/gpt-5-mini" is not allowed. Use /model to list available models.' in refused.err
    assert 'Add "openai/gpt-5-mini" to agents.defaults.models first' in refused.err
    assert example.read_text(encoding="utf-8") == EXAMPLE
    allowed = run_cli(
        capsys, "models", "fallbacks", "add", "openai/gpt-5-mini", "--allow", "--config", str(example)
    )
    assert allowed.code == 0
    defaults = json5.loads(example.read_text(encoding="utf-8"))["agents"]["defaults"]
    assert defaults["models"]["openai/gpt-5-mini"] == {}
    assert defaults["model"]["fallbacks"][-1] == "openai/gpt-5-mini"


def test_no_allowlist_is_created_as_a_side_effect(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """Without an allowlist, set/fallbacks never add one; an alias needs --create-allowlist."""
    path = tmp_path / "c.json5"
    write_config(path, '{\n  agents: {\n    defaults: {\n      model: "demo/echo",\n    },\n  },\n}\n')
    assert run_cli(capsys, "models", "fallbacks", "add", "demo/story", "--config", str(path)).code == 0
    assert run_cli(capsys, "models", "set", "demo/vision", "--config", str(path)).code == 0
    assert "models" not in json5.loads(path.read_text(encoding="utf-8"))["agents"]["defaults"]
    refused = run_cli(capsys, "models", "aliases", "add", "v", "demo/vision", "--config", str(path))
    assert refused.code == 2
    assert "--create-allowlist" in refused.err
    created = run_cli(
        capsys, "models", "aliases", "add", "v", "demo/vision", "--create-allowlist", "--config", str(path)
    )
    assert created.code == 0
    text = path.read_text(encoding="utf-8")
    assert json5.loads(text)["agents"]["defaults"]["models"] == {
        "demo/story": {},
        "demo/vision": {"alias": "v"},
    }
    assert '      models: {\n        "demo/story": {},\n' in text


def test_the_short_model_form_is_kept_or_expanded(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """``model: "p/m"`` stays a string on set; adding a fallback turns it into { primary, fallbacks }."""
    path = tmp_path / "c.json5"
    write_config(path, '{ agents: { defaults: { model: "demo/echo" } } }')
    run_cli(capsys, "models", "set", "demo/story", "--config", str(path))
    assert path.read_text(encoding="utf-8") == '{ agents: { defaults: { model: "demo/story" } } }'
    run_cli(capsys, "models", "fallbacks", "add", "demo/echo", "--config", str(path))
    model = json5.loads(path.read_text(encoding="utf-8"))["agents"]["defaults"]["model"]
    assert model == {"primary": "demo/story", "fallbacks": ["demo/echo"]}


def test_edits_to_a_legacy_file_address_the_agent_key(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A config still using ``agent:`` is edited there (and warned about), not given a second section."""
    path = tmp_path / "c.json5"
    write_config(path, '{\n  // old style\n  agent: {\n    model: { primary: "demo/echo" },\n  },\n}\n')
    result = run_cli(capsys, "models", "set", "demo/story", "--config", str(path))
    assert result.code == 0
    assert "agent.model.primary" in result.out
    assert "config migrate" in result.err
    assert json5.loads(path.read_text(encoding="utf-8")) == {"agent": {"model": {"primary": "demo/story"}}}


def test_set_creates_a_missing_config_file(capsys: pytest.CaptureFixture[str], state_dir: Path) -> None:
    """With no config yet, the edit creates $MODELBOT_STATE_DIR/config.json5 with a comment header."""
    result = run_cli(capsys, "models", "set", "demo/story")
    assert result.code == 0
    text = (state_dir / "config.json5").read_text(encoding="utf-8")
    assert text.startswith("// modelbot config")
    assert json5.loads(text) == {"agents": {"defaults": {"model": {"primary": "demo/story"}}}}
    assert "(new file)" in result.out
    assert "fallbacks no longer apply" in result.err


def test_adding_an_existing_fallback_changes_nothing(
    capsys: pytest.CaptureFixture[str], example: Path
) -> None:
    """A fallback that is already there is reported, and the file is not rewritten."""
    result = run_cli(capsys, "models", "fallbacks", "add", "openai/gpt-5.2", "--config", str(example))
    assert result.code == 0
    assert "already a fallback" in result.out
    assert not Path(f"{example}.bak").exists()


def test_fallbacks_and_aliases_list(capsys: pytest.CaptureFixture[str], example: Path) -> None:
    """The lists as tables, JSON and plain lines."""
    cfg = ["--config", str(example)]
    assert json.loads(run_cli(capsys, "models", "fallbacks", "list", "--json", *cfg).out) == [
        "openai/gpt-5.2",
        "openrouter/anthropic/claude-sonnet-4.5",
    ]
    assert run_cli(capsys, "models", "fallbacks", "list", "--plain", *cfg).out.splitlines() == [
        "openai/gpt-5.2",
        "openrouter/anthropic/claude-sonnet-4.5",
    ]
    aliases = json.loads(run_cli(capsys, "models", "aliases", "list", "--json", *cfg).out)
    assert aliases["llama"] == "together/meta-llama/Llama-3.3-70B-Instruct-Turbo"
    assert "opus" in run_cli(capsys, "models", "aliases", "list", *cfg).out


@pytest.mark.slow
def test_the_console_script_edits_and_lists(tmp_path: Path) -> None:
    """The installed ``modelbot`` script: an edit, then ``list --json`` sees it."""
    path = tmp_path / "c.json5"
    shutil.copy(EXAMPLE_CONFIG, path)
    edited = run_script("models", "set", "gpt", "--config", str(path))
    assert edited.code == 0, edited.err
    listed = run_script("models", "list", "--json", "--config", str(path))
    assert json.loads(listed.out)[0]["model"] == "openai/gpt-5.2"
    assert "// The model every conversation starts with." in path.read_text(encoding="utf-8")


def test_status_shows_pair_cooldowns_with_the_model(
    capsys: pytest.CaptureFixture[str], stored_example: tuple[Path, SyncAuth]
) -> None:
    """docs/failover.md §6: a (profile, model) cooldown is shown with its model, in the table and in ``--json``; the
    provider's rotation is for the first chain model it serves."""
    example, auth = stored_example
    auth.update(doc_edits.with_profile("openai:default", Credential("api_key", "openai", SECRET)))
    now = now_ms()
    auth.record_failure(
        "openai:default",
        Reason.RATE_LIMIT,
        provider="openai",
        now_ms=now,
        policy=CooldownPolicy(),
        model="gpt-5.2",
    )
    data = json.loads(run_cli(capsys, "models", "status", "--json", "--config", str(example)).out)
    openai = next(p for p in data["providers"] if p["provider"] == "openai")
    assert openai["rotationFor"] == "gpt-5.2"
    (profile,) = openai["profiles"]
    assert profile["cooldownUntil"] is None
    assert profile["models"] == {
        "gpt-5.2": {"cooldownUntil": now + 60_000, "errorCount": 1, "lastFailureAt": now}
    }
    assert re.fullmatch(r"cooldown (1m|5\ds) \(gpt-5\.2\)", profile["state"])
    text = run_cli(capsys, "models", "status", "--config", str(example)).out
    assert re.search(r"openai:default .*cooldown (1m|5\ds) \(gpt-5\.2\)", text)
