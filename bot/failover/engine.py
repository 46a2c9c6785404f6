"""The failover engine: runs one turn across (model, profile) candidates and streams the answer (docs/failover.md §5–§8).

The decisions are pure (``profiles_to_try``, ``skip_record``, ``wait_ms``, the policy table; what the turn
tells the user is in ``wording``); the loop in ``Engine.run`` asks the auth backend one question per candidate model, performs
the calls the decisions choose, persists failure state before the next attempt, waits out a short cooldown
instead of failing (docs/failover.md §8), and streams text deltas to the caller.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from bot.auth.availability import Candidates, ProfileAvailability
from bot.clock import Clock
from bot.errors import (
    AllCandidatesFailed,
    AttemptRecord,
    ModelbotError,
    ProviderError,
    StreamInterrupted,
    TurnStopped,
)
from bot.failover.policy import STOP_MESSAGES, Action, action_for, records_profile_failure
from bot.failover.reasons import Reason
from bot.failover.stream_guard import bounded
from bot.failover.wording import fallback_note, summarize, waiting_text
from bot.models.refs import ModelRef
from bot.providers.base import ChatMessage, ChatRequest, Endpoint, ProviderClient, ResolvedAuth
from bot.redaction import mask_key_shaped

PinSource = Literal["auto", "user"]
Sleep = Callable[[float], Awaitable[None]]

# The quick retry after a server error waits for a Retry-After up to this long; a longer one means the
# server is not coming back soon, so the next model is tried at once (docs/failover.md §7).
QUICK_RETRY_MAX_WAIT_MS = 2_000


@dataclass(frozen=True)
class Pin:
    """The auth profile a session sticks to: ``auto`` is a preference, ``user`` is a lock."""

    profile_id: str
    source: PinSource

    @property
    def provider(self) -> str:
        return self.profile_id.split(":", 1)[0].strip().lower()


class AuthBackend(Protocol):
    """What the engine needs from the auth state: one question per candidate model, credentials, bookkeeping.

    ``candidates`` reads the state once and answers for every profile; the engine decides from that answer
    alone. Failures and successes name the model, which is what a rate limit is scoped to (docs/failover.md §6).
    """

    async def candidates(self, provider: str, model: str, *, now_ms: int) -> Candidates:
        """The provider's profiles for ``model`` in rotation order, with when each resting one is back."""
        ...

    async def resolve(self, profile_id: str, *, now_ms: int) -> ResolvedAuth: ...

    async def record_failure(
        self, profile_id: str, model: str, reason: Reason, *, now_ms: int, retry_after_ms: int | None
    ) -> int | None:
        """Persist the failure in its scope; returns when the profile may call ``model`` again."""
        ...

    async def record_success(self, profile_id: str, model: str, *, started_ms: int, now_ms: int) -> None:
        """Book an answer of a call that started at ``started_ms``: only older failures are cleared (docs/failover.md §6)."""
        ...


@dataclass(frozen=True)
class TurnInput:
    """One turn: the planned chain of models, the conversation, and the session's pin."""

    chain: Sequence[ModelRef]
    messages: Sequence[ChatMessage]
    system: str | None = None
    pin: Pin | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class TextDelta:
    text: str


@dataclass(frozen=True)
class AttemptFailed:
    """Emitted as soon as an attempt fails, for the audit log and metrics."""

    record: AttemptRecord
    cooldown_until: int | None


@dataclass(frozen=True)
class TurnResult:
    text: str
    ref: ModelRef
    profile_id: str
    attempts: tuple[AttemptRecord, ...]
    fell_back: bool  # a later model of the chain answered
    rotated: bool  # another profile answered because of a failure
    note: str | None  # the quiet "↪ answered by …" line, when a failure changed who answered
    pin: Pin | None  # the pin the session should keep from now on
    latency_ms: float = 0.0


@dataclass(frozen=True)
class TurnDone:
    result: TurnResult


