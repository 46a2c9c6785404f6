"""Moving auth state between stores in the seed's ``auth-profiles.json`` format: export, and an idempotent import.

Import merges, it never deletes: a profile missing from the file stays in the store. Credentials, ``order``
and ``lastGood`` of the file win (they are what an operator edits or moves). Usage stats are runtime state: the
file's stats of a profile are taken only when the store has none for it, so re-importing an old export never
brings back a cooldown the running bots have since cleared, nor wipes one they recorded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol, TypeVar

from bot.auth import codec
from bot.auth.types import AuthProfiles, UsageStats
from bot.errors import CommandError

Outcome = Literal["added", "updated", "skipped"]
V = TypeVar("V")


class DocumentStore(Protocol):
    """What export and import need of a store: ``AuthStore`` (the file) and ``DbAuthStore`` both fit."""

    async def aload(self) -> AuthProfiles: ...

    async def aupdate(self, fn: Callable[[AuthProfiles], AuthProfiles]) -> AuthProfiles: ...


@dataclass(frozen=True)
class ImportReport:
    """What an import did, item by item: ``("profile openai:work", "added")``, …, in the file's order."""

    items: tuple[tuple[str, Outcome], ...] = ()

    def of(self, outcome: Outcome) -> list[str]:
        return [item for item, done in self.items if done == outcome]

    @property
    def changed(self) -> bool:
        return any(done != "skipped" for _, done in self.items)


@dataclass(frozen=True)
class Merged:
    doc: AuthProfiles
    report: ImportReport = field(default_factory=ImportReport)


def _lower(mapping: dict[str, V]) -> dict[str, V]:
    return {key.strip().lower(): value for key, value in mapping.items()}


def merge_import(current: AuthProfiles, incoming: AuthProfiles) -> Merged:
    """``current`` with ``incoming`` merged in (see the module docstring), and what changed; pure."""
    items: list[tuple[str, Outcome]] = []

    def take(item: str, old: object, new: object) -> bool:
        outcome: Outcome = "added" if old is None else "skipped" if old == new else "updated"
        items.append((item, outcome))
        return outcome != "skipped"

    profiles = dict(current.profiles)
    for pid, given in incoming.profiles.items():
        cred = replace(given, provider=given.provider.strip().lower())  # provider ids are case-insensitive
        if take(f"profile {pid}", current.profiles.get(pid), cred):
            profiles[pid] = cred
    order = dict(current.order)
    for provider, ids in _lower(incoming.order).items():
        if take(f"order of {provider}", current.order.get(provider), ids):
            order[provider] = list(ids)
    last_good = dict(current.last_good)
    for provider, pid in _lower(incoming.last_good).items():
        if take(f"lastGood of {provider}", current.last_good.get(provider), pid):
            last_good[provider] = pid
    stats: dict[str, UsageStats] = dict(current.usage_stats)
    for pid, value in incoming.usage_stats.items():
        # The store's own state, if it has any, is newer than a file's; an empty entry says nothing.
        if current.stats(pid) != UsageStats() or value == UsageStats():
            items.append((f"usage stats of {pid}", "skipped"))
        else:
            items.append((f"usage stats of {pid}", "added"))
            stats[pid] = value
    extra = dict(current.extra)
    for key, value in incoming.extra.items():
        if take(f"top-level key {key}", current.extra.get(key), value):
            extra[key] = value
    doc = replace(
        current, profiles=profiles, order=order, last_good=last_good, usage_stats=stats, extra=extra
    )
    return Merged(doc, ImportReport(tuple(items)))


def parse_export(text: str, source: str) -> AuthProfiles:
    """A file in the seed's format; ``CommandError`` naming the file and the place of the first problem."""
    try:
        return codec.decode(json.loads(text))
    except json.JSONDecodeError as exc:
        detail = f"invalid JSON at line {exc.lineno}, column {exc.colno}"
    except ValueError as exc:
        detail = str(exc)
    raise CommandError(f"{source}: {detail}. Nothing was imported.")


async def export_document(store: DocumentStore) -> str:
    """The store in the seed's ``auth-profiles.json`` format (secrets in clear text: protect the result)."""
    return codec.dumps(await store.aload())


async def import_document(store: DocumentStore, incoming: AuthProfiles) -> ImportReport:
    """Merge ``incoming`` into the store in one locked read-modify-write; importing twice changes nothing."""
    reports: list[ImportReport] = []

    def apply(doc: AuthProfiles) -> AuthProfiles:
        merged = merge_import(doc, incoming)
        reports.append(merged.report)  # a database may run this twice (SQLite, busy): the last run counts
        return merged.doc

    await store.aupdate(apply)
    return reports[-1]
