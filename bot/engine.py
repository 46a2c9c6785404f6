"""The failover engine: runs one turn across (model, profile) candidates and streams the answer (spec §6–7).

The decisions are pure (``profiles_to_try``, the policy table, ``summarize``, ``fallback_note``); the loop in
``Engine.run`` only performs the calls they choose, persists failure state before the next attempt, and
streams text deltas to the caller.
"""

from __future__ import annotations

import asyncio
import time
import unicodedata
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from bot.clock import Clock
from bot.errors import (
    AllCandidatesFailed,
    AttemptRecord,
    ModelbotError,
    ProviderError,
    StreamInterrupted,
    TurnStopped,
)
from bot.policy import STOP_MESSAGES, Action, action_for, records_profile_failure
from bot.providers.base import ChatMessage, ChatRequest, Endpoint, ProviderClient, ResolvedAuth
from bot.reasons import Reason
from bot.redaction import mask_key_shaped
from bot.refs import ModelRef
from bot.stream_guard import bounded

PinSource = Literal["auto", "user"]
Sleep = Callable[[float], Awaitable[None]]

# The quick retry after a server error waits for a Retry-After up to this long; a longer one means the
# server is not coming back soon, so the next model is tried at once (spec §11.3).
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
    """What the engine needs from the auth store: rotation order, availability, credentials, bookkeeping."""

    def rotation(self, provider: str, now_ms: int) -> list[str]:
        """Usable profile ids in rotation order (cooling and disabled ones last)."""
        ...

    def unavailable_until(self, profile_id: str, now_ms: int) -> int | None:
        """When a cooling or disabled profile is back, or None if it is usable now."""
        ...

    async def resolve(self, profile_id: str, *, now_ms: int) -> ResolvedAuth: ...

    async def record_failure(
        self, profile_id: str, reason: Reason, *, now_ms: int, retry_after_ms: int | None
    ) -> int | None:
        """Persist the failure; returns the time the profile is usable again."""
        ...

    async def record_success(self, profile_id: str, *, now_ms: int) -> None: ...


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


TurnEvent = TextDelta | AttemptFailed | TurnDone


def profiles_to_try(
    rotation: Sequence[str], available: Callable[[str], bool], pin: Pin | None, provider: str
) -> list[str]:
    """The profiles to call for one candidate, in order; a user pin allows only itself."""
    usable = [p for p in rotation if available(p)]
    if pin is None or pin.provider != provider:
        return usable
    if pin.source == "user":
        return [pin.profile_id] if available(pin.profile_id) else []
    if pin.profile_id in usable:
        return [pin.profile_id, *(p for p in usable if p != pin.profile_id)]
    return usable


def visible(text: str) -> bool:
    """Whether ``text`` shows anything: whitespace and invisible format characters (zero-width) do not."""
    return any(not ch.isspace() and unicodedata.category(ch) != "Cf" for ch in text)