@dataclass(frozen=True)
class Waiting:
    """Every candidate rests and the first is back within ``auth.waitSeconds``: the turn waits (docs/failover.md §8)."""

    until_ms: int
    text: str  # the status line: "waiting 12s for a rate limit…"


TurnEvent = TextDelta | AttemptFailed | Waiting | TurnDone


def profiles_to_try(candidates: Candidates, pin: Pin | None) -> list[str]:
    """The profiles to call for one candidate model, in order; a user pin allows only itself."""
    usable = candidates.ready()
    if pin is None or pin.provider != candidates.provider:
        return usable
    if pin.source == "user":
        return [pin.profile_id] if pin.profile_id in usable else []
    if pin.profile_id in usable:
        return [pin.profile_id, *(p for p in usable if p != pin.profile_id)]
    return usable


def visible(text: str) -> bool:
    """Whether ``text`` shows anything: whitespace and invisible format characters (zero-width) do not."""
    return any(not ch.isspace() and unicodedata.category(ch) != "Cf" for ch in text)


def skip_record(
    ref: ModelRef, candidates: Candidates, pin: Pin | None
) -> tuple[AttemptRecord, ProfileAvailability | None]:
    """Why a candidate model is skipped without a call, and the resting profile the turn could wait for
    (a user pin waits for its own profile only)."""
    if pin is not None and pin.source == "user" and pin.provider == ref.provider:
        rest = candidates.soonest(only=pin.profile_id)
        detail = f"pinned {pin.profile_id} cooling down" if rest else f"pinned {pin.profile_id} unusable"
    elif candidates.profiles:
        rest = candidates.soonest()
        detail = "skipped: every profile cooling down or disabled"
    else:
        rest, detail = None, "skipped: no credentials"
    return AttemptRecord(str(ref), None, None, detail, skipped=True), rest


def wait_ms(soonest: ProfileAvailability | None, now_ms: int, deadline_ms: int) -> int | None:
    """How long a failed pass waits before trying again: until the first resting profile is back, if that
    is before the turn's waiting deadline; None to fail now."""
    if soonest is None or soonest.usable_at is None:
        return None
    if not now_ms < soonest.usable_at <= deadline_ms:
        return None
    return soonest.usable_at - now_ms


@dataclass
class _Turn:
    """Mutable bookkeeping of one pass through the chain."""

    attempts: list[AttemptRecord] = field(default_factory=list)
    soonest: ProfileAvailability | None = None  # the resting profile back first
    answer: tuple[ModelRef, str, str] | None = None  # (ref, profile, text) once a call has answered

    @property
    def soonest_ms(self) -> int | None:
        return None if self.soonest is None else self.soonest.usable_at

    def note_unavailable(self, rest: ProfileAvailability | None) -> None:
        if rest is None or rest.usable_at is None:
            return
        if self.soonest_ms is None or rest.usable_at < self.soonest_ms:
            self.soonest = rest


