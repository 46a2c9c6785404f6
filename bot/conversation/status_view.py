"""Rendering of model and auth status (``/model status`` and ``modelbot models status``): pure text."""

from __future__ import annotations

from dataclasses import dataclass, field

from bot.clock import format_wait


@dataclass(frozen=True)
class PairLine:
    """The cooldown state of one (profile, model) pair (docs/failover.md §6)."""

    model: str
    cooldown_until: int | None = None
    error_count: int = 0
    last_failure_at: int | None = None


@dataclass(frozen=True)
class ProfileLine:
    """One auth candidate of a provider, in rotation order."""

    profile_id: str
    type: str  # api_key | token | oauth | env | config | builtin | none
    masked: str
    cooldown_until: int | None = None
    disabled_until: int | None = None
    disabled_reason: str | None = None
    expired: bool = False
    expires: int | None = None
    refreshable: bool = False  # an OAuth login whose provider's token endpoint is known
    pairs: tuple[PairLine, ...] = ()  # by model id

    def cooling_pairs(self, now_ms: int) -> list[PairLine]:
        return [p for p in self.pairs if p.cooldown_until is not None and p.cooldown_until > now_ms]


@dataclass(frozen=True)
class ProviderStatus:
    provider: str
    base_url: str
    api: str
    profiles: tuple[ProfileLine, ...] = ()
    missing_auth: bool = False
    model: str | None = None  # the model the rotation order (and "next") is for; None: the profiles alone


@dataclass(frozen=True)
class ModelStatusView:
    """Everything ``/model status`` shows; the caller gathers it, this module only renders."""

    current: str
    current_source: str  # "session override" | "agent default"
    last_model: str | None
    last_fallback: bool
    default: str
    fallbacks: tuple[str, ...]
    image_model: str | None
    image_fallbacks: tuple[str, ...]
    providers: tuple[ProviderStatus, ...] = ()
    pin_profile: str | None = None
    pin_source: str | None = None
    aliases: dict[str, str] = field(default_factory=dict)


def profile_flags(
    line: ProfileLine, *, now_ms: int, pin: str | None, pin_source: str | None, is_next: bool
) -> list[str]:
    """The flags of docs/commands.md §1 (``/model status``): pinned/user-pinned, next, cooldown 4m12s, disabled: billing 4h, expired."""
    flags: list[str] = []
    if pin == line.profile_id:
        flags.append("user-pinned" if pin_source == "user" else "pinned")
    if is_next:
        flags.append("next")
    if line.disabled_until is not None and line.disabled_until > now_ms:
        flags.append(
            f"disabled: {line.disabled_reason or 'unknown'} {format_wait(line.disabled_until - now_ms)}"
        )
    if line.cooldown_until is not None and line.cooldown_until > now_ms:
        flags.append(f"cooldown {format_wait(line.cooldown_until - now_ms)}")
    for pair in line.cooling_pairs(now_ms):
        assert pair.cooldown_until is not None
        flags.append(f"cooldown {format_wait(pair.cooldown_until - now_ms)} ({pair.model})")
    if line.expired:
        flags.append("expired")
    elif (login := login_flag(line, now_ms)) is not None:
        flags.append(login)
    return flags


def login_flag(line: ProfileLine, now_ms: int) -> str | None:
    """When an OAuth login expires and whether it renews itself (docs/failover.md §9)."""
    if line.type != "oauth" or line.expires is None:
        return None
    if line.expires <= now_ms:  # only a refreshable login is still listed after its expiry (not "expired")
        return "login expired, refreshes on next use"
    renews = "refreshes itself" if line.refreshable else "cannot refresh"
    return f"login expires in {format_span(line.expires - now_ms)}, {renews}"


def format_span(ms: int) -> str:
    """``45s``, ``4m12s``, ``7h12m``; whole days from two days on (``12d``)."""
    days = ms // 86_400_000
    return f"{days}d" if days >= 2 else format_wait(ms)


def pairs_json(line: ProfileLine) -> dict[str, dict[str, int | None]]:
    """The pairs' state for ``--json``, shaped as in auth-profiles.json: ``{model: {cooldownUntil, …}}``."""
    return {
        pair.model: {
            "cooldownUntil": pair.cooldown_until,
            "errorCount": pair.error_count,
            "lastFailureAt": pair.last_failure_at,
        }
        for pair in line.pairs
    }


def is_available(line: ProfileLine, now_ms: int, model: str | None = None) -> bool:
    """Not resting, not expired; for ``model``, its pair with the profile not cooling either."""
    blocked = [t for t in (line.cooldown_until, line.disabled_until) if t is not None and t > now_ms]
    pair = any(p.model == model for p in line.cooling_pairs(now_ms))
    return not blocked and not pair and not line.expired


def failover_kind(answered: str, current: str) -> str:
    """How a failure changed who answered: the same model means another of its profiles did."""
    return "another profile, after a failure" if answered == current else "fallback"


def render_model_status(view: ModelStatusView, *, now_ms: int) -> str:
    """The detailed view: models first, then each provider's endpoint and auth candidates."""
    lines = [f"Current: {view.current} ({view.current_source})"]
    if view.last_model and view.last_fallback:
        lines.append(f"Last answer: {view.last_model} ({failover_kind(view.last_model, view.current)})")
    lines.append(f"Default: {view.default}")
    lines.append("Fallbacks: " + (", ".join(view.fallbacks) if view.fallbacks else "none"))
    image = view.image_model or "none"
    if view.image_fallbacks:
        image += " (fallbacks: " + ", ".join(view.image_fallbacks) + ")"
    lines.append(f"Image model: {image}")
    for provider in view.providers:
        lines.append("")
        lines.append(f"{provider.provider}: {provider.base_url} [{provider.api}]")
        if provider.missing_auth or not provider.profiles:
            lines.append("  (no credentials)")
            continue
        model = provider.model
        next_id = next((p.profile_id for p in provider.profiles if is_available(p, now_ms, model)), None)
        if view.pin_profile and any(p.profile_id == view.pin_profile for p in provider.profiles):
            pinned = next((p for p in provider.profiles if p.profile_id == view.pin_profile), None)
            if pinned is not None and is_available(pinned, now_ms, model):
                next_id = pinned.profile_id
        for number, line in enumerate(provider.profiles, 1):
            flags = profile_flags(
                line,
                now_ms=now_ms,
                pin=view.pin_profile,
                pin_source=view.pin_source,
                is_next=line.profile_id == next_id,
            )
            suffix = f" — {', '.join(flags)}" if flags else ""
            lines.append(f"  {number}. {line.profile_id} ({line.type}) {line.masked}{suffix}")
    return "\n".join(lines)
