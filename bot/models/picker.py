"""The numbered ``/model`` picker (docs/failover.md §2, docs/commands.md §1): families, rendering, choosing, button tokens and autocomplete."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from bot.errors import CommandError
from bot.models.refs import ModelRef

PICKER_FOOTER = "Pick with /model <number> or /model provider/model."
_CALLBACK_PREFIX = "m"  # a picker button; other prefixes stay free for other buttons
MAX_TOKEN_BYTES = 64  # Telegram's limit on callback data; Discord's custom_id allows 100


@dataclass(frozen=True)
class PickerEntry:
    """One numbered line of the picker: a model family and the refs that offer it."""

    number: int  # 1-based
    family: str
    refs: tuple[ModelRef, ...]  # sorted by provider, then model id

    @property
    def providers(self) -> tuple[str, ...]:
        """The providers offering this family, without repeats, in the order of ``refs``."""
        return tuple(dict.fromkeys(ref.provider for ref in self.refs))


def build_picker(refs: Iterable[ModelRef]) -> list[PickerEntry]:
    """One entry per family; the numbering depends only on the set of refs, never on their order."""
    families: dict[str, set[ModelRef]] = {}
    for ref in refs:
        families.setdefault(ref.family, set()).add(ref)
    # The exact string breaks ties between families that differ only in case, so the order is total.
    ordered = sorted(families, key=lambda family: (family.lower(), family))
    return [
        PickerEntry(number=index, family=family, refs=tuple(sorted(families[family])))
        for index, family in enumerate(ordered, start=1)
    ]


def _offered_by(entry: PickerEntry) -> str:
    """Provider names; a provider offering the family twice (two vendors on OpenRouter) shows full refs."""
    providers = [ref.provider for ref in entry.refs]
    return ", ".join(str(ref) if providers.count(ref.provider) > 1 else ref.provider for ref in entry.refs)


def render_picker(entries: Sequence[PickerEntry], current: ModelRef | None) -> str:
    """The picker as plain text: a header, one line per family (current one marked), a hint."""
    if not entries:
        return "No models are available. Add a provider key or models to agents.defaults.models."
    header = f"Models (current: {current}):" if current is not None else "Models:"
    lines = [header]
    for entry in entries:
        line = f"{entry.number}) {entry.family} — {_offered_by(entry)}"
        if current in entry.refs:
            # Name the provider when there is a choice of them, so the user sees which one is in use.
            line += f" (current: {current.provider})" if len(entry.refs) > 1 else " (current)"
        lines.append(line)
    lines.append(PICKER_FOOTER)
    return "\n".join(lines)


def choose_from_picker(
    entries: Sequence[PickerEntry],
    number: int,
    *,
    current: ModelRef | None,
    has_auth: Callable[[ModelRef], bool],
) -> ModelRef:
    """The ref for ``/model <number>``: stay on the current provider, else one with usable auth for the model."""
    if not entries:
        raise CommandError("There are no models to pick from. Use /model provider/model.")
    by_number = {entry.number: entry for entry in entries}
    entry = by_number.get(number)
    if entry is None:
        raise CommandError(f"Pick a number from 1 to {max(by_number)}.")
    if current is not None:
        if current in entry.refs:
            return current
        for ref in entry.refs:
            if ref.provider == current.provider:
                return ref
    for ref in entry.refs:
        if has_auth(ref):
            return ref
    return entry.refs[0]


def _family_hash(family: str) -> str:
    return hashlib.blake2s(family.encode(), digest_size=4).hexdigest()


def picker_token(entry: PickerEntry) -> str:
    """A short button payload, ``m:<number>:<8 hex of the family>``; never a model id (ids can be long)."""
    return f"{_CALLBACK_PREFIX}:{entry.number}:{_family_hash(entry.family)}"


def resolve_token(entries: Sequence[PickerEntry], token: str) -> PickerEntry | None:
    """The entry a button token means, or None when the token is malformed or stale.

    Stale: the picker changed since the button was drawn and that number is now another family.
    """
    if len(token) > MAX_TOKEN_BYTES:
        return None
    parts = token.split(":")
    if len(parts) != 3 or parts[0] != _CALLBACK_PREFIX or not (parts[1].isascii() and parts[1].isdigit()):
        return None
    number, digest = int(parts[1]), parts[2]
    for entry in entries:
        if entry.number == number:
            return entry if _family_hash(entry.family) == digest else None
    return None


def page(entries: Sequence[PickerEntry], page: int, per_page: int) -> tuple[list[PickerEntry], int]:
    """Page ``page`` (1-based) of the entries and the page count; out-of-range pages are clamped.

    Clamping, not raising: a button from an older, longer picker should land on a real page.
    """
    if per_page < 1:
        raise ValueError("per_page must be at least 1")
    total_pages = max(1, math.ceil(len(entries) / per_page))
    current = min(max(page, 1), total_pages)
    start = (current - 1) * per_page
    return list(entries[start : start + per_page]), total_pages


def autocomplete(entries: Sequence[PickerEntry], typed: str, *, limit: int) -> list[str]:
    """The picker's models matching what was typed: picker order, those that start with it first."""
    refs = [str(ref) for entry in entries for ref in entry.refs]
    needle = typed.strip().lower()
    if not needle:
        return refs[:limit]
    starts = [
        r for r in refs if r.lower().startswith(needle) or r.split("/", 1)[-1].lower().startswith(needle)
    ]
    contains = [r for r in refs if needle in r.lower() and r not in starts]
    return (starts + contains)[:limit]