class Engine:
    """Runs turns; one instance serves every session and is safe to share across tasks."""

    def __init__(
        self,
        *,
        auth: AuthBackend,
        clients: Mapping[str, ProviderClient],
        endpoint_for: Callable[[str], Endpoint],
        clock: Clock,
        wait_ms: int = 0,
        sleep: Sleep | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self._auth = auth
        self._clients = clients
        self._endpoint_for = endpoint_for
        self._clock = clock
        self._wait_ms = wait_ms  # auth.waitSeconds: the longest a turn waits for a resting profile
        self._sleep: Sleep = clock.sleep if sleep is None else sleep
        # Every provider text passes through this before it is recorded, shown or logged (docs/failover.md §5).
        self._redact: Callable[[str], str] = mask_key_shaped if redact is None else redact

    async def run(self, turn: TurnInput) -> AsyncIterator[TurnEvent]:
        """Stream the turn: text deltas, attempt failures as they happen, waits, then ``TurnDone``.

        Raises ``AllCandidatesFailed``, ``TurnStopped`` or ``StreamInterrupted``.
        """
        if not turn.chain:
            raise TurnStopped(Reason.BAD_REQUEST, "No model is configured.")
        started = time.perf_counter()
        deadline = self._clock.now_ms() + self._wait_ms
        while True:
            state = _Turn()
            async for event in self._pass(turn, state):
                yield event
            if state.answer is not None:
                yield TurnDone(self._result(turn, state.answer, state, started))
                return
            now = self._clock.now_ms()
            pause = wait_ms(state.soonest, now, deadline)
            if pause is None or state.soonest is None:
                raise AllCandidatesFailed(
                    summarize(state.attempts, state.soonest_ms, now), state.attempts, state.soonest_ms
                )
            yield Waiting(now + pause, waiting_text(pause, state.soonest))
            await self._clock.sleep(pause / 1000)  # /stop cancels the turn here like anywhere else

    async def _pass(self, turn: TurnInput, state: _Turn) -> AsyncIterator[TurnEvent]:
        """Try the chain once: every usable (model, profile) in order until one answers."""
        for index, ref in enumerate(turn.chain):
            pin = turn.pin if index == 0 else None
            candidates = await self._auth.candidates(ref.provider, ref.model, now_ms=self._clock.now_ms())
            to_try = profiles_to_try(candidates, pin)
            if not to_try:
                record, rest = skip_record(ref, candidates, pin)
                state.attempts.append(record)
                state.note_unavailable(rest)
                continue
            for profile_id in to_try:
                outcome = _Outcome()
                started_ms = self._clock.now_ms()
                async for event in self._attempt(turn, ref, profile_id, state, outcome):
                    yield event
                if outcome.text is not None:
                    await self._auth.record_success(
                        profile_id, ref.model, started_ms=started_ms, now_ms=self._clock.now_ms()
                    )
                    state.answer = (ref, profile_id, outcome.text)
                    return
                assert outcome.action is not None
                if outcome.action in (Action.RETRY_ONCE_THEN_NEXT_MODEL,):
                    break  # the key is not at fault: another profile would not help
                if pin is not None and pin.source == "user" and pin.provider == ref.provider:
                    break  # a user pin is locked: the next model, never another profile

    async def complete(self, turn: TurnInput) -> TurnResult:
        """Run a turn to the end without streaming (compaction summaries, probes)."""
        async for event in self.run(turn):
            if isinstance(event, TurnDone):
                return event.result
        raise AssertionError(
            "Engine.run ended without a result"
        )  # pragma: no cover - run always returns or raises

    async def _attempt(
        self, turn: TurnInput, ref: ModelRef, profile_id: str, state: _Turn, outcome: _Outcome
    ) -> AsyncIterator[TurnEvent]:
        """Call one (model, profile) pair; a server error is retried once (after its Retry-After, if short)."""
        for try_number in (1, 2):
            error: ProviderError
            try:
                async for delta in self._stream_once(turn, ref, profile_id, outcome):
                    yield delta
                if outcome.text is not None:
                    state.attempts.append(AttemptRecord(str(ref), profile_id, None))
                    return
                error = ProviderError(Reason.EMPTY, "The model sent an empty reply.")
            except ProviderError as exc:
                error = self._redacted(exc)
            if outcome.shown:
                await self._fail(state, ref, profile_id, error)
                raise StreamInterrupted(outcome.partial, str(ref), profile_id, error.reason) from error
            action = action_for(error.reason)
            if action is Action.RETRY_ONCE_THEN_NEXT_MODEL and try_number == 1:
                retry_in_ms = error.retry_after_ms or 0
                if retry_in_ms <= QUICK_RETRY_MAX_WAIT_MS:
                    if retry_in_ms:
                        await self._sleep(retry_in_ms / 1000)
                    continue
            yield await self._fail(state, ref, profile_id, error)
            outcome.action = action
            if action in (Action.STOP, Action.COMPACT_AND_RETRY):
                message = STOP_MESSAGES.get(error.reason, str(error))
                raise TurnStopped(error.reason, message, state.attempts) from error
            return

    async def _stream_once(
        self, turn: TurnInput, ref: ModelRef, profile_id: str, outcome: _Outcome
    ) -> AsyncIterator[TextDelta]:
        auth = await self._auth.resolve(profile_id, now_ms=self._clock.now_ms())
        endpoint = self._endpoint_for(ref.provider)
        if auth.headers:  # a credential's own headers (an OAuth login's extraHeaders) win over the endpoint's
            endpoint = replace(endpoint, headers={**endpoint.headers, **auth.headers})
        client = self._clients.get(endpoint.api)
        if client is None:
            raise ProviderError(Reason.BAD_REQUEST, f'No client for API mode "{endpoint.api}".')
        request = ChatRequest(
            model=ref.model, messages=turn.messages, max_tokens=turn.max_tokens, system=turn.system
        )
        parts = outcome.parts
        parts.clear()  # a retry starts afresh: only whitespace (never shown) can be left from the last try
        stream = bounded(
            client.stream(endpoint, auth, request), gap_s=endpoint.timeout_s, answer_s=endpoint.max_answer_s
        )
        try:
            async with aclosing(stream):
                async for text in stream:
                    if not text:
                        continue
                    parts.append(text)
                    if outcome.shown:
                        yield TextDelta(text)
                    elif visible(text):
                        # Only visible text counts as shown: leading whitespace waits for it (docs/failover.md §5).
                        outcome.shown = True
                        yield TextDelta("".join(parts))
        except ProviderError:
            raise
        except ModelbotError as exc:
            raise ProviderError(Reason.BAD_REQUEST, str(exc)) from exc
        if outcome.shown:
            outcome.text = "".join(parts)

    def _redacted(self, error: ProviderError) -> ProviderError:
        """The error with its provider text redacted; the raw SDK exception behind it is dropped."""
        text = str(error)
        clean = self._redact(text)
        if clean == text:
            return error
        return ProviderError(error.reason, clean, status=error.status, retry_after_ms=error.retry_after_ms)

    async def _fail(
        self, state: _Turn, ref: ModelRef, profile_id: str, error: ProviderError
    ) -> AttemptFailed:
        """Record the attempt, and persist the profile's failure before anything else is tried."""
        until: int | None = None
        if records_profile_failure(error.reason):
            until = await self._auth.record_failure(
                profile_id,
                ref.model,
                error.reason,
                now_ms=self._clock.now_ms(),
                retry_after_ms=error.retry_after_ms,
            )
            state.note_unavailable(ProfileAvailability(profile_id, until, error.reason.value))
        record = AttemptRecord(str(ref), profile_id, error.reason, str(error))
        state.attempts.append(record)
        return AttemptFailed(record, until)

    def _result(
        self, turn: TurnInput, answer: tuple[ModelRef, str, str], state: _Turn, started: float
    ) -> TurnResult:
        head = turn.chain[0]
        ref, profile_id, text = answer
        failed = any(a.reason is not None or a.skipped for a in state.attempts)
        fell_back = ref != head
        pin = turn.pin
        if ref == head and (pin is None or pin.source == "auto"):
            pin = Pin(profile_id, "auto")
        return TurnResult(
            text=text,
            ref=ref,
            profile_id=profile_id,
            attempts=tuple(state.attempts),
            fell_back=fell_back,
            rotated=failed and not fell_back,
            note=fallback_note(ref, profile_id, head, state.attempts) if failed else None,
            pin=pin,
            latency_ms=(time.perf_counter() - started) * 1000,
        )


@dataclass
class _Outcome:
    """What one attempt produced: the full text on success, or the action its failure calls for."""

    text: str | None = None
    action: Action | None = None
    parts: list[str] = field(default_factory=list)  # the deltas received so far, joined only when needed
    shown: bool = False  # visible text reached the caller: a failure now interrupts the answer

    @property
    def partial(self) -> str:
        return "".join(self.parts)
