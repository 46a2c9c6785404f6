"""The import merge (pure) and export/import through the small document-store interface."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest

from bot.auth import codec
from bot.auth.store import AuthStore
from bot.auth.transfer import export_document, import_document, merge_import, parse_export
from bot.auth.types import AuthProfiles, Credential, UsageStats
from bot.errors import CommandError
from tests.test_auth_store import SEED, seed_text

SEED_DOC = codec.decode(copy.deepcopy(SEED))
WORK = "openai:work"


def test_importing_into_an_empty_store_adds_everything() -> None:
    """Every profile, order, lastGood, usage stats and unknown key of the file is added."""
    merged = merge_import(AuthProfiles(), SEED_DOC)
    assert merged.doc == SEED_DOC
    assert merged.report.of("updated") == [] and merged.report.of("skipped") == []
    assert merged.report.of("added") == [
        "profile anthropic:default",
        "profile anthropic:setup",
        "profile google-antigravity:user@gmail.com",
        "profile openai:work",
        "order of anthropic",
        "lastGood of anthropic",
        "usage stats of provider:profile",
        "usage stats of anthropic:default",
        "usage stats of openai:work",
        "top-level key futureTopLevel",
    ]


def test_importing_the_same_file_twice_changes_nothing_the_second_time() -> None:
    """The second merge is the identity and reports every item as skipped."""
    once = merge_import(AuthProfiles(), SEED_DOC).doc
    twice = merge_import(once, SEED_DOC)
    assert twice.doc == once
    assert not twice.report.changed
    assert len(twice.report.of("skipped")) == 10


def test_the_files_credentials_and_settings_win_and_store_only_profiles_stay() -> None:
    """A rotated key is updated, order and lastGood follow the file, a profile only the store has stays."""
    spare = Credential("api_key", "openai", "sk-spare")
    current = replace(
        SEED_DOC,
        profiles={
            **SEED_DOC.profiles,
            WORK: Credential("api_key", "openai", "sk-old"),
            "openai:spare": spare,
        },
        order={"anthropic": ["anthropic:default"]},
    )
    merged = merge_import(current, SEED_DOC)
    assert merged.doc.profiles[WORK] == SEED_DOC.profiles[WORK]
    assert merged.doc.profiles["openai:spare"] == spare
    assert merged.doc.order == SEED_DOC.order
    assert merged.report.of("updated") == ["profile openai:work", "order of anthropic"]
    assert merged.report.of("added") == []


def test_the_stores_own_usage_stats_are_newer_than_a_files() -> None:
    """Stats the store already has are kept; the file's are taken only where the store has none."""
    live = UsageStats(cooldown_until=1_800_000_000_000, error_count=3)
    current = replace(AuthProfiles(), usage_stats={WORK: live, "anthropic:default": UsageStats()})
    merged = merge_import(current, SEED_DOC)
    assert merged.doc.stats(WORK) == live
    assert merged.doc.stats("anthropic:default") == SEED_DOC.stats("anthropic:default")
    assert "usage stats of openai:work" in merged.report.of("skipped")
    assert "usage stats of anthropic:default" in merged.report.of("added")


def test_an_empty_stats_entry_is_never_an_addition() -> None:
    """``usageStats: {id: {}}`` says nothing, so importing it is not a change (the file store drops it)."""
    incoming = replace(AuthProfiles(), usage_stats={WORK: UsageStats()})
    assert not merge_import(AuthProfiles(), incoming).report.changed


def test_provider_ids_are_lower_cased_on_import() -> None:
    """Provider ids are case-insensitive (docs/failover.md §3): credentials, order and lastGood keys come in lower-case."""
    incoming = AuthProfiles(
        profiles={WORK: Credential("api_key", "OpenAI", "sk-1")},
        order={"OpenAI": [WORK]},
        last_good={"OPENAI": WORK},
    )
    doc = merge_import(AuthProfiles(), incoming).doc
    assert (doc.profiles[WORK].provider, doc.order, doc.last_good) == (
        "openai",
        {"openai": [WORK]},
        {"openai": WORK},
    )


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("{not json", "invalid JSON at line 1, column 2"),
        (
            '{"profiles": {"x:y": {"type": "api_key", "provider": "x"}}}',
            'profiles["x:y"]["key"]: missing (a api_key credential needs it)',
        ),
        ('{"order": {"x": "x:y"}}', 'order["x"]: expected a list of profile ids'),
        ("[]", "the file: expected an object, got list"),
    ],
)
def test_a_malformed_file_is_refused_with_its_place(text: str, where: str) -> None:
    """The error names the file and the exact place, and says nothing was imported."""
    with pytest.raises(CommandError) as caught:
        parse_export(text, "backup.json")
    assert str(caught.value) == f"backup.json: {where}. Nothing was imported."


async def test_export_and_import_through_the_file_store(tmp_path: Path) -> None:
    """A file store exports the seed's format; importing it into another file store round-trips it."""
    source = AuthStore(tmp_path / "a" / "auth-profiles.json")
    source.path.parent.mkdir()
    source.path.write_text(seed_text(), encoding="utf-8")
    text = await export_document(source)
    assert json.loads(text) == SEED

    target = AuthStore(tmp_path / "b" / "auth-profiles.json")
    first = await import_document(target, parse_export(text, "export.json"))
    assert first.changed and target.reload() == SEED_DOC
    mtime = target.path.stat().st_mtime_ns
    second = await import_document(target, parse_export(text, "export.json"))
    assert not second.changed
    assert target.path.stat().st_mtime_ns == mtime  # nothing written the second time
