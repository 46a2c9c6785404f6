"""In-memory fakes for engine tests: a scripted provider client and a simple auth backend."""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

from bot.auth.availability import Candidates, ProfileAvailability
from bot.clock import Clock
from bot.errors import ProviderError
from bot.failover.reasons import Reason
from bot.providers.base import ChatRequest, Endpoint, ResolvedAuth


@dataclass(frozen=True)
class Reply:
    """Answer with these deltas."""

    deltas: tuple[str, ...]


@dataclass(frozen=True)
class Fail:
    """Fail with this reason, optionally after streaming some text first."""

    reason: Reason
    after: tuple[str, ...] = ()
    retry_after_ms: int | None = None


Behaviour = Reply | Fail


def ok(text: str) -> Reply:
    """A reply streamed word by word (the deltas join back to ``text``)."""
    words = text.split(" ")
    return Reply(tuple(w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)))


class ScriptedClient:
    """Plays scripted behaviours per (model, profile); the default is a plain answer."""

    def __init__(self) -> None:
        self._scripts: dict[tuple[str, str], deque[Behaviour]] = defaultdict(deque)
        self._always: dict[tuple[str, str], Behaviour] = {}
        self.calls: list[tuple[str, str]] = []

    def script(self, model: str, profile: str, *behaviours: Behaviour) -> None:
        self._scripts[(model, profile)].extend(behaviours)

    def always(self, model: str, profile: str, behaviour: Behaviour) -> None:
        self._always[(model, profile)] = behaviour

    async def stream(
        self, endpoint: Endpoint, auth: ResolvedAuth, request: ChatRequest
    ) -> AsyncIterator[str]:
        key = (f"{endpoint.provider}/{request.model}", auth.profile_id)
        self.calls.append(key)
        queue = self._scripts.get(key)
        behaviour = (
            queue.popleft() if queue else self._always.get(key, ok(f"answer from {key[0]} via {key[1]}"))
        )
        if isinstance(behaviour, Reply):
            for delta in behaviour.deltas:
                yield delta
            return
        for delta in behaviour.after:
            yield delta
        raise ProviderError(
            behaviour.reason, f"scripted {behaviour.reason}", retry_after_ms=behaviour.retry_after_ms
        )

    async def aclose(self) -> None:
        return None


@dataclass
class MemoryAuth:
    """Auth backend with fixed rotation lists and a flat per-profile cooldown (the real formulas and scopes
    are tested elsewhere)."""

    clock: Clock
    profiles: dict[str, list[str]]
    cooldown_ms: int = 60_000
    until: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)  # why a profile rests
    failures: list[tuple[str, Reason]] = field(default_factory=list)
    successes: list[str] = field(default_factory=list)
    booked: list[tuple[str, str, int, int]] = field(default_factory=list)  # (profile, model, started, now)
    questions: list[tuple[str, str]] = field(default_factory=list)  # every candidates() call

    async def candidates(self, provider: str, model: str, *, now_ms: int) -> Candidates:
        self.questions.append((provider, model))
        ids = sorted(self.profiles.get(provider, []), key=lambda p: self.unavailable_until(p, now_ms) or 0)
        return Candidates(
            provider,
            model,
            tuple(
                ProfileAvailability(pid, until, self.reasons.get(pid), "profile")
                if (until := self.unavailable_until(pid, now_ms)) is not None
                else ProfileAvailability(pid)
                for pid in ids
            ),
        )

    def unavailable_until(self, profile_id: str, now_ms: int) -> int | None:
        until = self.until.get(profile_id)
        return until if until is not None and until > now_ms else None

    async def resolve(self, profile_id: str, *, now_ms: int) -> ResolvedAuth:
        return ResolvedAuth(profile_id, "api_key", "secret-" + profile_id)

    async def record_failure(
        self, profile_id: str, model: str, reason: Reason, *, now_ms: int, retry_after_ms: int | None
    ) -> int | None:
        self.failures.append((profile_id, reason))
        self.reasons[profile_id] = reason.value
        duration = self.cooldown_ms * (300 if reason is Reason.BILLING else 1)
        if retry_after_ms is not None:
            duration = max(duration, retry_after_ms)
        self.until[profile_id] = now_ms + duration
        return self.until[profile_id]

    async def record_success(self, profile_id: str, model: str, *, started_ms: int, now_ms: int) -> None:
        self.successes.append(profile_id)
        self.booked.append((profile_id, model, started_ms, now_ms))
        self.until.pop(profile_id, None)

    def cool(self, profile_ids: Iterable[str], ms: int, reason: Reason = Reason.RATE_LIMIT) -> None:
        for profile_id in profile_ids:
            self.until[profile_id] = self.clock.now_ms() + ms
            self.reasons[profile_id] = reason.value