def format_wait(ms: int) -> str:
    """A short human duration: 45s, 4m12s, 2h5m."""
    seconds = max(1, -(-ms // 1000))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s" if seconds else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m" if minutes else f"{hours}h"


def summarize(attempts: Sequence[AttemptRecord], soonest_ms: int | None, now_ms: int) -> str:
    """The one message sent when every candidate failed."""
    by_ref: dict[str, list[str]] = {}
    for attempt in attempts:
        if attempt.skipped:
            what = attempt.detail or "skipped"
        else:
            label = attempt.reason.label if attempt.reason else "failed"
            what = f"{attempt.profile_id} {label}" if attempt.profile_id else label
        by_ref.setdefault(attempt.ref, []).append(what)
    parts = [f"{ref} ({'; '.join(items)})" for ref, items in by_ref.items()]
    text = "All models failed: " + ", ".join(parts) + "."
    if soonest_ms is not None and soonest_ms > now_ms:
        text += f" The first profile is available again in {format_wait(soonest_ms - now_ms)}."
    return text


def fallback_note(
    answered: ModelRef, profile_id: str, chain_head: ModelRef, attempts: Sequence[AttemptRecord]
) -> str | None:
    """The quiet line under a reply that another model or profile gave because of a failure.

    A rotation names the failure that moved the turn off its first profile; a fallback names the last
    failure before it, the one that exhausted the previous model.
    """
    failures = [a for a in attempts if a.reason is not None or a.skipped]
    if not failures:
        return None
    if answered == chain_head:
        first = failures[0]
        return f"↪ answered by {answered} ({profile_id}) — {first.profile_id or first.ref} {_failure_label(first)}"
    last = failures[-1]
    return f"↪ answered by {answered} — {last.ref.split('/', 1)[0]} {_failure_label(last)}"


def _failure_label(attempt: AttemptRecord) -> str:
    if attempt.reason is not None:
        return attempt.reason.label
    return "cooling down"


@dataclass
class _Turn:
    """Mutable bookkeeping of one running turn."""

    attempts: list[AttemptRecord] = field(default_factory=list)
    soonest_ms: int | None = None

    def note_unavailable(self, until: int | None) -> None:
        if until is not None and (self.soonest_ms is None or until < self.soonest_ms):
            self.soonest_ms = until


class Engine:
    """Runs turns; one instance serves every session and is safe to share across tasks."""

    def __init__(
        self,
        *,
        auth: AuthBackend,
        clients: Mapping[str, ProviderClient],
        endpoint_for: Callable[[str], Endpoint],
        clock: Clock,
        sleep: Sleep | None = None,
        redact: Callable[[str], str] | None = None,
    ) -> None:
        self._auth = auth
        self._clients = clients
        self._endpoint_for = endpoint_for
        self._clock = clock
        self._sleep: Sleep = asyncio.sleep if sleep is None else sleep
        # Every provider text passes through this before it is recorded, shown or logged (spec §8).
        self._redact: Callable[[str], str] = mask_key_shaped if redact is None else redact

    async def run(self, turn: TurnInput) -> AsyncIterator[TurnEvent]:
        """Stream the turn: text deltas, attempt failures as they happen, then ``TurnDone``.

        Raises ``AllCandidatesFailed``, ``TurnStopped`` or ``StreamInterrupted``.
        """
        if not turn.chain:
            raise TurnStopped(Reason.BAD_REQUEST, "No model is configured.")
        started = time.perf_counter()
        state = _Turn()
        head = turn.chain[0]
        for index, ref in enumerate(turn.chain):
            now = self._clock.now_ms()
            pin = turn.pin if index == 0 else None
            order = self._auth.rotation(ref.provider, now)
            candidates = profiles_to_try(order, self._available_at(now), pin, ref.provider)
            if not candidates:
                self._record_skip(state, ref, order, pin, now)
                continue
            for profile_id in candidates:
                outcome = _Outcome()
                async for event in self._attempt(turn, ref, profile_id, state, outcome):
                    yield event
                if outcome.text is not None:
                    yield TurnDone(
                        self._result(
                            turn=turn,
                            head=head,
                            ref=ref,
                            profile_id=profile_id,
                            text=outcome.text,
                            state=state,
                            started=started,
                        )
                    )
                    return
                assert outcome.action is not None
                if outcome.action in (Action.RETRY_ONCE_THEN_NEXT_MODEL,):
                    break  # the key is not at fault: another profile would not help
                if pin is not None and pin.source == "user" and pin.provider == ref.provider:
                    break  # a user pin is locked: the next model, never another profile
        raise AllCandidatesFailed(
            summarize(state.attempts, state.soonest_ms, self._clock.now_ms()),
            state.attempts,
            state.soonest_ms,
        )

    def _available_at(self, now: int) -> Callable[[str], bool]:
        return lambda profile_id: self._auth.unavailable_until(profile_id, now) is None

    async def complete(self, turn: TurnInput) -> TurnResult:
        """Run a turn to the end without streaming (compaction summaries, probes)."""
        async for event in self.run(turn):
            if isinstance(event, TurnDone):
                return event.result
        raise AssertionError(
            "Engine.run ended without a result"
        )  # pragma: no cover - run always returns or raises

    def _record_skip(
        self, state: _Turn, ref: ModelRef, order: Sequence[str], pin: Pin | None, now: int
    ) -> None:
        if pin is not None and pin.source == "user" and pin.provider == ref.provider:
            until = self._auth.unavailable_until(pin.profile_id, now)
            detail = f"pinned {pin.profile_id} cooling down" if until else f"pinned {pin.profile_id} unusable"
            state.note_unavailable(until)
        elif order:
            for profile_id in order:
                state.note_unavailable(self._auth.unavailable_until(profile_id, now))
            detail = "skipped: every profile cooling down or disabled"
        else:
            detail = "skipped: no credentials"
        state.attempts.append(AttemptRecord(str(ref), None, None, detail, skipped=True))

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
                    await self._auth.record_success(profile_id, now_ms=self._clock.now_ms())
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
                wait_ms = error.retry_after_ms or 0
                if wait_ms <= QUICK_RETRY_MAX_WAIT_MS:
                    if wait_ms:
                        await self._sleep(wait_ms / 1000)
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
                        # Only visible text counts as shown: leading whitespace waits for it (spec §6).
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
                profile_id, error.reason, now_ms=self._clock.now_ms(), retry_after_ms=error.retry_after_ms
            )
            state.note_unavailable(until)
        record = AttemptRecord(str(ref), profile_id, error.reason, str(error))
        state.attempts.append(record)
        return AttemptFailed(record, until)

    def _result(
        self,
        *,
        turn: TurnInput,
        head: ModelRef,
        ref: ModelRef,
        profile_id: str,
        text: str,
        state: _Turn,
        started: float,
    ) -> TurnResult:
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
