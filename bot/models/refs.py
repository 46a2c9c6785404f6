"""Model references: ``provider/model[@profile]``, aliases and the default provider (docs/failover.md §1)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass

from bot.errors import InvalidRef

MAX_REF_LENGTH = 200

# A profile id is ``provider:name``; the provider part never contains '@', which is what tells
# ``model@20241022@anthropic:work`` (date kept in the model id) from an email profile.
_PROFILE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*:\S+$")
_PROVIDER_RE = re.compile(r"^[a-z0-9][a-z0-9._-]*$")


@dataclass(frozen=True, order=True)
class ModelRef:
    """A fully qualified model: provider id (lower-case) and model id (case kept, may contain '/')."""

    provider: str
    model: str

    def __str__(self) -> str:
        return f"{self.provider}/{self.model}"

    @property
    def family(self) -> str:
        """The model id's last '/' segment: what the picker groups by."""
        return self.model.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class RawRef:
    """What the user typed, split but not yet resolved: ``provider`` is None when no '/' was given."""

    provider: str | None
    model: str
    profile: str | None


@dataclass(frozen=True)
class Selection:
    """A resolved reference and the profile pinned with it, if any."""

    ref: ModelRef
    profile: str | None


def split_profile(text: str) -> tuple[str, str | None]:
    """Split ``text`` into (model part, profile); only an '@' after the last '/' can start a profile."""
    slash = text.rfind("/")
    head, tail = text[: slash + 1], text[slash + 1 :]
    start = 0
    while (at := tail.find("@", start)) != -1:
        candidate = tail[at + 1 :]
        if _PROFILE_RE.match(candidate):
            return head + tail[:at], candidate
        start = at + 1
    return text, None


def parse_ref(text: str) -> RawRef:
    """Parse without config: trim, split off the profile, then split on the first '/'."""
    text = text.strip()
    if not text:
        raise InvalidRef("Empty model reference.")
    if len(text) > MAX_REF_LENGTH:
        raise InvalidRef(f"Model reference is too long (at most {MAX_REF_LENGTH} characters).")
    if any(ch.isspace() or unicodedata.category(ch).startswith("C") for ch in text):
        raise InvalidRef("Model reference must not contain spaces or control characters.")
    model_part, profile = split_profile(text)
    if not model_part:
        raise InvalidRef(f'"{text}" names a profile but no model. Use provider/model@profile.')
    if "/" not in model_part:
        return RawRef(provider=None, model=model_part, profile=profile)
    provider, model = model_part.split("/", 1)
    provider = provider.strip().lower()
    model = model.strip()
    if not provider or not model:
        raise InvalidRef(f'"{text}" is not a valid model reference. Use provider/model.')
    if not _PROVIDER_RE.match(provider):
        raise InvalidRef(f'"{provider}" is not a valid provider id (letters, digits, ".", "_", "-").')
    if ".." in model.split("/") or model.startswith("/") or model.endswith("/"):
        raise InvalidRef(f'"{text}" is not a valid model reference. Use provider/model.')
    return RawRef(provider=provider, model=model, profile=profile)


def resolve_ref(raw: RawRef, *, aliases: Mapping[str, ModelRef], default_provider: str) -> Selection:
    """Resolve a bare name: first an alias (case-insensitive), else a model of the default provider."""
    if raw.provider is not None:
        return Selection(ModelRef(raw.provider, raw.model), raw.profile)
    by_lower = {name.lower(): ref for name, ref in aliases.items()}
    alias_target = by_lower.get(raw.model.lower())
    if alias_target is not None:
        return Selection(alias_target, raw.profile)
    return Selection(ModelRef(default_provider, raw.model), raw.profile)


def parse_model_ref(text: str) -> ModelRef:
    """Parse a fully qualified ``provider/model`` from config: no alias, no profile allowed."""
    raw = parse_ref(text)
    if raw.provider is None:
        raise InvalidRef(f'"{text}" must be written as provider/model.')
    if raw.profile is not None:
        raise InvalidRef(f'"{text}" must not name a profile here.')
    return ModelRef(raw.provider, raw.model)
